"""``aeb-app eval``: COCO mAP of a model/mode over a COCO-layout folder."""

from __future__ import annotations

import argparse
import logging
from pathlib import Path

from aeb_app.cli import argtypes as at
from aeb_app.cli.common import add_model_args, make_detector

log = logging.getLogger(__name__)


def add_parser(sub: argparse._SubParsersAction) -> argparse.ArgumentParser:
    p = sub.add_parser("eval", help="COCO mAP@[.5:.95] of a model over a COCO folder")
    add_model_args(p, default_mode="fp32")
    p.add_argument("--coco-dir", type=at.existing_dir, required=True, help="folder with images and annotations/")
    p.add_argument("--annotations", type=at.existing_file,
                   help="instances json (default: the one in COCO_DIR/annotations)")
    p.add_argument("--batch-size", type=at.positive_int, default=8)
    p.add_argument("--limit", type=at.positive_int, help="only the first N images (by id)")
    p.add_argument("--max-detections", type=at.positive_int, default=100, help="boxes kept per image (COCO: 100)")
    p.add_argument("--json", type=at.writable_output(".json"), required=True, help="write the results here")
    p.set_defaults(func=run)
    return p


def run(args: argparse.Namespace) -> int:
    from tqdm import tqdm

    from aeb_app.atomic import write_json
    from aeb_app.bench.coco_eval import evaluate_detector
    from aeb_app.model.postprocess import EVAL_POSTPROCESS, PostprocessConfig

    at.check_outputs([("--annotations", args.annotations)], [("--json", args.json)])
    config = PostprocessConfig(
        score_threshold=EVAL_POSTPROCESS.score_threshold, iou_threshold=EVAL_POSTPROCESS.iou_threshold,
        max_detections=args.max_detections,
    )
    detector = make_detector(args)
    bar = tqdm(unit="img", desc=f"eval {args.model} {detector.info.mode}")

    def progress(done: int, total: int) -> None:
        bar.total = total
        bar.n = done
        bar.refresh()

    with detector:
        result = evaluate_detector(detector, args.coco_dir, annotations=args.annotations,
                                   batch_size=args.batch_size, limit=args.limit, config=config,
                                   progress=progress)
    bar.close()
    print(result["summary"])
    print(f"{args.model} {detector.info.mode}: mAP@[.5:.95] {result['map']:.4f}  AP50 {result['map50']:.4f}  "
          f"on {result['num_images']} images")
    write_json(args.json, result)
    return 0
