"""Time to collision from the box's expansion rate (no range needed).

For an object approaching at constant closing speed, its image width ``w`` is proportional to
``1 / Z``, so ``d ln w / dt = closing / Z = 1 / TTC``. The rate is the slope of a robust straight
line through ``ln w`` over the last ``window_s`` seconds (so the estimate does not depend on the frame
rate); points further than ``outlier_sigmas`` robust deviations from a first fit are dropped (heavy-tailed
detector jitter). The fitted slope is the rate at the window's mean time, so ``TTC(now) = 1/slope -
(now - mean time)``.
"""

from __future__ import annotations

import math
from collections import deque
from dataclasses import dataclass, field

import numpy as np

from aeb_app.errors import ConfigError

__all__ = ["ExpansionConfig", "ExpansionEstimate", "ExpansionTracker"]


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
    """

    rate_per_s: float
    rate_sigma_per_s: float
    ttc_s: float

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
        while self.samples and self.samples[0][0] < now_s - self.config.window_s - 1e-9:
            self.samples.popleft()

    def estimate(self, now_s: float) -> ExpansionEstimate | None:
        """The estimate at ``now_s``, or None when there are too few samples."""
        self._trim(now_s)
        c = self.config
        if len(self.samples) < c.min_samples:
            return None
        data = np.asarray(self.samples, np.float64)
        t, y = data[:, 0], data[:, 1]
        if t[-1] - t[0] < c.min_span_s - 1e-9:
            return None
        keep = np.ones(len(t), bool)
        for _ in range(2):
            slope, intercept = np.polyfit(t[keep], y[keep], 1)
            res = y - (slope * t + intercept)
            sigma = max(1.4826 * float(np.median(np.abs(res[keep]))), c.min_log_sigma)
            new_keep = np.abs(res) <= c.outlier_sigmas * sigma
            if new_keep.sum() < c.min_samples or (new_keep == keep).all():
                break
            keep = new_keep
        tk = t[keep]
        slope, intercept = np.polyfit(tk, y[keep], 1)
        dof = max(int(keep.sum()) - 2, 1)
        resid = y[keep] - (slope * tk + intercept)
        sd = max(math.sqrt(float(resid @ resid) / dof), c.min_log_sigma)
        spread = float(((tk - tk.mean()) ** 2).sum())
        rate_sigma = sd / math.sqrt(spread) if spread > 0 else math.inf
        growing = slope > 1e-9  # a constant width fits a slope of rounding noise
        ttc = max(1.0 / slope - (now_s - float(tk.mean())), 0.0) if growing else math.inf
        return ExpansionEstimate(float(slope), float(rate_sigma), ttc)
