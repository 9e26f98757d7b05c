"""``aeb-app quantize``: FP32 ONNX -> INT8 Q/DQ ONNX (entropy calibration on COCO images).

With ``--evaluate`` it then scores FP32 and INT8 (ONNX Runtime, CPU) on the COCO folder's
annotations: on all images, and on the images *not* used for calibration (held out), so a
reader can tell calibration-set overfitting from real accuracy.
"""

from __future__ import annotations

import argparse
import json
import logging
import tempfile
from pathlib import Path

from aeb_app import defaults
from aeb_app.cli import argtypes as at
from aeb_app.names import CALIBRATION_METHODS

log = logging.getLogger(__name__)


positive_int = at.positive_int  # kept importable from here for older callers


def add_parser(subparsers) -> argparse.ArgumentParser:
    parser = subparsers.add_parser("quantize", help="INT8 Q/DQ ONNX by entropy calibration on COCO images")
    parser.add_argument("--model", required=True, help="ssd_mobilenet_v1 or ssd300_resnet50")
    parser.add_argument("--weights", default="auto", help="auto (asset), random, or a file")
    parser.add_argument("--coco-dir", required=True, type=at.existing_dir, help="COCO val2017 root or image folder")
    parser.add_argument("--num-images", type=positive_int, default=defaults.CALIBRATION_IMAGES,
                        help="calibration images (default 200)")
    parser.add_argument("--seed", type=at.non_negative_int, default=defaults.CALIBRATION_SEED, help="seed of the random image draw")
    parser.add_argument("--method", choices=CALIBRATION_METHODS, default="entropy", help="calibration method")
    parser.add_argument("--exclude-first-conv", action="store_true", help="keep the first conv in float")
    parser.add_argument("--engines-dir", type=at.cache_dir, default=defaults.engines_dir())
    parser.add_argument("--out", type=at.writable_output(".onnx"),
                        help="output file (default: cache name in --engines-dir)")
    parser.add_argument("--force", action="store_true",
                        help="recalibrate (the ranges cache is not read) and quantise again")
    parser.add_argument("--evaluate", action="store_true",
                        help="then report COCO mAP of FP32 and INT8 (ONNX Runtime) on --coco-dir's annotations")
    parser.set_defaults(func=run)
    return parser


def run(args: argparse.Namespace) -> int:
    from aeb_app.inference.build.quantize import QuantizeConfig, quantize_model
    from aeb_app.model.registry import load_model

    loaded = load_model(args.model, weights=args.weights)
    config = QuantizeConfig(num_images=args.num_images, seed=args.seed, method=args.method,
                            exclude_first_conv=args.exclude_first_conv)
    path = quantize_model(loaded, args.coco_dir, engines_dir=args.engines_dir, config=config, out=args.out,
                          force=args.force)
    print(path)
    if args.evaluate:
        print(json.dumps(evaluate_int8(loaded, args.coco_dir, path, args.engines_dir, config), indent=2))
    return 0


def evaluate_int8(loaded, coco_dir: Path, qdq_path: Path, engines_dir: Path, config) -> dict:
    """COCO mAP of fp32_ort and int8_ort on all images and on the held-out (non-calibration) ones."""
    from aeb_app.bench.coco_eval import evaluate_detector, find_annotations, held_out_annotations
    from aeb_app.inference.build.calibration import select_images
    from aeb_app.inference.registry import create

    annotations = find_annotations(Path(coco_dir))
    calib_names = {p.name for p in select_images(coco_dir, config.num_images, config.seed)}
    report: dict = {"model": loaded.spec.name, "qdq_model": str(qdq_path), "calibration": config.tag}
    with tempfile.TemporaryDirectory(prefix="aeb-heldout-") as tmp:
        held_out = held_out_annotations(annotations, calib_names, Path(tmp) / "held_out.json")
        for mode, extra in (("fp32_ort", {}), ("int8_ort", {"onnx_path": qdq_path})):
            with create(loaded, mode, device="cpu", engines_dir=engines_dir, **extra) as det:
                for subset, ann in (("all", annotations), ("held_out", held_out)):
                    res = evaluate_detector(det, Path(coco_dir), annotations=ann)
                    report[f"{mode}_{subset}"] = {k: round(res[k], 4) for k in ("map", "map50")}
                    report[f"num_images_{subset}"] = res["num_images"]
    for subset in ("all", "held_out"):
        delta = report[f"int8_ort_{subset}"]["map"] - report[f"fp32_ort_{subset}"]["map"]
        report[f"delta_map_points_{subset}"] = round(100 * delta, 2)
    return report
