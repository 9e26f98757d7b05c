"""Side panels: the warning event log (exportable) and the settings form (persisted with QSettings)."""

from __future__ import annotations

import logging
import math
from dataclasses import asdict, dataclass, fields
from pathlib import Path

from PyQt5.QtCore import QSettings, pyqtSignal
from PyQt5.QtWidgets import (
    QCheckBox, QComboBox, QDoubleSpinBox, QFormLayout, QGroupBox, QHBoxLayout, QPushButton, QTableWidget,
    QTableWidgetItem, QVBoxLayout, QWidget,
)

from aeb_app.pipeline import WarningEvent, write_events
from aeb_app.render import format_ttc
from aeb_app.safety import WarningConfig, ZoneConfig

__all__ = ["AppSettings", "EventLog", "SettingsPanel"]

log = logging.getLogger(__name__)


#: Allowed ranges of the numeric settings (the Settings panel's spin boxes use the same).
RANGES = {"ego_speed_kmh": (0.0, 250.0), "reaction_time_s": (0.0, 5.0), "decel_mps2": (0.5, 12.0),
          "caution_ttc_s": (0.5, 10.0), "brake_ttc_s": (0.3, 5.0)}


@dataclass(frozen=True)
class AppSettings:
    """User choices that persist between runs.

    Attributes:
        model: model name.
        mode: inference mode, or ``auto`` (the first mode of the fallback order this machine can run).
        ego_speed_kmh: ego speed for the zone length, km/h (0: unknown, fixed zone length).
        reaction_time_s: reaction time, seconds.
        decel_mps2: braking deceleration, m/s^2.
        sound: beep on CAUTION/BRAKE.
        caution_ttc_s: TTC at or below which an in-zone object gives CAUTION, seconds.
        brake_ttc_s: TTC at or below which it gives BRAKE, seconds (<= caution_ttc_s).
        tiles: frames wider than 2:1 go through the network as tiles (:mod:`aeb_app.model.tiling`).
    """

    model: str = "ssd_mobilenet_v1"
    mode: str = "auto"
    ego_speed_kmh: float = 0.0
    reaction_time_s: float = ZoneConfig.reaction_time_s  # defaults: the safety layer's, in one place
    decel_mps2: float = ZoneConfig.decel_mps2
    sound: bool = False
    caution_ttc_s: float = WarningConfig.caution_ttc_s
    brake_ttc_s: float = WarningConfig.brake_ttc_s
    tiles: bool = True

    @classmethod
    def load(cls, store: QSettings, *, models: tuple[str, ...] = (), modes: tuple[str, ...] = ()) -> "AppSettings":
        """Read from ``store``; a missing, unreadable or out-of-range value keeps its default.

        Each value refused is logged with the settings file and the key (see :meth:`problems`).
        """
        return cls.load_checked(store, models=models, modes=modes)[0]

    @classmethod
    def load_checked(cls, store: QSettings, *, models: tuple[str, ...] = (),
                     modes: tuple[str, ...] = ()) -> tuple["AppSettings", list[str]]:
        """Like :meth:`load`, also returning one message per refused value (naming the file and key)."""
        values, problems = {}, []
        for f in fields(cls):
            default = getattr(cls, f.name)
            raw = store.value(f"settings/{f.name}", default)
            problem = None
            try:
                value = (str(raw).lower() in ("true", "1")) if isinstance(default, bool) else type(default)(raw)
                problem = _check(f.name, value, models=models, modes=modes)
            except (TypeError, ValueError, OverflowError):
                problem = "not a valid value"
            if problem:
                problems.append(f"{store.fileName()}: settings/{f.name}={raw!r} ignored ({problem}); "
                                f"using the default {default!r}")
                log.warning(problems[-1])
                value = default
            values[f.name] = value
        if values["brake_ttc_s"] > values["caution_ttc_s"]:
            problems.append(f"{store.fileName()}: settings/brake_ttc_s={values['brake_ttc_s']!r} is above "
                            f"settings/caution_ttc_s={values['caution_ttc_s']!r}; using the defaults for both")
            log.warning(problems[-1])
            values["caution_ttc_s"], values["brake_ttc_s"] = cls.caution_ttc_s, cls.brake_ttc_s
        return cls(**values), problems

    def save(self, store: QSettings) -> None:
        for key, value in asdict(self).items():
            store.setValue(f"settings/{key}", value)
        store.sync()


def _check(name: str, value: object, *, models: tuple[str, ...], modes: tuple[str, ...]) -> str | None:
    """Why ``value`` is not acceptable for setting ``name``, or None."""
    if name in RANGES:
        low, high = RANGES[name]
        if not (math.isfinite(value) and low <= value <= high):
            return f"must be a number in [{low:g}, {high:g}]"
    if name == "model" and models and value not in models:
        return f"unknown model; choose one of {', '.join(models)}"
    if name == "mode" and modes and value not in modes:
        return f"unknown mode; choose one of {', '.join(modes)}"
    return None


class EventLog(QWidget):
    """Table of warning events with CSV/JSON export."""

    COLUMNS = ("time s", "frame", "level", "object", "distance m", "TTC")

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.events: list[WarningEvent] = []
        self.table = QTableWidget(0, len(self.COLUMNS))
        self.table.setHorizontalHeaderLabels(self.COLUMNS)
        self.table.verticalHeader().hide()
        self.table.horizontalHeader().setStretchLastSection(True)
        self.export_button = QPushButton("Export events...")
        self.clear_button = QPushButton("Clear")
        buttons = QHBoxLayout()
        buttons.addWidget(self.export_button)
        buttons.addWidget(self.clear_button)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.addWidget(self.table)
        layout.addLayout(buttons)
        self.clear_button.clicked.connect(self.clear)

    def add_event(self, event: WarningEvent) -> None:
        self.events.append(event)
        row = self.table.rowCount()
        self.table.insertRow(row)
        distance = "" if math.isnan(event.distance_m) else f"{event.distance_m:.1f}"
        ttc = "" if math.isnan(event.ttc_s) else format_ttc(event.ttc_s).removeprefix("TTC ")
        cells = (f"{event.timestamp_s:.2f}", str(event.frame_index), event.level,
                 event.object or event.reason, distance, ttc)
        for col, text in enumerate(cells):
            self.table.setItem(row, col, QTableWidgetItem(text))
        self.table.resizeColumnsToContents()
        self.table.scrollToBottom()

    def clear(self) -> None:
        self.events.clear()
        self.table.setRowCount(0)

    def export(self, path: str | Path) -> None:
        """Write the events atomically as CSV or JSON (by extension)."""
        write_events(path, self.events)


class SettingsPanel(QGroupBox):
    """Model/mode and zone settings. Emits ``changed(AppSettings)`` on Apply."""

    changed = pyqtSignal(object)

    def __init__(self, settings: AppSettings, *, models: tuple[str, ...], modes: tuple[str, ...],
                 parent: QWidget | None = None) -> None:
        super().__init__("Settings", parent)
        self.model_box = QComboBox()
        self.model_box.addItems(models)
        self.mode_box = QComboBox()
        self.mode_box.addItems(modes)
        self.speed = self._spin(*RANGES["ego_speed_kmh"], 5.0, " km/h")
        self.reaction = self._spin(*RANGES["reaction_time_s"], 0.1, " s")
        self.decel = self._spin(*RANGES["decel_mps2"], 0.5, " m/s²")
        self.caution = self._spin(*RANGES["caution_ttc_s"], 0.1, " s")
        self.brake = self._spin(*RANGES["brake_ttc_s"], 0.1, " s")
        self.sound_box = QCheckBox("Beep on warnings")
        self.tiles_box = QCheckBox("Tile frames wider than 2:1")
        self.tiles_box.setToolTip("Wide frames (e.g. KITTI's 1242x375) go through the network as overlapping tiles "
                                  "plus the whole frame: more small objects found, one network call per tile")
        self.apply_button = QPushButton("Apply")
        form = QFormLayout(self)
        for label, widget in (("Model", self.model_box), ("Mode", self.mode_box), ("Ego speed", self.speed),
                              ("Reaction time", self.reaction), ("Deceleration", self.decel),
                              ("Caution at TTC", self.caution), ("Brake at TTC", self.brake),
                              ("", self.sound_box), ("", self.tiles_box), ("", self.apply_button)):
            form.addRow(label, widget)
        self.set_values(settings)
        self.apply_button.clicked.connect(lambda: self.changed.emit(self.values()))

    @staticmethod
    def _spin(low: float, high: float, step: float, suffix: str) -> QDoubleSpinBox:
        box = QDoubleSpinBox()
        box.setRange(low, high)
        box.setSingleStep(step)
        box.setSuffix(suffix)
        return box

    def set_values(self, settings: AppSettings) -> None:
        for box, value in ((self.model_box, settings.model), (self.mode_box, settings.mode)):
            if box.findText(value) < 0:
                box.addItem(value)
            box.setCurrentText(value)
        self.speed.setValue(settings.ego_speed_kmh)
        self.reaction.setValue(settings.reaction_time_s)
        self.decel.setValue(settings.decel_mps2)
        self.sound_box.setChecked(settings.sound)
        self.tiles_box.setChecked(settings.tiles)
        self.caution.setValue(settings.caution_ttc_s)
        self.brake.setValue(settings.brake_ttc_s)

    def values(self) -> AppSettings:
        caution = self.caution.value()
        return AppSettings(self.model_box.currentText(), self.mode_box.currentText(), self.speed.value(),
                           self.reaction.value(), self.decel.value(), self.sound_box.isChecked(),
                           caution, min(self.brake.value(), caution),  # BRAKE never before CAUTION
                           tiles=self.tiles_box.isChecked())
