"""``aeb-app scenarios``: run the synthetic NHTSA / Euro NCAP / no-threat scenarios through AebLogic.

Every scenario runs ``--seeds`` times at every frame rate of ``--fps``; the table gives the pass rate
per scenario and frame rate, and the fused range error at 5-40 m. With ``--noise-px`` > 0 the
realistic detector artefacts are on (heavy-tailed jumps, false positives, vehicle sizes that differ
from the class prior). JSON is written atomically. Exit code 0 when the acceptance criteria hold (NHTSA
every run, Euro NCAP >= 95 % of runs, no-threat: no false warning), 1 otherwise, 2 on a usage error.
"""

from __future__ import annotations

import argparse
import math

from aeb_app.atomic import write_json
from aeb_app.cli import argtypes as at

__all__ = ["add_parser", "run", "format_table", "meets_criteria"]

#: Share of runs a Euro NCAP scenario must pass (19/20).
NCAP_PASS_SHARE = 0.95


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "scenarios", help="validate the AEB logic on synthetic NHTSA FCW / Euro NCAP scenarios",
        description="Run every scenario over seeds and frame rates; exit 1 if the acceptance criteria fail.",
    )
    parser.add_argument("--noise-px", type=at.non_negative_float, default=0.0,
                        help="std. dev. of box-edge jitter, px (default 0)")
    parser.add_argument("--miss", "--miss-prob", dest="miss_prob", type=at.probability, default=0.0,
                        help="probability of a missed detection per object and frame (default 0)")
    parser.add_argument("--outlier-prob", type=at.probability, default=None,
                        help="heavy-tailed jump probability per box edge and frame (default 0.03 with noise, else 0)")
    parser.add_argument("--fp-rate", type=at.non_negative_float, default=None,
                        help="false-positive boxes per frame (default 0.05 with noise, else 0)")
    parser.add_argument("--class-flip", type=at.probability, default=None,
                        help="probability per detected car and frame of being reported as a truck or a person "
                             "(default 0.1 with --noise-px > 0, else 0)")
    parser.add_argument("--seeds", type=at.positive_int, default=1, help="runs per scenario and frame rate (default 1)")
    parser.add_argument("--fps", default="25", help="comma-separated frame rates, e.g. 10,25 (default 25)")
    parser.add_argument("--seed", type=at.non_negative_int, default=0, help="base random seed (default 0)")
    parser.add_argument("--json", metavar="OUT", type=at.writable_output(".json"), help="write the results as JSON to OUT")
    parser.set_defaults(func=run)


def _fps_list(text: str) -> list[float]:
    from aeb_app.errors import ConfigError

    try:
        values = [float(v) for v in text.split(",") if v.strip()]
    except ValueError:
        raise ConfigError(f"--fps: expected comma-separated numbers, got {text!r}") from None
    if not values or not all(math.isfinite(v) and 1 <= v <= 240 for v in values):
        raise ConfigError(f"--fps: frame rates must be in 1..240 Hz, got {text!r}")
    return values


def _artefacts(args: argparse.Namespace):
    from aeb_app.errors import ConfigError
    from aeb_app.scenarios import Artefacts
    from aeb_app.scenarios.artefacts import REALISTIC_CLASS_FLIP_PROB

    if not (args.noise_px >= 0 and 0 <= args.miss_prob < 1):
        raise ConfigError(f"--noise-px must be >= 0 and --miss in [0, 1): got {args.noise_px}, {args.miss_prob}")
    if args.seeds < 1:
        raise ConfigError(f"--seeds must be >= 1, got {args.seeds}")
    noisy = args.noise_px > 0
    return Artefacts(
        noise_px=args.noise_px, miss_prob=args.miss_prob, vehicle_spread=noisy,
        outlier_prob=args.outlier_prob if args.outlier_prob is not None else (0.03 if noisy else 0.0),
        false_positive_rate=args.fp_rate if args.fp_rate is not None else (0.05 if noisy else 0.0),
        class_flip_prob=args.class_flip if args.class_flip is not None else (
            REALISTIC_CLASS_FLIP_PROB if noisy else 0.0),
    )


def meets_criteria(row: dict) -> bool:
    """The acceptance criterion of one scenario row (a :meth:`MatrixRow.to_json` dict)."""
    if row["required_ttc_s"] is None:
        return row["false_warnings"] == 0 and row["passed"] == row["runs"]
    if row["source"] == "Euro NCAP":
        return row["passed"] >= math.ceil(NCAP_PASS_SHARE * row["runs"] - 1e-9)
    return row["passed"] == row["runs"]


def _fmt(value: float | None, spec: str = ".2f") -> str:
    return "-" if value is None else format(value, spec)


def format_table(rows: list[dict], fps_list: list[float]) -> str:
    """A fixed-width table: one line per scenario, pass counts per frame rate."""
    cols = "".join(f"{f'{f:g} fps':>9}" for f in fps_list)
    header = f"{'scenario':34} {'source':10} {'req TTC':>7}{cols} {'min warn':>8} {'false':>5}  result"
    lines = [header, "-" * len(header)]
    for name in dict.fromkeys(r["name"] for r in rows):
        mine = [r for r in rows if r["name"] == name]
        counts = "".join(format(f"{r['passed']}/{r['runs']}", ">9") for r in mine)
        warned = [r["min_warning_ttc_s"] for r in mine if r["min_warning_ttc_s"] is not None]
        ok = all(meets_criteria(r) for r in mine)
        lines.append(f"{name:34} {mine[0]['source']:10} {_fmt(mine[0]['required_ttc_s']):>7}{counts} "
                     f"{_fmt(min(warned) if warned else None):>8} {sum(r['false_warnings'] for r in mine):>5}  "
                     f"{'PASS' if ok else 'FAIL'}")
    return "\n".join(lines)


def run(args: argparse.Namespace) -> int:
    from aeb_app.scenarios.matrix import range_error_stats, run_matrix

    fps_list, artefacts = _fps_list(args.fps), _artefacts(args)
    matrix = run_matrix(seeds=args.seeds, fps_list=fps_list, artefacts=artefacts, seed=args.seed)
    rows = [m.to_json() for m in matrix]
    stats = range_error_stats([r for m in matrix for r in m.results])
    print(format_table(rows, fps_list))
    failed = sorted({r["name"] for r in rows if not meets_criteria(r)}, key=[r["name"] for r in rows].index)
    print(f"\nfused range error at 5-40 m over {stats.n} frames: median {100 * stats.median:.1f} %, "
          f"p95 {100 * stats.p95:.1f} % (per-frame measurement: median {100 * stats.measured_median:.1f} %, "
          f"p95 {100 * stats.measured_p95:.1f} %)")
    print(f"{len({r['name'] for r in rows}) - len(failed)}/{len({r['name'] for r in rows})} scenarios meet the "
          f"criteria ({args.seeds} seeds, fps {args.fps}, {artefacts})" + (f"; FAILED: {', '.join(failed)}" if failed else ""))
    if args.json:
        write_json(args.json, {"settings": {"seeds": args.seeds, "fps": fps_list, "seed": args.seed,
                                            **{k: v for k, v in artefacts.__dict__.items()}},
                               "rows": rows, "range_error": stats.to_json()})
    return 1 if failed else 0
