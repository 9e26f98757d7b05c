"""Road geometry (pure): BEV homography, pixel->metre scale, calibration files.

Typical use::

    cal = load_calibration("calibration/solidWhiteRight.yaml")
    lateral_ahead_m = cal.image_to_metric(detections.ground_points_px)   # (n, 2)
"""

from __future__ import annotations

from aeb_app.geometry.calibration import SCHEMA_VERSION, Calibration, load_calibration, save_calibration
from aeb_app.geometry.construct import calibration_from_intrinsics, calibration_from_reference_points
from aeb_app.geometry.homography import BirdsEyeView, project_points, validate_quad
from aeb_app.geometry.scale import ReferencePair, ScaleFit, fit_scale, scale_from_three_points

__all__ = [
    "SCHEMA_VERSION", "Calibration", "load_calibration", "save_calibration",
    "calibration_from_intrinsics", "calibration_from_reference_points",
    "BirdsEyeView", "project_points", "validate_quad",
    "ReferencePair", "ScaleFit", "fit_scale", "scale_from_three_points",
]
