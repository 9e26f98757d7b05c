"""What a road calibration says about the camera: horizon row, range per row, metres per pixel across.

Everything here is derived from :class:`~aeb_app.geometry.Calibration` (its image -> road homography);
no extra camera parameters are needed. For a pinhole camera over a flat road with no roll, the
lateral scale on the road at a given distance is linear in that distance::

    k_x(ahead) = metres per image pixel across the road = (ahead + setback) / focal

(``setback`` being the camera's distance behind the distance origin, ``focal`` the focal length in
pixels, pitch folded in). :class:`RoadGeometry` fits that line to the homography once, so a box
width in pixels gives a range: ``ahead = (width_m / width_px - k0) / k1``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from aeb_app.errors import CalibrationError
from aeb_app.geometry.calibration import Calibration
from aeb_app.geometry.construct import horizon_row_px

__all__ = ["RoadGeometry"]

#: The lateral-scale line is fitted on rows from this many pixels below the horizon to the image bottom.
_FIT_START_BELOW_HORIZON_PX = 10.0


@dataclass(frozen=True)
class RoadGeometry:
    """Per-row road geometry of one calibration.

    Attributes:
        calibration: the calibration it was derived from.
        matrix: (3, 3) homography image pixels -> ``(lateral_m, ahead_m)``.
        horizon_row_px: image row of the horizon at the image centre column.
        k0_m_per_px: lateral metres per pixel at ``ahead_m = 0`` (intercept of the line).
        k1_per_px: increase of the lateral scale per metre of range (1 / focal length in pixels).
    """

    calibration: Calibration
    matrix: npt.NDArray[np.float64]
    horizon_row_px: float
    k0_m_per_px: float
    k1_per_px: float

    @classmethod
    def from_calibration(cls, calibration: Calibration) -> "RoadGeometry":
        """Derive the horizon and the lateral-scale line.

        Raises:
            CalibrationError: the horizon is outside the image (no road visible, or a homography that
                is not a forward camera over a road); the message gives the row.
        """
        m = calibration.image_to_metric_matrix()
        w, h = calibration.image_size_wh
        cx = w / 2.0
        horizon = horizon_row_px(calibration, cx)
        if not (math.isfinite(horizon) and 0.0 <= horizon < h - _FIT_START_BELOW_HORIZON_PX):
            raise CalibrationError(
                f"calibration: the horizon is at row {horizon:.1f}, outside the {w}x{h} image; "
                "ranges from this calibration would be wrong")
        rows = np.linspace(horizon + _FIT_START_BELOW_HORIZON_PX, h, 24)
        ahead = cls._ahead(m, cx, rows)
        k = np.abs(cls._lateral(m, cx + 1.0, rows) - cls._lateral(m, cx, rows))
        if not (np.isfinite(ahead).all() and (ahead[:-1] > ahead[1:]).all()):
            raise CalibrationError("calibration: range does not decrease down the image below the horizon")
        k1, k0 = np.polyfit(ahead, k, 1)
        if not k1 > 0:
            raise CalibrationError(f"calibration: lateral scale does not grow with range (slope {k1:.3g})")
        return cls(calibration, m, float(horizon), float(k0), float(k1))

    @staticmethod
    def _project(m: npt.NDArray[np.float64], x: npt.ArrayLike, y: npt.ArrayLike) -> npt.NDArray[np.float64]:
        x, y = np.broadcast_arrays(np.asarray(x, np.float64), np.asarray(y, np.float64))
        p = np.stack([x, y, np.ones_like(x)], axis=-1) @ m.T
        with np.errstate(divide="ignore", invalid="ignore"):
            return p[..., :2] / p[..., 2:3]

    @classmethod
    def _ahead(cls, m: npt.NDArray[np.float64], x: npt.ArrayLike, y: npt.ArrayLike) -> npt.NDArray[np.float64]:
        return cls._project(m, x, y)[..., 1]

    @classmethod
    def _lateral(cls, m: npt.NDArray[np.float64], x: npt.ArrayLike, y: npt.ArrayLike) -> npt.NDArray[np.float64]:
        return cls._project(m, x, y)[..., 0]

    @property
    def focal_px(self) -> float:
        """Effective focal length, pixels (1 / k1)."""
        return 1.0 / self.k1_per_px

    @property
    def setback_m(self) -> float:
        """Distance from the camera to the range origin, metres (k0 / k1)."""
        return self.k0_m_per_px / self.k1_per_px

    def ground_metric(self, points_px: npt.ArrayLike) -> npt.NDArray[np.float64]:
        """(n, 2) image points -> (n, 2) ``(lateral_m, ahead_m)``; NaN rows at or above the horizon."""
        pts = np.asarray(points_px, np.float64).reshape(-1, 2)
        out = self._project(self.matrix, pts[:, 0], pts[:, 1])
        above = pts[:, 1] <= self.horizon_row_px
        out[above] = np.nan
        return out

    def range_per_px(self, row_px: npt.ArrayLike) -> npt.NDArray[np.float64]:
        """|d ahead / d row| at image rows (metres per pixel of row error); inf at/above the horizon."""
        rows = np.asarray(row_px, np.float64)
        cx = self.calibration.image_size_wh[0] / 2.0
        a = self._ahead(self.matrix, cx, rows)
        b = self._ahead(self.matrix, cx, rows + 1.0)
        out = np.abs(a - b)
        return np.where(rows > self.horizon_row_px + 1.0, out, np.inf)

    def lateral_scale_m_per_px(self, ahead_m: npt.ArrayLike) -> npt.NDArray[np.float64]:
        """Lateral metres per image pixel on the road at range ``ahead_m``."""
        return self.k0_m_per_px + self.k1_per_px * np.asarray(ahead_m, np.float64)

    def range_from_width(self, width_px: npt.ArrayLike, width_m: npt.ArrayLike) -> npt.NDArray[np.float64]:
        """Range (m) at which an object ``width_m`` wide spans ``width_px`` pixels; NaN for width_px <= 0."""
        w = np.asarray(width_px, np.float64)
        with np.errstate(divide="ignore", invalid="ignore"):
            return np.where(w > 0, (np.asarray(width_m, np.float64) / w - self.k0_m_per_px) / self.k1_per_px, np.nan)

    def lateral_at(self, x_px: npt.ArrayLike, ahead_m: npt.ArrayLike) -> npt.NDArray[np.float64]:
        """Lateral offset (m) of image column ``x_px`` at range ``ahead_m`` (for a range not from the ground row)."""
        return self.laterals_at((x_px,), ahead_m)[0]

    def laterals_at(self, columns: tuple[npt.ArrayLike, ...], ahead_m: npt.ArrayLike
                    ) -> tuple[npt.NDArray[np.float64], ...]:
        """:meth:`lateral_at` for several image columns (e.g. both box edges) at the same ranges: the centre
        line is projected once for all of them (same arithmetic, about half the time for two columns)."""
        ahead = np.asarray(ahead_m, np.float64).reshape(-1)
        outs = tuple(np.full(ahead.shape, np.nan) for _ in columns)
        ok = np.isfinite(ahead) & (ahead > -self.setback_m)
        if ok.any():
            centre = self.calibration.metric_to_image(np.stack([np.zeros(ok.sum()), ahead[ok]], axis=1))
            scale = self.lateral_scale_m_per_px(ahead[ok])
            for x_px, out in zip(columns, outs):
                x = np.broadcast_to(np.asarray(x_px, np.float64).reshape(-1), ahead.shape)
                out[ok] = (x[ok] - centre[:, 0]) * scale
        return outs
