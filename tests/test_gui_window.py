"""The main window offscreen on the real sample video and model: live view, controls, bad input, shutdown."""

from __future__ import annotations

import csv
import json
import re
import time
from pathlib import Path

import pytest
from PyQt5.QtCore import QMimeData, QPoint, QSettings, Qt, QUrl
from PyQt5.QtGui import QDropEvent
from PyQt5.QtWidgets import QLabel

from aeb_app.gui.main_window import DEFAULT_CALIBRATION, MainWindow
from aeb_app.gui.panels import AppSettings
from aeb_app.pipeline import Pipeline, WarningEvent
from aeb_app.types import WarningLevel

TIMEOUT_MS = 60000


@pytest.fixture
def store(tmp_path: Path) -> QSettings:
    return QSettings(str(tmp_path / "settings.ini"), QSettings.IniFormat)


@pytest.fixture
def window(qtbot, store: QSettings):
    win = MainWindow(settings_store=store, realtime=False)
    qtbot.addWidget(win)
    win.resize(1280, 760)
    win.show()
    yield win
    assert win.stop_session(5000)


def _wait_frame(qtbot, win: MainWindow, index: int) -> None:
    qtbot.waitUntil(lambda: win.last_result is not None and win.last_result.frame_index >= index,
                    timeout=TIMEOUT_MS)


def test_live_view_shows_overlays_hud_and_banner(qtbot, window: MainWindow, sample_video: Path) -> None:
    window.open_source(str(sample_video))
    _wait_frame(qtbot, window, 8)
    result = window.last_result
    assert window.video_view.has_image and window.bev_view.has_image
    assert (result.detections.category_ids == 3).any()  # cars on the real footage
    assert result.state.zone_polygon_px.shape == (4, 2)
    assert window.banner.level == WarningLevel.NONE and "no warning" in window.banner.text()
    hud = window.hud.text()
    assert f"ssd_mobilenet_v1 | {window.hud.detector_info.backend} fp32 on cpu" in hud  # auto mode on a CPU
    assert "inference" in hud and "dropped" in hud
    assert "/221" in window.transport.label.text()
    assert window.progress.isHidden()


def test_pause_step_seek(qtbot, window: MainWindow, sample_video: Path) -> None:
    window.open_source(str(sample_video), playing=False)
    qtbot.waitUntil(lambda: window.frame_count == 221, timeout=TIMEOUT_MS)
    qtbot.wait(200)
    assert window.last_result is None  # paused: nothing processed
    window.step()
    _wait_frame(qtbot, window, 0)
    assert window.last_result.frame_index == 0
    window.seek(100)
    _wait_frame(qtbot, window, 100)
    assert window.last_result.frame_index == 100
    window.step()
    _wait_frame(qtbot, window, 101)
    assert window.last_result.frame_index == 101
    assert window.transport.slider.value() == 101 and "frame 101/221  00:04.04" in window.transport.label.text()


def test_realtime_playback_drops_frames_and_counts_them(qtbot, store: QSettings, sample_video: Path,
                                                       monkeypatch) -> None:
    real_process = Pipeline.process

    def slow_process(self, frame, **kwargs):  # slower than the 40 ms frame period on any machine
        time.sleep(0.06)
        return real_process(self, frame, **kwargs)

    monkeypatch.setattr(Pipeline, "process", slow_process)
    win = MainWindow(settings_store=store, realtime=True)
    qtbot.addWidget(win)
    win.open_source(str(sample_video))
    _wait_frame(qtbot, win, 30)
    assert win.dropped_frames > 0
    indices = win.last_result.frame_index
    assert indices >= 30 and win.source_skipped > 0  # frames skipped to stay live, not lagging
    shown = re.search(r"dropped (\d+)", win.hud.text())
    assert shown and int(shown.group(1)) > 0
    assert win.stop_session(5000)


def test_close_mid_stream_stops_the_worker(qtbot, store: QSettings, sample_video: Path) -> None:
    win = MainWindow(settings_store=store, realtime=False)
    qtbot.addWidget(win)
    win.show()
    win.open_source(str(sample_video))
    _wait_frame(qtbot, win, 3)
    worker = win.worker
    t0 = time.perf_counter()
    win.close()
    assert worker.isFinished() and time.perf_counter() - t0 < 5.0
    assert win.worker is None


@pytest.mark.parametrize("kind", ["junk", "truncated_header", "missing", "camera"])
def test_bad_video_shows_message_and_app_stays_usable(qtbot, window: MainWindow, sample_video: Path,
                                                      tmp_path: Path, kind: str) -> None:
    source: str | int
    if kind == "junk":
        source = str(tmp_path / "junk.mp4")
        Path(source).write_bytes(b"garbage" * 1000)
    elif kind == "truncated_header":
        source = str(tmp_path / "cut.mp4")
        Path(source).write_bytes(sample_video.read_bytes()[:2000])
    elif kind == "missing":
        source = str(tmp_path / "missing.mp4")
    else:
        source = 97
    window.open_source(source)
    qtbot.waitUntil(window.message_bar.isVisible, timeout=TIMEOUT_MS)
    assert "InputError" in window.message_bar.text() and (str(source) in window.message_bar.text())
    window.open_source(str(sample_video))  # still usable
    _wait_frame(qtbot, window, 1)
    assert window.message_bar.isHidden()


def test_truncated_video_plays_then_reports_unavailable(qtbot, window: MainWindow, sample_video: Path,
                                                         tmp_path: Path) -> None:
    broken = tmp_path / "truncated.mp4"
    broken.write_bytes(sample_video.read_bytes()[: sample_video.stat().st_size // 2])
    window.open_source(str(broken), playing=False)
    qtbot.waitUntil(lambda: window.frame_count is not None, timeout=TIMEOUT_MS)
    window.seek(125)
    window.set_playing(True)
    qtbot.waitUntil(lambda: any(e.level == "UNAVAILABLE" for e in window.event_log.events), timeout=TIMEOUT_MS)
    unavailable = [e for e in window.event_log.events if e.level == "UNAVAILABLE"]
    assert "cannot be decoded" in unavailable[0].reason and window.event_log.table.rowCount() >= 1
    # the banner shows the failed frames as unavailable, then the end of the stream as "not monitoring":
    # grey either way, never the green "ready"
    qtbot.waitUntil(lambda: window.banner.level == WarningLevel.UNAVAILABLE, timeout=TIMEOUT_MS)
    assert "ready" not in window.banner.full_text


def test_missing_model_weights_message(qtbot, window: MainWindow, sample_video: Path, tmp_path: Path,
                                       monkeypatch) -> None:
    monkeypatch.setenv("AEB_APP_DATA_MIRROR", str(tmp_path / "empty_mirror"))
    monkeypatch.setenv("AEB_APP_CACHE_DIR", str(tmp_path / "empty_cache"))
    window.open_source(str(sample_video))
    qtbot.waitUntil(window.message_bar.isVisible, timeout=TIMEOUT_MS)
    assert "ModelLoadError" in window.message_bar.text() and "ssd_mobilenet_v1" in window.message_bar.text()
    assert window.progress.isHidden()


def test_calibration_for_another_aspect_ratio(qtbot, store: QSettings, sample_video: Path, tmp_path: Path) -> None:
    other = tmp_path / "other.yaml"
    other.write_text(DEFAULT_CALIBRATION.read_text().replace("image_size: [960, 540]", "image_size: [1280, 960]"))
    win = MainWindow(settings_store=store, calibration_path=other, realtime=False)
    qtbot.addWidget(win)
    win.open_source(str(sample_video))
    _wait_frame(qtbot, win, 2)
    assert "calibration is for 1280x960 images" in win.message_bar.text()
    assert len(win.last_result.detections) > 0  # detections still shown
    assert win.banner.level == WarningLevel.UNAVAILABLE
    assert win.stop_session(5000)


def test_calibration_of_the_same_aspect_ratio_is_rescaled(qtbot, store: QSettings, sample_video: Path,
                                                          tmp_path: Path) -> None:
    text = DEFAULT_CALIBRATION.read_text()
    other = tmp_path / "other.yaml"  # the same camera calibrated on 1920x1080 frames
    other.write_text(text.replace("image_size: [960, 540]", "image_size: [1920, 1080]"))
    win = MainWindow(settings_store=store, calibration_path=other, realtime=False)
    qtbot.addWidget(win)
    win.open_source(str(sample_video))
    _wait_frame(qtbot, win, 2)
    assert "rescaled to 960x540" in win.message_bar.text()
    assert win.last_result.state is not None  # the AEB logic runs
    assert win.stop_session(5000)


def test_settings_persist_and_apply(qtbot, window: MainWindow, store: QSettings, sample_video: Path) -> None:
    window.open_source(str(sample_video))
    _wait_frame(qtbot, window, 1)
    window.settings_panel.speed.setValue(90.0)
    window.settings_panel.decel.setValue(4.0)
    qtbot.mouseClick(window.settings_panel.apply_button, Qt.LeftButton)
    expected_length = 25.0 * window.settings.reaction_time_s + 25.0**2 / 8.0  # v t_r + v^2 / 2a at 90 km/h
    qtbot.waitUntil(lambda: abs(window.last_result.state.zone_length_m - expected_length) < 1e-6,
                    timeout=TIMEOUT_MS)
    again = AppSettings.load(QSettings(store.fileName(), QSettings.IniFormat))
    assert again.ego_speed_kmh == 90.0 and again.decel_mps2 == 4.0 and again.model == "ssd_mobilenet_v1"


def test_event_log_export_and_tab_slot(qtbot, window: MainWindow, tmp_path: Path) -> None:
    window.event_log.add_event(WarningEvent(1.2, 30, "CAUTION", "car #3", 25.5, 2.4))
    window.event_log.add_event(WarningEvent(2.0, 50, "UNAVAILABLE", reason="frame failed"))
    window.event_log.export(tmp_path / "events.csv")
    window.event_log.export(tmp_path / "events.json")
    rows = list(csv.DictReader((tmp_path / "events.csv").open()))
    assert [r["level"] for r in rows] == ["CAUTION", "UNAVAILABLE"] and rows[0]["ttc_s"] == "2.4"
    assert json.loads((tmp_path / "events.json").read_text())[0]["object"] == "car #3"
    assert window.event_log.table.item(0, 3).text() == "car #3"
    index = window.add_tab(QLabel("bench"), "Benchmark")
    assert window.tabs.tabText(index) == "Benchmark"


def test_drag_and_drop_opens_the_video(qtbot, window: MainWindow, sample_video: Path) -> None:
    mime = QMimeData()
    mime.setUrls([QUrl.fromLocalFile(str(sample_video))])
    event = QDropEvent(QPoint(10, 10), Qt.CopyAction, mime, Qt.LeftButton, Qt.NoModifier)
    window.dropEvent(event)
    _wait_frame(qtbot, window, 1)
    assert window.session.source == str(sample_video)


def test_gui_command_line(data_dir: Path) -> None:
    from aeb_app.cli import build_parser
    from aeb_app.cli import gui as gui_cli

    args = build_parser().parse_args(["gui", "clip.mp4", "--camera", "2", "--mode", "fp32_ort"])
    assert args.func is gui_cli.run and args.video == "clip.mp4" and args.camera == 2 and args.mode == "fp32_ort"
    assert gui_cli.coco_subset_dir() == data_dir / "coco" / "val2017_subset"
    assert gui_cli._default_video() == str(data_dir / "videos" / "udacity" / "solidWhiteRight.mp4")


def test_a_worker_that_stops_late_is_kept_until_it_ends(qtbot, window: MainWindow, sample_video: Path,
                                                        monkeypatch) -> None:
    import aeb_app.stream as stream

    real_create = stream.create_detector

    def slow_create(**kwargs):  # a slow model load: the worker cannot stop while it runs
        time.sleep(1.5)
        return real_create(**kwargs)

    monkeypatch.setattr(stream, "create_detector", slow_create)
    window.open_source(str(sample_video))
    qtbot.waitUntil(lambda: "loading" in window.progress.format(), timeout=TIMEOUT_MS)
    worker = window.worker
    assert window.stop_session(100) is False
    assert window.retired == [worker] and worker.isRunning()  # still referenced: no "destroyed while running"
    qtbot.waitUntil(lambda: not window.retired, timeout=TIMEOUT_MS)
    assert worker.isFinished() and window.last_result is None  # its frames never reach the window


def test_banner_restyles_only_on_a_level_change(qtbot, window: MainWindow, monkeypatch) -> None:
    banner = window.banner
    banner.set_level(WarningLevel.NONE)
    styles: list[str] = []
    monkeypatch.setattr(banner, "setStyleSheet", styles.append)
    for _ in range(5):
        banner.set_level(WarningLevel.NONE)
    assert styles == [] and banner.full_text == "AEB ready: no warning"
    banner.set_level(WarningLevel.UNAVAILABLE, "frame failed")
    banner.set_level(WarningLevel.UNAVAILABLE, "stale")
    assert len(styles) == 1 and "#616161" in styles[0] and banner.full_text == "AEB SYSTEM UNAVAILABLE (stale)"
    long_reason = "/a/very/long/folder/name/for/the/footage/clip.mp4: frame 125 cannot be decoded (corrupt)"
    banner.set_level(WarningLevel.UNAVAILABLE, long_reason)
    banner.resize(300, banner.height())
    assert banner.text().startswith("AEB SYSTEM") and banner.text().endswith("\u2026")  # elided, not clipped
    assert banner.toolTip() == banner.full_text and long_reason in banner.full_text
    assert banner.minimumSizeHint().width() < 300 and window.width() == 1280  # the reason does not widen the window


def test_transport_icon_follows_the_state(qtbot, window: MainWindow) -> None:
    from PyQt5.QtWidgets import QStyle

    bar = window.transport

    def icon_is(kind) -> bool:
        return bar.play_button.icon().pixmap(16).toImage() == bar.style().standardIcon(kind).pixmap(16).toImage()

    bar.play_button.setChecked(True)
    assert icon_is(QStyle.SP_MediaPause) and bar.play_button.text() == "Pause"
    bar.set_playing(False)  # e.g. the end of the video
    assert icon_is(QStyle.SP_MediaPlay) and bar.play_button.text() == "Play"


def test_only_processing_changes_restart_the_logic(qtbot, window: MainWindow, monkeypatch) -> None:
    from dataclasses import replace

    from aeb_app.gui.session import PlaybackControl, SessionConfig

    window.session, window.control = SessionConfig("clip.mp4"), PlaybackControl()
    calls: list[dict] = []
    monkeypatch.setattr(window.control, "configure", lambda **kw: calls.append(kw))
    window.apply_settings(replace(window.settings, sound=not window.settings.sound))
    assert calls == [] and window.banner.sound_enabled == window.settings.sound  # a beep toggle keeps the tracks
    window.apply_settings(replace(window.settings, ego_speed_kmh=72.0))
    assert len(calls) == 1 and calls[0]["settings"].ego_speed_mps == 20.0
