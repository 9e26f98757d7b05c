"""File > Record tracks to CSV in the real window (offscreen), on the real sample video and model: the
same writer and columns as ``aeb-app run --tracks``; and the warning-logic settings file in the GUI."""

from __future__ import annotations

import csv
from pathlib import Path

import pytest
from PyQt5.QtCore import QSettings

from aeb_app.cli import main
from aeb_app.gui.main_window import MainWindow
from aeb_app.gui.session import stream_config
from aeb_app.safety.settings import load_logic_settings
from aeb_app.tracks import TRACK_COLUMNS, track_rows

TIMEOUT_MS = 60000


@pytest.fixture
def window(qtbot, tmp_path: Path):
    win = MainWindow(settings_store=QSettings(str(tmp_path / "settings.ini"), QSettings.IniFormat), realtime=False)
    qtbot.addWidget(win)
    win.show()
    yield win
    assert win.stop_session(5000)


def _rows(path: Path) -> list[dict[str, str]]:
    with path.open(newline="", encoding="utf-8") as fh:
        return list(csv.DictReader(fh))


def test_menu_records_the_tracks_csv_of_run(qtbot, window: MainWindow, sample_video: Path, tmp_path: Path,
                                            monkeypatch) -> None:
    out = tmp_path / "rec" / "tracks.csv"
    monkeypatch.setattr("aeb_app.gui.main_window.QFileDialog.getSaveFileName", lambda *a, **k: (str(out), ""))
    window.open_source(str(sample_video))
    action = next(a for a in window.menuBar().actions()[0].menu().actions() if "Record" in a.text())
    action.trigger()  # the open video restarts with recording on
    assert window.session.tracks_path == out
    qtbot.waitUntil(lambda: bool(window.last_result is not None and window.last_result.frame_index >= 30
                                 and window.last_result.state.objects), timeout=TIMEOUT_MS)
    seen = window.last_result  # its rows were written before it reached the window
    window.record_tracks(None)  # stop: the session restarts without a file; the file is complete and closed
    assert window.session.tracks_path is None
    with out.open(encoding="utf-8") as fh:
        assert fh.readline().strip() == ",".join(TRACK_COLUMNS)
    rows = _rows(out)
    assert {r["class"] for r in rows} >= {"car"}
    frames = sorted({int(r["frame"]) for r in rows})
    assert frames[0] < 5 and frames[-1] >= seen.frame_index  # from the video's start
    # The same rows as run's writer makes from the same frame state.
    expected = [dict(zip(TRACK_COLUMNS, row)) for row in track_rows(seen.state)]
    assert expected and [r for r in rows if int(r["frame"]) == seen.frame_index] == expected


def test_a_tracks_path_that_is_not_csv_is_refused(window: MainWindow, tmp_path: Path) -> None:
    window.record_tracks(tmp_path / "tracks.txt")
    assert window.tracks_path is None and "must be .csv" in window.message_bar.text()
    assert not (tmp_path / "tracks.txt").exists()


def test_gui_takes_the_logic_settings_file(qtbot, tmp_path: Path, sample_video: Path) -> None:
    path = tmp_path / "logic.yaml"
    path.write_text("warning: {closing_span_s: 0.8}\ncues: {priors: {car: {width_m: 1.75}}}\n")
    logic = load_logic_settings(path)
    win = MainWindow(settings_store=QSettings(str(tmp_path / "s.ini"), QSettings.IniFormat), realtime=False,
                     logic=logic)
    qtbot.addWidget(win)
    win.open_source(str(sample_video))
    qtbot.waitUntil(lambda: win.last_result is not None, timeout=TIMEOUT_MS)
    config = stream_config(win.session)  # what the running session opened the front door with
    assert config.logic is logic and config.warning.closing_span_s == 0.8
    assert win.stop_session(5000)


def test_gui_refuses_a_bad_settings_file_before_opening_a_window(tmp_path: Path, capsys) -> None:
    bad = tmp_path / "logic.yaml"
    bad.write_text("filter: {jerk_psd: 0}\n")
    assert main(["gui", "--settings", str(bad)]) == 2
    assert "filter.jerk_psd" in capsys.readouterr().err
