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
    ("calibrate", "aeb_app.cli.calibrate"),
    ("run", "aeb_app.cli.run"),
    ("export-onnx", "aeb_app.cli.export_onnx"),
    ("quantize", "aeb_app.cli.quantize"),
    ("build-engine", "aeb_app.cli.build_engine"),
    ("bench", "aeb_app.cli.bench"),
    ("replay", "aeb_app.cli.replay"),
)


class Parser(argparse.ArgumentParser):
    """argparse's parser (and, through ``add_subparsers``, its sub-commands') with usage errors on one line."""

    def error(self, message: str):  # type: ignore[override]
        from aeb_app.cli.logsetup import one_line

        super().error(one_line(message))


class HelpFormatter(argparse.ArgumentDefaultsHelpFormatter):
    """Shows every option's default (tuples as ``a,b,c``), except where the help already says it
    or there is none to show (``None``, ``False``)."""

    def _get_help_string(self, action: argparse.Action) -> str:
        text = action.help or ""
        default = action.default
        if "default" in text or default in (None, False, argparse.SUPPRESS) or not action.option_strings:
            return text
        if isinstance(default, (tuple, list)):
            return f"{text} (default: {','.join(map(str, default))})".replace("%", "%%").lstrip()
        return super()._get_help_string(action)


def add_global_options(parser: argparse.ArgumentParser, *, in_subcommand: bool) -> None:
    """``-v`` and ``--data-mirror``, accepted before and after the sub-command.

    A sub-command's copy defaults to SUPPRESS, so it sets the value only when given there and
    never overwrites what was given before the sub-command.
    """
    default: dict = {"default": argparse.SUPPRESS} if in_subcommand else {}
    parser.add_argument("-v", "--verbose", action="store_true",
                        help="debug logging, including third-party libraries", **default)
    parser.add_argument("--data-mirror", metavar="DIR", **default,
                        help="local asset mirror laid out like the official downloads (env AEB_APP_DATA_MIRROR)")


def build_parser() -> argparse.ArgumentParser:
    parser = Parser(
        prog="aeb-app", formatter_class=HelpFormatter,
        description="COCO SSD detectors on NVIDIA GPUs and an AEB warning demo. Without a command: the GUI.",
    )
    parser.add_argument("--version", action="version", version=f"aeb-app {__version__}")
    add_global_options(parser, in_subcommand=False)
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name, module_name in COMMANDS:
        try:
            module = importlib.import_module(module_name)
        except ImportError as exc:
            # A command whose optional dependency is missing stays out of --help; the rest work.
            logging.getLogger(__name__).debug("command %s unavailable: %s", name, exc)
            continue
        module.add_parser(sub)
    for subparser in sub.choices.values():
        subparser.formatter_class = HelpFormatter
        _describe_defaults(subparser)
        add_global_options(subparser, in_subcommand=True)
    return parser


def _describe_defaults(parser: argparse.ArgumentParser) -> None:
    """Give options that have a default but no help text a help line, so ``--help`` shows the default."""
    for action in parser._actions:
        if action.option_strings and not action.help and action.default not in (None, False, argparse.SUPPRESS):
            action.help = "(default: %(default)s)"


def main(argv: Sequence[str] | None = None) -> int:
    from aeb_app.cli.logsetup import one_line, setup_logging

    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:  # argparse's usage error (exit 2) or --help/--version (0): return it, like AebError
        return int(exc.code or 0) if not isinstance(exc.code, str) else 2
    setup_logging(args.verbose)
    if args.data_mirror:
        import os

        os.environ["AEB_APP_DATA_MIRROR"] = args.data_mirror
    if args.command is None:
        args = parser.parse_args(["gui", *(argv or [])])
    try:
        return int(args.func(args) or 0)
    except AebError as exc:
        print(f"aeb-app: error: {one_line(str(exc))}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("aeb-app: interrupted", file=sys.stderr)
        return 130


def entry_point() -> None:
    sys.exit(main())
