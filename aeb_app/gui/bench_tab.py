"""Benchmark tab: choose model, modes and batch sizes; run the sweep in a worker thread with
progress and cancel; a live table and plots; export of the same files as ``aeb-app bench``.

Thin over :mod:`aeb_app.bench`: the worker calls :func:`~aeb_app.bench.sweep.run_sweep` and
emits each row as it is measured; widgets are touched only on the GUI thread.
"""

from __future__ import annotations

import logging
from pathlib import Path

from PyQt5 import QtCore, QtWidgets

from aeb_app.bench.sweep import SEED_BATCHES, Row, SweepConfig
from aeb_app.inference.registry import MODES
from aeb_app.model.registry import MODEL_NAMES
from aeb_app.heavy import preload

log = logging.getLogger(__name__)

COLUMNS = ("mode", "batch", "map", "ms_per_sample", "fps", "acceleration", "p99_ms", "e2e_fps", "status")


class SweepWorker(QtCore.QThread):
    """Runs one sweep; ``row`` per measured cell, ``failed`` with a message, ``done`` with all rows."""

    row = QtCore.pyqtSignal(object)
    failed = QtCore.pyqtSignal(str)
    done = QtCore.pyqtSignal(list)

    def __init__(self, config: SweepConfig, parent: QtCore.QObject | None = None) -> None:
        super().__init__(parent)
        self.config = config

    def run(self) -> None:
        from aeb_app.bench.sweep import Cancelled, run_sweep

        try:
            rows = run_sweep(self.config, on_row=self.row.emit, should_stop=self.isInterruptionRequested)
        except Cancelled:
            self.failed.emit("cancelled")
        except Exception as exc:  # reported in the tab, never kills the app
            log.exception("benchmark failed")
            self.failed.emit(f"{type(exc).__name__}: {exc}")
        else:
            self.done.emit(rows)


def format_cell(row: Row, column: str) -> str:
    """Text of one table cell (pure; unit tested)."""
    if column == "status":
        return "ok" if row.available else f"unavailable: {row.reason}"
    value = getattr(row, column)
    if value is None:
        return "—"
    if column in ("mode", "batch"):
        return str(value)
    return {"map": "{:.4f}", "ms_per_sample": "{:.4f}", "fps": "{:,.1f}", "acceleration": "{:.2f}x",
            "p99_ms": "{:.3f}", "e2e_fps": "{:,.1f}"}[column].format(value)


class BenchmarkTab(QtWidgets.QWidget):
    """The benchmark tab. ``coco_dir``: COCO folder for mAP, pre-filled in the form (None: speed only)."""

    def __init__(self, coco_dir: Path | None = None, parent: QtWidgets.QWidget | None = None) -> None:
        super().__init__(parent)
        self.rows: list[Row] = []
        self.worker: SweepWorker | None = None
        self._build(coco_dir)

    # -- layout --------------------------------------------------------------------------
    def _build(self, coco_dir: Path | None) -> None:
        self.model_box = QtWidgets.QComboBox()
        self.model_box.addItems(MODEL_NAMES)
        self.mode_list = QtWidgets.QListWidget()
        self.mode_list.setMaximumHeight(110)
        for name in MODES:
            item = QtWidgets.QListWidgetItem(name)
            item.setFlags(item.flags() | QtCore.Qt.ItemIsUserCheckable)
            item.setCheckState(QtCore.Qt.Checked if name in ("fp32", "fp32_ort", "fp16", "fp16_fused", "fp16_trt") else
                               QtCore.Qt.Unchecked)
            self.mode_list.addItem(item)
        self.batches_edit = QtWidgets.QLineEdit(",".join(map(str, SEED_BATCHES)))
        self.coco_edit = QtWidgets.QLineEdit(str(coco_dir) if coco_dir else "")
        self.coco_edit.setPlaceholderText("COCO folder for mAP (empty: speed only)")
        self.limit_spin = QtWidgets.QSpinBox()
        self.limit_spin.setRange(0, 5000)
        self.limit_spin.setSpecialValueText("all images")
        self.min_time_spin = QtWidgets.QDoubleSpinBox()
        self.min_time_spin.setRange(0.05, 30.0)
        self.min_time_spin.setValue(0.5)
        form = QtWidgets.QFormLayout()
        form.addRow("Model", self.model_box)
        form.addRow("Modes", self.mode_list)
        form.addRow("Batch sizes", self.batches_edit)
        form.addRow("COCO folder", self.coco_edit)
        form.addRow("mAP images", self.limit_spin)
        form.addRow("Seconds per figure", self.min_time_spin)
        self.run_button = QtWidgets.QPushButton("Run")
        self.cancel_button = QtWidgets.QPushButton("Cancel")
        self.export_button = QtWidgets.QPushButton("Export…")
        self.cancel_button.setEnabled(False)
        self.export_button.setEnabled(False)
        self.run_button.clicked.connect(self.start)
        self.cancel_button.clicked.connect(self.cancel)
        self.export_button.clicked.connect(self._ask_export)
        buttons = QtWidgets.QHBoxLayout()
        for b in (self.run_button, self.cancel_button, self.export_button):
            buttons.addWidget(b)
        self.progress = QtWidgets.QProgressBar()
        self.status = QtWidgets.QLabel("Idle")
        self.table = QtWidgets.QTableWidget(0, len(COLUMNS))
        self.table.setHorizontalHeaderLabels(COLUMNS)
        self.table.horizontalHeader().setStretchLastSection(True)
        self.canvas = _make_canvas()
        left = QtWidgets.QVBoxLayout()
        left.addLayout(form)
        left.addLayout(buttons)
        left.addWidget(self.progress)
        left.addWidget(self.status)
        left.addStretch(1)
        right = QtWidgets.QVBoxLayout()
        right.addWidget(self.table, 3)
        right.addWidget(self.canvas, 2)
        top = QtWidgets.QHBoxLayout(self)
        top.addLayout(left, 1)
        top.addLayout(right, 3)

    # -- actions -------------------------------------------------------------------------
    def config(self) -> SweepConfig:
        """The sweep the controls describe. Raises ValueError for bad batch sizes or no modes."""
        modes = tuple(self.mode_list.item(i).text() for i in range(self.mode_list.count())
                      if self.mode_list.item(i).checkState() == QtCore.Qt.Checked)
        try:
            batches = tuple(int(x) for x in self.batches_edit.text().split(",") if x.strip())
        except ValueError:
            raise ValueError(f"batch sizes must be comma-separated integers: {self.batches_edit.text()!r}") from None
        coco = self.coco_edit.text().strip()
        model = self.model_box.currentText()
        return SweepConfig(model=model, modes=modes, batches=batches, coco_dir=Path(coco) if coco else None,
                           limit=self.limit_spin.value() or None, min_time_s=self.min_time_spin.value(),
                           warmup_iters=3, min_iters=5, map_at="first",
                           weights="random" if model == "ssd300_resnet50" else "auto")

    def start(self) -> None:
        try:
            config = self.config()
        except ValueError as exc:
            self.status.setText(str(exc))
            return
        self.rows = []
        self.table.setRowCount(0)
        self.progress.setRange(0, len(config.modes) * len(config.batches))
        self.progress.setValue(0)
        self.status.setText(f"Running {config.model}…")
        for mode in config.modes:  # heavy first imports in this (main) thread, never in the worker
            preload(mode)
        self.worker = SweepWorker(config, self)
        self.worker.row.connect(self._on_row)
        self.worker.failed.connect(self._on_failed)
        self.worker.done.connect(self._on_done)
        self.worker.finished.connect(lambda: self._set_running(False))
        self._set_running(True)
        self.worker.start()

    def cancel(self) -> None:
        if self.worker is not None:
            self.worker.requestInterruption()
            self.status.setText("Cancelling…")

    def stop(self, timeout_ms: int = 10000) -> bool:
        """Ask the worker to stop and wait for it (window close). True if it stopped."""
        if self.worker is None or not self.worker.isRunning():
            return True
        self.worker.requestInterruption()
        return self.worker.wait(timeout_ms)

    def export(self, out_dir: Path) -> list[Path]:
        from aeb_app.bench.machine import fingerprint
        from aeb_app.bench.report import write_all

        return write_all(out_dir, self.rows, fingerprint(), command="GUI benchmark tab")

    # -- slots ---------------------------------------------------------------------------
    def _set_running(self, running: bool) -> None:
        self.run_button.setEnabled(not running)
        self.cancel_button.setEnabled(running)
        self.export_button.setEnabled(not running and bool(self.rows))

    def _on_row(self, row: Row) -> None:
        self.rows.append(row)
        r = self.table.rowCount()
        self.table.insertRow(r)
        for c, column in enumerate(COLUMNS):
            self.table.setItem(r, c, QtWidgets.QTableWidgetItem(format_cell(row, column)))
        self.progress.setValue(len(self.rows))
        self.table.resizeColumnsToContents()
        self._redraw()

    def _on_failed(self, message: str) -> None:
        self.status.setText(f"Stopped: {message}")

    def _on_done(self, rows: list) -> None:
        self.rows = rows  # with acceleration filled in
        self.table.setRowCount(0)
        for row in rows:
            self._on_row_no_redraw(row)
        self.table.resizeColumnsToContents()
        self._redraw()
        self.status.setText(f"Done: {sum(r.available for r in rows)} of {len(rows)} cells measured")

    def _on_row_no_redraw(self, row: Row) -> None:
        r = self.table.rowCount()
        self.table.insertRow(r)
        for c, column in enumerate(COLUMNS):
            self.table.setItem(r, c, QtWidgets.QTableWidgetItem(format_cell(row, column)))

    def _redraw(self) -> None:
        fig = self.canvas.figure
        fig.clear()
        ax = fig.add_subplot(111)
        for mode in dict.fromkeys(r.mode for r in self.rows):
            pts = sorted((r.batch, r.fps) for r in self.rows if r.mode == mode and r.available and r.fps)
            if pts:
                ax.plot(*zip(*pts), marker="o", label=mode)
        ax.set_xscale("log", base=2)
        ax.set_xlabel("batch size")
        ax.set_ylabel("images/s")
        if ax.lines:
            ax.legend(fontsize=7)
        fig.tight_layout()
        self.canvas.draw_idle()

    def _ask_export(self) -> None:
        folder = QtWidgets.QFileDialog.getExistingDirectory(self, "Export benchmark results")
        if folder:
            paths = self.export(Path(folder))
            self.status.setText(f"Exported {len(paths)} files to {folder}")


def _make_canvas():
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib.backends.backend_qt5agg import FigureCanvasQTAgg
    from matplotlib.figure import Figure

    return FigureCanvasQTAgg(Figure(figsize=(5, 2.5)))
