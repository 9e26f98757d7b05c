"""Range filtering and time-to-collision (pure functions of the values passed in)."""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
import numpy.typing as npt

__all__ = ["RangeFilterConfig", "RangeFilter", "ttc_s"]


@dataclass(frozen=True)
class RangeFilterConfig:
    """Constant-acceleration Kalman filter on range.

    Attributes:
        jerk_psd: white-jerk process noise spectral density, m^2/s^5 (how fast relative acceleration
            may change: a lead that brakes hard steps it by several m/s^2).
        noise_m_at_10m: range measurement standard deviation at 10 m. A monocular ground-point range
            error grows with range squared (one pixel covers r^2 / (f h) metres), so the filter uses
            ``max(noise_floor_m, noise_m_at_10m * (r / 10)^2)``.
        noise_floor_m: minimum measurement standard deviation, metres.
    """

    jerk_psd: float = 20.0
    noise_m_at_10m: float = 0.15
    noise_floor_m: float = 0.1


@dataclass
class RangeFilter:
    """State ``[range_m, range_rate_mps, range_accel_mps2]`` of one track, updated with measured ranges.

    Range rate is negative when closing. Call :meth:`predict` with the elapsed time, then
    :meth:`update` with the measurement (skip update on a missed frame).
    """

    config: RangeFilterConfig
    x: npt.NDArray[np.float64] = field(default_factory=lambda: np.zeros(3))
    p: npt.NDArray[np.float64] = field(default_factory=lambda: np.diag([1.0, 25.0, 4.0]))
    initialized: bool = False

    def predict(self, dt_s: float) -> None:
        """Propagate by ``dt_s`` seconds (>= 0)."""
        if not self.initialized or dt_s <= 0:
            return
        f = np.array([[1.0, dt_s, 0.5 * dt_s**2], [0.0, 1.0, dt_s], [0.0, 0.0, 1.0]])
        q = self.config.jerk_psd * np.array(
            [[dt_s**5 / 20, dt_s**4 / 8, dt_s**3 / 6], [dt_s**4 / 8, dt_s**3 / 3, dt_s**2 / 2],
             [dt_s**3 / 6, dt_s**2 / 2, dt_s]]
        )
        self.x = f @ self.x
        self.p = f @ self.p @ f.T + q

    def update(self, range_m: float) -> None:
        """Fuse one measured range (metres)."""
        if not self.initialized:
            self.x = np.array([range_m, 0.0, 0.0])
            self.initialized = True
            return
        sigma = max(self.config.noise_floor_m, self.config.noise_m_at_10m * (max(range_m, 0.0) / 10.0) ** 2)
        h = np.array([1.0, 0.0, 0.0])
        s = float(h @ self.p @ h) + sigma**2
        gain = self.p @ h / s
        self.x = self.x + gain * (range_m - self.x[0])
        self.p = (np.eye(3) - np.outer(gain, h)) @ self.p

    @property
    def range_m(self) -> float:
        return float(self.x[0])

    @property
    def range_rate_mps(self) -> float:
        return float(self.x[1])

    @property
    def range_accel_mps2(self) -> float:
        return float(self.x[2])


def ttc_s(range_m: float, range_rate_mps: float, range_accel_mps2: float = 0.0, *,
          min_closing_mps: float = 0.3) -> float:
    """Time to collision in seconds; ``inf`` when not closing.

    Physical assumptions (as in openpilot's ``calc_ttc``): both vehicles keep their current relative
    acceleration. If the gap is not closing faster than ``min_closing_mps`` there is no collision
    course (``inf``), even if the relative acceleration is negative: a filtered acceleration alone is
    too noisy to warn on. When closing, the constant-velocity TTC ``r / closing speed`` is used, and
    the constant-acceleration root when the closing speed is increasing (lead braking), whichever is
    smaller; a decreasing closing speed is ignored (conservative).

    Args:
        range_m: gap, metres (<= 0 gives 0).
        range_rate_mps: d(range)/dt, m/s, negative when closing.
        range_accel_mps2: d^2(range)/dt^2, m/s^2, negative when the closing speed grows.
        min_closing_mps: closing speed below which the TTC is infinite.
    """
    if range_m <= 0:
        return 0.0
    closing = -range_rate_mps
    if not math.isfinite(closing) or closing <= min_closing_mps:
        return math.inf
    ttc = range_m / closing
    if range_accel_mps2 < 0:
        disc = range_rate_mps**2 - 2.0 * range_accel_mps2 * range_m
        ttc = min(ttc, (-range_rate_mps - math.sqrt(disc)) / range_accel_mps2)
    return float(ttc)
