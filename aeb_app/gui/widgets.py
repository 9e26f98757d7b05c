"""Small display widgets: image view, warning banner, HUD, transport bar, message bar.

Each only shows what it is given; none processes frames. Pure formatting helpers live at module
level so unit tests cover them without a window.
"""

from __future__ import annotations

import logging
from collections import deque

import numpy as np
import numpy.typing as npt
from PyQt5.QtCore import Qt, pyqtSignal
from PyQt5.QtGui import QImage, QPixmap
from PyQt5.QtWidgets import (
    QApplication, QCheckBox, QHBoxLayout, QLabel, QPushButton, QSizePolicy, QSlider, QStyle, QWidget,
)

from aeb_app.monitor import MonitorState, MonitorView
from aeb_app.types import FrameResult, StageTimes, WarningLevel

__all__ = ["to_qimage", "ImageView", "WarningBanner", "HudPanel", "TransportBar", "MessageBar",
           "hud_text", "frame_label"]

log = logging.getLogger(__name__)

BANNER_STYLE = {
    WarningLevel.NONE: ("AEB ready: no warning", "#2e7d32"),
    WarningLevel.CAUTION: ("CAUTION: vehicle ahead closing", "#f9a825"),
    WarningLevel.BRAKE: ("BRAKE!", "#c62828"),
    WarningLevel.UNAVAILABLE: ("AEB SYSTEM UNAVAILABLE", "#616161"),
}
#: Titles of the monitor states in which nothing is monitored (all grey: never the green "ready").
STATE_TITLE = {
    MonitorState.STARTING: "AEB STARTING",
    MonitorState.STALE: "AEB SYSTEM UNAVAILABLE",
    MonitorState.FAILED: "AEB SYSTEM UNAVAILABLE",
    MonitorState.PAUSED: "AEB NOT MONITORING",
    MonitorState.STOPPED: "AEB NOT MONITORING",
}


def to_qimage(image_bgr: npt.NDArray[np.uint8]) -> QImage:
    """(h, w, 3) uint8 BGR -> a QImage that owns a copy of the pixels."""
    image = np.ascontiguousarray(image_bgr)
    h, w = image.shape[:2]
    return QImage(image.data, w, h, image.strides[0], QImage.Format_BGR888).copy()


class ImageView(QLabel):
    """Shows the latest BGR image scaled to fit, keeping the aspect ratio."""

    def __init__(self, placeholder: str = "", parent: QWidget | None = None) -> None:
        super().__init__(placeholder, parent)
        self.setAlignment(Qt.AlignCenter)
        self.setMinimumSize(160, 120)
        self.setSizePolicy(QSizePolicy.Ignored, QSizePolicy.Ignored)
        self.setStyleSheet("background: #202020; color: #bbbbbb;")
        self._pixmap: QPixmap | None = None

    def show_image(self, image_bgr: npt.NDArray[np.uint8]) -> None:
        self._pixmap = QPixmap.fromImage(to_qimage(image_bgr))
        self._rescale()

    @property
    def has_image(self) -> bool:
        return self._pixmap is not None

    def resizeEvent(self, event) -> None:  # noqa: N802 - Qt naming
        super().resizeEvent(event)
        self._rescale()

    def _rescale(self) -> None:
        if self._pixmap is not None:
            self.setPixmap(self._pixmap.scaled(self.size(), Qt.KeepAspectRatio, Qt.SmoothTransformation))


class WarningBanner(QLabel):
    """The current warning level as a coloured bar; optional beep when it rises to CAUTION/BRAKE."""

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setAlignment(Qt.AlignCenter)
        self.setMinimumHeight(36)
        self.setSizePolicy(QSizePolicy.Ignored, QSizePolicy.Preferred)  # a long reason must not widen the window
        self.sound_enabled = False
        self.beeps = 0
        self.level: WarningLevel | None = None
        self.state: MonitorState | None = None
        self.colour = ""
        self.full_text = ""  # text() is this, elided to the width
        self.show_view(MonitorView(MonitorState.STOPPED, WarningLevel.UNAVAILABLE, "no video open"))

    def show_view(self, view: MonitorView) -> None:
        """Show what the :class:`~aeb_app.monitor.SystemMonitor` allows: green only when all clear."""
        if view.state is MonitorState.ACTIVE:
            self.set_level(view.level, view.text)
        else:
            self._show(WarningLevel.UNAVAILABLE, STATE_TITLE[view.state], view.text)
        self.state = view.state

    def set_level(self, level: WarningLevel, detail: str = "") -> None:
        """Show a frame's warning level (use :meth:`show_view` in the live window)."""
        if level != self.level and level in (WarningLevel.CAUTION, WarningLevel.BRAKE) and self.sound_enabled:
            QApplication.beep()
            self.beeps += 1
        self._show(level, BANNER_STYLE[level][0], detail)

    def _show(self, level: WarningLevel, title: str, detail: str) -> None:
        text = title + (f" ({detail})" if detail else "")
        colour = BANNER_STYLE[level][1]
        if colour != self.colour:  # called every frame: a style sheet change re-polishes the widget
            self.setStyleSheet(f"background: {colour}; color: white; font-weight: bold; font-size: 16px;")
            self.colour = colour
        self.level = level
        if text != self.full_text:
            self.full_text = text
            self.setToolTip(text)
            self._show_text()

    def _show_text(self) -> None:
        """The text, elided on the right when the bar is narrower (a reason may name a long path)."""
        self.ensurePolished()  # the style sheet's font
        self.setText(self.fontMetrics().elidedText(self.full_text, Qt.ElideRight, max(0, self.width() - 12)))

    def resizeEvent(self, event) -> None:  # noqa: N802 - Qt naming
        super().resizeEvent(event)
        self._show_text()


def hud_text(times: StageTimes, *, fps: float, detector_info: object | None, dropped: int,
             latency_ms: tuple[float, float] | None = None) -> str:
    """The HUD as text lines: FPS, per-stage latency, decode-to-warning latency p50/p99 over recent frames,
    model/backend/precision, dropped frames."""
    info = detector_info
    model = f"{info.model} | {info.backend} {info.precision} on {info.device}" if info else "no model"
    stages = " ".join(f"{name} {getattr(times, name + '_ms'):.1f}" for name in
                      ("decode", "preprocess", "inference", "postprocess", "geometry", "render"))
    latency = f" | decode->warning p50 {latency_ms[0]:.1f} p99 {latency_ms[1]:.1f}" if latency_ms else ""
    return (f"{fps:5.1f} FPS processed | dropped {dropped}{latency}\n"
            f"ms: {stages} | total {times.total_ms:.1f}\n{model}")


def frame_label(index: int, timestamp_s: float, frame_count: int | None) -> str:
    """``frame 12/221  00:00.48``."""
    minutes, seconds = divmod(timestamp_s, 60.0)
    total = f"/{frame_count}" if frame_count else ""
    return f"frame {index}{total}  {int(minutes):02d}:{seconds:05.2f}"


class HudPanel(QLabel):
    """Processing FPS (over the last results), stage latencies, detector, dropped frames."""

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__("HUD: no stream", parent)
        self.setStyleSheet("font-family: monospace; font-size: 11px; background: #111; color: #8f8; padding: 4px;")
        self.setWordWrap(True)
        self.setMinimumHeight(70)
        self.detector_info: object | None = None
        self._totals_ms: deque[float] = deque(maxlen=30)
        self._decision_ms: deque[float] = deque(maxlen=300)  # about 10 s of video for the p99

    def update_from(self, result: FrameResult, dropped: int) -> None:
        self._totals_ms.append(max(result.times.total_ms, 1e-3))
        fps = 1000.0 * len(self._totals_ms) / sum(self._totals_ms)
        if result.detections is not None:  # a failed frame decided nothing
            self._decision_ms.append(result.times.decision_ms)
        latency = (tuple(float(v) for v in np.percentile(self._decision_ms, (50, 99)))
                   if self._decision_ms else None)
        self.setText(hud_text(result.times, fps=fps, detector_info=self.detector_info, dropped=dropped,
                              latency_ms=latency))


class TransportBar(QWidget):
    """Play/pause, step, seek slider, loop, frame counter and timestamp."""

    play_toggled = pyqtSignal(bool)  # True = play
    step_clicked = pyqtSignal()
    seek_requested = pyqtSignal(int)
    loop_toggled = pyqtSignal(bool)

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        style = self.style()
        self.play_button = QPushButton(style.standardIcon(QStyle.SP_MediaPlay), "Play")
        self.play_button.setCheckable(True)
        self.step_button = QPushButton(style.standardIcon(QStyle.SP_MediaSeekForward), "Step")
        self.slider = QSlider(Qt.Horizontal)
        self.slider.setRange(0, 0)
        self.loop_box = QCheckBox("Loop")
        self.label = QLabel(frame_label(0, 0.0, None))
        layout = QHBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        for widget in (self.play_button, self.step_button, self.slider, self.loop_box, self.label):
            layout.addWidget(widget, 1 if widget is self.slider else 0)
        self.play_button.toggled.connect(self._on_play)
        self.step_button.clicked.connect(self.step_clicked)
        self.slider.sliderReleased.connect(lambda: self.seek_requested.emit(self.slider.value()))
        self.slider.actionTriggered.connect(self._on_slider_action)
        self.loop_box.toggled.connect(self.loop_toggled)

    def _on_play(self, playing: bool) -> None:
        self._show_playing(playing)
        self.play_toggled.emit(playing)

    def _show_playing(self, playing: bool) -> None:
        self.play_button.setText("Pause" if playing else "Play")
        self.play_button.setIcon(self.style().standardIcon(QStyle.SP_MediaPause if playing else QStyle.SP_MediaPlay))

    def _on_slider_action(self, action: int) -> None:
        if action in (QSlider.SliderPageStepAdd, QSlider.SliderPageStepSub,
                      QSlider.SliderSingleStepAdd, QSlider.SliderSingleStepSub):
            self.seek_requested.emit(self.slider.sliderPosition())

    def set_playing(self, playing: bool) -> None:
        """Reflect the state without emitting ``play_toggled``."""
        self.play_button.blockSignals(True)
        self.play_button.setChecked(playing)
        self.play_button.blockSignals(False)
        self._show_playing(playing)  # text and icon: the end of a video must not leave a pause icon

    def set_range(self, frame_count: int | None) -> None:
        self.slider.setEnabled(bool(frame_count))
        self.slider.setRange(0, max(0, (frame_count or 1) - 1))

    def show_position(self, index: int, timestamp_s: float, frame_count: int | None) -> None:
        if not self.slider.isSliderDown():
            self.slider.blockSignals(True)
            self.slider.setValue(index)
            self.slider.blockSignals(False)
        self.label.setText(frame_label(index, timestamp_s, frame_count))


class MessageBar(QLabel):
    """A one-line message strip in the window (errors in red), also sent to the log."""

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setWordWrap(True)
        self.hide()

    def show_message(self, text: str, *, error: bool = False) -> None:
        (log.error if error else log.info)(text)
        colour = "#b71c1c" if error else "#0d47a1"
        self.setStyleSheet(f"background: {colour}; color: white; padding: 4px;")
        self.setText(text)
        self.show()

    def clear_message(self) -> None:
        self.setText("")
        self.hide()
