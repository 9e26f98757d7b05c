"""``aeb-app calibrate``: write a road calibration YAML without the GUI.

Two ways, the same file as the calibration dialog writes:

* from intrinsics and mounting (what datasets ship)::

    aeb-app calibrate --size 1242x375 --focal-px 721.5 --cx 609.6 --cy 172.9 --height-m 1.65 \\
        --pitch-deg 0 --out kitti.yaml

* from the seed's points: four road points of a rectangle (far-left, far-right, near-right,
  near-left) and three points A (origin), B (across from A), C (along from A) with their distances::

    aeb-app calibrate --size 960x540 --quad 422.4,345,546.1,345,828.4,520,185.7,520 \\
        --points 185.7,520,828.4,520,307,430.3 --distances 3.7,12.19 --out road.yaml

The file is written atomically; an existing file is only replaced with ``--force``, and never when it
is one of the inputs (``--image``). A horizon outside the image is an error, never a silent wrong range.
"""

from __future__ import annotations

import argparse
import math
from pathlib import Path

from aeb_app.errors import CalibrationError, InputError

__all__ = ["add_parser", "run"]


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser("calibrate", help="write a road calibration YAML from intrinsics or from points",
                              description="Write a road calibration (the same YAML as the GUI's dialog).")
    p.add_argument("--out", type=Path, required=True, help="calibration YAML to write (.yaml)")
    p.add_argument("--size", metavar="WxH", help="image size in pixels, e.g. 1242x375")
    p.add_argument("--image", type=Path, help="an image (or video) of the camera: its size is used")
    intr = p.add_argument_group("from intrinsics")
    intr.add_argument("--focal-px", type=float, help="focal length, pixels")
    intr.add_argument("--cx", type=float, help="principal point column, pixels (default: image centre)")
    intr.add_argument("--cy", type=float, help="principal point row, pixels (default: image centre)")
    intr.add_argument("--height-m", type=float, help="camera height above the road, metres")
    intr.add_argument("--pitch-deg", type=float, default=0.0, help="downward pitch, degrees (default 0)")
    intr.add_argument("--setback-m", type=float, default=0.0,
                      help="camera distance behind the front bumper, metres (default 0: ranges from the camera)")
    pts = p.add_argument_group("from points (the seed's method)")
    pts.add_argument("--quad", help="x,y of four road points: far-left, far-right, near-right, near-left")
    pts.add_argument("--points", help="x,y of A (origin), B (across from A), C (along from A)")
    pts.add_argument("--distances", help="A-B and A-C ground distances in metres, e.g. 3.7,12.19")
    pts.add_argument("--origin-ahead-m", type=float, default=0.0,
                     help="bumper to the road point under the bottom-centre pixel, metres (default 0)")
    p.add_argument("--notes", default="", help="free text stored as camera_notes")
    p.add_argument("--force", action="store_true", help="replace an existing --out file")
    p.set_defaults(func=run)


def _numbers(text: str | None, option: str, count: int) -> list[float]:
    try:
        values = [float(v) for v in (text or "").split(",") if v.strip()]
    except ValueError:
        raise InputError(f"{option}: expected {count} comma-separated numbers, got {text!r}") from None
    if len(values) != count or not all(math.isfinite(v) for v in values):
        raise InputError(f"{option}: expected {count} finite comma-separated numbers, got {text!r}")
    return values


def _size(args: argparse.Namespace) -> tuple[int, int]:
    if args.size:
        try:
            w, h = (int(v) for v in args.size.lower().split("x"))
        except ValueError:
            raise InputError(f"--size: expected WxH, e.g. 1242x375, got {args.size!r}") from None
        if w <= 0 or h <= 0:
            raise InputError(f"--size: width and height must be positive, got {args.size!r}")
        return w, h
    if args.image:
        import cv2

        image = cv2.imread(str(args.image))
        if image is None:
            cap = cv2.VideoCapture(str(args.image))
            ok, image = cap.read()
            cap.release()
            if not ok:
                raise InputError(f"--image {args.image}: cannot be read as an image or a video")
        return int(image.shape[1]), int(image.shape[0])
    raise InputError("give the image size with --size WxH or --image FILE")


def _check_out(args: argparse.Namespace) -> None:
    out = args.out
    if out.suffix.lower() not in (".yaml", ".yml"):
        raise InputError(f"--out {out}: the calibration file must end in .yaml")
    if args.image is not None and out.resolve() == args.image.resolve():
        raise InputError(f"--out {out}: refusing to overwrite the input --image")
    if out.exists() and not args.force:
        raise InputError(f"--out {out}: exists (use --force to replace it)")


def _build(args: argparse.Namespace, size: tuple[int, int]):
    from aeb_app.geometry import calibration_from_intrinsics, calibration_from_reference_points

    by_points = any(v is not None for v in (args.quad, args.points, args.distances))
    by_intrinsics = args.focal_px is not None or args.height_m is not None
    if by_points == by_intrinsics:
        raise InputError("give either --focal-px/--height-m (intrinsics) or --quad/--points/--distances (points)")
    if by_intrinsics:
        if args.focal_px is None or args.height_m is None:
            raise InputError("intrinsics need both --focal-px and --height-m")
        return calibration_from_intrinsics(
            image_size_wh=size, focal_px=args.focal_px, cx=size[0] / 2 if args.cx is None else args.cx,
            cy=size[1] / 2 if args.cy is None else args.cy, height_m=args.height_m, pitch_deg=args.pitch_deg,
            setback_m=args.setback_m, camera_notes=args.notes)
    quad = _numbers(args.quad, "--quad", 8)
    points = _numbers(args.points, "--points", 6)
    across, along = _numbers(args.distances, "--distances", 2)
    return calibration_from_reference_points(
        image_size_wh=size, quad_px=[quad[i:i + 2] for i in range(0, 8, 2)],
        points_px=[points[i:i + 2] for i in range(0, 6, 2)], across_m=across, along_m=along,
        origin_ahead_m=args.origin_ahead_m, camera_notes=args.notes)


def run(args: argparse.Namespace) -> int:
    from aeb_app.geometry import save_calibration
    from aeb_app.geometry.construct import horizon_row_px

    _check_out(args)
    size = _size(args)
    try:
        cal = _build(args, size)
    except CalibrationError as exc:
        raise CalibrationError(f"calibrate: {exc}") from exc
    save_calibration(cal, args.out)
    print(f"wrote {args.out}: {size[0]}x{size[1]}, horizon at row {horizon_row_px(cal):.1f}, "
          f"k_x={cal.k_x_m_per_px:.5f} k_y={cal.k_y_m_per_px:.5f} m/px, origin {cal.origin_ahead_m:.2f} m ahead")
    return 0
