"""The calibration dialog driven by qtbot clicks on the real sample frame; the saved YAML loads back."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PyQt5.QtCore import QEvent, QPointF, Qt
from PyQt5.QtGui import QMouseEvent
from PyQt5.QtWidgets import QApplication

from aeb_app.geometry import load_calibration
from aeb_app.gui.calibration_dialog import CalibrationDialog
from aeb_app.gui.main_window import DEFAULT_CALIBRATION, MainWindow
from aeb_app.video import VideoSource

#: Frame-0 points of the shipped calibration (see scripts/make_calibration.py): ego-lane lines at
#: rows 345/520, then A on the left line, B across on the right line (3.7 m), C one dash period ahead.
QUAD = [(422.4, 345.0), (546.1, 345.0), (828.4, 520.0), (185.7, 520.0)]
REFS = [(193.9, 514.0), (818.7, 514.0), (389.4, 369.4)]


@pytest.fixture(scope="module")
def frame0(sample_video: Path) -> np.ndarray:
    with VideoSource(sample_video) as src:
        return src.read().image


@pytest.fixture
def dialog(qtbot, frame0: np.ndarray, tmp_path: Path) -> CalibrationDialog:
    dlg = CalibrationDialog(frame=frame0, start_dir=tmp_path)
    qtbot.addWidget(dlg)
    dlg.show()
    qtbot.waitExposed(dlg)
    dlg.view.fitInView(dlg.scene.sceneRect(), Qt.KeepAspectRatio)
    return dlg


def click(qtbot, dlg: CalibrationDialog, x: float, y: float) -> None:
    qtbot.mouseClick(dlg.view.viewport(), Qt.LeftButton, pos=dlg.view.mapFromScene(QPointF(x, y)))


def test_clicks_compute_scale_and_saved_yaml_loads_back(qtbot, dialog: CalibrationDialog, tmp_path: Path) -> None:
    for x, y in QUAD:
        click(qtbot, dialog, x, y)
    assert dialog.view_bev is not None and dialog.preview.has_image  # live BEV preview after four points
    assert not dialog.save_button.isEnabled()  # reference points still missing
    for x, y in REFS:
        click(qtbot, dialog, x, y)
    cal = dialog.calibration
    assert cal is not None and dialog.save_button.isEnabled()
    assert cal.k_x_m_per_px == pytest.approx(0.050, rel=0.06)  # the shipped file's scale, from clicks
    assert cal.k_y_m_per_px == pytest.approx(0.052, rel=0.06)
    assert "k_x = " in dialog.result_label.text() and "residual" in dialog.result_label.text()
    target = tmp_path / "clicked.yaml"
    dialog.path_edit.setText(str(target))
    with qtbot.waitSignal(dialog.saved, timeout=5000) as blocker:
        qtbot.mouseClick(dialog.save_button, Qt.LeftButton)
    assert blocker.args == [target]
    loaded = load_calibration(target)
    assert loaded.k_x_m_per_px == pytest.approx(cal.k_x_m_per_px, rel=1e-4)
    assert loaded.k_y_m_per_px == pytest.approx(cal.k_y_m_per_px, rel=1e-4)
    np.testing.assert_allclose(loaded.view.image_points_px, cal.view.image_points_px, atol=1e-3)
    assert loaded.image_size_wh == (960, 540)


def test_dragging_a_handle_updates_the_preview(qtbot, dialog: CalibrationDialog) -> None:
    for x, y in QUAD:
        click(qtbot, dialog, x, y)
    before = dialog.view_bev.matrix.copy()
    handle = dialog.quad[0]
    viewport = dialog.view.viewport()
    start = dialog.view.mapFromScene(handle.pos())
    end = dialog.view.mapFromScene(QPointF(410.0, 350.0))
    qtbot.mousePress(viewport, Qt.LeftButton, pos=start)
    QApplication.sendEvent(viewport, QMouseEvent(QEvent.MouseMove, end, Qt.NoButton, Qt.LeftButton, Qt.NoModifier))
    qtbot.mouseRelease(viewport, Qt.LeftButton, pos=end)
    assert abs(handle.pos().x() - 410.0) < 3 and abs(handle.pos().y() - 350.0) < 3
    assert len(dialog.quad) == 4  # a drag adds no point
    assert not np.allclose(dialog.view_bev.matrix, before)


def test_invalid_points_are_explained_and_nothing_saved(qtbot, dialog: CalibrationDialog, tmp_path: Path) -> None:
    for x, y in [(100, 400), (300, 400), (500, 400), (700, 400)]:  # four points on one line
        click(qtbot, dialog, x, y)
    assert "Invalid calibration" in dialog.error_label.text() and "collinear" in dialog.error_label.text()
    assert not dialog.save_button.isEnabled()
    assert dialog.save(tmp_path / "bad.yaml") is False
    dialog.reset()
    for x, y in QUAD + REFS:
        click(qtbot, dialog, x, y)
    dialog.along_m.setValue(0.0)  # a zero distance
    assert "distance_m: must be > 0" in dialog.error_label.text()
    assert dialog.save(tmp_path / "bad.yaml") is False
    assert not (tmp_path / "bad.yaml").exists()


def test_load_shipped_file_and_wrong_resolution(qtbot, dialog: CalibrationDialog, tmp_path: Path) -> None:
    assert dialog.load(DEFAULT_CALIBRATION)
    assert len(dialog.quad) == 4 and len(dialog.references) == 3
    np.testing.assert_allclose(CalibrationDialog._xy(dialog.quad), QUAD, atol=0.01)
    assert dialog.calibration.k_x_m_per_px == pytest.approx(0.05, rel=0.01)
    other = tmp_path / "hd.yaml"
    other.write_text(DEFAULT_CALIBRATION.read_text().replace("image_size: [960, 540]", "image_size: [1280, 720]"))
    assert not dialog.load(other) and "1280x720" in dialog.error_label.text()


def test_window_uses_the_saved_calibration(qtbot, tmp_path: Path, sample_video: Path) -> None:
    from PyQt5.QtCore import QSettings

    win = MainWindow(settings_store=QSettings(str(tmp_path / "s.ini"), QSettings.IniFormat), realtime=False)
    qtbot.addWidget(win)
    win.open_source(str(sample_video), playing=False)
    win.step()
    qtbot.waitUntil(lambda: win.last_result is not None, timeout=60000)
    win.open_calibration_dialog()
    dlg = win.findChild(CalibrationDialog)
    assert dlg is not None and dlg.frame is not None and dlg.frame.shape == (540, 960, 3)
    assert dlg.load(DEFAULT_CALIBRATION)
    assert dlg.save(tmp_path / "mine.yaml")
    assert win.calibration_path == tmp_path / "mine.yaml"
    assert win.session.calibration_path == tmp_path / "mine.yaml"
    assert win.stop_session(5000)
