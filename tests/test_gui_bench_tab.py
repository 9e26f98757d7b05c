"""The benchmark tab, offscreen: a real sweep on the CPU in its worker, live rows, cancel, export."""

from __future__ import annotations

from pathlib import Path

import pytest
from PyQt5 import QtCore

from aeb_app.bench.sweep import Row
from aeb_app.gui.bench_tab import BenchmarkTab, format_cell


def _select_modes(tab: BenchmarkTab, modes: set[str]) -> None:
    for i in range(tab.mode_list.count()):
        item = tab.mode_list.item(i)
        item.setCheckState(QtCore.Qt.Checked if item.text() in modes else QtCore.Qt.Unchecked)


def test_tab_runs_sweep_and_exports(qtbot, coco_dir: Path, tmp_path: Path) -> None:
    tab = BenchmarkTab(coco_dir)
    qtbot.addWidget(tab)
    _select_modes(tab, {"fp32_ort", "fp16"})
    tab.batches_edit.setText("1,2")
    tab.limit_spin.setValue(3)
    tab.min_time_spin.setValue(0.05)
    qtbot.mouseClick(tab.run_button, QtCore.Qt.LeftButton)
    assert not tab.run_button.isEnabled() and tab.cancel_button.isEnabled()
    with qtbot.waitSignal(tab.worker.done, timeout=240_000):
        pass
    qtbot.waitUntil(lambda: tab.run_button.isEnabled(), timeout=5000)
    assert tab.table.rowCount() == 4
    texts = [tab.table.item(r, 8).text() for r in range(4)]
    assert sum(t == "ok" for t in texts) == 2 and sum(t.startswith("unavailable") for t in texts) == 2
    assert tab.progress.value() == 4 and "Done: 2 of 4" in tab.status.text()
    assert tab.canvas.figure.axes[0].lines, "throughput plot drawn"
    paths = tab.export(tmp_path / "export")
    assert {p.name for p in paths} >= {"results.json", "results.csv", "tables.md", "throughput.png"}


def test_cancel_stops_the_worker(qtbot, coco_dir: Path) -> None:
    tab = BenchmarkTab(None)
    qtbot.addWidget(tab)
    _select_modes(tab, {"fp32"})
    tab.batches_edit.setText("1,2,4,8")
    tab.min_time_spin.setValue(5.0)
    tab.start()
    qtbot.waitUntil(lambda: tab.worker.isRunning(), timeout=5000)
    tab.cancel()
    assert tab.stop(timeout_ms=120_000)
    qtbot.waitUntil(lambda: "Stopped" in tab.status.text(), timeout=5000)
    assert len(tab.rows) < 4


def test_bad_batch_text_is_explained(qtbot) -> None:
    tab = BenchmarkTab(None)
    qtbot.addWidget(tab)
    tab.batches_edit.setText("1,x")
    tab.start()
    assert "comma-separated integers" in tab.status.text() and tab.worker is None


@pytest.mark.parametrize(
    ("row", "column", "text"),
    [
        (Row("m", "fp32", 4, True, fps=1234.5), "fps", "1,234.5"),
        (Row("m", "fp32", 4, True, acceleration=2.0), "acceleration", "2.00x"),
        (Row("m", "fp16", 4, False, reason="no CUDA"), "status", "unavailable: no CUDA"),
        (Row("m", "fp16", 4, False, reason="no CUDA"), "fps", "—"),
    ],
)
def test_format_cell(row: Row, column: str, text: str) -> None:
    assert format_cell(row, column) == text
