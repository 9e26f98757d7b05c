"""``aeb-app build-engine``: TensorRT engine (+ JSON sidecar) from the model's ONNX.

Fails with one line when TensorRT is not installed (how to install it is in the message).
``--check-only`` needs no TensorRT: it exports (or, for INT8 Q/DQ, quantises) the ONNX the
build would parse, or takes ``--onnx FILE``, and prints the verdict of
:mod:`aeb_app.inference.build.trt_compat` (exit 0 compatible, 1 not).
"""

from __future__ import annotations

import argparse

from aeb_app import defaults
from aeb_app.cli import argtypes as at
from aeb_app.cli.argtypes import positive_int


def add_parser(subparsers) -> argparse.ArgumentParser:
    parser = subparsers.add_parser("build-engine", help="build a TensorRT engine with a batch profile")
    parser.add_argument("--model", help="ssd_mobilenet_v1 or ssd300_resnet50 (required unless --check-only --onnx)")
    parser.add_argument("--weights", default="auto", help="auto (asset), random, or a file")
    parser.add_argument("--precision", choices=("fp32", "fp16", "int8"), help="required unless --check-only --onnx")
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
    parser.add_argument("--rebuild", action="store_true",
                        help="build even when a valid engine exists; recalibrate without reading the calibration cache")
    parser.add_argument("--check-only", action="store_true",
                        help="no build, no TensorRT needed: print whether TensorRT's ONNX parser would accept the ONNX")
    parser.add_argument("--onnx", type=at.existing_file, help="with --check-only: check this ONNX file instead of the model's")
    parser.set_defaults(func=run)
    return parser


def run(args: argparse.Namespace) -> int:
    from aeb_app.errors import ConfigError
    from aeb_app.inference.artifacts import Profile
    from aeb_app.inference.trt_api import import_trt

    if args.onnx is not None and not args.check_only:
        raise ConfigError("--onnx is only used with --check-only")
    if args.onnx is None and (args.model is None or args.precision is None):
        raise ConfigError("--model and --precision are required (or --check-only --onnx FILE)")
    try:
        profile = Profile(args.min_batch, args.opt_batch, args.max_batch)
    except ValueError as exc:
        raise ConfigError(str(exc)) from exc
    if args.check_only:
        return check_only(args)
    import_trt()  # fail fast, before loading or exporting anything
    from aeb_app.model.registry import load_model

    loaded = load_model(args.model, weights=args.weights)
    if args.converter == "torch2trt":
        from aeb_app.inference.build.torch2trt import build_engine_torch2trt

        path = build_engine_torch2trt(loaded, precision=args.precision, profile=profile, engines_dir=args.engines_dir)
    else:
        from aeb_app.inference.build.trt_build import build_engine

        path = build_engine(loaded, precision=args.precision, profile=profile, engines_dir=args.engines_dir,
                            int8_method=args.int8_method, coco_dir=args.coco_dir, num_images=args.num_images,
                            seed=args.seed, rebuild=args.rebuild, workspace_gib=args.workspace_gib)
    print(path)
    return 0


def check_only(args: argparse.Namespace) -> int:
    """Print the TensorRT-compatibility verdict of the ONNX a build would parse; 0 compatible, 1 not."""
    from aeb_app.inference.build.trt_compat import check_file

    if args.converter == "torch2trt" and args.onnx is None:
        return _check_torch2trt(args)
    path = args.onnx
    if path is None:
        from aeb_app.model.registry import load_model

        loaded = load_model(args.model, weights=args.weights)
        if args.precision == "int8" and args.int8_method == "qdq":
            from aeb_app.inference.build.trt_build import source_onnx

            path = source_onnx(loaded, args.engines_dir, "qdq", args.coco_dir, args.num_images, args.seed)
        else:
            from aeb_app.inference.build.export import export_onnx

            path = export_onnx(loaded, engines_dir=args.engines_dir)
    elif not path.is_file():
        from aeb_app.errors import InputError

        raise InputError(f"{path}: ONNX file not found")
    report = check_file(path)
    print(report.verdict())
    return 0 if report.ok else 1


def _check_torch2trt(args: argparse.Namespace) -> int:
    """The torch2trt preflight (converter coverage, no removed TensorRT methods) as a verdict line."""
    import torch

    from aeb_app.errors import EngineError
    from aeb_app.inference.build.torch2trt import WRITTEN_FOR, preflight
    from aeb_app.model.registry import DetectionNet, load_model

    loaded = load_model(args.model, weights=args.weights)
    try:
        preflight(DetectionNet(loaded.network, loaded.spec).eval(), torch.zeros(2, 3, *loaded.spec.input_hw))
    except EngineError as exc:
        print(f"{loaded.spec.name}: {exc}")
        return 1
    print(f"{loaded.spec.name}: every call has a torch2trt converter using TensorRT 10 methods ({WRITTEN_FOR})")
    return 0
