"""``aeb-app build-engine``: TensorRT engine (+ JSON sidecar) from the model's ONNX.

Fails with one line when TensorRT is not installed (how to install it is in the message).
"""

from __future__ import annotations

import argparse
from pathlib import Path

from aeb_app import defaults
from aeb_app.cli import argtypes as at
from aeb_app.cli.argtypes import positive_int


def add_parser(subparsers) -> argparse.ArgumentParser:
    parser = subparsers.add_parser("build-engine", help="build a TensorRT engine with a batch profile")
    parser.add_argument("--model", required=True, help="ssd_mobilenet_v1 or ssd300_resnet50")
    parser.add_argument("--weights", default="auto", help="auto (asset), random, or a file")
    parser.add_argument("--precision", required=True, choices=("fp32", "fp16", "int8"))
    parser.add_argument("--min-batch", type=positive_int, default=1)
    parser.add_argument("--opt-batch", type=positive_int, default=16)
    parser.add_argument("--max-batch", type=positive_int, default=64)
    parser.add_argument("--int8-method", choices=("qdq", "calibrator"), default="qdq",
                        help="qdq: explicit Q/DQ ONNX (TensorRT 10.1+/11); calibrator: legacy entropy calibrator (10)")
    parser.add_argument("--converter", choices=("onnx", "torch2trt"), default="onnx")
    parser.add_argument("--coco-dir", type=at.existing_dir, help="COCO val2017 for INT8 calibration")
    parser.add_argument("--num-images", type=positive_int, default=200)
    parser.add_argument("--seed", type=at.non_negative_int, default=0)
    parser.add_argument("--workspace-gib", type=at.positive_float, default=8.0,
                        help="builder workspace pool limit (GiB)")
    parser.add_argument("--engines-dir", type=at.cache_dir, default=defaults.engines_dir())
    parser.add_argument("--rebuild", action="store_true", help="build even when a valid engine exists")
    parser.set_defaults(func=run)
    return parser


def run(args: argparse.Namespace) -> int:
    from aeb_app.inference.engine_cache import Profile
    from aeb_app.inference.tensorrt_backend import import_trt

    try:
        profile = Profile(args.min_batch, args.opt_batch, args.max_batch)
    except ValueError as exc:
        from aeb_app.errors import ConfigError

        raise ConfigError(str(exc)) from exc
    import_trt()  # fail fast, before loading or exporting anything
    from aeb_app.model.registry import load_model

    loaded = load_model(args.model, weights=args.weights)
    if args.converter == "torch2trt":
        from aeb_app.inference.torch2trt_backend import build_engine_torch2trt

        path = build_engine_torch2trt(loaded, precision=args.precision, profile=profile, engines_dir=args.engines_dir)
    else:
        from aeb_app.inference.tensorrt_backend import build_engine

        path = build_engine(loaded, precision=args.precision, profile=profile, engines_dir=args.engines_dir,
                            int8_method=args.int8_method, coco_dir=args.coco_dir, num_images=args.num_images,
                            seed=args.seed, rebuild=args.rebuild, workspace_gib=args.workspace_gib)
    print(path)
    return 0
