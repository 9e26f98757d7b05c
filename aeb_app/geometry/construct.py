"""Build a road :class:`Calibration` without clicking: from camera intrinsics and mounting, or from the
seed's reference points (four road points + three points with known distances), as the GUI does.

Both write the same YAML as the calibration dialog (through :func:`save_calibration`): a homography
from four road points to the dialog's BEV rectangle, and reference pairs for the metre scale.

Camera model (pinhole, no roll): X right, Y down, Z forward; the camera is ``height_m`` above a flat
road and pitched down by ``pitch_deg``. A world point projects to
``u = cx + f X / zc``, ``v = cy + f yc / zc`` with ``yc = Y cos p - Z sin p``, ``zc = Y sin p + Z cos p``.
"""

from __future__ import annotations

import math
from typing import Sequence

import numpy as np
import numpy.typing as npt

from aeb_app.errors import CalibrationError
from aeb_app.geometry.calibration import Calibration
from aeb_app.geometry.homography import BirdsEyeView
from aeb_app.geometry.scale import ReferencePair

__all__ = ["BEV_SIZE", "BEV_RECT", "project_world", "ground_ahead_m", "horizon_row_px",
           "calibration_from_intrinsics", "calibration_from_reference_points"]

#: The BEV the four road points map to (the calibration dialog's and the shipped file's layout).
BEV_SIZE = (300, 1400)
BEV_RECT = ((113.0, 900.0), (187.0, 900.0), (187.0, 1340.0), (113.0, 1340.0))
#: Half the metric rectangle used for an intrinsics calibration (a 3.7 m lane), metres.
_HALF_WIDTH_M = 1.85


def project_world(points_m: npt.ArrayLike, *, focal_px: float, cx: float, cy: float,
                  pitch_rad: float) -> npt.NDArray[np.float64]:
    """(n, 3) camera-centred world points (X right, Y down, Z forward), metres -> (n, 2) pixels."""
    p = np.asarray(points_m, dtype=np.float64).reshape(-1, 3)
    c, s = math.cos(pitch_rad), math.sin(pitch_rad)
    yc = p[:, 1] * c - p[:, 2] * s
    zc = p[:, 1] * s + p[:, 2] * c
    return np.stack([cx + focal_px * p[:, 0] / zc, cy + focal_px * yc / zc], axis=1)


def ground_ahead_m(v_px: float, *, focal_px: float, cy: float, height_m: float, pitch_rad: float) -> float:
    """Distance ahead of the camera (m) of the road point seen at image row ``v_px`` (inf at/above the horizon)."""
    c, s = math.cos(pitch_rad), math.sin(pitch_rad)
    yc = (v_px - cy) / focal_px
    y_world, z_world = yc * c + s, -yc * s + c
    return height_m / y_world * z_world if y_world > 0 else math.inf


def horizon_row_px(calibration: Calibration, x_px: float | None = None) -> float:
    """Image row of the road plane's horizon at column ``x_px`` (default: the image centre)."""
    m = calibration.image_to_metric_matrix()
    x = calibration.image_size_wh[0] / 2.0 if x_px is None else x_px
    if abs(m[2, 1]) < 1e-12:
        return math.nan
    return float(-(m[2, 0] * x + m[2, 2]) / m[2, 1])


def _check_horizon(cal: Calibration) -> Calibration:
    w, h = cal.image_size_wh
    row = horizon_row_px(cal)
    if not (math.isfinite(row) and 0 <= row < h):
        raise CalibrationError(f"the horizon is at row {row:.1f}, outside the {w}x{h} image: check the pitch, "
                               "the points and the image size (ranges from it would be wrong)")
    return cal


def _check_intrinsics(w: float, h: float, *, focal_px: float, cx: float, cy: float, height_m: float,
                      pitch_deg: float, setback_m: float) -> None:
    """Raise CalibrationError naming the first non-positive / non-finite value or a horizon off the image."""
    for name, value in (("focal_px", focal_px), ("height_m", height_m), ("width", w), ("height", h)):
        if not (math.isfinite(value) and value > 0):
            raise CalibrationError(f"{name}: must be a positive number, got {value!r}")
    for name, value in (("cx", cx), ("cy", cy), ("pitch_deg", pitch_deg), ("setback_m", setback_m)):
        if not math.isfinite(value):
            raise CalibrationError(f"{name}: must be a finite number, got {value!r}")
    horizon = cy - focal_px * math.tan(math.radians(pitch_deg))
    if not 0 <= horizon < h - 2:
        raise CalibrationError(f"the horizon is at row {horizon:.1f}, outside the {w}x{h} image: check "
                               "--pitch-deg, --cy and --size")


def _road_rectangle_m(w: float, h: float, *, focal_px: float, cx: float, cy: float, height_m: float,
                      pitch_rad: float) -> tuple[float, float]:
    """(near, far) distances, metres, of a lane-wide road rectangle that the image shows whole."""
    kw = dict(focal_px=focal_px, cy=cy, height_m=height_m, pitch_rad=pitch_rad)
    horizon = cy - focal_px * math.tan(pitch_rad)
    bottom = ground_ahead_m(h - 1.0, **kw)
    margin = min(cx, w - cx) - 2.0
    if margin <= 0:
        raise CalibrationError(f"cx: {cx} is not inside the {w} px wide image")
    near = max(1.1 * bottom, focal_px * _HALF_WIDTH_M / margin, 1.0)
    far = min(3.0 * near, ground_ahead_m(horizon + 0.25 * (h - horizon), **kw))
    if not far > near * 1.2:
        raise CalibrationError("the image shows too little road for a calibration (check --pitch-deg and --size)")
    return near, far


def calibration_from_intrinsics(*, image_size_wh: tuple[int, int], focal_px: float, cx: float, cy: float,
                                height_m: float, pitch_deg: float, setback_m: float = 0.0,
                                camera_notes: str = "") -> Calibration:
    """A calibration from a pinhole camera's intrinsics and mounting (what datasets ship).

    A 3.7 m wide rectangle on the road (from just above the image bottom to about three times as far) is
    projected into the image and used exactly like four clicked points; its width and length are the
    reference distances. The distance origin is the road point under the bottom-centre pixel, at its
    distance from the camera minus ``setback_m`` (so ranges are from a point ``setback_m`` ahead of the
    camera, e.g. the front bumper; 0 measures from the camera).

    Args:
        image_size_wh: (width, height), pixels.
        focal_px: focal length, pixels.
        cx: principal point column, pixels.
        cy: principal point row, pixels.
        height_m: camera height above the road, metres.
        pitch_deg: downward pitch, degrees (0: optical axis parallel to the road).
        setback_m: how far the camera sits behind the distance origin, metres.
        camera_notes: free text.

    Raises:
        CalibrationError: a non-positive/NaN value, or a horizon outside the image.
    """
    w, h = image_size_wh
    _check_intrinsics(w, h, focal_px=focal_px, cx=cx, cy=cy, height_m=height_m, pitch_deg=pitch_deg,
                      setback_m=setback_m)
    pitch = math.radians(pitch_deg)
    near, far = _road_rectangle_m(w, h, focal_px=focal_px, cx=cx, cy=cy, height_m=height_m, pitch_rad=pitch)
    kw = dict(focal_px=focal_px, cy=cy, height_m=height_m, pitch_rad=pitch)
    corners = [(-_HALF_WIDTH_M, far), (_HALF_WIDTH_M, far), (_HALF_WIDTH_M, near), (-_HALF_WIDTH_M, near)]
    src = project_world([[x, height_m, z] for x, z in corners], focal_px=focal_px, cx=cx, cy=cy, pitch_rad=pitch)
    pairs = [ReferencePair(BEV_RECT[3], BEV_RECT[2], 2 * _HALF_WIDTH_M, "rectangle width (intrinsics)"),
             ReferencePair(BEV_RECT[3], BEV_RECT[0], far - near, "rectangle length (intrinsics)")]
    origin_ahead = ground_ahead_m(float(h), **kw) - setback_m
    notes = camera_notes or (f"from intrinsics: f={focal_px} px, c=({cx}, {cy}), height {height_m} m, "
                             f"pitch {pitch_deg} deg, setback {setback_m} m")
    return _check_horizon(Calibration.from_points(
        image_size_wh=(int(w), int(h)), source_points_px=src, bev_points_px=BEV_RECT, bev_size_wh=BEV_SIZE,
        reference_pairs=pairs, origin_ahead_m=origin_ahead, camera_notes=notes))


def calibration_from_reference_points(*, image_size_wh: tuple[int, int], quad_px: Sequence[Sequence[float]],
                                      points_px: Sequence[Sequence[float]], across_m: float, along_m: float,
                                      origin_ahead_m: float = 0.0, camera_notes: str = "") -> Calibration:
    """The seed's (and the calibration dialog's) method, without the dialog.

    Args:
        image_size_wh: (width, height), pixels.
        quad_px: four road points of a rectangle on the road: far-left, far-right, near-right, near-left.
        points_px: three road points A (origin), B (across the road from A), C (along the road from A).
        across_m: ground distance A-B, metres (e.g. a lane width).
        along_m: ground distance A-C, metres (e.g. a dash period).
        origin_ahead_m: distance from the ego front bumper to the road point under the bottom-centre pixel.
        camera_notes: free text.

    Raises:
        CalibrationError: degenerate points, bad distances, or a horizon outside the image.
    """
    w, h = image_size_wh
    view = BirdsEyeView.from_points(image_points_px=quad_px, bev_points_px=BEV_RECT, bev_size_wh=BEV_SIZE,
                                    image_size_wh=(w, h))
    pts = np.asarray(points_px, np.float64)
    if pts.shape != (3, 2):
        raise CalibrationError(f"points: expected three (x, y) points A, B, C, got {pts.tolist()}")
    try:
        a, b, c = (tuple(float(v) for v in p) for p in view.to_bev(pts))
    except ValueError as exc:
        raise CalibrationError(f"points: not on the road plane ({exc})") from exc
    pairs = [ReferencePair(a, b, across_m, "across (A-B)"), ReferencePair(a, c, along_m, "along (A-C)")]
    return _check_horizon(Calibration.from_points(
        image_size_wh=(int(w), int(h)), source_points_px=quad_px, bev_points_px=BEV_RECT, bev_size_wh=BEV_SIZE,
        reference_pairs=pairs, origin_ahead_m=origin_ahead_m,
        camera_notes=camera_notes or "from reference points (aeb-app calibrate)"))
