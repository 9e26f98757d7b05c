"""``aeb-app eval``: COCO mAP of a model/mode over a COCO-layout folder.

Prints the pycocotools summary, a per-class AP table, and writes the JSON (``--json``) with
``per_class`` and ``pr_curve`` plus the precision-recall plot next to it (``<json stem>_pr.png``).
"""

from __future__ import annotations

import argparse
import logging
from pathlib import Path

from aeb_app import defaults
from aeb_app.cli import argtypes as at
from aeb_app.cli.common import add_model_args, add_tiles_arg, make_detector, tiling_of
from aeb_app.names import GPU_RESIZE_METHODS, JPEG_DECODE_PLACES, JPEG_DEVICE_DECODERS

log = logging.getLogger(__name__)


def add_parser(sub: argparse._SubParsersAction) -> argparse.ArgumentParser:
    p = sub.add_parser("eval", help="COCO mAP@[.5:.95] of a model over a COCO folder")
    add_model_args(p, default_mode="fp32")
    add_tiles_arg(p)
    p.add_argument("--coco-dir", type=at.existing_dir, required=True, help="folder with images and annotations/")
    p.add_argument("--annotations", type=at.existing_file,
                   help="instances json (default: the one in COCO_DIR/annotations)")
    p.add_argument("--batch-size", type=at.positive_int, default=8)
    p.add_argument("--limit", type=at.positive_int, help="only the first N images (by id)")
    p.add_argument("--max-detections", type=at.positive_int, default=defaults.EVAL_MAX_DETECTIONS,
                   help="boxes kept per image (COCO: 100)")
    p.add_argument("--score-threshold", type=at.probability, default=defaults.EVAL_SCORE_THRESHOLD,
                   help="drop detections scoring below this (low: mAP integrates the whole PR curve)")
    p.add_argument("--json", type=at.writable_output(".json"), required=True, help="write the results here")
    p.add_argument("--jpeg-decode", choices=JPEG_DECODE_PLACES, default="gpu",
                   help="GPU frame path only: decode JPEGs on the GPU, in host threads, or split each batch "
                        "between both (default gpu)")
    p.add_argument("--jpeg-decoder", choices=JPEG_DEVICE_DECODERS, default="nvjpeg",
                   help="GPU frame path only: what decodes on the GPU; nvimgcodec uses the hardware JPEG engines "
                        "(A100/H100/H200; needs nvidia-nvimgcodec) (default nvjpeg)")
    p.add_argument("--gpu-resize", choices=GPU_RESIZE_METHODS, default="interpolate",
                   help="GPU frame path only: resize with F.interpolate or as batched matrix products "
                        "(default interpolate)")
    p.set_defaults(func=run)
    return p


def run(args: argparse.Namespace) -> int:
    from tqdm import tqdm

    from aeb_app.atomic import write_json
    from aeb_app.bench.coco_eval import check_images, evaluate_detector
    from aeb_app.bench.per_class import ClassAP, PrCurve, format_table, plot_pr_curve
    from aeb_app.model.postprocess import EVAL_POSTPROCESS, PostprocessConfig

    at.check_outputs([("--annotations", args.annotations)], [("--json", args.json)])
    check_images(args.coco_dir, args.annotations, args.limit)  # bad annotations or images: before the model loads
    if args.jpeg_decoder == "nvimgcodec":
        from aeb_app.inference.run.hardware_jpeg import check_nvimgcodec

        check_nvimgcodec()  # before the model loads too
    config = PostprocessConfig(
        score_threshold=args.score_threshold, iou_threshold=EVAL_POSTPROCESS.iou_threshold,
        max_detections=args.max_detections, tiling=tiling_of(args),
    )
    detector = make_detector(args)
    bar = tqdm(unit="img", desc=f"eval {args.model} {detector.info.mode}")

    def progress(done: int, total: int) -> None:
        bar.total = total
        bar.n = done
        bar.refresh()

    try:
        with detector:
            result = evaluate_detector(detector, args.coco_dir, annotations=args.annotations,
                                       batch_size=args.batch_size, limit=args.limit, config=config,
                                       progress=progress, decode=args.jpeg_decode, device_decoder=args.jpeg_decoder,
                                       resize=args.gpu_resize)
    finally:
        bar.close()  # ends the bar's line: an error then starts on a line of its own
    print(result["summary"])
    if result["per_class"]:
        print("\nPer-class AP (area all, 100 detections; '-': no ground truth in these images)")
        print(format_table([ClassAP(**row) for row in result["per_class"]]))
    print(f"{args.model} {detector.info.mode}: mAP@[.5:.95] {result['map']:.4f}  AP50 {result['map50']:.4f}  "
          f"on {result['num_images']} images")
    write_json(args.json, result)
    if result["pr_curve"]:
        plot = plot_pr_curve(PrCurve(**result["pr_curve"]), pr_plot_path(args.json),
                             title=f"{args.model} {detector.info.mode}: {result['num_images']} images, "
                                   f"mAP {result['map']:.4f}")
        print(f"wrote {args.json} and {plot}")
    return 0


def pr_plot_path(json_path: Path) -> Path:
    """``eval.json`` -> ``eval_pr.png`` beside it."""
    return json_path.with_name(f"{json_path.stem}_pr.png")
