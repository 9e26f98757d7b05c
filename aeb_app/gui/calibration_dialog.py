"""Click-to-calibrate: four road points (draggable) with a live bird's-eye preview, then three
reference points with known distances -> k_x, k_y and the residual, saved as YAML.

All the maths is the geometry package's (:class:`~aeb_app.geometry.Calibration`,
:func:`~aeb_app.geometry.scale_from_three_points`); the dialog only collects points and numbers.
Invalid input is explained in the dialog and nothing is saved.
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import numpy.typing as npt
from PyQt5.QtCore import QPointF, Qt, pyqtSignal
from PyQt5.QtGui import QBrush, QColor, QPen, QPixmap
from PyQt5.QtWidgets import (
    QDialog, QDoubleSpinBox, QFormLayout, QGraphicsEllipseItem, QGraphicsItem, QGraphicsScene,
    QGraphicsSimpleTextItem, QGraphicsView, QHBoxLayout, QLabel, QLineEdit, QPushButton, QVBoxLayout, QWidget,
)

from aeb_app.errors import CalibrationError
from aeb_app.geometry import (
    BirdsEyeView, Calibration, ReferencePair, load_calibration, save_calibration, scale_from_three_points,
)
from aeb_app.gui.widgets import ImageView, to_qimage

__all__ = ["CalibrationDialog", "QUAD_LABELS", "REFERENCE_LABELS", "BEV_SIZE", "BEV_RECT"]

log = logging.getLogger(__name__)

QUAD_LABELS = ("1 far-left", "2 far-right", "3 near-right", "4 near-left")
REFERENCE_LABELS = ("A origin", "B across", "C along")
#: The BEV the four road points map to: a lane-sized rectangle in a tall image (as the shipped file).
BEV_SIZE = (300, 1400)
BEV_RECT = ((113.0, 900.0), (187.0, 900.0), (187.0, 1340.0), (113.0, 1340.0))
HANDLE_RADIUS = 7.0


class Handle(QGraphicsEllipseItem):
    """A draggable point; calls ``on_move`` whenever it moves."""

    def __init__(self, pos: QPointF, label: str, color: QColor, on_move, *, label_below: bool = False) -> None:
        r = HANDLE_RADIUS
        super().__init__(-r, -r, 2 * r, 2 * r)
        self.setPos(pos)
        self.setBrush(QBrush(color))
        self.setPen(QPen(Qt.black, 1.5))
        self.setFlags(QGraphicsItem.ItemIsMovable | QGraphicsItem.ItemSendsGeometryChanges)
        self.setCursor(Qt.SizeAllCursor)
        self.setZValue(10)
        self._on_move = on_move
        text = QGraphicsSimpleTextItem(label, self)
        text.setBrush(QBrush(Qt.white))
        text.setPos(r + 2, r - 2 if label_below else -r - 14)
        text.setAcceptedMouseButtons(Qt.NoButton)

    def itemChange(self, change, value):  # noqa: N802 - Qt naming
        if change == QGraphicsItem.ItemPositionHasChanged:
            self._on_move()
        return super().itemChange(change, value)


class PointView(QGraphicsView):
    """The frame in a scene; a left click on empty space asks for a new point there."""

    clicked = pyqtSignal(QPointF)

    def mousePressEvent(self, event) -> None:  # noqa: N802 - Qt naming
        item = self.itemAt(event.pos())
        if event.button() == Qt.LeftButton and not isinstance(item, Handle):  # labels do not block clicks
            self.clicked.emit(self.mapToScene(event.pos()))
            return
        super().mousePressEvent(event)

    def resizeEvent(self, event) -> None:  # noqa: N802 - Qt naming
        super().resizeEvent(event)
        self.fitInView(self.sceneRect(), Qt.KeepAspectRatio)


def _spin(value: float, suffix: str, low: float = -1000.0, high: float = 1000.0) -> QDoubleSpinBox:
    box = QDoubleSpinBox()
    box.setRange(low, high)
    box.setDecimals(3)
    box.setValue(value)
    box.setSuffix(suffix)
    return box


class CalibrationDialog(QDialog):
    """Calibrate the camera on one frame. Emits ``saved(Path)`` after a successful save.

    Args:
        parent: owning window.
        frame: (h, w, 3) uint8 BGR frame to click on.
        start_dir: folder for the YAML file (``calibration/``).
    """

    saved = pyqtSignal(object)

    def __init__(self, parent: QWidget | None = None, *, frame: npt.NDArray[np.uint8] | None,
                 start_dir: Path) -> None:
        super().__init__(parent)
        self.setWindowTitle("Calibrate camera")
        self.frame = frame if frame is not None else np.zeros((540, 960, 3), np.uint8)
        self.start_dir = Path(start_dir)
        self.quad: list[Handle] = []
        self.references: list[Handle] = []
        self.view_bev: BirdsEyeView | None = None
        self.calibration: Calibration | None = None
        self._build()
        if frame is None:
            self._explain("no frame yet: open a video first, then calibrate on it")
        self.recompute()

    # -- layout ----------------------------------------------------------------------------
    def _build(self) -> None:
        h, w = self.frame.shape[:2]
        self.scene = QGraphicsScene(0, 0, w, h, self)
        self.scene.addPixmap(QPixmap.fromImage(to_qimage(self.frame)))
        self.view = PointView(self.scene)
        self.view.setMinimumSize(640, 360)
        self.view.clicked.connect(self.add_point)
        self.preview = ImageView("BEV preview: click four road points")
        self.preview.setMinimumSize(150, 200)
        self.across_m = _spin(3.7, " m", 0.0)
        self.along_m = _spin(12.19, " m", 0.0)
        self.origin_ahead_m = _spin(0.0, " m")
        self.path_edit = QLineEdit(str(self.start_dir / "custom.yaml"))
        self.result_label = QLabel()
        self.error_label = QLabel()
        self.error_label.setWordWrap(True)
        self.error_label.setStyleSheet("color: #b71c1c; font-weight: bold;")
        self.instructions = QLabel()
        self.instructions.setWordWrap(True)
        self.reset_button, self.load_button, self.save_button = (QPushButton(t) for t in ("Reset", "Load...", "Save"))
        self._layout()
        for box in (self.across_m, self.along_m, self.origin_ahead_m):
            box.valueChanged.connect(self.recompute)
        self.reset_button.clicked.connect(self.reset)
        self.save_button.clicked.connect(lambda: self.save(Path(self.path_edit.text())))
        self.load_button.clicked.connect(self._load_dialog)
        self.resize(1300, 640)

    def _layout(self) -> None:
        form = QFormLayout()
        form.addRow("A->B across the road", self.across_m)
        form.addRow("A->C along the road", self.along_m)
        form.addRow("Bumper to image bottom", self.origin_ahead_m)
        form.addRow("File", self.path_edit)
        buttons = QHBoxLayout()
        for b in (self.reset_button, self.load_button, self.save_button):
            buttons.addWidget(b)
        side = QVBoxLayout()
        for widget in (self.instructions, self.preview):
            side.addWidget(widget, 1 if widget is self.preview else 0)
        side.addLayout(form)
        side.addWidget(self.result_label)
        side.addWidget(self.error_label)
        side.addLayout(buttons)
        layout = QHBoxLayout(self)
        layout.addWidget(self.view, 3)
        layout.addLayout(side, 1)

    # -- points ----------------------------------------------------------------------------
    def add_point(self, pos: QPointF) -> None:
        """Add the next point (four road points, then A, B, C); ignored when all seven exist."""
        if len(self.quad) < 4:
            self.quad.append(self._handle(pos, QUAD_LABELS[len(self.quad)], QColor(255, 220, 0)))
        elif len(self.references) < 3:
            self.references.append(self._handle(pos, REFERENCE_LABELS[len(self.references)], QColor(0, 200, 255),
                                                label_below=True))
        self.recompute()

    def _handle(self, pos: QPointF, label: str, color: QColor, *, label_below: bool = False) -> Handle:
        handle = Handle(pos, label, color, self.recompute, label_below=label_below)
        self.scene.addItem(handle)
        return handle

    def reset(self) -> None:
        for handle in self.quad + self.references:
            self.scene.removeItem(handle)
        self.quad, self.references = [], []
        self.recompute()

    @staticmethod
    def _xy(handles: list[Handle]) -> list[tuple[float, float]]:
        return [(h.pos().x(), h.pos().y()) for h in handles]

    # -- computation -----------------------------------------------------------------------
    def _explain(self, text: str) -> None:
        self.error_label.setText(text)

    def recompute(self) -> None:
        """Update the BEV preview and the scale from the current points (errors go to the dialog)."""
        self.view_bev, self.calibration = None, None
        self.result_label.setText("")
        self._explain("")
        steps = ("Click the four road points of a rectangle on the road (e.g. the ego lane lines at two "
                 "distances): far-left, far-right, near-right, near-left. Drag to adjust.",
                 "Click A (a point on the road), B (across the road from A, e.g. the other lane line) and "
                 "C (along the road from A, e.g. the same end of the next dash); enter the distances.")
        self.instructions.setText(steps[0] if len(self.quad) < 4 else steps[1])
        self.save_button.setEnabled(False)
        if len(self.quad) < 4:
            return
        try:
            self._compute()
        except CalibrationError as exc:
            self._explain(f"Invalid calibration: {exc}")
            return
        self.save_button.setEnabled(self.calibration is not None)

    def _compute(self) -> None:
        h, w = self.frame.shape[:2]
        self.view_bev = BirdsEyeView.from_points(image_points_px=self._xy(self.quad), bev_points_px=BEV_RECT,
                                                 bev_size_wh=BEV_SIZE, image_size_wh=(w, h))
        self.preview.show_image(self.view_bev.warp(self.frame))
        if len(self.references) < 3:
            return
        a, b, c = (tuple(p) for p in self.view_bev.to_bev(self._xy(self.references)))
        fit = scale_from_three_points(a, b, c, across_m=self.across_m.value(), along_m=self.along_m.value())
        pairs = [ReferencePair(a, b, self.across_m.value(), "across (dialog)"),
                 ReferencePair(a, c, self.along_m.value(), "along (dialog)")]
        self.calibration = Calibration.from_points(
            image_size_wh=(w, h), source_points_px=self._xy(self.quad), bev_points_px=BEV_RECT, bev_size_wh=BEV_SIZE,
            reference_pairs=pairs, origin_ahead_m=self.origin_ahead_m.value(),
            camera_notes="made with the calibration dialog",
        )
        self.result_label.setText(f"k_x = {fit.k_x_m_per_px:.5f} m/px   k_y = {fit.k_y_m_per_px:.5f} m/px\n"
                                  f"residual = {fit.residual_m:.3f} m")

    # -- files -----------------------------------------------------------------------------
    def save(self, path: Path) -> bool:
        """Save the calibration as YAML; on invalid input explain why and write nothing."""
        self.recompute()
        if self.calibration is None:
            if not self.error_label.text():
                self._explain("Invalid calibration: place four road points and the three reference points A, B, C")
            return False
        if path.suffix.lower() not in (".yaml", ".yml"):
            self._explain(f"Invalid file name {path.name}: use .yaml")
            return False
        try:
            save_calibration(self.calibration, path)
        except OSError as exc:
            self._explain(f"Cannot save {path}: {exc.strerror or exc}")
            return False
        self.result_label.setText(self.result_label.text() + f"\nsaved to {path}")
        self.saved.emit(path)
        return True

    def load(self, path: Path) -> bool:
        """Place the handles from a calibration file (the first across and along pairs)."""
        try:
            cal = load_calibration(path)
        except CalibrationError as exc:
            self._explain(str(exc))
            return False
        if tuple(cal.image_size_wh) != (self.frame.shape[1], self.frame.shape[0]):
            self._explain(f"{path}: calibration is for {cal.image_size_wh[0]}x{cal.image_size_wh[1]} images, "
                          f"this frame is {self.frame.shape[1]}x{self.frame.shape[0]}")
            return False
        self.reset()
        first, second = cal.reference_pairs[0], cal.reference_pairs[1]
        along = np.add(first.a_bev_px, np.subtract(second.b_bev_px, second.a_bev_px))
        refs = cal.view.to_image([first.a_bev_px, first.b_bev_px, along])
        for x, y in list(cal.view.image_points_px) + list(refs):
            self.add_point(QPointF(float(x), float(y)))
        self.across_m.setValue(first.distance_m)
        self.along_m.setValue(second.distance_m)
        self.origin_ahead_m.setValue(cal.origin_ahead_m)
        self.path_edit.setText(str(path))
        return True

    def _load_dialog(self) -> None:
        from PyQt5.QtWidgets import QFileDialog

        path, _ = QFileDialog.getOpenFileName(self, "Load calibration", str(self.start_dir), "Calibration (*.yaml)")
        if path:
            self.load(Path(path))
