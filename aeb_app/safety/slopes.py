"""The scale cue's fits of all of a frame's tracks: the first pass of each :func:`robust_slope` in one set of arrays.

Every track of a frame fits a robust line through its last box widths (:meth:`ExpansionTracker.estimate`): a
Theil-Sen line through every pair of its ~15 samples (8 small-array NumPy calls), the residuals' median, and which
samples lie within the outlier limit; then least squares on the kept ones. For a frame's dozen tracks the first
part costs less done over all windows at once (rows of a NaN-padded array, ~30 NumPy calls whatever the number of
tracks); each track's least-squares fit stays :func:`robust_slope`'s own, given that first pass
(:class:`~aeb_app.safety.expansion.FirstPass`). The values are the same bit for bit:

* the pair slopes, the intercepts and the residuals are the same IEEE operations in NumPy as on Python floats;
* a median is taken from the sorted row (the NaN padding sorts last) at the row's own middle: ``(s[lo] + s[hi]) / 2``
  with ``lo == hi`` for an odd count (``(x + x) / 2`` is ``x`` unless it overflows: those rows are checked);
* a row whose times do not increase, or whose slopes, medians or residuals are not all finite (where NumPy's sort
  and Python's ``sorted``/``sum`` would part), gets no first pass here: :func:`robust_slope` computes it itself.
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass
from typing import Sequence

import numpy as np
import numpy.typing as npt

from aeb_app.safety.expansion import ExpansionEstimate, ExpansionTracker, FirstPass, robust_slope

__all__ = ["estimate_all", "first_passes", "BATCH_MIN_ROWS"]

#: From this many windows the first passes over all of them at once cost less than one by one (dev VM).
BATCH_MIN_ROWS = 8

_F = npt.NDArray[np.float64]
_B = npt.NDArray[np.bool_]
_I = npt.NDArray[np.intp]


def estimate_all(trackers: Sequence[ExpansionTracker], now_s: float) -> list[ExpansionEstimate | None]:
    """``[tracker.estimate(now_s) for tracker in trackers]`` (a frame's tracks), the same values bit for bit, with
    the first passes of their fits computed at once (from :data:`BATCH_MIN_ROWS` windows of the same settings)."""
    if len({tracker.config for tracker in trackers}) > 1:
        return [tracker.estimate(now_s) for tracker in trackers]
    windows = [tracker.window(now_s) for tracker in trackers]
    fitted = [w for w in windows if w is not None]
    if not fitted:
        return [None] * len(windows)
    c = trackers[0].config
    kw = dict(outlier_sigmas=c.outlier_sigmas, min_sigma=c.min_log_sigma, min_samples=c.min_samples)
    firsts = first_passes(fitted, **kw) if len(fitted) >= BATCH_MIN_ROWS else [None] * len(fitted)
    fits = iter([robust_slope(t, y, first=first, **kw) for (t, y), first in zip(fitted, firsts)])
    return [ExpansionTracker.estimate_of(next(fits), now_s) if w is not None else None for w in windows]


def first_passes(rows: Sequence[tuple[list[float], list[float]]], *, outlier_sigmas: float, min_sigma: float,
                 min_samples: int) -> list[FirstPass | None]:
    """The first pass of ``robust_slope(t, y, ...)`` for each row ``(t, y)`` (lists of floats): its Theil-Sen line
    and whether it keeps every sample (or fewer than ``min_samples``); None for a row it leaves to ``robust_slope``."""
    counts = [len(t) for t, _ in rows]
    width = max(max(counts), 2)
    pad = [math.nan] * width
    flat: list[float] = []
    for t, _ in rows:
        flat += t
        flat += pad[len(t):]
    for _, y in rows:
        flat += y
        flat += pad[len(y):]
    ty = np.fromiter(flat, np.float64, len(flat)).reshape(2 * len(rows), width)  # times, then values; NaN after each
    layout = _Layout.of(counts, width)
    with np.errstate(all="ignore"):  # rows that would warn here are left to robust_slope (checked below)
        slope, intercept, whole, ok = _first_pass(ty, layout, outlier_sigmas, min_sigma, min_samples)
    return [FirstPass(s, i, w) if good and n >= 2 else None
            for s, i, w, good, n in zip(slope.tolist(), intercept.tolist(), whole.tolist(), ok.tolist(), counts)]


def _first_pass(ty: _F, layout: "_Layout", outlier_sigmas: float, min_sigma: float,
                min_samples: int) -> tuple[_F, _F, _B, _B]:
    """Per row: the Theil-Sen slope and intercept (``_theil_sen``), whether the residuals' pass keeps every sample
    or fewer than ``min_samples``, and whether the row is one the arrays reproduce."""
    k = len(layout.count)
    i, j = layout.pairs
    diff = ty[:, j] - ty[:, i]  # NaN for every pair with a padding sample
    slopes = diff[k:] / diff[:k]
    slopes.sort(axis=1)
    slope, ok = _medians(slopes, layout.pair_median)
    ok &= ~(diff[:k] <= 0).any(axis=1)  # times that do not increase drop pairs: robust_slope's own way
    t_all, y_all = ty[:k], ty[k:]
    sloped = slope[:, None] * t_all
    intercept, finite = _medians(np.sort(y_all - sloped, axis=1), layout.median)
    res = np.abs(y_all - (sloped + intercept[:, None]))
    median, finite_res = _medians(np.sort(res, axis=1), layout.median)
    limit = outlier_sigmas * np.maximum(1.4826 * median, min_sigma)
    kept = (res <= limit[:, None]).sum(axis=1)  # NaN padding is never kept
    return slope, intercept, (kept < min_samples) | (kept == layout.count), ok & finite & finite_res


def _medians(sorted_rows: _F, at: _I) -> tuple[_F, _B]:
    """Each sorted row's median of its counted values (as ``_sorted_median``), and whether its last counted value
    (a NaN among them would sort after it) and the median are finite."""
    low, high, last = sorted_rows.reshape(-1)[at]
    median = (low + high) / 2
    return median, np.isfinite(last) & np.isfinite(median)


@dataclass(frozen=True)
class _Layout:
    """Where each window lies in the padded arrays.

    Attributes:
        count: (k,) window lengths.
        pair_median: (3, k) flat indices into the sorted (k, pairs) slopes: the lower and upper middle and the last.
        median: (3, k) the same into sorted (k, width) rows of samples.
        pairs: the (i, j) sample pairs, ``np.triu_indices(width, 1)``.
    """

    count: npt.NDArray[np.int_]
    pair_median: _I
    median: _I
    pairs: tuple[_I, _I]

    @classmethod
    def of(cls, counts: list[int], width: int) -> "_Layout":
        offsets, sizes, pairs = _table(width)
        count = np.array(counts)
        at = offsets[count] + np.arange(len(counts))[:, None] * sizes  # (k, 6) flat indices
        return cls(count, at[:, :3].T, at[:, 3:].T, pairs)


@functools.lru_cache(maxsize=32)
def _table(width: int) -> tuple[_I, _I, tuple[_I, _I]]:
    """For windows padded to ``width``: per length c (0..width), the lower and upper middle and the last index of its
    ``c (c - 1) / 2`` pair slopes, then of its ``c`` samples; the row sizes of those two arrays; the pairs."""
    def middles(v: int) -> list[int]:
        return [max(v - 1, 0) // 2, v // 2, max(v - 1, 0)]

    offsets = np.array([middles(c * (c - 1) // 2) + middles(c) for c in range(width + 1)], np.intp)
    sizes = np.array([width * (width - 1) // 2] * 3 + [width] * 3, np.intp)
    return offsets, sizes, np.triu_indices(width, k=1)
