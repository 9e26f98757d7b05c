"""A frame's range cues as one row of Python values per box, on plain floats for a frame's few boxes.

:func:`~aeb_app.safety.cues.measure_cues` computes the cues of all boxes in ~80 array operations, ~1 us each
whatever the number of boxes; the AEB logic then reads them box by box. Up to :data:`FLOAT_CUES_MAX` boxes,
:func:`cue_rows` computes the same values box by box on Python floats, the same IEEE operations in the same order,
NumPy's division, ``maximum``/``minimum``, ``nan_to_num`` and ``hypot`` spelled out in :mod:`aeb_app.safety.floats`.
CPU per frame on the dev VM (``timeit``, cues of random frames): 1 box 5 us against 66 us in arrays, 14 boxes 54
against 103, 32 boxes 123 against 139, 48 boxes 174 against 171: beyond ~40 boxes the arrays are cheaper.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Mapping, NamedTuple, Sequence

import numpy as np
import numpy.typing as npt

from aeb_app.safety.cues import ClassPrior, CueConfig, RangeCues, lateral_of, measure_cues
from aeb_app.safety.floats import divide, hypot, maximum, nan_to_num
from aeb_app.safety.road import RoadGeometry

__all__ = ["CueRow", "FrameCues", "cue_rows", "frame_cues", "FLOAT_CUES_MAX"]

#: Up to this many boxes the cues are computed on plain floats (beyond it, in array operations).
FLOAT_CUES_MAX = 40

_SQRT2 = math.sqrt(2.0)  # np.sqrt(2.0): both correctly rounded


class CueRow(NamedTuple):
    """One box's :class:`~aeb_app.safety.cues.RangeCues` of this frame as Python values (see there)."""

    ground_valid: bool
    ground_range_m: float
    ground_sigma_m: float
    ground_noise_m: float
    width_valid: bool
    width_range_m: float
    width_sigma_m: float
    width_noise_m: float
    lateral_m: float
    why_no_ground: str

    @classmethod
    def rows(cls, cues: RangeCues) -> list["CueRow"]:
        """Each box's cues (the arrays converted once per frame, not indexed per box and cue)."""
        columns = (cues.ground_valid, cues.ground_range_m, cues.ground_sigma_m, cues.ground_noise_m, cues.width_valid,
                   cues.width_range_m, cues.width_sigma_m, cues.width_noise_m, cues.lateral_m)
        return list(map(cls._make, zip(*(c.tolist() for c in columns), cues.why_no_ground)))


class FrameCues(NamedTuple):
    """A frame's cues: one row per box, and each box's fused range and its sigma, metres (NaN: no valid cue)."""

    rows: list[CueRow]
    fused_m: list[float]
    fused_sigma_m: list[float]


def frame_cues(road: RoadGeometry, boxes: npt.NDArray[np.float64], category_ids: list[int],
               config: CueConfig, *, widths: Sequence[tuple[float, float]], can_occlude: Sequence[bool],
               pairs: npt.NDArray[np.bool_]) -> FrameCues:
    """:func:`~aeb_app.safety.cues.measure_cues` of the (n, 4) ``boxes`` (their own context) with each box's known
    (width, sigma) in metres (NaN: the class prior), as rows: on plain floats up to :data:`FLOAT_CUES_MAX` boxes."""
    if len(boxes) > FLOAT_CUES_MAX:
        known = np.array(widths, np.float64).reshape(-1, 2)
        cues = measure_cues(road, boxes, np.array(category_ids, np.int64), config, width_m=known[:, 0],
                            width_sigma_m=known[:, 1],
                            can_occlude=can_occlude, pairs=pairs)
        fused, sigma = cues.fused()
        return FrameCues(CueRow.rows(cues), fused.tolist(), sigma.tolist())
    occluded = (np.logical_or.reduce(pairs & np.asarray(can_occlude, bool), axis=1).tolist() if len(boxes) > 1
                else [False] * len(boxes))  # a box alone hides nothing (pairs are all False)
    return cue_rows(road, boxes.tolist(), category_ids, config, widths=widths, occluded=occluded)


@dataclass(frozen=True)
class _Frame:
    """The per-frame constants of the cues (the image's borders, the horizon band, the road's scale)."""

    road: RoadGeometry
    config: CueConfig
    bottom: float
    right: float
    horizon: float
    lateral_right: float  # the width cue's first lateral offset counts a side as cut at object_lateral_m's default
    setback_m: float

    @classmethod
    def of(cls, road: RoadGeometry, config: CueConfig) -> "_Frame":
        w_img, h_img = road.calibration.image_size_wh
        margin = config.border_margin_px
        return cls(road, config, h_img - margin, w_img - margin, road.horizon_row_px + config.horizon_band_px,
                   w_img - 5.0, road.setback_m)

    def lateral(self, x1: float, x2: float, range_m: float, width_m: float, margin: float, right: float) -> float:
        """:func:`~aeb_app.safety.cues.object_lateral_m` of one box."""
        centre, scale = self.road.centre_line_one(range_m)
        return lateral_of(x1, x2, centre, scale, width_m, margin, right)

    def range_from_width(self, width_px: float, width_m: float) -> float:
        """:meth:`RoadGeometry.range_from_width` of one box."""
        return (width_m / width_px - self.road.k0_m_per_px) / self.road.k1_per_px if width_px > 0 else math.nan


class _Prior(NamedTuple):
    """A box's class prior as ``_prior_table`` makes it (a known width replacing the class's)."""

    known: bool
    width_m: float
    width_sigma_m: float
    offset_m: float
    offset_sigma_m: float
    length_m: float
    max_width_over_height: float

    @classmethod
    def of(cls, priors: Mapping[int, ClassPrior], category_id: int, width: tuple[float, float]) -> "_Prior":
        p = priors.get(int(category_id))
        if p is None:
            return cls(False, math.nan, math.nan, 0.0, 0.0, 0.0, math.inf)
        w, s = (float(width[0]), float(width[1])) if math.isfinite(width[0]) else (float(p.width_m),
                                                                                float(p.width_sigma_m))
        return cls(True, w, s, float(p.tyre_offset_m), float(p.tyre_offset_sigma_m), float(p.length_m),
                   float(p.max_width_over_height))


def cue_rows(road: RoadGeometry, boxes: list[list[float]], category_ids: list[int], config: CueConfig, *,
             widths: Sequence[tuple[float, float]], occluded: Sequence[bool]) -> FrameCues:
    """The cues of each box (``[x1, y1, x2, y2]`` pixels) as :func:`~aeb_app.safety.cues.measure_cues` computes them
    (known widths as its ``width_m``/``width_sigma_m``; ``occluded``: a solid nearer box hides its bottom edge),
    bit for bit, on plain floats."""
    frame = _Frame.of(road, config)
    rows, fused, sigmas = [], [], []
    for box, category_id, width, hidden in zip(boxes, category_ids, widths, occluded):
        row, value, sigma = _box_cues(frame, box, _Prior.of(config.priors, category_id, width), hidden)
        rows.append(row)
        fused.append(value)
        sigmas.append(sigma)
    return FrameCues(rows, fused, sigmas)


def _box_cues(frame: _Frame, box: list[float], prior: _Prior, hidden: bool) -> tuple[CueRow, float, float]:
    """One box's row, fused range and its sigma."""
    x1, y1, x2, y2 = box
    c = frame.config
    bw, bh = x2 - x1, y2 - y1
    edge = hypot(c.edge_sigma_px, c.edge_sigma_frac * bh)
    g_range, g_sigma, g_noise, why = _ground(frame, x1, x2, y2, edge, prior, hidden)
    g_valid = why == ""
    guess = g_range if g_valid else frame.range_from_width(bw, prior.width_m)
    w_range, w_sigma, w_noise = _width(frame, x1, x2, bw, edge, prior, guess)
    cut_side = x1 <= c.border_margin_px or x2 >= frame.right
    w_valid = (prior.known and not cut_side and bw <= prior.max_width_over_height * bh and bw > 1.0
               and math.isfinite(w_range) and w_range > 0)
    if not g_valid:
        g_range = g_sigma = g_noise = math.nan
    if not w_valid:
        w_range = w_sigma = w_noise = math.nan
    fused, fused_sigma = _fuse(g_range, g_sigma, w_range, w_sigma)
    lateral = frame.lateral(x1, x2, fused, prior.width_m, c.border_margin_px, frame.right)
    row = CueRow(g_valid, g_range, g_sigma, g_noise, w_valid, w_range, w_sigma, w_noise, lateral, why)
    return row, fused, fused_sigma


def _ground(frame: _Frame, x1: float, x2: float, y2: float, edge: float, prior: _Prior,
            hidden: bool) -> tuple[float, float, float, str]:
    """``_ground_cue`` of one box: range, sigma, frame-to-frame sigma, and why it is not valid ("" if it is)."""
    rng = frame.road.ground_ahead_at((x1 + x2) / 2, y2) - prior.offset_m
    noise = frame.road.range_per_px_at(y2) * edge
    sigma = hypot(noise, prior.offset_sigma_m)
    c = frame.config
    why = ("border" if (y2 >= frame.bottom or x1 <= c.border_margin_px or x2 >= frame.right) else "occlusion" if hidden
           else "horizon" if (y2 < frame.horizon or not sigma <= c.max_ground_rel_sigma * abs(rng)
                              or not math.isfinite(rng)) else "")
    return rng, sigma, noise, why


def _width(frame: _Frame, x1: float, x2: float, bw: float, edge: float, prior: _Prior,
           guess: float) -> tuple[float, float, float]:
    """``_width_cue`` of one box at the first range ``guess``: range, sigma, frame-to-frame sigma."""
    lateral = abs(frame.lateral(x1, x2, guess, prior.width_m, 5.0, frame.lateral_right))
    depth = guess + frame.setback_m
    outside = nan_to_num(lateral - prior.width_m / 2)
    side = maximum(outside, 0.0) * prior.length_m / maximum(depth + prior.length_m, 1e-3)
    apparent = prior.width_m + side
    rng = frame.range_from_width(bw, apparent)
    pixel_rel = divide(_SQRT2 * edge, bw)
    rel = hypot(divide(hypot(prior.width_sigma_m, 0.5 * side), apparent), pixel_rel)
    depth = rng + frame.setback_m
    return rng, rel * depth, pixel_rel * depth


def _fuse(g_range: float, g_sigma: float, w_range: float, w_sigma: float) -> tuple[float, float]:
    """:func:`~aeb_app.safety.cues.fuse` of one box's two cues: the inverse-variance mean and its sigma."""
    g_ok = math.isfinite(g_range) and math.isfinite(g_sigma) and g_sigma > 0
    w_ok = math.isfinite(w_range) and math.isfinite(w_sigma) and w_sigma > 0
    g_w = divide(1.0, g_sigma * g_sigma) if g_ok else 0.0
    w_w = divide(1.0, w_sigma * w_sigma) if w_ok else 0.0
    total = g_w + w_w
    if not total > 0:
        return math.nan, math.nan
    value = g_w * (g_range if g_ok else 0.0) + w_w * (w_range if w_ok else 0.0)
    return value / total, 1.0 / math.sqrt(total)
