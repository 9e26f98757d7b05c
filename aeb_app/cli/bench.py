"""``aeb-app bench``: the precision x batch matrix, written as JSON, CSV, Markdown tables and plots."""

from __future__ import annotations

import argparse
import shlex
import sys

from aeb_app.cli import argtypes as at
from aeb_app.model.registry import MODEL_NAMES


def add_parser(sub: argparse._SubParsersAction) -> argparse.ArgumentParser:
    from aeb_app.bench.sweep import SEED_BATCHES, SEED_MODES

    p = sub.add_parser("bench", help="accuracy and speed of every mode at every batch size")
    p.add_argument("--model", default="ssd_mobilenet_v1", choices=MODEL_NAMES)
    p.add_argument("--weights", default="auto", help="'auto', 'random' (speed only) or a file")
    p.add_argument("--modes", type=at.csv_of(str), default=SEED_MODES,
                   help="comma-separated (default: the seed's five)")
    p.add_argument("--batches", type=at.csv_of(at.positive_int), default=SEED_BATCHES,
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
    p.add_argument("--engines-dir", type=at.cache_dir, help="where built engines/packages are (default: engines/)")
    p.add_argument("--no-e2e", action="store_true", help="skip end-to-end timing")
    p.add_argument("--out", type=at.output_dir, required=True, help="output folder")
    p.set_defaults(func=run)
    return p


def run(args: argparse.Namespace) -> int:
    from aeb_app.atomic import atomic_dir
    from aeb_app.bench.machine import fingerprint
    from aeb_app.bench.report import write_all
    from aeb_app.bench.sweep import SweepConfig, run_sweep

    at.check_bench_out(args.out)
    cfg = SweepConfig(model=args.model, modes=args.modes, batches=args.batches, coco_dir=args.coco_dir,
                      annotations=args.annotations, limit=args.limit, weights=args.weights, device=args.device,
                      warmup_iters=args.warmup, min_iters=args.min_iters, min_time_s=args.min_time,
                      map_at=args.map_at, reference_mode=args.reference, tf32=args.tf32,
                      end_to_end=not args.no_e2e, engines_dir=args.engines_dir)

    def show(row) -> None:
        if not row.available:
            print(f"{row.mode:>14} b{row.batch:<3} unavailable: {row.reason}", flush=True)
            return
        acc = "" if row.map is None else f" mAP {row.map:.4f}"
        print(f"{row.mode:>14} b{row.batch:<3} {row.ms_per_sample:9.4f} ms/img {row.fps:10.1f} img/s "
              f"p99 {row.p99_ms:8.3f} ms{acc}", flush=True)

    rows = run_sweep(cfg, on_row=show)
    command = "aeb-app " + " ".join(shlex.quote(a) for a in sys.argv[1:]) if sys.argv[1:] else ""
    with atomic_dir(args.out) as tmp:  # a folder never mixes two runs' files; a killed run leaves the old one
        paths = write_all(tmp, rows, fingerprint(), command)
    print(f"wrote {', '.join(p.name for p in paths)} to {args.out}")
    return 0
