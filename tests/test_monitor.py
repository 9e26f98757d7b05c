"""The monitor rule behind the banner: green only while playing with fresh frames (pure, exact times)."""

from __future__ import annotations

import math

import pytest

from aeb_app.monitor import MonitorState, SystemMonitor
from aeb_app.types import WarningLevel


def active(stale_after_s: float = 1.0) -> SystemMonitor:
    monitor = SystemMonitor(stale_after_s=stale_after_s)
    monitor.starting("clip.mp4", 0.0, playing=True)
    monitor.started(0.5)
    monitor.frame(WarningLevel.NONE, "", 0.6)
    return monitor


def test_green_only_when_active_and_fresh() -> None:
    monitor = active()
    view = monitor.view(1.0)
    assert view.all_clear and view.state is MonitorState.ACTIVE and view.level == WarningLevel.NONE


def test_stall_turns_unavailable_in_wall_clock_time_and_recovers() -> None:
    monitor = active(stale_after_s=1.0)
    assert monitor.view(1.59).all_clear  # 0.99 s after the last frame
    view = monitor.view(1.61)
    assert view.state is MonitorState.STALE and view.level == WarningLevel.UNAVAILABLE
    assert not view.all_clear and "no new frame for 1.0 s" in view.text
    monitor.frame(WarningLevel.NONE, "", 5.0)  # frames resume
    assert monitor.view(5.1).all_clear


def test_worker_death_is_sticky_even_if_a_late_frame_arrives() -> None:
    monitor = active()
    monitor.failed("RuntimeError: boom", 1.0)
    monitor.frame(WarningLevel.NONE, "", 1.1)  # a result still queued from the dead session
    monitor.ended("processing stopped", 1.2)  # QThread.finished follows the error
    view = monitor.view(1.3)
    assert view.state is MonitorState.FAILED and view.level == WarningLevel.UNAVAILABLE
    assert view.text == "RuntimeError: boom"


def test_failed_open_is_unavailable_and_a_new_session_clears_it() -> None:
    monitor = SystemMonitor()
    monitor.starting("missing.mp4", 0.0, playing=True)
    assert monitor.view(0.1).state is MonitorState.STARTING and not monitor.view(0.1).all_clear
    monitor.failed("InputError: missing.mp4: file not found", 0.2)
    assert monitor.view(10.0).state is MonitorState.FAILED
    monitor.starting("good.mp4", 11.0, playing=True)
    monitor.started(11.5)
    assert monitor.view(11.6).state is MonitorState.ACTIVE
    assert monitor.view(11.6).level == WarningLevel.UNAVAILABLE  # no frame yet: not "all clear"
    monitor.frame(WarningLevel.NONE, "", 11.7)
    assert monitor.view(11.8).all_clear


def test_end_of_stream_and_pause_are_not_monitoring() -> None:
    monitor = active()
    monitor.ended("end of video at frame 220", 2.0)
    view = monitor.view(2.1)
    assert view.state is MonitorState.STOPPED and "end of video" in view.text and not view.all_clear
    monitor = active()
    monitor.set_playing(False, 1.0)
    assert monitor.view(100.0).state is MonitorState.PAUSED  # paused never goes stale, never green
    monitor.set_playing(True, 100.0)
    # the frame seen before the pause no longer vouches for the road ahead
    assert monitor.view(100.1).level == WarningLevel.UNAVAILABLE
    assert monitor.view(101.2).state is MonitorState.STALE


def test_opened_paused_is_paused_then_play_starts_monitoring() -> None:
    monitor = SystemMonitor()
    monitor.starting("clip.mp4", 0.0, playing=False)
    monitor.started(1.0)
    assert monitor.view(9.0).state is MonitorState.PAUSED
    monitor.set_playing(True, 10.0)
    monitor.frame(WarningLevel.CAUTION, "", 10.05)
    view = monitor.view(10.1)
    assert view.state is MonitorState.ACTIVE and view.level == WarningLevel.CAUTION


def test_play_pressed_while_loading_is_remembered() -> None:
    monitor = SystemMonitor()
    monitor.starting("clip.mp4", 0.0, playing=False)
    monitor.set_playing(True, 0.5)
    assert monitor.view(0.6).state is MonitorState.STARTING
    monitor.started(2.0)
    assert monitor.view(2.1).state is MonitorState.ACTIVE


@pytest.mark.parametrize("bad", [0.0, -1.0, math.nan, math.inf])
def test_stale_bound_must_be_positive_and_finite(bad: float) -> None:
    with pytest.raises(ValueError, match="stale_after_s"):
        SystemMonitor(stale_after_s=bad)
