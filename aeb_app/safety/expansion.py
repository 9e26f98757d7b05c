"""Time to collision from the box's expansion rate (no range needed).

For an object approaching at constant closing speed, its image width ``w`` is proportional to
``1 / Z``, so ``d ln w / dt = closing / Z = 1 / TTC``. The rate is the slope of a robust straight
line through ``ln w`` over the last ``window_s`` seconds (so the estimate does not depend on the frame
rate); points further than ``outlier_sigmas`` robust deviations from a first fit are dropped (heavy-tailed
detector jitter). The fitted slope is the rate at the window's mean time, so ``TTC(now) = 1/slope -
(now - mean time)``.
"""

from __future__ import annotations

import functools
import math
import operator
from collections import deque
from dataclasses import dataclass, field
from typing import NamedTuple, Sequence

import numpy as np
from scipy.stats import t as student_t

from aeb_app.errors import ConfigError

_Z975 = 1.959963984540054

__all__ = ["ExpansionConfig", "ExpansionEstimate", "ExpansionTracker", "FirstPass", "LineFit", "fit_line",
           "robust_slope", "RangeTrend"]


@dataclass(frozen=True)
class ExpansionConfig:
    """Scale-change TTC settings.

    Attributes:
        window_s: length of the fitting window, seconds.
        min_span_s: the samples must span at least this long before there is an estimate, seconds.
        min_samples: at least this many valid widths in the window.
        outlier_sigmas: residuals beyond this many robust sigmas (1.4826 MAD) are dropped before the refit.
        min_log_sigma: floor of the robust sigma of ``ln w`` (avoids dropping everything on a noise-free track).
    """

    window_s: float = 0.6
    min_span_s: float = 0.3
    min_samples: int = 4
    outlier_sigmas: float = 3.0
    min_log_sigma: float = 0.005

    def __post_init__(self) -> None:
        for name in self.__dataclass_fields__:
            value = getattr(self, name)
            if not (isinstance(value, (int, float)) and math.isfinite(value) and value > 0):
                raise ConfigError(f"expansion.{name}: must be a positive number, got {value!r}")
        if self.min_span_s > self.window_s:
            raise ConfigError(f"expansion.min_span_s ({self.min_span_s}) exceeds window_s ({self.window_s})")


@dataclass(frozen=True)
class ExpansionEstimate:
    """The expansion of one track now.

    Attributes:
        rate_per_s: d ln(width) / dt at the window's mean time, 1/s (positive = growing = approaching).
        rate_sigma_per_s: its standard deviation from the fit residuals, 1/s.
        ttc_s: ``1 / rate`` brought forward to now, seconds (inf when not growing).
        lag_s: how long before now the window's mean time (where the rate was measured) lies, seconds.
    """

    rate_per_s: float
    rate_sigma_per_s: float
    ttc_s: float
    lag_s: float = 0.0

    def expanding(self, sigmas: float) -> bool:
        """Growth significant at ``sigmas`` standard deviations."""
        return self.rate_per_s > sigmas * self.rate_sigma_per_s and self.rate_per_s > 0


@dataclass
class ExpansionTracker:
    """The width history of one track and its expansion estimate."""

    config: ExpansionConfig
    samples: deque = field(default_factory=deque)

    def add(self, timestamp_s: float, width_px: float) -> None:
        """Record a width (pixels) seen at ``timestamp_s`` (only widths not cut by the image border)."""
        if width_px > 1.0 and math.isfinite(width_px):
            self.samples.append((timestamp_s, math.log(width_px)))
        self._trim(timestamp_s)

    def _trim(self, now_s: float) -> None:
        start = now_s - self.config.window_s - 1e-9
        while self.samples and self.samples[0][0] < start:
            self.samples.popleft()

    def estimate(self, now_s: float) -> ExpansionEstimate | None:
        """The estimate at ``now_s``, or None when there are too few samples."""
        window = self.window(now_s)
        if window is None:
            return None
        c = self.config
        return self.estimate_of(robust_slope(*window, outlier_sigmas=c.outlier_sigmas, min_sigma=c.min_log_sigma,
                                             min_samples=c.min_samples), now_s)

    def window(self, now_s: float) -> tuple[list[float], list[float]] | None:
        """The (times, log widths) the estimate at ``now_s`` fits, or None when there are too few samples."""
        self._trim(now_s)
        c = self.config
        if len(self.samples) < c.min_samples:
            return None
        t, y = [s[0] for s in self.samples], [s[1] for s in self.samples]
        if t[-1] - t[0] < c.min_span_s - 1e-9:
            return None
        return t, y

    @staticmethod
    def estimate_of(fit: tuple[float, float, float], now_s: float) -> ExpansionEstimate:
        """The estimate at ``now_s`` from the window's :func:`robust_slope` (slope, slope sigma, mean time)."""
        slope, rate_sigma, t_mean = fit
        growing = slope > 1e-9  # a constant width fits a slope of rounding noise
        ttc = max(1.0 / slope - (now_s - t_mean), 0.0) if growing else math.inf
        return ExpansionEstimate(float(slope), float(rate_sigma), ttc, now_s - t_mean)


@dataclass(frozen=True)
class LineFit:
    """A least-squares straight line ``y = slope * x + intercept``.

    Attributes:
        slope: d y / d x.
        intercept: y at x = 0.
        x_mean: the (weighted) mean of x, where the fit is best determined.
        spread: the (weighted) sum of squared deviations of x from ``x_mean`` (0: all x equal, slope 0).
    """

    slope: float
    intercept: float
    x_mean: float
    spread: float


def fit_line(x: Sequence[float] | np.ndarray, y: Sequence[float] | np.ndarray,
             weights: Sequence[float] | np.ndarray | None = None) -> LineFit:
    """Weighted least-squares line through (x, y) in closed form (centred sums): ``np.polyfit(x, y, 1,
    w=sqrt(weights))`` to rounding, at a fraction of its cost. ``weights`` multiply the squared residuals
    (default 1). All x equal (or one point): the horizontal line through the weighted mean of y.

    Raises:
        ValueError: no points, x and y (or weights) of different lengths, or weights not positive in sum.
    """
    xs, ys = _floats(x), _floats(y)
    if not xs or len(xs) != len(ys):
        raise ValueError(f"fit_line: need x and y of the same non-zero length, got {len(xs)} and {len(ys)}")
    if weights is None:
        return LineFit(*_fit(xs, ys))
    ws = _floats(weights)
    total = sum(ws)
    if len(ws) != len(xs) or min(ws) < 0 or not total > 0:
        raise ValueError(f"fit_line: need {len(xs)} non-negative weights with a positive sum, got {ws!r}")
    xm = sum([w * v for w, v in zip(ws, xs)]) / total
    ym = sum([w * v for w, v in zip(ws, ys)]) / total
    dx = [v - xm for v in xs]
    sxx = sum([w * d * d for w, d in zip(ws, dx)])
    slope = sum([w * d * (v - ym) for w, d, v in zip(ws, dx, ys)]) / sxx if sxx > 0 else 0.0
    return LineFit(slope, ym - slope * xm, xm, sxx)


def _floats(values: Sequence[float] | np.ndarray) -> list[float]:
    if isinstance(values, list):
        return values  # read only
    return values.tolist() if isinstance(values, np.ndarray) else [float(v) for v in values]


def _fit(xs: list[float], ys: list[float]) -> tuple[float, float, float, float]:
    """Unweighted :func:`fit_line` of non-empty lists: (slope, intercept, x mean, spread)."""
    n = len(xs)
    xm, ym = sum(xs) / n, sum(ys) / n
    dx = [v - xm for v in xs]
    sxx = sum([d * d for d in dx])
    slope = sum([d * (v - ym) for d, v in zip(dx, ys)]) / sxx if sxx > 0 else 0.0
    return slope, ym - slope * xm, xm, sxx


class FirstPass(NamedTuple):
    """The first pass of :func:`robust_slope` when computed elsewhere (:func:`aeb_app.safety.slopes.first_passes`).

    Attributes:
        slope: the Theil-Sen slope.
        intercept: its intercept.
        whole: the pass keeps every sample, or fewer than ``min_samples``: the result is the fit of the whole window.
    """

    slope: float
    intercept: float
    whole: bool


def robust_slope(t: Sequence[float] | np.ndarray, y: Sequence[float] | np.ndarray, *, outlier_sigmas: float,
                 min_sigma: float, min_samples: int, first: FirstPass | None = None) -> tuple[float, float, float]:
    """Straight line through (t, y) with outliers beyond ``outlier_sigmas`` robust sigmas (1.4826 MAD,
    floored at ``min_sigma``) of a Theil-Sen first fit dropped and least squares refitted: (slope, slope sigma from the residuals, mean time).

    The slope sigma is widened by the Student-t factor of the fit's degrees of freedom (t 97.5 % / z 97.5 %),
    so that "k sigmas" means the same confidence with 6 samples (10 fps) as with 15 (25 fps). The values
    must be finite. The fits are closed-form sums on Python floats (a few samples: cheaper than numpy).
    ``first``: the Theil-Sen line and its first pass's verdict, when already computed (bit for bit).
    """
    ts, ys = _floats(t), _floats(y)
    if first is not None and first.whole:
        return _with_sigma(ts, ys, _fit(ts, ys), min_sigma)
    slope, intercept = (first.slope, first.intercept) if first is not None else _theil_sen(ts, ys)
    keep = None  # None: every sample kept (the first pass needs no selection)
    kt, ky, fit = ts, ys, None
    for _ in range(2):
        res = [abs(b - (slope * a + intercept)) for a, b in zip(ts, ys)]
        sigma = max(1.4826 * _median(res if keep is None else [r for r, k in zip(res, keep) if k]), min_sigma)
        limit = outlier_sigmas * sigma
        new_keep = [r <= limit for r in res]
        kept = sum(new_keep)
        if kept < min_samples or (kept == len(res) if keep is None else new_keep == keep):
            break
        keep = new_keep
        kt, ky = [a for a, k in zip(ts, keep) if k], [b for b, k in zip(ys, keep) if k]
        fit = _fit(kt, ky)
        slope, intercept = fit[0], fit[1]
    return _with_sigma(kt, ky, fit or _fit(kt, ky), min_sigma)


def _with_sigma(kt: list[float], ky: list[float], fit: tuple[float, float, float, float],
                min_sigma: float) -> tuple[float, float, float]:
    """:func:`robust_slope`'s result from the least-squares ``fit`` of the kept samples: (slope, its sigma from the
    residuals, mean time)."""
    slope, intercept, t_mean, spread = fit
    dof = max(len(kt) - 2, 1)
    sd = max(math.sqrt(sum([(b - (slope * a + intercept)) ** 2 for a, b in zip(kt, ky)]) / dof), min_sigma)
    # A slope from a few samples is Student-t distributed: widen its sigma so that normal-theory sigmas
    # keep their confidence whatever the frame rate (6 samples at 10 fps, 15 at 25 fps in 0.6 s).
    widen = _t_over_z(dof)
    return slope, (widen * sd / math.sqrt(spread) if spread > 0 else math.inf), t_mean


@functools.lru_cache(maxsize=256)
def _t_over_z(dof: int) -> float:
    """Student-t 97.5 % quantile over the normal one for ``dof`` degrees of freedom (cached: scipy's ppf
    costs ~80 us a call and the fit runs per track per frame)."""
    return float(student_t.ppf(0.975, dof)) / _Z975


def _theil_sen(t: list[float], y: list[float]) -> tuple[float, float]:
    """Median of the pairwise slopes and the matching intercept: a first line that one jumped sample
    (a 20-40 px box edge) cannot tilt, unlike least squares."""
    ta, ya = np.array(t), np.array(y)
    i, j = _pairs(len(t))
    dt, dy = ta[j] - ta[i], ya[j] - ya[i]
    if not _increasing(t):  # else every pair's dt > 0
        dy, dt = dy[dt > 0], dt[dt > 0]
    slopes = dy / dt
    slopes.sort()  # a temporary: sorted in place
    slope = _sorted_median(slopes) if len(slopes) else 0.0
    return slope, _median([b - slope * a for a, b in zip(t, y)])


def _increasing(values: list[float]) -> bool:
    """Strictly increasing (NaN anywhere: False)."""
    return all(map(operator.lt, values, values[1:]))


@functools.lru_cache(maxsize=64)
def _pairs(n: int) -> tuple[np.ndarray, np.ndarray]:
    """``np.triu_indices(n, k=1)``, cached (the fits run per track per frame on a few sizes)."""
    return np.triu_indices(n, k=1)


def _median(values: Sequence[float] | np.ndarray) -> float:
    """``np.median`` of a small 1-D array or list, bit for bit (NaN when any is NaN), without its overhead."""
    if isinstance(values, np.ndarray):
        return _sorted_median(np.sort(values))
    s = sorted(values)
    return float("nan") if s and math.isnan(sum(s)) else _sorted_median(s)  # NaN anywhere in a sorted list


def _sorted_median(s: list[float] | np.ndarray) -> float:
    """The median of sorted values (NaN when empty or a NaN sorts last, as ``np.sort`` puts them)."""
    n = len(s)
    if n == 0 or s[-1] != s[-1]:
        return float("nan")
    mid = n // 2
    return float(s[mid]) if n % 2 else float((s[mid - 1] + s[mid]) / 2)


@dataclass
class RangeTrend:
    """Whether a track's gap has really been shrinking over the last ``span_s`` seconds.

    The range filter's rate (and more so its acceleration) follows the measurements within a fraction of
    a second, so a few noisy frames at a constant gap can make it "close" for long enough to warn (a lead
    pulling away at 8 m did). The trend is a robust straight line through the per-frame measured ranges
    over ``span_s`` (outliers as in the scale cue): the gap is closing when that slope is ``sigmas`` of
    its standard deviations below zero. Too few measurements (fewer than ``min_samples``, or spanning less
    than half of ``span_s``) are no evidence either way.
    """

    span_s: float
    outlier_sigmas: float = 3.0
    min_samples: int = 4
    min_sigma_m: float = 0.01
    samples: deque = field(default_factory=deque)

    def add(self, timestamp_s: float, range_m: float) -> None:
        """Record one measured range (metres)."""
        if math.isfinite(range_m):
            self.samples.append((timestamp_s, range_m))
        start = timestamp_s - self.span_s - 1e-9
        while self.samples and self.samples[0][0] < start:
            self.samples.popleft()

    def closing(self, now_s: float, sigmas: float) -> bool | None:
        """True: significantly closing; False: not; None: too few measurements to tell."""
        start = now_s - self.span_s - 1e-9
        data = [s for s in self.samples if s[0] >= start]
        if len(data) < self.min_samples or data[-1][0] - data[0][0] < self.span_s / 2 - 1e-9:
            return None
        slope, sigma, _ = robust_slope([s[0] for s in data], [s[1] for s in data], outlier_sigmas=self.outlier_sigmas,
                                       min_sigma=self.min_sigma_m, min_samples=self.min_samples)
        return slope < -sigmas * sigma
