"""Use a calibration on frames of another resolution with the same aspect ratio (pure).

The homography's image-side points and the distance origin scale with the image; the bird's-eye
view, its reference pairs and hence k_x/k_y do not change. A different aspect ratio means another
crop or another camera: that is refused, since no rescaling can make the geometry right.
"""

from __future__ import annotations

import dataclasses

import numpy as np

from aeb_app.errors import CalibrationError
from aeb_app.geometry.calibration import Calibration
from aeb_app.geometry.homography import BirdsEyeView

__all__ = ["ASPECT_TOLERANCE", "rescale_calibration"]

#: Relative difference of width/height ratios still called "the same aspect ratio" (1280x720 vs 1920x1088).
ASPECT_TOLERANCE = 0.01


def rescale_calibration(calibration: Calibration, size_wh: tuple[int, int]) -> Calibration:
    """``calibration`` for frames of ``size_wh`` (returned unchanged when the size already matches).

    Raises:
        CalibrationError: another aspect ratio (both sizes named).
    """
    cw, ch = calibration.image_size_wh
    w, h = int(size_wh[0]), int(size_wh[1])
    if (cw, ch) == (w, h):
        return calibration
    if w <= 0 or h <= 0 or abs((w / h) / (cw / ch) - 1.0) > ASPECT_TOLERANCE:
        raise CalibrationError(f"calibration is for {cw}x{ch} images, the video is {w}x{h} "
                               "(another aspect ratio: calibrate this camera)")
    sx, sy = w / cw, h / ch
    scale = np.array([sx, sy])
    view = calibration.view
    new_view = BirdsEyeView.from_points(image_points_px=view.image_points_px * scale,
                                        bev_points_px=view.bev_points_px, bev_size_wh=view.bev_size_wh,
                                        image_size_wh=(w, h))
    ox, oy = calibration.origin_px
    return dataclasses.replace(calibration, image_size_wh=(w, h), view=new_view, origin_px=(ox * sx, oy * sy))
