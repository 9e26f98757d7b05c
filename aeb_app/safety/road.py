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

import functools
import math
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from aeb_app.errors import CalibrationError
from aeb_app.geometry.calibration import Calibration
from aeb_app.geometry.construct import horizon_row_px
from aeb_app.safety.floats import columns, divide

__all__ = ["RoadGeometry"]


@dataclass(frozen=True)
class _Coefficients:
    """A road calibration's maps as plain floats.

    Attributes:
        lateral: first row of the image -> road homography.
        ahead: its second row.
        w: its third row (the projective scale).
        centre_column: ``(e, f, h, i)``: ahead at the image centre column and row ``r`` is
            ``(e r + f) / (h r + i)``.
        centre_line: ``(b, c, h, i)``: the image column of the ego centre line at range ``a`` is
            ``(b a + c) / (h a + i)`` (from the road -> image homography).
    """

    lateral: tuple[float, float, float]
    ahead: tuple[float, float, float]
    w: tuple[float, float, float]
    centre_column: tuple[float, float, float, float]
    centre_line: tuple[float, float, float, float]

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

    @functools.cached_property
    def setback_m(self) -> float:
        """Distance from the camera to the range origin, metres (k0 / k1)."""
        return self.k0_m_per_px / self.k1_per_px

    @functools.cached_property
    def _coefficients(self) -> _Coefficients:
        """The homographies' entries as plain floats (the per-frame maps below are a few array operations each)."""
        (a, b, c), (d, e, f), (g, h, i) = self.matrix.tolist()
        cx = self.calibration.image_size_wh[0] / 2.0
        inv = self.calibration.metric_to_image_matrix()
        return _Coefficients((a, b, c), (d, e, f), (g, h, i), (e, d * cx + f, h, g * cx + i),
                             (float(inv[0, 1]), float(inv[0, 2]), float(inv[2, 1]), float(inv[2, 2])))

    def ground_metric(self, points_px: npt.ArrayLike) -> npt.NDArray[np.float64]:
        """(n, 2) image points -> (n, 2) ``(lateral_m, ahead_m)``; NaN rows at or above the horizon."""
        pts = np.asarray(points_px, np.float64).reshape(-1, 2)
        x, y = pts[:, 0], pts[:, 1]
        c = self._coefficients
        out = np.empty_like(pts)
        with np.errstate(divide="ignore", invalid="ignore"):
            w = c.w[0] * x + c.w[1] * y + c.w[2]
            out[:, 0] = (c.lateral[0] * x + c.lateral[1] * y + c.lateral[2]) / w
            out[:, 1] = (c.ahead[0] * x + c.ahead[1] * y + c.ahead[2]) / w
        out[y <= self.horizon_row_px] = np.nan
        return out

    def ground_ahead_m(self, x_px: npt.ArrayLike, y_px: npt.ArrayLike) -> npt.NDArray[np.float64]:
        """(n,) ``ahead_m`` of :meth:`ground_metric` alone, for columns ``x_px`` and rows ``y_px`` (NaN at/above the
        horizon). A loop over plain floats: a frame's few boxes cost less so than in array operations."""
        return np.array([self.ground_ahead_at(x, y) for x, y in zip(*columns(x_px, y_px))], np.float64)

    def ground_ahead_at(self, x_px: float, y_px: float) -> float:
        """:meth:`ground_ahead_m` of one point (plain floats)."""
        if y_px <= self.horizon_row_px:
            return math.nan
        (a0, a1, a2), (w0, w1, w2) = self._coefficients.ahead, self._coefficients.w
        return divide(a0 * x_px + a1 * y_px + a2, w0 * x_px + w1 * y_px + w2)

    def range_per_px(self, row_px: npt.ArrayLike) -> npt.NDArray[np.float64]:
        """|d ahead / d row| at image rows (metres per pixel of row error); inf at/above the horizon (plain floats)."""
        rows = np.asarray(row_px, np.float64)
        out = [self.range_per_px_at(r) for r in rows.reshape(-1).tolist()]
        return np.array(out, np.float64).reshape(rows.shape)

    def range_per_px_at(self, row_px: float) -> float:
        """:meth:`range_per_px` of one row (a float)."""
        if not row_px > self.horizon_row_px + 1.0:
            return math.inf
        e, f, h, i = self._coefficients.centre_column
        r = row_px
        return abs(divide(e * r + f, h * r + i) - divide(e * (r + 1.0) + f, h * (r + 1.0) + i))

    def lateral_scale_m_per_px(self, ahead_m: npt.ArrayLike) -> npt.NDArray[np.float64]:
        """Lateral metres per image pixel on the road at range ``ahead_m`` (a float for a float: the same value)."""
        if isinstance(ahead_m, float):
            return self.k0_m_per_px + self.k1_per_px * ahead_m
        return self.k0_m_per_px + self.k1_per_px * np.asarray(ahead_m, np.float64)

    def range_from_width(self, width_px: npt.ArrayLike, width_m: npt.ArrayLike) -> npt.NDArray[np.float64]:
        """Range (m) at which an object ``width_m`` wide spans ``width_px`` pixels; NaN for width_px <= 0."""
        w = np.asarray(width_px, np.float64)
        with np.errstate(divide="ignore", invalid="ignore"):
            return np.where(w > 0, (np.asarray(width_m, np.float64) / w - self.k0_m_per_px) / self.k1_per_px, np.nan)

    def lateral_at(self, x_px: npt.ArrayLike, ahead_m: npt.ArrayLike) -> npt.NDArray[np.float64]:
        """Lateral offset (m) of image column ``x_px`` at range ``ahead_m`` (for a range not from the ground row)."""
        return self.laterals_at((x_px,), ahead_m)[0]

    def laterals_at(self, columns_px: tuple[npt.ArrayLike, ...], ahead_m: npt.ArrayLike
                    ) -> tuple[npt.NDArray[np.float64], ...]:
        """:meth:`lateral_at` for several image columns (e.g. both box edges) at the same ranges: the centre
        line is projected once for all of them (NaN where the range is not finite or behind the camera)."""
        ahead, *cols = columns(ahead_m, *columns_px)
        centres, scales = self.centre_line_at(ahead)
        return tuple(np.array([(x - c) * k for x, c, k in zip(col, centres, scales)], np.float64) for col in cols)

    def centre_line_at(self, ahead_m: list[float]) -> tuple[list[float], list[float]]:
        """At each range (a list of floats): the image column of the ego centre line, and the lateral metres
        per image pixel (NaN where the range is not finite or behind the camera). A column ``x`` then lies
        ``(x - centre) * scale`` metres right of the centre line. Plain floats: the same values as the array
        form, at a fraction of its cost for a frame's few boxes."""
        b, c, h, i = self._coefficients.centre_line
        k0, k1, behind = self.k0_m_per_px, self.k1_per_px, -self.setback_m
        centres = [divide(b * a + c, h * a + i) for a in ahead_m]
        scales = [k0 + k1 * a if (math.isfinite(a) and a > behind) else math.nan for a in ahead_m]
        return centres, scales

    def centre_line_one(self, ahead_m: float) -> tuple[float, float]:
        """:meth:`centre_line_at` of one range: (centre column, lateral scale)."""
        b, c, h, i = self._coefficients.centre_line
        scale = self.k0_m_per_px + self.k1_per_px * ahead_m if (math.isfinite(ahead_m) and ahead_m > -self.setback_m) \
            else math.nan
        return divide(b * ahead_m + c, h * ahead_m + i), scale
