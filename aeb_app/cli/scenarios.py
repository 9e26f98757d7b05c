"""``aeb-app scenarios``: run the synthetic NHTSA / Euro NCAP / no-threat scenarios through AebLogic.

Prints a table, optionally writes the results as JSON (atomically). Exit code 0 when every scenario
passes, 1 when any fails (so CI can gate on it), 2 on a usage/app error.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from aeb_app.atomic import write_json
from aeb_app.cli import argtypes as at

__all__ = ["add_parser", "run", "format_table"]


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "scenarios", help="validate the AEB logic on synthetic NHTSA FCW / Euro NCAP scenarios",
        description="Run every scenario; exit 1 if any fails.",
    )
    parser.add_argument("--noise-px", type=at.non_negative_float, default=0.0,
                        help="std. dev. of box pixel noise (default 0)")
    parser.add_argument("--miss-prob", type=at.probability, default=0.0,
                        help="probability of a missed detection per frame")
    parser.add_argument("--seed", type=at.non_negative_int, default=0, help="random seed (default 0)")
    parser.add_argument("--json", metavar="OUT", type=at.writable_output(".json"),
                        help="write results as a JSON list to OUT")
    parser.set_defaults(func=run)


def _fmt(value: float | None, spec: str = ".2f") -> str:
    return "-" if value is None else format(value, spec)


def format_table(rows: list[dict]) -> str:
    """A fixed-width text table of scenario result dicts (as written to JSON)."""
    header = f"{'scenario':32} {'source':10} {'req TTC':>7} {'warn TTC':>8} {'brake TTC':>9} {'false':>5} " \
             f"{'rng RMS m':>9} {'rng max m':>9}  result"
    lines = [header, "-" * len(header)]
    for r in rows:
        lines.append(
            f"{r['name']:32} {r['source']:10} {_fmt(r['required_ttc_s']):>7} {_fmt(r['warning_ttc_s']):>8} "
            f"{_fmt(r['brake_ttc_s']):>9} {r['false_warnings']:>5} {_fmt(r['range_rms_m']):>9} "
            f"{_fmt(r['range_max_abs_m']):>9}  {'PASS' if r['passed'] else 'FAIL'}"
        )
    return "\n".join(lines)


def run(args: argparse.Namespace) -> int:
    from aeb_app.errors import ConfigError
    from aeb_app.scenarios import run_all

    if not (args.noise_px >= 0 and 0 <= args.miss_prob < 1):
        raise ConfigError(f"--noise-px must be >= 0 and --miss-prob in [0, 1): got {args.noise_px}, {args.miss_prob}")
    rows = [r.to_json() for r in run_all(noise_px=args.noise_px, miss_prob=args.miss_prob, seed=args.seed)]
    print(format_table(rows))
    failed = [r["name"] for r in rows if not r["passed"]]
    print(f"\n{len(rows) - len(failed)}/{len(rows)} passed (noise {args.noise_px} px, miss {args.miss_prob}, "
          f"seed {args.seed})" + (f"; FAILED: {', '.join(failed)}" if failed else ""))
    if args.json:
        write_json(args.json, rows)
    return 1 if failed else 0
