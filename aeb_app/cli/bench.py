"""``aeb-app bench``: the precision x batch matrix, written as JSON, CSV, Markdown tables and plots."""

from __future__ import annotations

import argparse
import shlex
import sys

from aeb_app import defaults
from aeb_app.cli import argtypes as at
from aeb_app.names import MODEL_NAMES


def add_parser(sub: argparse._SubParsersAction) -> argparse.ArgumentParser:
    p = sub.add_parser("bench", help="accuracy and speed of every mode at every batch size")
    p.add_argument("--model", default="ssd_mobilenet_v1", choices=MODEL_NAMES)
    p.add_argument("--weights", default="auto", help="'auto', 'random' (speed only) or a file")
    p.add_argument("--modes", type=at.csv_of(str), default=None,
                   help="comma-separated (default: the modes this machine can run of "
                        f"{','.join(defaults.BENCH_CANDIDATES)}; the others are listed once)")
    p.add_argument("--batches", type=at.csv_of(at.positive_int), default=defaults.BENCH_BATCHES,
                   help="comma-separated batch sizes")
    p.add_argument("--coco-dir", type=at.existing_dir, help="COCO folder for mAP (omit: speed only)")
    p.add_argument("--annotations", type=at.existing_file)
    p.add_argument("--limit", type=at.positive_int, help="mAP on the first N images only")
    p.add_argument("--map-at", choices=("all", "first", "none"), default="all",
                   help="measure mAP at every batch size, only the first, or never")
    p.add_argument("--device", type=at.device, help="cpu or cuda (default: cuda if present)")
    p.add_argument("--reference", default="fp16", help="mode that acceleration is relative to")
    p.add_argument("--tf32", action="store_true", help="allow TF32 for FP32 (off by default: true FP32)")
    p.add_argument("--warmup", type=at.non_negative_int, default=10)
    p.add_argument("--min-iters", type=at.positive_int, default=20)
    p.add_argument("--min-time", type=at.positive_float, default=1.0, help="seconds of timed repeats per figure")
    p.add_argument("--engines-dir", type=at.cache_dir,
                   help=f"where built engines/packages are (default: the user cache's, {defaults.engines_dir()})")
    p.add_argument("--no-e2e", action="store_true", help="skip end-to-end timing")
    p.add_argument("--out", type=at.output_dir, required=True, help="output folder")
    p.set_defaults(func=run)
    return p


def run(args: argparse.Namespace) -> int:
    from aeb_app.atomic import atomic_dir
    from aeb_app.bench.machine import fingerprint
    from aeb_app.bench.report import group_reasons, write_all
    from aeb_app.bench.sweep import DEFAULT_CANDIDATES, is_unstable, run_sweep, runnable_modes
    from aeb_app.defaults import UNSTABLE_P99_OVER_P50
    from aeb_app.errors import AebError

    at.check_bench_out(args.out)
    if args.coco_dir is not None and args.map_at != "none":  # bad annotations/images: before any timing
        from aeb_app.bench.coco_eval import check_images

        check_images(args.coco_dir, args.annotations, args.limit)
    cfg = _config(args, args.modes or DEFAULT_CANDIDATES)
    skipped: dict[str, str] = {}
    if args.modes is None:
        modes, skipped = runnable_modes(cfg)
        if not modes:
            raise AebError("no mode can run here: " + "; ".join(group_reasons(skipped)))
        cfg = _config(args, modes)
        print(f"modes: {', '.join(modes)}", flush=True)
        for line in group_reasons(skipped):
            print(f"not run here: {line}", flush=True)
    reported: dict[str, str] = {}  # reason -> first mode that gave it

    def show(row) -> None:
        if not row.available:
            if row.mode not in reported.values():  # once per mode, each distinct reason in full once
                first = reported.setdefault(row.reason, row.mode)
                why = row.reason if first == row.mode else f"as {first}"
                print(f"{row.mode:>14} unavailable: {why}", flush=True)
            return
        acc = "" if row.map is None else f" mAP {row.map:.4f}"
        flag = (f"  UNSTABLE: p99 > {UNSTABLE_P99_OVER_P50:g}x p50"
                if is_unstable(row.p50_ms, row.p99_ms) else "")
        print(f"{row.mode:>14} b{row.batch:<3} {row.ms_per_sample:9.4f} ms/img {row.fps:10.1f} img/s "
              f"p99 {row.p99_ms:8.3f} ms{acc}{flag}", flush=True)

    rows = run_sweep(cfg, on_row=show)
    command = "aeb-app " + " ".join(shlex.quote(a) for a in sys.argv[1:]) if sys.argv[1:] else ""
    with atomic_dir(args.out) as tmp:  # a folder never mixes two runs' files; a killed run leaves the old one
        paths = write_all(tmp, rows, fingerprint(), command, unavailable=skipped)
    print(f"wrote {', '.join(p.name for p in paths)} to {args.out}")
    return 0


def _config(args: argparse.Namespace, modes: tuple[str, ...]):
    from aeb_app.bench.sweep import SweepConfig

    return SweepConfig(model=args.model, modes=tuple(modes), batches=args.batches, coco_dir=args.coco_dir,
                       annotations=args.annotations, limit=args.limit, weights=args.weights, device=args.device,
                       warmup_iters=args.warmup, min_iters=args.min_iters, min_time_s=args.min_time,
                       map_at=args.map_at, reference_mode=args.reference, tf32=args.tf32,
                       end_to_end=not args.no_e2e, engines_dir=args.engines_dir)
