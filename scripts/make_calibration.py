#!/usr/bin/env python3
"""Reproduce ``calibration/solidWhiteRight.yaml`` from the pixel points picked on the sample footage.

The points were picked on frame 0 of ``videos/udacity/solidWhiteRight.mp4`` (960x540) from the data
mirror: the ego lane is bounded by a dashed white line on the left and a solid white line on the
right. A straight line was fitted to the white paint of each lane line (rows 325-540); the four road
points are where those lines cross image rows 345 and 520. The reference points are the ends of the
dashes on the left line, read on the BEV-warped frame 0 and mapped back to image pixels:

* across the road: left line and right line on row 520 -> 3.7 m (US lane width);
* along the road: far end (and near end) of one dash to the same end of the next dash -> 12.19 m
  (3.05 m dash + 9.14 m gap), for four consecutive dashes, fitted by least squares.

``origin_ahead_m`` is an estimate: the camera height from the lane geometry is about 1.25 m, the
bottom image row is about 4.9 m ahead of the camera, and a windscreen camera sits about 1.5 m
behind the front bumper, giving 3.4 m.

Usage: ``python scripts/make_calibration.py [OUT.yaml]`` (default ``calibration/solidWhiteRight.yaml``).
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout without installing

from aeb_app.geometry import BirdsEyeView, Calibration, ReferencePair, save_calibration  # noqa: E402

IMAGE_SIZE = (960, 540)
#: TL, TR, BR, BL: left/right ego-lane lines at image rows 345 and 520.
SOURCE_POINTS_PX = [(422.4, 345.0), (546.1, 345.0), (828.4, 520.0), (185.7, 520.0)]
#: A 74 px (3.7 m at 0.05 m/px) wide lane rectangle in a 300x1400 BEV (15 m wide, ~70 m deep).
BEV_SIZE = (300, 1400)
BEV_POINTS_PX = [(113.0, 900.0), (187.0, 900.0), (187.0, 1340.0), (113.0, 1340.0)]
LANE_WIDTH_M = 3.7
DASH_PERIOD_M = 3.05 + 9.14
#: Image pixels of the left-line dash ends on frame 0, nearest dash first.
DASH_FAR_ENDS_PX = [(307.0, 430.3), (405.8, 357.3), (432.4, 337.6), (444.0, 329.0)]
DASH_NEAR_ENDS_PX = [(193.9, 514.0), (389.4, 369.4), (425.6, 342.6), (440.7, 331.5)]
ACROSS_PX = [(185.7, 520.0), (828.4, 520.0)]
ORIGIN_PX = (480.0, 540.0)
ORIGIN_AHEAD_M = 3.4
NOTES = (
    "Udacity CarND solidWhiteRight dashcam, 960x540 25 fps. Points picked on frame 0 (see "
    "scripts/make_calibration.py): ego-lane lines at rows 345/520; scale from lane width 3.7 m and "
    "left-line dash period 12.19 m (least squares). origin_ahead_m estimated (camera ~1.25 m high, "
    "~1.5 m behind the bumper)."
)


def build() -> Calibration:
    """The calibration from the constants above, through the normal 4-point + reference-pair path."""
    view = BirdsEyeView.from_points(
        image_points_px=SOURCE_POINTS_PX, bev_points_px=BEV_POINTS_PX,
        bev_size_wh=BEV_SIZE, image_size_wh=IMAGE_SIZE,
    )
    across = view.to_bev(ACROSS_PX)
    pairs = [ReferencePair(tuple(across[0]), tuple(across[1]), LANE_WIDTH_M, "lane width")]
    for ends, label in ((DASH_FAR_ENDS_PX, "far"), (DASH_NEAR_ENDS_PX, "near")):
        bev = view.to_bev(ends)
        for a, b in zip(bev[:-1], bev[1:]):
            pairs.append(ReferencePair(tuple(a), tuple(b), DASH_PERIOD_M, f"dash period ({label} ends)"))
    return Calibration.from_points(
        image_size_wh=IMAGE_SIZE, source_points_px=SOURCE_POINTS_PX, bev_points_px=BEV_POINTS_PX,
        bev_size_wh=BEV_SIZE, reference_pairs=pairs, origin_px=ORIGIN_PX,
        origin_ahead_m=ORIGIN_AHEAD_M, camera_notes=NOTES,
    )


def main(argv: list[str]) -> int:
    import argparse

    default = Path(__file__).resolve().parents[1] / "calibration" / "solidWhiteRight.yaml"
    parser = argparse.ArgumentParser(description="Rebuild the sample footage's calibration from its picked points "
                                                 "(for another camera use 'aeb-app calibrate').")
    parser.add_argument("out", nargs="?", type=Path, default=default, help="YAML to write (default: %(default)s)")
    args = parser.parse_args(argv)
    if args.out.suffix.lower() not in (".yaml", ".yml"):
        parser.error(f"{args.out}: the calibration file must end in .yaml or .yml")
    cal = build()
    save_calibration(cal, args.out)  # atomic
    print(f"wrote {args.out}: k_x={cal.k_x_m_per_px:.5f} k_y={cal.k_y_m_per_px:.5f} m/px, "
          f"residual {cal.fit_residual_m:.3f} m")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
