"""``aeb-app gui [VIDEO]``: the desktop window (the default command)."""

from __future__ import annotations

import argparse
import dataclasses
import logging
import sys
from pathlib import Path

from aeb_app.cli import argtypes as at

log = logging.getLogger(__name__)


def add_parser(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    parser = subparsers.add_parser("gui", help="open the desktop window (default)")
    parser.add_argument("video", nargs="?", default=None,
                        help="video to open (default: the sample footage from the asset mirror/cache)")
    parser.add_argument("--camera", type=at.non_negative_int, default=None, metavar="N",
                        help="open camera N instead of a video")
    parser.add_argument("--model", default=None, help="model name (default: last used)")
    parser.add_argument("--mode", default=None, help="inference mode, e.g. fp32, fp32_ort (default: last used)")
    parser.add_argument("--calibration", type=at.existing_file, default=None,
                        help="road calibration YAML (default: the sample footage's calibration for 960x540 "
                             "videos; other sizes show detections only until calibrated)")
    parser.add_argument("--settings", type=at.existing_file, default=None, metavar="YAML",
                        help="warning-logic settings file (as for run --settings); refused at start if a value is bad")
    parser.add_argument("--paused", action="store_true", help="open paused on the first frame")
    parser.set_defaults(func=run)
    return parser


def _default_video() -> str | None:
    from aeb_app import assets
    from aeb_app.errors import AssetError

    try:
        return str(assets.resolve("sample_video", "solidWhiteRight.mp4"))
    except AssetError as exc:
        log.warning("sample video unavailable (%s); open a video from the File menu", exc)
        return None


def coco_subset_dir() -> Path | None:
    """The COCO val2017 subset folder from the asset mirror/cache (for the benchmark's mAP), or None."""
    from aeb_app import assets
    from aeb_app.errors import AssetError

    try:
        return assets.resolve("coco_val2017_subset", "instances_val2017_subset.json").parents[1]
    except AssetError:
        return None


def _add_benchmark_tab(window) -> None:
    """The Benchmark tab, when this checkout has it."""
    try:
        from aeb_app.gui.bench_tab import BenchmarkTab
    except ImportError as exc:
        log.info("no benchmark tab: %s", exc)
        return
    window.add_tab(BenchmarkTab(coco_subset_dir()), "Benchmark")


def run(args: argparse.Namespace) -> int:
    from aeb_app.heavy import preload, qt_environment

    from aeb_app.safety.settings import load_logic_settings

    logic = load_logic_settings(args.settings) if args.settings else None  # bad values: one line, before Qt
    qt_environment()
    preload(args.mode)  # before any window exists: see aeb_app.heavy for the crash this avoids
    from PyQt5.QtWidgets import QApplication

    from aeb_app.gui.main_window import MainWindow

    app = QApplication.instance() or QApplication(sys.argv[:1])
    window = MainWindow(calibration_path=args.calibration, logic=logic)
    if args.model or args.mode:
        current = window.settings
        window.apply_settings(dataclasses.replace(current, model=args.model or current.model,
                                                  mode=args.mode or current.mode))
        window.settings_panel.set_values(window.settings)
    _add_benchmark_tab(window)
    window.resize(1360, 800)
    window.show()
    source = args.camera if args.camera is not None else (args.video or _default_video())
    if source is not None:
        window.open_source(source, playing=not args.paused)
    return app.exec_()
