"""Argument helpers shared by several commands."""

from __future__ import annotations

import argparse

from aeb_app.cli import argtypes as at
from aeb_app.model.registry import MODEL_NAMES


def add_model_args(parser: argparse.ArgumentParser, *, default_mode: str = "auto") -> None:
    """``--model``, ``--weights``, ``--mode``, ``--fallback``, ``--device``."""
    from aeb_app.inference.registry import DEFAULT_FALLBACK, MODES

    parser.add_argument("--model", default="ssd_mobilenet_v1", choices=MODEL_NAMES)
    parser.add_argument("--weights", default="auto",
                        help="'auto' (asset mirror/cache), 'random' (ssd300 speed work only) or a file")
    parser.add_argument("--mode", default=default_mode, choices=["auto", *MODES],
                        help="backend+precision; 'auto' tries --fallback in order")
    parser.add_argument("--fallback", default=",".join(DEFAULT_FALLBACK),
                        help="comma-separated modes tried in order when --mode auto (default: %(default)s)")
    parser.add_argument("--device", default=None, type=at.device, help="cpu, cuda or cuda:N (default: cuda if present)")


def make_detector(args: argparse.Namespace):
    """Load the model and create (not activate) the detector the arguments ask for."""
    from aeb_app.inference.registry import create, create_with_fallback
    from aeb_app.model.registry import load_model

    loaded = load_model(args.model, args.weights)
    if args.mode == "auto":
        return create_with_fallback(loaded, [m.strip() for m in args.fallback.split(",") if m.strip()],
                                    device=args.device)
    return create(loaded, args.mode, device=args.device)
