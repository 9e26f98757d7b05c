#!/usr/bin/env python3
"""Regenerate ``docs/screenshots/*.png`` from the real window (offscreen, ``QWidget.grab()``).

Runs the real sample video (asset mirror/cache) through the real ``ssd_mobilenet_v1`` on the CPU:

* ``live.png``: live view at ego speed 100 km/h (long braking zone), default warning thresholds;
* ``live_warning.png``: the same with demo thresholds (CAUTION below a TTC of 100 s, no closing-speed
  floor) so the steady traffic of the sample footage raises a warning: the banner, red points and
  the event log are visible. The footage itself contains no real collision threat;
* ``unavailable.png``: a truncated copy of the video: corrupt frames give "system unavailable";
* ``calibration.png``: the calibration dialog with the shipped calibration's frame-0 points;
* ``benchmark.png``: the Benchmark tab, when this checkout has it.

Usage: ``QT_QPA_PLATFORM=offscreen python scripts/screenshots.py [OUT_DIR]`` (default docs/screenshots).
"""

from __future__ import annotations

import logging
import os
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))  # run from a checkout without installing

from PyQt5.QtCore import QPointF, QSettings, Qt  # noqa: E402
from PyQt5.QtGui import QImage  # noqa: E402
from PyQt5.QtWidgets import QApplication, QWidget  # noqa: E402

from aeb_app import assets  # noqa: E402
from aeb_app.gui.calibration_dialog import CalibrationDialog  # noqa: E402
from aeb_app.gui.main_window import MainWindow  # noqa: E402
from aeb_app.gui.panels import AppSettings  # noqa: E402
from aeb_app.safety import WarningConfig  # noqa: E402

log = logging.getLogger("screenshots")
SIZE = (1280, 760)
DEMO_WARNING = WarningConfig(caution_ttc_s=100.0, brake_ttc_s=1.0, min_closing_mps=0.01, min_track_age_s=0.04,
                             on_s=0.0, require_agreement=False, agree_ttc_s=1000.0, closing_sigmas=0.0)


def wait_until(app: QApplication, predicate, timeout_s: float = 120.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not predicate():
        if time.monotonic() > deadline:
            raise TimeoutError("window did not reach the expected state")
        app.processEvents()
        time.sleep(0.01)


def save(widget: QWidget, path: Path) -> None:
    """Grab the widget; 256-colour PNG keeps each file well under 300 KB."""
    image = widget.grab().toImage().convertToFormat(QImage.Format_Indexed8, Qt.DiffuseDither)
    image.save(str(path), "PNG", 9)
    log.info("wrote %s (%d KB)", path, path.stat().st_size // 1024)


def live_window(app: QApplication, store_dir: Path, video: str, *, frame: int, warning: WarningConfig | None,
                name: str, out: Path) -> MainWindow:
    store = QSettings(str(store_dir / f"{name}.ini"), QSettings.IniFormat)
    AppSettings(ego_speed_kmh=100.0).save(store)
    win = MainWindow(settings_store=store, realtime=False, warning_config=warning)
    win.resize(*SIZE)
    win.show()
    win.open_source(video, playing=False)
    wait_until(app, lambda: win.frame_count is not None)
    win.seek(max(0, frame - 25))  # a second of history so tracks and warnings have settled
    win.set_playing(True)
    wait_until(app, lambda: win.last_result is not None and win.last_result.frame_index >= frame)
    win.set_playing(False)
    app.processEvents()
    save(win, out / f"{name}.png")
    return win


#: The shipped calibration's frame-0 points (scripts/make_calibration.py): ego-lane lines at rows
#: 345/520; A on the left line, B across on the right line (3.7 m), C one dash period (12.19 m) ahead.
QUAD = [(422.4, 345.0), (546.1, 345.0), (828.4, 520.0), (185.7, 520.0)]
REFS = [(193.9, 514.0), (818.7, 514.0), (389.4, 369.4)]


def calibration_shot(app: QApplication, frame, out: Path) -> None:
    dialog = CalibrationDialog(frame=frame, start_dir=REPO / "calibration")
    dialog.resize(1300, 640)
    dialog.show()
    dialog.origin_ahead_m.setValue(3.4)
    for x, y in QUAD + REFS:
        dialog.add_point(QPointF(x, y))
    app.processEvents()
    dialog.view.fitInView(dialog.scene.sceneRect())
    app.processEvents()
    save(dialog, out / "calibration.png")
    dialog.close()


def benchmark_shot(app: QApplication, win: MainWindow, out: Path) -> None:
    try:
        from aeb_app.gui.bench_tab import BenchmarkTab
    except ImportError:
        log.info("no benchmark tab in this checkout: skipped")
        return
    from aeb_app.cli.gui import coco_subset_dir

    tab = BenchmarkTab(coco_subset_dir())
    win.tabs.setCurrentIndex(win.add_tab(tab, "Benchmark"))
    for i in range(tab.mode_list.count()):  # a small real sweep on this CPU: two modes, two batch sizes
        item = tab.mode_list.item(i)
        item.setCheckState(Qt.Checked if item.text() in ("fp32", "fp32_ort") else Qt.Unchecked)
    tab.batches_edit.setText("1,4")
    tab.limit_spin.setValue(20)
    tab.min_time_spin.setValue(0.5)
    tab.start()
    wait_until(app, lambda: tab.run_button.isEnabled(), timeout_s=600)
    app.processEvents()
    save(win, out / "benchmark.png")


def main(argv: list[str]) -> int:
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    out = Path(argv[0]) if argv else REPO / "docs" / "screenshots"
    out.mkdir(parents=True, exist_ok=True)
    app = QApplication.instance() or QApplication(sys.argv[:1])
    video = str(assets.resolve("sample_video", "solidWhiteRight.mp4"))
    with tempfile.TemporaryDirectory() as tmp:
        tmp_dir = Path(tmp)
        win = live_window(app, tmp_dir, video, frame=60, warning=None, name="live", out=out)
        frame = win.last_result.extras["frame"]
        win.close()
        win = live_window(app, tmp_dir, video, frame=64, warning=DEMO_WARNING, name="live_warning", out=out)
        win.close()
        broken = tmp_dir / "truncated.mp4"
        broken.write_bytes(Path(video).read_bytes()[: Path(video).stat().st_size // 2])
        win = live_window(app, tmp_dir, str(broken), frame=100, warning=None, name="unavailable_pre", out=tmp_dir)
        win.set_playing(True)
        wait_until(app, lambda: win.banner.text().startswith("AEB SYSTEM UNAVAILABLE")
                   and win.last_result.extras["annotated"] is not None)
        app.processEvents()
        save(win, out / "unavailable.png")
        win.close()
        calibration_shot(app, frame, out)
        win = MainWindow(settings_store=QSettings(str(tmp_dir / "b.ini"), QSettings.IniFormat))
        win.resize(*SIZE)
        win.show()
        benchmark_shot(app, win, out)
        win.close()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
