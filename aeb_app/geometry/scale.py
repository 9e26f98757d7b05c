"""Pixel-to-metre coefficients of a bird's-eye view from reference points of known distance.

A correct BEV of a flat road is an affine image of the ground with possibly different scales along
its two axes: ``dx_m = k_x * dx_px`` across the road and ``dy_m = k_y * dy_px`` along it. Each pair
of BEV points with a known ground distance ``d`` gives one equation linear in ``(k_x^2, k_y^2)``::

    d^2 = k_x^2 * dx_px^2 + k_y^2 * dy_px^2

Three points (one pair across the road, one along it) give two equations and an exact solution, as
in the original demo; more pairs give a least-squares fit whose residual measures the calibration.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import numpy as np
import numpy.typing as npt

from aeb_app.errors import CalibrationError

__all__ = ["ReferencePair", "ScaleFit", "fit_scale", "scale_from_three_points"]


@dataclass(frozen=True)
class ReferencePair:
    """Two BEV points with a known ground distance between them.

    Attributes:
        a_bev_px: (x, y) first point in BEV pixels.
        b_bev_px: (x, y) second point in BEV pixels.
        distance_m: true ground distance between them, metres (> 0).
        note: free text (e.g. "lane width", "dash period").
    """

    a_bev_px: tuple[float, float]
    b_bev_px: tuple[float, float]
    distance_m: float
    note: str = ""

    def delta_px(self) -> npt.NDArray[np.float64]:
        """(2,) absolute (dx, dy) in BEV pixels."""
        return np.abs(np.subtract(self.b_bev_px, self.a_bev_px, dtype=np.float64))


@dataclass(frozen=True)
class ScaleFit:
    """Result of a scale fit.

    Attributes:
        k_x_m_per_px: metres per BEV pixel across the road (BEV x).
        k_y_m_per_px: metres per BEV pixel along the road (BEV y).
        residual_m: RMS of (fitted - known) distance over the pairs, metres (0 for an exact solve).
    """

    k_x_m_per_px: float
    k_y_m_per_px: float
    residual_m: float


def _check_pair(pair: ReferencePair, index: int) -> None:
    values = [*pair.a_bev_px, *pair.b_bev_px, pair.distance_m]
    if not np.isfinite(values).all():
        raise CalibrationError(f"reference_pairs[{index}]: contains NaN or infinite values: {values}")
    if not pair.distance_m > 0:
        raise CalibrationError(f"reference_pairs[{index}].distance_m: must be > 0, got {pair.distance_m}")
    if float(np.hypot(*pair.delta_px())) < 1.0:
        raise CalibrationError(f"reference_pairs[{index}]: the two points coincide ({pair.a_bev_px})")


def fit_scale(pairs: Sequence[ReferencePair]) -> ScaleFit:
    """Fit ``k_x, k_y`` (m/px) to two or more reference pairs.

    Args:
        pairs: at least one mostly-across and one mostly-along pair; with exactly two the solve is exact.

    Returns:
        The fitted coefficients and the RMS distance residual in metres.

    Raises:
        CalibrationError: fewer than two pairs, a bad distance, coincident points, or pairs that do not
            constrain both axes (e.g. all along the road), or a fit with a non-positive scale.
    """
    if len(pairs) < 2:
        raise CalibrationError(f"reference_pairs: need at least 2 pairs (one across, one along), got {len(pairs)}")
    for i, pair in enumerate(pairs):
        _check_pair(pair, i)
    design = np.array([pair.delta_px() ** 2 for pair in pairs])  # (n, 2): dx^2, dy^2
    target = np.array([pair.distance_m**2 for pair in pairs])
    # Normalise columns so the conditioning test is scale-free.
    norms = np.linalg.norm(design, axis=0)
    if (norms < 1e-9).any() or np.linalg.cond(design / norms) > 1e6:
        raise CalibrationError(
            "reference_pairs: pairs must include one across the road and one along it (axes not both constrained)"
        )
    sq, *_ = np.linalg.lstsq(design, target, rcond=None)
    if (sq <= 0).any():
        raise CalibrationError(f"reference_pairs: inconsistent distances give a non-positive scale ({sq.tolist()})")
    k = np.sqrt(sq)
    fitted = np.sqrt(design @ sq)
    residual = float(np.sqrt(np.mean((fitted - np.sqrt(target)) ** 2)))
    return ScaleFit(float(k[0]), float(k[1]), residual)


def scale_from_three_points(
    origin_bev_px: tuple[float, float],
    across_bev_px: tuple[float, float],
    along_bev_px: tuple[float, float],
    *,
    across_m: float,
    along_m: float,
) -> ScaleFit:
    """The seed's method: three BEV points, ``origin``->``across`` spans the road, ``origin``->``along`` runs along it.

    Args:
        origin_bev_px: shared point, BEV pixels.
        across_bev_px: point across the road from ``origin``, BEV pixels.
        along_bev_px: point along the road from ``origin``, BEV pixels.
        across_m: ground distance origin->across (e.g. lane width 3.7 m).
        along_m: ground distance origin->along (e.g. dash period 12.19 m).
    """
    return fit_scale(
        [
            ReferencePair(origin_bev_px, across_bev_px, across_m, "across"),
            ReferencePair(origin_bev_px, along_bev_px, along_m, "along"),
        ]
    )
