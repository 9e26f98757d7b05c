"""The main window: composes the widgets and wires them to one :class:`FrameWorker` session.

Thin by design: the window never decodes, infers or projects. It starts a worker on
:func:`~aeb_app.gui.session.live_session`, forwards user commands through a
:class:`~aeb_app.gui.session.PlaybackControl`, and shows what comes back.
"""

from __future__ import annotations

import dataclasses
import logging
import time
from pathlib import Path

from PyQt5.QtCore import QSettings, Qt, QTimer
from PyQt5.QtWidgets import (
    QAction, QFileDialog, QInputDialog, QMainWindow, QProgressBar, QSplitter, QTabWidget, QVBoxLayout, QWidget,
)

from aeb_app.geometry.calibration import shipped_calibration
from aeb_app.heavy import preload
from aeb_app.model.tiling import NO_TILING, TileConfig
from aeb_app.monitor import SystemMonitor
from aeb_app.gui.panels import AppSettings, EventLog, SettingsPanel
from aeb_app.gui.session import EndOfStream, Notice, PlaybackControl, SessionConfig, Started, live_session
from aeb_app.gui.widgets import HudPanel, ImageView, MessageBar, TransportBar, WarningBanner
from aeb_app.gui.worker import FrameWorker
from aeb_app.pipeline import PipelineSettings, WarningEvent
from aeb_app.safety import WarningConfig, ZoneConfig
from aeb_app.safety.settings import LogicSettings
from aeb_app.types import FrameResult
from aeb_app.video.sequence import has_timestamps, is_image_sequence

__all__ = ["MainWindow", "DEFAULT_CALIBRATION", "VIDEO_FILTER"]

log = logging.getLogger(__name__)

DEFAULT_CALIBRATION = shipped_calibration()
VIDEO_FILTER = "Videos (*.mp4 *.avi *.mkv *.mov *.m4v);;All files (*)"
STOP_TIMEOUT_MS = 5000
WATCHDOG_INTERVAL_MS = 200


def processing(settings: AppSettings, base: WarningConfig) -> tuple[ZoneConfig, PipelineSettings, WarningConfig]:
    """The processing configuration that the user settings ask for (``base``: the other warning settings)."""
    zone = ZoneConfig(reaction_time_s=settings.reaction_time_s, decel_mps2=settings.decel_mps2)
    speed = settings.ego_speed_kmh / 3.6 if settings.ego_speed_kmh > 0 else None
    warning = dataclasses.replace(base, caution_ttc_s=settings.caution_ttc_s, brake_ttc_s=settings.brake_ttc_s)
    detect = dataclasses.replace(PipelineSettings.postprocess, tiling=TileConfig() if settings.tiles else NO_TILING)
    return zone, PipelineSettings(postprocess=detect, ego_speed_mps=speed, banner=False), warning  # own banner


class MainWindow(QMainWindow):
    """Live view, bird's-eye view, HUD, warnings, event log and settings, in tabs.

    Args:
        settings_store: where choices persist (default: the user's ``QSettings("aeb_app", "aeb_app")``).
        calibration_path: road calibration to load (default: the shipped sample-footage calibration for
            videos of its frame size; see :func:`aeb_app.stream.resolve_calibration`).
        realtime: pace video files at their frame rate (skip frames when behind).
        warning_config: warning thresholds (default: those of ``logic``).
        stale_after_s: wall-clock seconds without a new frame, while playing, after which the banner
            says "system unavailable" (the watchdog; see :mod:`aeb_app.monitor`).
        logic: warning-logic settings (``aeb-app gui --settings``); the settings panel's zone and TTC values
            replace theirs.
    """

    def __init__(self, *, settings_store: QSettings | None = None, calibration_path: Path | None = None,
                 realtime: bool = True, warning_config: WarningConfig | None = None,
                 stale_after_s: float = 1.0, logic: LogicSettings | None = None) -> None:
        super().__init__()
        self.setWindowTitle("aeb_app: forward collision warning")
        self.setAcceptDrops(True)
        self.store = settings_store or QSettings("aeb_app", "aeb_app")
        from aeb_app.inference.registry import MODES
        from aeb_app.model.registry import MODEL_NAMES

        self.modes = ("auto", *MODES)
        self.settings, self.settings_problems = AppSettings.load_checked(self.store, models=tuple(MODEL_NAMES),
                                                                         modes=self.modes)
        self.calibration_path = calibration_path
        self.tracks_path: Path | None = None  # File > Record tracks to CSV
        self.realtime = realtime
        self.logic = logic or LogicSettings()  # aeb-app gui --settings: the warning logic's file settings
        self.warning_config = warning_config or self.logic.warning
        self.worker: FrameWorker | None = None
        self.retired: list[FrameWorker] = []  # stopped late: kept alive until their thread ends
        self.control: PlaybackControl | None = None
        self.session: SessionConfig | None = None
        self.last_result: FrameResult | None = None
        self.frame_count: int | None = None
        self.source_skipped = 0
        self.monitor = SystemMonitor(stale_after_s=stale_after_s)
        self._build()
        self._menus()
        if self.settings_problems:  # e.g. decel_mps2=0 saved by hand: say so instead of failing every start
            self.message_bar.show_message(" | ".join(self.settings_problems), error=True)
        # The watchdog: the banner is re-decided on a wall-clock timer, not only when a frame
        # arrives, so a stalled camera, decoder or worker turns it grey instead of leaving it green.
        self.watchdog = QTimer(self)
        self.watchdog.setInterval(WATCHDOG_INTERVAL_MS)
        self.watchdog.timeout.connect(self.refresh_banner)
        self.watchdog.start()

    # -- layout ----------------------------------------------------------------------------
    def _build(self) -> None:
        from aeb_app.model.registry import MODEL_NAMES

        self.message_bar = MessageBar()
        self.banner = WarningBanner()
        self.banner.sound_enabled = self.settings.sound
        self.video_view = ImageView("Open a video (File menu, drag and drop) or a camera")
        self.bev_view = ImageView("bird's-eye view")
        self.bev_view.setMinimumWidth(200)
        self.transport = TransportBar()
        self.progress = QProgressBar()
        self.progress.setRange(0, 100)
        self.progress.hide()
        self.hud = HudPanel()
        self.event_log = EventLog()
        self.settings_panel = SettingsPanel(self.settings, models=MODEL_NAMES, modes=self.modes)
        self._layout()
        self._connect()

    def _layout(self) -> None:
        left = QWidget()
        left_layout = QVBoxLayout(left)
        for widget, stretch in ((self.banner, 0), (self.video_view, 1), (self.transport, 0), (self.progress, 0)):
            left_layout.addWidget(widget, stretch)
        self.side_tabs = QTabWidget()
        self.side_tabs.addTab(self.event_log, "Events")
        self.side_tabs.addTab(self.settings_panel, "Settings")
        right = QSplitter(Qt.Vertical)
        for widget in (self.bev_view, self.hud, self.side_tabs):
            right.addWidget(widget)
        right.setSizes([420, 100, 240])
        live = QSplitter(Qt.Horizontal)
        live.addWidget(left)
        live.addWidget(right)
        live.setSizes([960, 400])
        self.tabs = QTabWidget()
        self.tabs.addTab(live, "Live")
        central = QWidget()
        layout = QVBoxLayout(central)
        layout.addWidget(self.message_bar)
        layout.addWidget(self.tabs, 1)
        self.setCentralWidget(central)

    def _connect(self) -> None:
        self.transport.play_toggled.connect(self.set_playing)
        self.transport.step_clicked.connect(self.step)
        self.transport.seek_requested.connect(self.seek)
        self.transport.loop_toggled.connect(lambda on: self.control and self.control.set_loop(on))
        self.event_log.export_button.clicked.connect(self._export_events_dialog)
        self.settings_panel.changed.connect(self.apply_settings)

    def _menus(self) -> None:
        file_menu = self.menuBar().addMenu("&File")
        for text, slot, shortcut in (("&Open video...", self._open_video_dialog, "Ctrl+O"),
                                     ("Open &frames folder...", self._open_frames_dialog, None),
                                     ("Open &camera...", self._open_camera_dialog, None),
                                     ("Load ca&libration...", self._load_calibration_dialog, None),
                                     ("&Export events...", self._export_events_dialog, None),
                                     ("Record &tracks to CSV...", self._record_tracks_dialog, None),
                                     ("Stop recording trac&ks", lambda: self.record_tracks(None), None),
                                     ("&Quit", self.close, "Ctrl+Q")):
            action = QAction(text, self)
            if shortcut:
                action.setShortcut(shortcut)
            action.triggered.connect(slot)
            file_menu.addAction(action)
        tools = self.menuBar().addMenu("&Tools")
        calibrate = QAction("&Calibrate camera...", self)
        calibrate.triggered.connect(self.open_calibration_dialog)
        tools.addAction(calibrate)

    def add_tab(self, widget: QWidget, title: str) -> int:
        """Add a tab (e.g. "Benchmark"); returns its index."""
        return self.tabs.addTab(widget, title)

    # -- session lifecycle -----------------------------------------------------------------
    def open_source(self, source: str | int, *, playing: bool = True, fps: float | None = None) -> None:
        """Open a video file, a folder of frames or a camera index; loading happens in the worker (progress
        shown). ``fps``: the rate of a folder of frames without a timestamps.txt."""
        self.stop_session()
        self.message_bar.clear_message()
        self.event_log.clear()
        zone, pipeline_settings, warning = processing(self.settings, self.warning_config)
        self.session = SessionConfig(source, self.settings.model, self.settings.mode, self.calibration_path,
                                     zone, pipeline_settings, self.realtime, warning, self.tracks_path, self.logic,
                                     fps)
        self.control = PlaybackControl(paused=not playing, loop=self.transport.loop_box.isChecked())
        preload(self.settings.mode)  # heavy first imports here, never in the worker thread (see aeb_app.heavy)
        self.worker = FrameWorker(live_session, self.session, self.control, on_stop=self.control.stop)
        self.worker.progress.connect(self._on_progress)
        self.worker.frame_ready.connect(self._on_frame_ready)
        self.worker.event.connect(self._on_event)
        self.worker.yielded.connect(self._on_message)
        self.worker.errored.connect(self._on_error)
        self.worker.finished.connect(self._on_finished)
        self.transport.set_playing(playing)
        self.monitor.starting(str(source), time.monotonic(), playing=playing)
        self.refresh_banner()
        self.progress.setValue(0)
        self.progress.show()
        self.worker.start()

    def stop_session(self, timeout_ms: int = STOP_TIMEOUT_MS) -> bool:
        """Stop the running worker (if any) and wait; True when it stopped in time."""
        worker, self.worker = self.worker, None
        if worker is None:
            return True
        for signal in (worker.frame_ready, worker.progress, worker.event, worker.yielded, worker.errored):
            signal.disconnect()
        stopped = worker.stop(timeout_ms)
        worker.finished.disconnect()
        if not stopped:
            # Dropping the last reference to a running QThread aborts the process ("QThread: Destroyed
            # while thread is still running"); keep it until its thread ends.
            self.retired.append(worker)
            worker.finished.connect(lambda: self._forget(worker))
            if worker.isFinished():  # it ended before the connection was made
                self._forget(worker)
        self.progress.hide()
        self.monitor.ended("no video open", time.monotonic())
        self.refresh_banner()
        return stopped

    def _forget(self, worker: FrameWorker) -> None:
        if worker in self.retired:
            self.retired.remove(worker)

    def closeEvent(self, event) -> None:  # noqa: N802 - Qt naming
        self.watchdog.stop()
        self.stop_session()
        for worker in list(self.retired):
            worker.wait(STOP_TIMEOUT_MS)
        for index in range(self.tabs.count()):  # e.g. the benchmark tab's worker
            stop = getattr(self.tabs.widget(index), "stop", None)
            if callable(stop):
                stop()
        super().closeEvent(event)

    # -- commands --------------------------------------------------------------------------
    def set_playing(self, playing: bool) -> None:
        if self.control is not None:
            self.control.set_paused(not playing)
            self.monitor.set_playing(playing, time.monotonic())
            self.refresh_banner()
        self.transport.set_playing(playing)

    def step(self) -> None:
        if self.control is not None:
            self.control.step()
            self.monitor.set_playing(False, time.monotonic())
            self.refresh_banner()
        self.transport.set_playing(False)

    def refresh_banner(self) -> None:
        """Show what the monitor allows now (called by the watchdog timer and on every change)."""
        self.banner.show_view(self.monitor.view(time.monotonic()))

    def seek(self, frame_index: int) -> None:
        if self.control is not None:
            self.control.seek(frame_index)

    def apply_settings(self, settings: AppSettings) -> None:
        """Persist; zone changes apply live, a model/mode change reopens the source."""
        previous, self.settings = self.settings, settings
        settings.save(self.store)
        self.banner.sound_enabled = settings.sound
        if self.session is None:
            return
        if (settings.model, settings.mode) != (previous.model, previous.mode):
            self.open_source(self.session.source, fps=self.session.fps)
        elif self.control is not None and (processing(settings, self.warning_config)
                                           != processing(previous, self.warning_config)):
            # Only a real change: configuring restarts the AEB logic (tracks, TTC history, hysteresis).
            zone, pipeline_settings, warning = processing(settings, self.warning_config)
            self.control.configure(zone=zone, settings=pipeline_settings, warning=warning)

    def set_calibration(self, path: Path | None) -> None:
        """Use another calibration file; reopens the current source."""
        self.calibration_path = path
        if self.session is not None:
            self.open_source(self.session.source, fps=self.session.fps)

    # -- worker signals (GUI thread) -------------------------------------------------------
    def _on_progress(self, text: str, fraction: float) -> None:
        self.progress.show()
        self.progress.setFormat(f"{text} (%p%)")
        self.progress.setValue(int(100 * fraction))

    def _on_message(self, item: object) -> None:
        if isinstance(item, Started):
            self.monitor.started(time.monotonic())
            self.refresh_banner()
            self.progress.hide()
            self.frame_count = item.video.frame_count
            self.transport.set_range(self.frame_count)
            self.hud.detector_info = item.detector
            self.statusBar().showMessage(f"{item.video.name}: {item.video.width}x{item.video.height} "
                                         f"@ {item.video.fps:.0f} fps | {item.detector.mode}")
        elif isinstance(item, Notice):
            self.message_bar.show_message(item.text)
        elif isinstance(item, EndOfStream):
            self.transport.set_playing(False)
            self.monitor.ended(f"end of video at frame {item.frame_index}", time.monotonic())
            self.refresh_banner()
            self.statusBar().showMessage(f"end of video at frame {item.frame_index}")

    def _on_frame_ready(self) -> None:
        if self.worker is None:
            return
        live = self.worker.queue.take_latest()
        if live is None:
            return
        result = self.last_result = live.result
        self.source_skipped = live.skipped
        if result.annotated is not None:
            self.video_view.show_image(result.annotated)
            self.bev_view.show_image(result.bev)
        self.monitor.frame(result.level, result.reason, time.monotonic())
        self.refresh_banner()
        self.transport.show_position(result.frame_index, result.timestamp_s, self.frame_count)
        self.hud.update_from(result, self.dropped_frames)

    @property
    def dropped_frames(self) -> int:
        """Frames not shown: skipped to keep up with the video clock + dropped from the display queue."""
        return self.source_skipped + (self.worker.queue.dropped if self.worker is not None else 0)

    def _on_event(self, event: WarningEvent) -> None:
        self.event_log.add_event(event)

    def _on_error(self, exc: Exception) -> None:
        self.monitor.failed(f"{type(exc).__name__}: {exc}", time.monotonic())
        self.refresh_banner()
        self.progress.hide()
        self.message_bar.show_message(f"{type(exc).__name__}: {exc}", error=True)
        self.transport.set_playing(False)

    def _on_finished(self) -> None:
        """The worker ended by itself (an error was reported first, if any): nothing is monitored."""
        self.progress.hide()
        self.monitor.ended("processing stopped", time.monotonic())
        self.refresh_banner()
        self.transport.set_playing(False)

    # -- dialogs ---------------------------------------------------------------------------
    def dragEnterEvent(self, event) -> None:  # noqa: N802 - Qt naming
        if event.mimeData().hasUrls():
            event.acceptProposedAction()

    def dropEvent(self, event) -> None:  # noqa: N802 - Qt naming
        urls = [u for u in event.mimeData().urls() if u.isLocalFile()]
        if urls:
            self.open_path(urls[0].toLocalFile())
            event.acceptProposedAction()

    def _open_video_dialog(self) -> None:
        path, _ = QFileDialog.getOpenFileName(self, "Open video", "", VIDEO_FILTER)
        if path:
            self.open_source(path)

    def _open_frames_dialog(self) -> None:
        """A folder of frames with a timestamps.txt (KITTI raw's image_02): see :mod:`aeb_app.video.sequence`."""
        path = QFileDialog.getExistingDirectory(self, "Open frames folder (with its timestamps.txt)")
        if path:
            self.open_path(path)

    def open_path(self, path: str) -> None:
        """Open a video file or a folder of frames; for a folder without a timestamps.txt, ask the frame rate
        first (cancelled: nothing opens)."""
        fps = None
        if is_image_sequence(Path(path)) and not has_timestamps(Path(path)):
            fps, ok = QInputDialog.getDouble(self, "Frame rate", "This folder has no timestamps.txt.\n"
                                             "Frames per second of the camera:", 10.0, 1.0, 240.0, 2)
            if not ok:
                return
        self.open_source(path, fps=fps)

    def _open_camera_dialog(self) -> None:
        index, ok = QInputDialog.getInt(self, "Open camera", "Camera index:", 0, 0, 99)
        if ok:
            self.open_source(index)

    def _load_calibration_dialog(self) -> None:
        path, _ = QFileDialog.getOpenFileName(self, "Load calibration", str(DEFAULT_CALIBRATION.parent),
                                              "Calibration (*.yaml *.yml)")
        if path:
            self.set_calibration(Path(path))

    def _export_events_dialog(self) -> None:
        path, _ = QFileDialog.getSaveFileName(self, "Export events", "events.csv", "CSV (*.csv);;JSON (*.json)")
        if path:
            try:
                self.event_log.export(path)
                self.statusBar().showMessage(f"exported {len(self.event_log.events)} events to {path}")
            except (OSError, ValueError) as exc:
                self.message_bar.show_message(f"export failed: {exc}", error=True)

    def _record_tracks_dialog(self) -> None:
        path, _ = QFileDialog.getSaveFileName(self, "Record tracks to CSV", "tracks.csv", "CSV (*.csv)")
        if path:
            self.record_tracks(Path(path))

    def record_tracks(self, path: Path | None) -> None:
        """Write the tracks CSV of ``aeb-app run --tracks`` to ``path`` (None: stop recording).

        The open video restarts from its first frame so that the file covers it from the start, as
        ``run`` does; a camera starts recording from now. A path that is not a .csv is refused.
        """
        if path is not None and Path(path).suffix.lower() != ".csv":
            self.message_bar.show_message(f"tracks file {path}: the extension must be .csv", error=True)
            return
        self.tracks_path = Path(path) if path is not None else None
        self.statusBar().showMessage(f"recording tracks to {path}" if path else "not recording tracks")
        if self.session is not None:
            self.open_source(self.session.source, playing=self.control is not None and not self.control.paused,
                             fps=self.session.fps)

    def open_calibration_dialog(self) -> None:
        """Open the click-to-calibrate dialog on the current frame."""
        from aeb_app.gui.calibration_dialog import CalibrationDialog

        frame = self.last_result.frame if self.last_result is not None else None
        dialog = CalibrationDialog(self, frame=frame, start_dir=DEFAULT_CALIBRATION.parent)
        dialog.saved.connect(self.set_calibration)
        dialog.show()
