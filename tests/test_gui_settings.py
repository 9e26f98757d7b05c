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
    chosen = AppSettings("ssd_mobilenet_v1", "fp32_ort", 90.0, 1.0, 8.0, True, caution_ttc_s=4.0, brake_ttc_s=2.0,
                         tiles=False)
    chosen.save(store)
    loaded, problems = AppSettings.load_checked(store, models=("ssd_mobilenet_v1",), modes=("auto", "fp32_ort"))
    assert loaded == chosen and problems == []


def test_the_tiles_box_reaches_the_detection_settings(qtbot, tmp_path: Path) -> None:
    from aeb_app.gui.main_window import processing
    from aeb_app.model.tiling import NO_TILING, TileConfig
    from aeb_app.safety import WarningConfig

    store = QSettings(str(tmp_path / "s.ini"), QSettings.IniFormat)
    win = MainWindow(settings_store=store, realtime=False)
    qtbot.addWidget(win)
    assert win.settings_panel.tiles_box.isChecked()  # on by default
    win.settings_panel.tiles_box.setChecked(False)
    win.settings_panel.apply_button.click()
    assert win.settings.tiles is False and AppSettings.load(store).tiles is False
    _, off, _ = processing(win.settings, WarningConfig())
    _, on, _ = processing(AppSettings(), WarningConfig())
    assert off.postprocess.tiling == NO_TILING and on.postprocess.tiling == TileConfig()
    assert off.postprocess.score_threshold == on.postprocess.score_threshold == 0.4


def test_brake_above_caution_is_refused(tmp_path: Path) -> None:
    store = QSettings(str(tmp_path / "s.ini"), QSettings.IniFormat)
    AppSettings(caution_ttc_s=2.0, brake_ttc_s=4.0).save(store)
    loaded, problems = AppSettings.load_checked(store)
    assert (loaded.caution_ttc_s, loaded.brake_ttc_s) == (AppSettings.caution_ttc_s, AppSettings.brake_ttc_s)
    assert len(problems) == 1 and "settings/brake_ttc_s" in problems[0] and "caution_ttc_s" in problems[0]


def test_ttc_thresholds_from_the_panel_reach_the_running_logic(qtbot, tmp_path: Path, sample_video: Path) -> None:
    store = QSettings(str(tmp_path / "settings.ini"), QSettings.IniFormat)
    win = MainWindow(settings_store=store, realtime=False)
    qtbot.addWidget(win)
    win.open_source(str(sample_video), playing=False)
    qtbot.waitUntil(lambda: win.banner.state is MonitorState.PAUSED, timeout=60000)
    sent: list[object] = []
    original = win.control.configure
    win.control.configure = lambda **kw: (sent.append(kw["warning"]), original(**kw))
    win.settings_panel.caution.setValue(6.0)
    win.settings_panel.brake.setValue(9.0)  # the spin box stops at 5 s
    win.settings_panel.apply_button.click()
    assert (win.settings.caution_ttc_s, win.settings.brake_ttc_s) == (6.0, 5.0)
    assert [(w.caution_ttc_s, w.brake_ttc_s) for w in sent] == [(6.0, 5.0)]
    assert AppSettings.load(store).caution_ttc_s == 6.0  # persisted
    assert win.stop_session(5000)


def test_configure_restarts_the_logic_with_new_thresholds(sample_video: Path) -> None:
    from aeb_app.geometry import load_calibration
    from aeb_app.geometry.calibration import shipped_calibration
    from aeb_app.gui.session import PlaybackControl, _apply_commands
    from aeb_app.pipeline import Pipeline
    from aeb_app.safety import WarningConfig
    from aeb_app.video import VideoSource

    pipeline = Pipeline(None, load_calibration(shipped_calibration()))  # the detector is not used here
    control = PlaybackControl(paused=True)
    control.configure(warning=WarningConfig(caution_ttc_s=6.0, brake_ttc_s=5.0))
    with VideoSource(sample_video) as source:
        _apply_commands(source, pipeline, control)
    assert (pipeline.warning_config.caution_ttc_s, pipeline.warning_config.brake_ttc_s) == (6.0, 5.0)
