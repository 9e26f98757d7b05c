"""``aeb-app export-onnx``: the detector (with in-graph decoding) as ONNX, cached in the user cache."""

from __future__ import annotations

import argparse

from aeb_app import defaults
from aeb_app.cli import argtypes as at


def add_parser(subparsers) -> argparse.ArgumentParser:
    parser = subparsers.add_parser("export-onnx", help="export a model (with box decoding) to ONNX")
    parser.add_argument("--model", required=True, help="ssd_mobilenet_v1 or ssd300_resnet50")
    parser.add_argument("--weights", default="auto", help="auto (asset), random, or a file")
    parser.add_argument("--out", type=at.writable_output(".onnx"),
                        help="output file (default: cache name in --engines-dir)")
    parser.add_argument("--engines-dir", type=at.cache_dir, default=defaults.engines_dir())
    parser.add_argument("--force", action="store_true", help="export even when a valid cached file exists")
    parser.set_defaults(func=run)
    return parser


def run(args: argparse.Namespace) -> int:
    from aeb_app.inference.build.export import export_onnx
    from aeb_app.model.registry import load_model

    loaded = load_model(args.model, weights=args.weights)
    print(export_onnx(loaded, engines_dir=args.engines_dir, out=args.out, force=args.force))
    return 0
