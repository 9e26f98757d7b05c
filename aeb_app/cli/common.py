"""Argument helpers shared by several commands."""

from __future__ import annotations

import argparse

from aeb_app.cli import argtypes as at
from aeb_app.names import AUTO, MODE_NAMES, MODEL_NAMES


def add_model_args(parser: argparse.ArgumentParser, *, default_mode: str = "auto") -> None:
    """``--model``, ``--weights``, ``--mode``, ``--fallback``, ``--device``."""
    from aeb_app.defaults import CPU_FALLBACK, GPU_FALLBACK

    parser.add_argument("--model", default="ssd_mobilenet_v1", choices=MODEL_NAMES)
    parser.add_argument("--weights", default="auto",
                        help="'auto' (asset mirror/cache), 'random' (ssd300 speed work only) or a file")
    parser.add_argument("--mode", default=default_mode, choices=[AUTO, *MODE_NAMES],
                        help="backend+precision; 'auto' tries --fallback in order")
    parser.add_argument("--fallback", default=None,
                        help="comma-separated modes tried in order when --mode auto "
                             f"(default: {','.join(CPU_FALLBACK)} on a CPU, {','.join(GPU_FALLBACK)} with a GPU)")
    parser.add_argument("--device", default=None, type=at.device, help="cpu, cuda or cuda:N (default: cuda if present)")


def make_detector(args: argparse.Namespace):
    """Create (not activate) the detector the arguments ask for, through the one front door."""
    from aeb_app.stream import create_detector

    fallback = None if args.fallback is None else tuple(m.strip() for m in args.fallback.split(",") if m.strip())
    return create_detector(model=args.model, weights=args.weights, mode=args.mode, fallback=fallback,
                           device=args.device)


def add_tiles_arg(parser: argparse.ArgumentParser) -> None:
    """``--no-tiles``: every frame whole, squeezed into the network's square input (see aeb_app.model.tiling)."""
    parser.add_argument("--no-tiles", action="store_true",
                        help="do not slice frames wider than 2:1 (e.g. KITTI's 1242x375) into overlapping tiles "
                             "for the network: squeeze each whole frame (faster, misses more small objects)")


def tiling_of(args: argparse.Namespace):
    """The :class:`~aeb_app.model.tiling.TileConfig` that ``--no-tiles`` asks for."""
    from aeb_app.model.tiling import NO_TILING, TileConfig

    return NO_TILING if getattr(args, "no_tiles", False) else TileConfig()
