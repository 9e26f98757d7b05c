"""``aeb-app assets list|fetch``: what data is present, and verified downloads."""

from __future__ import annotations

import argparse


def add_parser(sub: argparse._SubParsersAction) -> argparse.ArgumentParser:
    p = sub.add_parser("assets", help="list or fetch model weights, sample video and COCO images")
    action = p.add_subparsers(dest="assets_command", required=True, metavar="ACTION")
    action.add_parser("list", help="show each asset, how many of its files are present, and where")
    fetch = action.add_parser("fetch", help="download an asset (mirror first), verify it, save it atomically")
    fetch.add_argument("names", nargs="+", metavar="NAME")
    fetch.add_argument("--no-progress", action="store_true")
    p.set_defaults(func=run)
    return p


def run(args: argparse.Namespace) -> int:
    from aeb_app import assets

    if args.assets_command == "list":
        print(f"mirror: {assets.mirror_dir() or '(none; set ' + assets.MIRROR_ENV + ')'}")
        print(f"cache:  {assets.cache_dir()}")
        print(f"{'asset':<22}{'files':>10}  where")
        for name, present, total, where in assets.status():
            print(f"{name:<22}{present:>5}/{total:<4}  {where}")
        return 0
    for name in args.names:
        paths = assets.fetch(name, progress=not args.no_progress)
        print(f"{name}: {len(paths)} file(s) ready")
    return 0
