"""Stored GUI settings are checked at load: a bad value is refused with the settings file and key named."""

from __future__ import annotations

from pathlib import Path

from PyQt5.QtCore import QSettings

from aeb_app.gui.main_window import MainWindow
from aeb_app.gui.panels import AppSettings
from aeb_app.monitor import MonitorState


def test_bad_stored_settings_are_refused_and_named(qtbot, tmp_path: Path, sample_video: Path) -> None:
    path = tmp_path / "settings.ini"
    store = QSettings(str(path), QSettings.IniFormat)
    for key, value in (("decel_mps2", 0), ("reaction_time_s", "nan"), ("mode", "bogus"), ("ego_speed_kmh", "1e400")):
        store.setValue(f"settings/{key}", value)
    store.sync()
    win = MainWindow(settings_store=store, realtime=False)
    qtbot.addWidget(win)
    assert win.settings == AppSettings()  # every bad value fell back to its default
    message = win.message_bar.text()
    for key in ("decel_mps2", "reaction_time_s", "mode", "ego_speed_kmh"):
        assert f"settings/{key}" in message
    assert str(path) in message
    win.open_source(str(sample_video))  # and a session still starts (auto mode)
    qtbot.waitUntil(lambda: win.banner.state is MonitorState.ACTIVE, timeout=60000)
    assert win.stop_session(5000)


def test_good_settings_round_trip(tmp_path: Path) -> None:
    store = QSettings(str(tmp_path / "s.ini"), QSettings.IniFormat)
    chosen = AppSettings("ssd_mobilenet_v1", "fp32_ort", 90.0, 1.0, 8.0, True)
    chosen.save(store)
    loaded, problems = AppSettings.load_checked(store, models=("ssd_mobilenet_v1",), modes=("auto", "fp32_ort"))
    assert loaded == chosen and problems == []
