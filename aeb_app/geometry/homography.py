"""Bird's-eye view (BEV) homography from four road points, forward and inverse.

The four source points are pixels of the camera image on a flat road that form a rectangle on the
ground (typically two points on each line of the ego lane, at two distances). They map to the four
corners of a rectangle in the BEV image, so lane lines become vertical and distances along each BEV
axis are proportional to metres (see :mod:`aeb_app.geometry.scale`).
"""

from __future__ import annotations

import itertools
import logging
from dataclasses import dataclass

import cv2
import numpy as np
import numpy.typing as npt

from aeb_app.errors import CalibrationError

__all__ = ["BirdsEyeView", "validate_quad", "project_points"]

log = logging.getLogger(__name__)

#: Minimum distance between any two of the four points, in pixels.
MIN_POINT_SEPARATION_PX = 2.0
#: Minimum |cross product| (twice a triangle area, px^2) for three of the points not to be collinear.
MIN_TRIANGLE_AREA2_PX2 = 50.0


def _cross(u: npt.NDArray[np.float64], v: npt.NDArray[np.float64]) -> float:
    """z of the 2-D cross product u x v."""
    return float(u[0] * v[1] - u[1] * v[0])


def _as_points(points: npt.ArrayLike, *, name: str, count: int | None = None) -> npt.NDArray[np.float64]:
    try:
        arr = np.asarray(points, dtype=np.float64)
    except (TypeError, ValueError) as exc:
        raise CalibrationError(f"{name}: not a list of (x, y) numbers: {points!r}") from exc
    if arr.ndim != 2 or arr.shape[1] != 2 or (count is not None and len(arr) != count):
        want = f"({count}, 2)" if count is not None else "(n, 2)"
        raise CalibrationError(f"{name}: expected shape {want}, got {arr.shape}")
    if not np.isfinite(arr).all():
        raise CalibrationError(f"{name}: contains NaN or infinite values: {arr.tolist()}")
    return arr


def validate_quad(
    points: npt.ArrayLike, *, name: str, size_wh: tuple[int, int] | None = None
) -> npt.NDArray[np.float64]:
    """Check four points for a homography: finite, inside the image, distinct, no three collinear, convex.

    Args:
        points: (4, 2) pixel coordinates, in order around the quadrilateral (e.g. TL, TR, BR, BL).
        name: field name used in error messages.
        size_wh: image (width, height); when given, points must lie inside ``[0, w] x [0, h]``.

    Returns:
        (4, 2) float64 copy of the points.

    Raises:
        CalibrationError: naming ``name`` and the problem.
    """
    pts = _as_points(points, name=name, count=4)
    if size_wh is not None:
        w, h = size_wh
        outside = (pts[:, 0] < 0) | (pts[:, 0] > w) | (pts[:, 1] < 0) | (pts[:, 1] > h)
        if outside.any():
            raise CalibrationError(f"{name}: point(s) {pts[outside].tolist()} outside the {w}x{h} image")
    for i in range(4):
        for j in range(i + 1, 4):
            if np.linalg.norm(pts[i] - pts[j]) < MIN_POINT_SEPARATION_PX:
                raise CalibrationError(f"{name}: points {i} and {j} are repeated ({pts[i].tolist()})")
    for a, b, c in itertools.combinations(pts, 3):
        if abs(_cross(b - a, c - a)) < MIN_TRIANGLE_AREA2_PX2:
            raise CalibrationError(f"{name}: three points are collinear: {[a.tolist(), b.tolist(), c.tolist()]}")
    crosses = [_cross(pts[(i + 1) % 4] - pts[i], pts[(i + 2) % 4] - pts[(i + 1) % 4]) for i in range(4)]
    if not (all(c > 0 for c in crosses) or all(c < 0 for c in crosses)):
        raise CalibrationError(f"{name}: points do not form a convex quadrilateral in order: {pts.tolist()}")
    return pts


def project_points(matrix: npt.NDArray[np.float64], points: npt.ArrayLike) -> npt.NDArray[np.float64]:
    """Apply a 3x3 homography to (n, 2) points; (0, 2) in, (0, 2) out.

    Raises:
        ValueError: if points are not (n, 2) finite numbers or land on the line at infinity.
    """
    pts = np.asarray(points, dtype=np.float64).reshape(-1, 2)
    if len(pts) == 0:
        return np.zeros((0, 2), np.float64)
    if not np.logical_and.reduce(np.isfinite(pts), axis=None):  # .all() without its Python wrapper
        raise ValueError(f"points contain NaN or infinite values: {pts.tolist()}")
    homog = np.ones((len(pts), 3))  # np.hstack([pts, ones]) filled in place: the same array, cheaper
    homog[:, :2] = pts
    homog = homog @ matrix.T
    w = homog[:, 2:3]
    if np.logical_or.reduce(np.abs(w) < 1e-12, axis=None):
        raise ValueError("a point maps to infinity (it lies on the horizon of the road plane)")
    return homog[:, :2] / w


def _scale(matrix: npt.NDArray[np.float64], points: npt.NDArray[np.float64]) -> npt.NDArray[np.float64]:
    """(n,) the homogeneous scale ``w`` of (n, 2) points under ``matrix``."""
    return points @ matrix[2, :2] + matrix[2, 2]


@dataclass(frozen=True)
class BirdsEyeView:
    """A road-plane homography: image pixels <-> bird's-eye-view pixels.

    Attributes:
        image_points_px: (4, 2) source points in the camera image.
        bev_points_px: (4, 2) where they land in the BEV image (a rectangle).
        bev_size_wh: (width, height) of the BEV image in pixels.
        matrix: (3, 3) image -> BEV homography.
        inverse: (3, 3) BEV -> image homography.
    """

    image_points_px: npt.NDArray[np.float64]
    bev_points_px: npt.NDArray[np.float64]
    bev_size_wh: tuple[int, int]
    matrix: npt.NDArray[np.float64]
    inverse: npt.NDArray[np.float64]

    @classmethod
    def from_points(
        cls,
        *,
        image_points_px: npt.ArrayLike,
        bev_points_px: npt.ArrayLike,
        bev_size_wh: tuple[int, int],
        image_size_wh: tuple[int, int] | None = None,
    ) -> "BirdsEyeView":
        """Build the homography with ``cv2.getPerspectiveTransform`` after validating both quads.

        Raises:
            CalibrationError: degenerate, repeated, collinear or out-of-image points.
        """
        src = validate_quad(image_points_px, name="source_points_px", size_wh=image_size_wh)
        dst = validate_quad(bev_points_px, name="bev_points_px")
        bw, bh = (int(v) for v in bev_size_wh)
        if bw <= 0 or bh <= 0:
            raise CalibrationError(f"bev_size: must be positive, got {bev_size_wh}")
        matrix = cv2.getPerspectiveTransform(src.astype(np.float32), dst.astype(np.float32)).astype(np.float64)
        det = float(np.linalg.det(matrix))
        if not np.isfinite(matrix).all() or abs(det) < 1e-12:
            raise CalibrationError(f"source_points_px: homography is singular (det={det:.3g})")
        return cls(src, dst, (bw, bh), matrix, np.linalg.inv(matrix).astype(np.float64))

    def to_bev(self, points_px: npt.ArrayLike) -> npt.NDArray[np.float64]:
        """(n, 2) image pixels -> (n, 2) BEV pixels. Empty input gives a (0, 2) array."""
        return project_points(self.matrix, points_px)

    def to_image(self, bev_points_px: npt.ArrayLike, *, visible_only: bool = False) -> npt.NDArray[np.float64]:
        """(n, 2) BEV pixels -> (n, 2) image pixels. Empty input gives a (0, 2) array.

        ``visible_only``: NaN rows for road points on the other side of the horizon from the calibration's own
        points (the homography's scale changes sign there: the projection "wraps" into the sky).
        """
        if not visible_only:
            return project_points(self.inverse, bev_points_px)
        pts = np.asarray(bev_points_px, dtype=np.float64).reshape(-1, 2)
        side = np.sign(_scale(self.inverse, self.bev_points_px)[0])
        out = np.full_like(pts, np.nan)
        visible = np.sign(_scale(self.inverse, pts)) == side
        out[visible] = project_points(self.inverse, pts[visible])
        return out

    def warp(self, frame: npt.NDArray[np.uint8]) -> npt.NDArray[np.uint8]:
        """Warp an (h, w[, c]) image to the (bev_h, bev_w[, c]) bird's-eye view (linear interpolation)."""
        warped = cv2.warpPerspective(frame, self.matrix, self.bev_size_wh, flags=cv2.INTER_LINEAR)
        return np.asarray(warped, dtype=np.uint8)
