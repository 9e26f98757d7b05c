"""Command line: argparse -> library call. The only place that exits the process.

Each sub-command lives in its own module ``aeb_app.cli.<name>`` exposing
``add_parser(subparsers)`` and ``run(args) -> int``; modules are imported lazily so
``aeb-app --help`` stays fast and a missing optional dependency only affects its command.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import sys
from typing import Sequence

from aeb_app import __version__
from aeb_app.errors import AebError

#: (command, module) pairs; the module provides add_parser(subparsers) and run(args).
COMMANDS: tuple[tuple[str, str], ...] = (
    ("gui", "aeb_app.cli.gui"),
    ("detect", "aeb_app.cli.detect"),
    ("eval", "aeb_app.cli.eval"),
    ("assets", "aeb_app.cli.assets"),
    ("scenarios", "aeb_app.cli.scenarios"),
    ("run", "aeb_app.cli.run"),
    ("export-onnx", "aeb_app.cli.export_onnx"),
    ("quantize", "aeb_app.cli.quantize"),
    ("build-engine", "aeb_app.cli.build_engine"),
    ("bench", "aeb_app.cli.bench"),
)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="aeb-app",
        description="COCO SSD detectors on NVIDIA GPUs and an AEB warning demo. Without a command: the GUI.",
    )
    parser.add_argument("--version", action="version", version=f"aeb-app {__version__}")
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    parser.add_argument(
        "--data-mirror", metavar="DIR",
        help="local asset mirror laid out like the official downloads (env AEB_APP_DATA_MIRROR)",
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name, module_name in COMMANDS:
        try:
            module = importlib.import_module(module_name)
        except ImportError as exc:
            # A command whose optional dependency is missing stays out of --help; the rest work.
            logging.getLogger(__name__).debug("command %s unavailable: %s", name, exc)
            continue
        module.add_parser(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:  # argparse's usage error (exit 2) or --help/--version (0): return it, like AebError
        return int(exc.code or 0) if not isinstance(exc.code, str) else 2
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO,
        format="%(levelname)s %(name)s: %(message)s",
    )
    if args.data_mirror:
        import os

        os.environ["AEB_APP_DATA_MIRROR"] = args.data_mirror
    if args.command is None:
        args = parser.parse_args(["gui", *(argv or [])])
    try:
        return int(args.func(args) or 0)
    except AebError as exc:
        print(f"aeb-app: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("aeb-app: interrupted", file=sys.stderr)
        return 130


def entry_point() -> None:
    sys.exit(main())
