"""The banner never says "all clear" while nothing is monitored (offscreen, real window, video and model).

Covers the four ways monitoring stops: the worker dies mid-stream, the stream stalls (the wall-clock
watchdog), the source fails to open, and the video ends; plus opening paused.
A stall and a mid-stream crash are injected into the real pipeline (the rest is real).
"""

from __future__ import annotations

import threading
from pathlib import Path

import pytest
from PyQt5.QtCore import QSettings

from aeb_app.gui.main_window import MainWindow
from aeb_app.gui.widgets import BANNER_STYLE
from aeb_app.monitor import MonitorState
from aeb_app.pipeline import Pipeline
from aeb_app.types import WarningLevel

TIMEOUT_MS = 60000
GREEN = BANNER_STYLE[WarningLevel.NONE][1]


@pytest.fixture
def make_window(qtbot, tmp_path: Path):
    windows: list[MainWindow] = []

    def make(**kwargs) -> MainWindow:
        store = QSettings(str(tmp_path / "settings.ini"), QSettings.IniFormat)
        win = MainWindow(settings_store=store, realtime=False, **kwargs)
        qtbot.addWidget(win)
        win.resize(1280, 760)
        win.show()
        windows.append(win)
        return win

    yield make
    for win in windows:
        assert win.stop_session(5000)


def _green(win: MainWindow) -> bool:
    return win.banner.colour == GREEN or "ready" in win.banner.full_text


def _wait_state(qtbot, win: MainWindow, state: MonitorState) -> None:
    qtbot.waitUntil(lambda: win.banner.state is state, timeout=TIMEOUT_MS)


def test_green_while_playing_fresh_frames(qtbot, make_window, sample_video: Path) -> None:
    win = make_window()
    win.open_source(str(sample_video))
    _wait_state(qtbot, win, MonitorState.ACTIVE)
    qtbot.waitUntil(lambda: _green(win), timeout=TIMEOUT_MS)  # steady highway traffic: no warning


def test_worker_death_mid_stream_is_unavailable(qtbot, make_window, sample_video: Path, monkeypatch) -> None:
    original = Pipeline.process

    def process(self, frame, **kwargs):
        if frame.index == 12:
            raise MemoryError("injected: the worker dies")  # not caught by the pipeline: ends the session
        return original(self, frame, **kwargs)

    monkeypatch.setattr(Pipeline, "process", process)
    win = make_window()
    win.open_source(str(sample_video))
    _wait_state(qtbot, win, MonitorState.FAILED)
    assert win.banner.level == WarningLevel.UNAVAILABLE and not _green(win)
    assert "MemoryError" in win.banner.full_text and "UNAVAILABLE" in win.banner.full_text
    qtbot.wait(600)  # watchdog ticks and the worker's finished signal do not bring green back
    assert win.banner.state is MonitorState.FAILED and not _green(win)


def test_stall_turns_the_banner_grey_then_recovers(qtbot, make_window, sample_video: Path, monkeypatch) -> None:
    original, release = Pipeline.process, threading.Event()

    def process(self, frame, **kwargs):
        if frame.index == 10:
            release.wait(20)  # a multi-second stall: no new frame reaches the window
        return original(self, frame, **kwargs)

    monkeypatch.setattr(Pipeline, "process", process)
    win = make_window(stale_after_s=0.4)
    win.open_source(str(sample_video))
    qtbot.waitUntil(lambda: win.last_result is not None and win.last_result.frame_index == 9, timeout=TIMEOUT_MS)
    try:
        _wait_state(qtbot, win, MonitorState.STALE)  # the watchdog fires with no frame arriving
        assert win.banner.level == WarningLevel.UNAVAILABLE and "no new frame" in win.banner.full_text
        assert not _green(win)
    finally:
        release.set()
    qtbot.waitUntil(lambda: win.last_result.frame_index > 10, timeout=TIMEOUT_MS)
    _wait_state(qtbot, win, MonitorState.ACTIVE)


def test_failed_open_is_unavailable(qtbot, make_window, tmp_path: Path) -> None:
    win = make_window()
    win.open_source(str(tmp_path / "missing.mp4"))
    _wait_state(qtbot, win, MonitorState.FAILED)
    assert "missing.mp4" in win.banner.full_text and not _green(win)


def test_end_of_video_is_not_monitoring(qtbot, make_window, sample_video: Path) -> None:
    win = make_window()
    win.open_source(str(sample_video))
    _wait_state(qtbot, win, MonitorState.STOPPED)
    assert "end of video" in win.banner.full_text and "NOT MONITORING" in win.banner.full_text
    assert win.banner.level == WarningLevel.UNAVAILABLE and not _green(win)
    assert win.last_result.frame_index == 220  # it really played to the end


def test_opened_paused_is_not_monitoring_until_play(qtbot, make_window, sample_video: Path) -> None:
    win = make_window()
    win.open_source(str(sample_video), playing=False)
    _wait_state(qtbot, win, MonitorState.PAUSED)
    win.step()
    qtbot.waitUntil(lambda: win.last_result is not None, timeout=TIMEOUT_MS)
    assert win.banner.state is MonitorState.PAUSED and not _green(win)  # a stepped frame is not monitoring
    win.set_playing(True)
    qtbot.waitUntil(lambda: _green(win), timeout=TIMEOUT_MS)


def test_a_folder_of_frames_plays_with_its_times_and_without_them_is_refused(qtbot, make_window, sample_video: Path,
                                                                            tmp_path: Path) -> None:
    """KITTI's layout (image_02/data/*.png + timestamps.txt) plays to its end; the same frames without the
    timestamps file fail to open with the reason in the banner, never green."""
    import cv2

    cap = cv2.VideoCapture(str(sample_video))
    (tmp_path / "image_02" / "data").mkdir(parents=True)
    for i in range(12):
        cv2.imwrite(str(tmp_path / "image_02" / "data" / f"{i:010d}.png"), cap.read()[1])
    cap.release()
    (tmp_path / "image_02" / "timestamps.txt").write_text("".join(f"{i * 0.1:.3f}\n" for i in range(12)))
    win = make_window()
    win.open_source(str(tmp_path / "image_02"))
    _wait_state(qtbot, win, MonitorState.STOPPED)
    assert win.last_result.frame_index == 11 and win.last_result.timestamp_s == pytest.approx(1.1)
    (tmp_path / "image_02" / "timestamps.txt").unlink()
    win.open_source(str(tmp_path / "image_02"))
    _wait_state(qtbot, win, MonitorState.FAILED)
    assert "needs its frame times" in win.banner.full_text and not _green(win)


def test_a_folder_without_timestamps_asks_the_frame_rate(qtbot, make_window, sample_video: Path, tmp_path: Path,
                                                         monkeypatch) -> None:
    """Opening (or dropping) such a folder asks for the rate; the frames then play at k / rate. Cancelling opens
    nothing."""
    import cv2
    from PyQt5.QtWidgets import QInputDialog

    cap = cv2.VideoCapture(str(sample_video))
    for i in range(8):
        cv2.imwrite(str(tmp_path / f"frame_{i}.png"), cap.read()[1])
    cap.release()
    asked: list[str] = []
    answer = {"value": (12.5, True)}
    monkeypatch.setattr(QInputDialog, "getDouble", lambda *a, **k: (asked.append(a[2]), answer["value"])[1])
    win = make_window()
    answer["value"] = (0.0, False)
    win.open_path(str(tmp_path))
    assert win.session is None and asked and "no timestamps.txt" in asked[0]
    answer["value"] = (12.5, True)
    win.open_path(str(tmp_path))
    _wait_state(qtbot, win, MonitorState.STOPPED)
    assert win.session.fps == 12.5 and win.last_result.frame_index == 7
    assert win.last_result.timestamp_s == pytest.approx(7 / 12.5)
