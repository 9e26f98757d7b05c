"""Range filtering and time-to-collision (pure functions of the values passed in)."""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass, field
from typing import Sequence

import numpy as np
import numpy.typing as npt

from aeb_app.errors import ConfigError

__all__ = ["RangeFilterConfig", "RangeFilter", "predict_all", "ttc_s"]


@dataclass(frozen=True)
class RangeFilterConfig:
    """Constant-acceleration Kalman filter on range, with measurement gating. Every constant is in SI units.

    Attributes:
        jerk_psd: white-jerk process noise spectral density, m^2/s^5 (how fast relative acceleration
            may change: a lead that brakes hard steps it by several m/s^2).
        max_rel_accel_mps2: the largest relative acceleration two road vehicles reach (hard braking of
            one plus acceleration of the other). A measurement further from the prediction than this
            acceleration could move it (plus ``gate_sigmas`` of the combined uncertainty) is rejected.
        gate_sigmas: width of the statistical part of the gate, standard deviations.
        reacquire_after_s: after this long without an accepted measurement the filter restarts from the
            next measurement (the object really moved, or the track was lost), rather than coasting forever.
        initial_rate_sigma_mps: range-rate uncertainty of a new track, m/s.
        initial_accel_sigma_mps2: relative-acceleration uncertainty of a new track, m/s^2.
    """

    jerk_psd: float = 20.0
    max_rel_accel_mps2: float = 12.0
    gate_sigmas: float = 3.0
    reacquire_after_s: float = 0.6
    initial_rate_sigma_mps: float = 10.0
    initial_accel_sigma_mps2: float = 3.0

    def __post_init__(self) -> None:
        for name in self.__dataclass_fields__:
            value = getattr(self, name)
            if not (isinstance(value, (int, float)) and math.isfinite(value) and value > 0):
                raise ConfigError(f"filter.{name}: must be a positive number, got {value!r}")


@dataclass
class RangeFilter:
    """State ``[range_m, range_rate_mps, range_accel_mps2]`` of one track, updated with measured ranges.

    Range rate is negative when closing. Call :meth:`predict` with the elapsed time, then
    :meth:`update` with each measurement and its sigma (skip update on a missed frame).
    """

    config: RangeFilterConfig
    x: npt.NDArray[np.float64] = field(default_factory=lambda: np.zeros(3))
    p: npt.NDArray[np.float64] = field(default_factory=lambda: np.diag([1.0, 25.0, 4.0]))
    initialized: bool = False
    since_accept_s: float = 0.0
    rejected: int = 0

    def predict(self, dt_s: float) -> None:
        """Propagate by ``dt_s`` seconds (>= 0)."""
        if not self.initialized or dt_s <= 0:
            return
        f, f_t, q = _transition(dt_s, self.config.jerk_psd)
        self.x = f @ self.x
        self.p = f @ self.p @ f_t + q
        self.since_accept_s += dt_s

    @property
    def needs_start(self) -> bool:
        """The next measurement (re)starts the filter: never started, or nothing accepted for too long."""
        return not self.initialized or self.since_accept_s > self.config.reacquire_after_s

    def gate_m(self, sigma_m: float) -> float:
        """Largest accepted |measurement - prediction|, metres, for a measurement of ``sigma_m``.

        The statistical part covers the state and measurement uncertainty; the kinematic part is how
        far ``max_rel_accel_mps2`` could move the object since the last accepted measurement.
        """
        s = self.p.item(0, 0) + sigma_m**2
        return self.config.gate_sigmas * math.sqrt(s) + 0.5 * self.config.max_rel_accel_mps2 * self.since_accept_s**2

    def update(self, range_m: float, sigma_m: float, *, gate_sigma_m: float | None = None,
               inverse_depth_setback_m: float | None = None) -> bool:
        """Fuse one measured range (metres) of standard deviation ``sigma_m``; False if gated out.

        ``gate_sigma_m`` (default ``sigma_m``) is the sigma the gate allows for: larger when the cue also
        carries a constant error that the frame-to-frame ``sigma_m`` leaves out.

        ``inverse_depth_setback_m``: the cue measures inverse camera depth (a pixel row or a width is
        ``1/Z``; ``Z = range + setback``), and sigmas are taken at the predicted range. The gate then compares
        the innovation in that space, ``|1/Z_meas - 1/Z_pred| Z_pred^2``: a box edge jumped by many pixels
        towards the camera is as far out as it is in pixels, not the few sigmas a linear range gate sees.
        """
        if not (math.isfinite(range_m) and math.isfinite(sigma_m) and sigma_m > 0):
            return False
        if self.needs_start:
            c = self.config
            self.x = np.array([range_m, 0.0, 0.0])
            self.p = np.diag([sigma_m**2, c.initial_rate_sigma_mps**2, c.initial_accel_sigma_mps2**2])
            self.initialized, self.since_accept_s = True, 0.0
            return True
        predicted = self.x.item(0)  # a Python float: numpy scalars cost more per operation, for the same values
        innovation = abs(range_m - predicted)
        if inverse_depth_setback_m is not None:
            innovation *= (predicted + inverse_depth_setback_m) / max(range_m + inverse_depth_setback_m, 1e-3)
        if innovation > self.gate_m(max(sigma_m, gate_sigma_m or 0.0)):
            self.rejected += 1
            return False
        self._correct(range_m, sigma_m)
        self.since_accept_s = 0.0
        return True

    def _correct(self, range_m: float, sigma_m: float) -> None:
        """The Kalman update with the range measured (``H = [1, 0, 0]``), on plain floats: the gain is P's first
        column over ``P[0, 0] + sigma^2`` and ``(I - K H) P`` takes ``K`` times P's first row off P."""
        x0, x1, x2 = self.x.tolist()
        (p00, p01, p02), (p10, p11, p12), (p20, p21, p22) = self.p.tolist()
        s = p00 + sigma_m**2
        g0, g1, g2 = p00 / s, p10 / s, p20 / s
        innovation = range_m - x0
        self.x = np.array([x0 + g0 * innovation, x1 + g1 * innovation, x2 + g2 * innovation])
        k = 1.0 - g0
        self.p = np.array([[k * p00, k * p01, k * p02],
                           [p10 - g1 * p00, p11 - g1 * p01, p12 - g1 * p02],
                           [p20 - g2 * p00, p21 - g2 * p01, p22 - g2 * p02]])

    @property
    def range_m(self) -> float:
        return self.x.item(0) if self.initialized else math.nan

    @property
    def range_sigma_m(self) -> float:
        return math.sqrt(self.p.item(0, 0)) if self.initialized else math.nan

    @property
    def range_rate_mps(self) -> float:
        return self.x.item(1) if self.initialized else math.nan

    @property
    def range_rate_sigma_mps(self) -> float:
        return math.sqrt(self.p.item(1, 1)) if self.initialized else math.nan

    @property
    def range_accel_mps2(self) -> float:
        return self.x.item(2) if self.initialized else math.nan


def predict_all(filters: Sequence[RangeFilter], dt_s: float) -> None:
    """:meth:`RangeFilter.predict` of every filter by ``dt_s`` seconds, as stacked products (one per frame instead of
    three per track; numpy multiplies each 3x3 slice of a stack as it multiplies one matrix: the same values bit for
    bit). Filters of different configurations are predicted one at a time."""
    live = [f for f in filters if f.initialized] if dt_s > 0 else []
    if not live:
        return
    config = live[0].config
    if any(f.config is not config and f.config != config for f in live):
        for f in live:
            f.predict(dt_s)
        return
    f_m, f_t, q = _transition(dt_s, config.jerk_psd)
    xs = np.matmul(f_m, np.array([f.x for f in live])[..., None])[..., 0]  # np.array stacks as np.stack, cheaper
    ps = f_m @ np.array([f.p for f in live]) @ f_t + q
    for f, x, p in zip(live, xs, ps):
        f.x, f.p = x, p
        f.since_accept_s += dt_s


@functools.lru_cache(maxsize=16)
def _transition(dt_s: float, jerk_psd: float) -> tuple[npt.NDArray[np.float64], ...]:
    """State transition F, its transpose and the process noise Q of a constant-acceleration model over
    ``dt_s`` (read-only, cached: every track of a frame predicts over the same interval)."""
    f = np.array([[1.0, dt_s, 0.5 * dt_s**2], [0.0, 1.0, dt_s], [0.0, 0.0, 1.0]])
    q = jerk_psd * np.array(
        [[dt_s**5 / 20, dt_s**4 / 8, dt_s**3 / 6], [dt_s**4 / 8, dt_s**3 / 3, dt_s**2 / 2],
         [dt_s**3 / 6, dt_s**2 / 2, dt_s]]
    )
    f_t = f.T.copy()
    for a in (f, f_t, q):
        a.setflags(write=False)
    return f, f_t, q


def ttc_s(range_m: float, range_rate_mps: float, range_accel_mps2: float = 0.0, *,
          min_closing_mps: float = 0.3, max_closing_mps: float = math.inf) -> float:
    """Time to collision in seconds; ``inf`` when not closing.

    Physical assumptions (as in openpilot's ``calc_ttc``): both vehicles keep their current relative
    acceleration. If the gap is not closing faster than ``min_closing_mps`` there is no collision
    course (``inf``), even if the relative acceleration is negative: a filtered acceleration alone is
    too noisy to warn on. When closing, the constant-velocity TTC ``r / closing speed`` is used, and
    the constant-acceleration root when the closing speed is increasing (lead braking), whichever is
    smaller; a decreasing closing speed is ignored (conservative). The closing speed never exceeds
    ``max_closing_mps`` (a braking lead stops; it does not reverse into the ego): once the acceleration
    has brought it there, it stays there.

    Args:
        range_m: gap, metres (<= 0 gives 0).
        range_rate_mps: d(range)/dt, m/s, negative when closing.
        range_accel_mps2: d^2(range)/dt^2, m/s^2, negative when the closing speed grows.
        min_closing_mps: closing speed below which the TTC is infinite.
        max_closing_mps: the largest closing speed possible (ego speed plus a margin), m/s.
    """
    if range_m <= 0:
        return 0.0
    closing = min(-range_rate_mps, max_closing_mps)
    if not math.isfinite(closing) or closing <= min_closing_mps:
        return math.inf
    ttc = range_m / closing
    if range_accel_mps2 < 0:
        accel = -range_accel_mps2
        t_cap = (max_closing_mps - closing) / accel  # inf when uncapped
        covered = closing * t_cap + 0.5 * accel * t_cap**2 if math.isfinite(t_cap) else math.inf
        if covered >= range_m:
            ttc = min(ttc, (-closing + math.sqrt(closing**2 + 2.0 * accel * range_m)) / accel)
        else:
            ttc = min(ttc, t_cap + (range_m - covered) / max_closing_mps)
    return float(ttc)
