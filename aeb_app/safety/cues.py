"""Range cues of one frame's boxes: ground contact and box width, each with its uncertainty and validity.

Two independent monocular cues per box (see docs/scenarios.md, "Range cues"):

* **ground**: the box bottom is where the object touches the road (for a vehicle the *rear tyres*,
  ``tyre_offset_m`` ahead of its rear face); the road calibration turns that row into a range.
  1 px of row error costs ``r^2 / (f h)`` metres, so the cue is good near and poor far.
* **width**: the box width against the class's typical width (``width_m`` +- ``width_sigma_m``); the
  relative error is the width prior's spread plus the pixel error over the width, so it is poor near
  (prior spread dominates) only in relative terms and degrades slowly with range.

A cue that cannot be valid gets no vote (``valid`` False, range NaN):

* a box touching the image bottom or a side: no ground cue (the contact is outside the image);
  touching a side also no width cue (the box is cut);
* a box wider than its class's shape allows (``max_width_over_height``: a far car labelled "person", a
  bicycle seen from the side): no width cue (the class's width is not what the box spans);
* a box whose bottom edge lies on or inside a nearer box: that edge is an occlusion edge, not a ground
  contact (a car seen over the roof of the lead car) -> no ground cue;
* a bottom edge within ``horizon_band_px`` of the horizon, or whose range sigma exceeds
  ``max_ground_rel_sigma`` of the range: too uncertain -> no ground cue.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Mapping

import numpy as np
import numpy.typing as npt

from aeb_app.errors import ConfigError
from aeb_app.safety.floats import columns, maximum, minimum, nan_to_num
from aeb_app.safety.road import RoadGeometry
from aeb_app.safety.tracker import box_iou

__all__ = ["ClassPrior", "CueConfig", "DEFAULT_PRIORS", "RangeCues", "measure_cues", "fuse", "object_lateral_m",
           "lateral_of", "occluded_bottoms", "occlusion_pairs"]


@dataclass(frozen=True)
class ClassPrior:
    """What is known about a class's size, for ranging.

    Attributes:
        width_m: typical width seen from behind, metres (mean).
        width_sigma_m: spread of that width over the class, metres (one standard deviation).
        tyre_offset_m: how far the box's bottom (ground contact) lies ahead of the object's rear face, metres
            (rear overhang for vehicles; 0 for a person).
        tyre_offset_sigma_m: spread of that offset, metres.
        length_m: typical length, metres (how much side a laterally offset object shows in its box).
        max_width_over_height: a box wider than this times its height does not have the class's shape (a far
            car labelled "person", a bicycle seen from the side): its width is not this class's width, so the
            box gets no width cue.
    """

    width_m: float
    width_sigma_m: float
    tyre_offset_m: float
    tyre_offset_sigma_m: float
    length_m: float
    max_width_over_height: float = 10.0


#: COCO id -> prior. Sources and reasoning in docs/scenarios.md ("Class priors").
DEFAULT_PRIORS: dict[int, ClassPrior] = {
    1: ClassPrior(0.50, 0.12, 0.0, 0.1, 0.4, 0.8),    # person (shoulders + arm swing; a box 2-3x taller than wide)
    2: ClassPrior(0.60, 0.12, 0.3, 0.15, 1.8, 1.2),   # bicycle (handlebar / rider; from the side: 1.8 m long)
    3: ClassPrior(1.80, 0.10, 0.9, 0.2, 4.5),    # car
    4: ClassPrior(0.80, 0.15, 0.4, 0.15, 2.1, 1.2),   # motorcycle (from the side: 2.1 m long)
    6: ClassPrior(2.55, 0.05, 2.5, 0.5, 12.0),   # bus
    7: ClassPrior(3.00, 0.15, 2.0, 0.5, 20.0),   # train / tram
    8: ClassPrior(2.30, 0.25, 1.2, 0.4, 8.0),    # truck (COCO 'truck' spans pickups to lorries)
}

_CLASS_NAMES = {1: "person", 2: "bicycle", 3: "car", 4: "motorcycle", 6: "bus", 7: "train", 8: "truck"}


@dataclass(frozen=True)
class CueConfig:
    """Cue settings (all validated at construction; a bad value names its key).

    Attributes:
        priors: COCO id -> :class:`ClassPrior`; classes without a prior get no width cue and no tyre offset.
        edge_sigma_px: box-edge error of the detector, pixels (fixed part).
        edge_sigma_frac: box-edge error proportional to the box size (fraction of its height/width).
        border_margin_px: an edge this close to the image border counts as cut by it (about 2.5 box-edge
            sigmas: a cut edge jittered off the border is still cut).
        occlusion_margin_px: tolerance for "the bottom edge lies on or inside a nearer box".
        occlusion_min_overlap: fraction of the box's bottom edge that must lie over the nearer box.
        duplicate_iou: a "nearer box" overlapping the box by this IoU or more is a second detection of the
            same object (a detector's duplicate), not something in front of it: it occludes nothing.
        horizon_band_px: ground points less than this far below the horizon are not used.
        max_ground_rel_sigma: a ground cue whose range sigma exceeds this fraction of its range is not used.
    """

    priors: Mapping[int, ClassPrior] = field(default_factory=lambda: dict(DEFAULT_PRIORS))
    edge_sigma_px: float = 2.0
    edge_sigma_frac: float = 0.03
    border_margin_px: float = 5.0
    occlusion_margin_px: float = 3.0
    occlusion_min_overlap: float = 0.3
    duplicate_iou: float = 0.5
    horizon_band_px: float = 6.0
    max_ground_rel_sigma: float = 0.25

    def __post_init__(self) -> None:
        for cid, prior in self.priors.items():
            name = _CLASS_NAMES.get(int(cid), str(cid))
            for key in ("width_m", "width_sigma_m", "tyre_offset_sigma_m", "length_m", "max_width_over_height"):
                _positive(getattr(prior, key), f"cues.priors.{name}.{key}")
            _positive(prior.tyre_offset_m, f"cues.priors.{name}.tyre_offset_m", allow_zero=int(cid) == 1)
        for key in ("edge_sigma_px", "horizon_band_px", "max_ground_rel_sigma", "occlusion_min_overlap",
                    "duplicate_iou"):
            _positive(getattr(self, key), f"cues.{key}")
        for key in ("edge_sigma_frac", "border_margin_px", "occlusion_margin_px"):
            _positive(getattr(self, key), f"cues.{key}", allow_zero=True)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> "CueConfig":
        """Settings from a mapping such as a YAML section: ``{priors: {car: {width_m: ..}}, edge_sigma_px: ..}``.

        Raises:
            ConfigError: an unknown key or class, or a zero/negative/NaN value (the key is named).
        """
        data = dict(data)
        priors = dict(DEFAULT_PRIORS)
        by_name = {v: k for k, v in _CLASS_NAMES.items()}
        for name, values in dict(data.pop("priors", {}) or {}).items():
            if name not in by_name:
                raise ConfigError(f"cues.priors.{name}: unknown class (known: {', '.join(by_name)})")
            if not isinstance(values, Mapping):
                raise ConfigError(f"cues.priors.{name}: expected a mapping of prior values, got {values!r}")
            base = priors[by_name[name]]
            unknown = set(values) - set(ClassPrior.__dataclass_fields__)
            if unknown:
                raise ConfigError(f"cues.priors.{name}.{sorted(unknown)[0]}: unknown key")
            merged = {k: values.get(k, getattr(base, k)) for k in ClassPrior.__dataclass_fields__}
            for k, v in merged.items():
                if isinstance(v, bool) or not isinstance(v, (int, float)):
                    raise ConfigError(f"cues.priors.{name}.{k}: expected a number, got {v!r}")
            priors[by_name[name]] = ClassPrior(**{k: float(v) for k, v in merged.items()})
        unknown = set(data) - set(cls.__dataclass_fields__)
        if unknown:
            raise ConfigError(f"cues.{sorted(unknown)[0]}: unknown key")
        return cls(priors=priors, **data)


def _positive(value: float, key: str, *, allow_zero: bool = False) -> None:
    ok = isinstance(value, (int, float)) and math.isfinite(value) and (value >= 0 if allow_zero else value > 0)
    if not ok:
        raise ConfigError(f"{key}: must be a {'non-negative' if allow_zero else 'positive'} number, got {value!r}")


@dataclass(frozen=True)
class RangeCues:
    """The cues of n boxes (parallel arrays, metres; NaN where a cue is not valid).

    Attributes:
        ground_valid: (n,) bool, ground-contact cue usable.
        ground_range_m: (n,) range of the rear face from the ground contact.
        ground_sigma_m: (n,) its standard deviation (pixel error and the spread of the tyre offset).
        ground_noise_m: (n,) the part of that sigma that changes from frame to frame (pixel error only).
        width_valid: (n,) bool, width cue usable.
        width_range_m: (n,) range of the rear face from the box width and the (class or track) width.
        width_sigma_m: (n,) its standard deviation (pixel error and the width's uncertainty).
        width_noise_m: (n,) the frame-to-frame part (pixel error only).
        lateral_m: (n,) lateral offset of the object's centre at the fused range (see :func:`object_lateral_m`).
        why_no_ground: (n,) short reason ("" when valid): "border", "occlusion", "horizon", "no prior".
        fused_range_m: (n,) :meth:`fused` range as :func:`measure_cues` computed it (None: computed when asked).
        fused_sigma_m: (n,) its sigma (None with ``fused_range_m``).
    """

    ground_valid: npt.NDArray[np.bool_]
    ground_range_m: npt.NDArray[np.float64]
    ground_sigma_m: npt.NDArray[np.float64]
    ground_noise_m: npt.NDArray[np.float64]
    width_valid: npt.NDArray[np.bool_]
    width_range_m: npt.NDArray[np.float64]
    width_sigma_m: npt.NDArray[np.float64]
    width_noise_m: npt.NDArray[np.float64]
    lateral_m: npt.NDArray[np.float64]
    why_no_ground: tuple[str, ...]
    fused_range_m: npt.NDArray[np.float64] | None = None
    fused_sigma_m: npt.NDArray[np.float64] | None = None

    def fused(self) -> tuple[npt.NDArray[np.float64], npt.NDArray[np.float64]]:
        """(n,) inverse-variance fused range and its sigma, metres (NaN where no cue is valid)."""
        if self.fused_range_m is not None and self.fused_sigma_m is not None:
            return self.fused_range_m, self.fused_sigma_m
        return fuse(np.where(self.ground_valid, self.ground_range_m, np.nan), self.ground_sigma_m,
                    np.where(self.width_valid, self.width_range_m, np.nan), self.width_sigma_m)


def fuse(*values_sigmas: npt.ArrayLike) -> tuple[npt.NDArray[np.float64], npt.NDArray[np.float64]]:
    """Inverse-variance fusion of (value, sigma) pairs given as alternating arrays; NaN values are skipped."""
    vals = np.asarray(values_sigmas[0::2], np.float64)
    sig = np.asarray(values_sigmas[1::2], np.float64)
    ok = np.isfinite(vals) & np.isfinite(sig) & (sig > 0)
    w = np.where(ok, 1.0 / np.where(ok, sig, 1.0) ** 2, 0.0)
    total = np.add.reduce(w, axis=0)  # w.sum(axis=0) without its Python wrapper
    with np.errstate(invalid="ignore", divide="ignore"):
        value = np.where(total > 0, np.add.reduce(w * np.where(ok, vals, 0.0), axis=0) / total, np.nan)
        sigma = np.where(total > 0, 1.0 / np.sqrt(total), np.nan)
    return value, sigma


def occluded_bottoms(boxes: npt.NDArray[np.float64], config: CueConfig,
                     can_occlude: npt.NDArray[np.bool_]) -> npt.NDArray[np.bool_]:
    """(n,) True where a box's bottom edge lies on or inside a nearer (lower-reaching) box that can occlude
    (all pairs at once: row i is the box, column j the box that may hide its bottom)."""
    return (occlusion_pairs(boxes, config) & can_occlude).any(axis=1)


def occlusion_pairs(boxes: npt.NDArray[np.float64], config: CueConfig) -> npt.NDArray[np.bool_]:
    """(n, n) True where box j would hide box i's bottom edge if j can occlude (not a second box of the same
    object): computed once per frame, masked by each caller's ``can_occlude`` columns."""
    n = len(boxes)
    if n < 2:
        return np.zeros((n, n), bool)
    m = config.occlusion_margin_px
    x1, y1, x2, y2 = boxes.T
    needed = config.occlusion_min_overlap * np.maximum(x2 - x1, 1e-6)  # per box i, then broadcast (same values)
    bottom = y2[:, None]
    overlap = np.minimum(x2[:, None], x2) - np.maximum(x1[:, None], x1)
    hides = (y2 > (y2 + m)[:, None]) & (y1 - m <= bottom)
    hides &= overlap >= needed[:, None]
    hides.flat[::n + 1] = False  # the diagonal (np.fill_diagonal's own way, without its checks)
    i, j = np.nonzero(hides)
    if len(i):
        duplicate = box_iou(boxes[i], boxes[j]) >= config.duplicate_iou  # a second box of the object hides nothing
        hides[i[duplicate], j[duplicate]] = False
    return hides


def measure_cues(road: RoadGeometry, xyxy_px: npt.ArrayLike, category_ids: npt.ArrayLike,
                 config: CueConfig, *, context_xyxy_px: npt.ArrayLike | None = None,
                 width_m: npt.ArrayLike | None = None, width_sigma_m: npt.ArrayLike | None = None,
                 can_occlude: npt.ArrayLike | None = None, pairs: npt.NDArray[np.bool_] | None = None) -> RangeCues:
    """Both range cues of n boxes.

    Args:
        road: geometry of the calibration.
        xyxy_px: (n, 4) boxes, image pixels.
        category_ids: (n,) COCO ids.
        config: cue settings.
        context_xyxy_px: (m, 4) every box of the frame that can occlude (default: ``xyxy_px``); the n
            boxes must be among them.
        width_m: (n,) the object's width when known better than the class prior (a track's learned
            width), metres; NaN entries use the prior.
        width_sigma_m: (n,) its uncertainty, metres.
        can_occlude: (m,) which context boxes are solid enough to occlude (e.g. established tracks, so a
            one-frame false positive does not hide the lead's ground contact); default all.
        pairs: :func:`occlusion_pairs` of the context boxes when already computed this frame (None: computed here).

    Returns:
        The cues (see :class:`RangeCues`).
    """
    boxes = np.asarray(xyxy_px, np.float64).reshape(-1, 4)
    n = len(boxes)
    has_prior, prior = _prior_table(np.asarray(category_ids).reshape(-1), config, width_m, width_sigma_m)
    bw, bh = boxes[:, 2] - boxes[:, 0], boxes[:, 3] - boxes[:, 1]
    edge = np.hypot(config.edge_sigma_px, config.edge_sigma_frac * bh)
    context = boxes if context_xyxy_px is None else np.asarray(context_xyxy_px, np.float64).reshape(-1, 4)
    solid = np.ones(len(context), bool) if can_occlude is None else np.asarray(can_occlude, bool).reshape(-1)
    pairs = occlusion_pairs(context, config) if pairs is None else pairs
    occluded = np.logical_or.reduce(pairs & solid, axis=1)  # .any(axis=1) without its Python wrapper
    if context is not boxes:
        occluded = occluded[_rows_in(boxes, context)]
    g_range, g_sigma, g_noise, why = _ground_cue(road, boxes, prior, edge, occluded, config)
    g_valid = np.array([r == "" for r in why], bool).reshape(n)
    w_img = road.calibration.image_size_wh[0]
    cut_side = (boxes[:, 0] <= config.border_margin_px) | (boxes[:, 2] >= w_img - config.border_margin_px)
    w_range, w_sigma, w_noise = _width_cue(road, bw, prior, edge, boxes, g_range, g_valid)
    shaped = bw <= prior[:, 5] * bh
    w_valid = has_prior & ~cut_side & shaped & (bw > 1.0) & np.isfinite(w_range) & (w_range > 0)
    g_range, g_sigma, g_noise = np.where(g_valid, (g_range, g_sigma, g_noise), np.nan)  # rows of one (3, n) array
    w_range, w_sigma, w_noise = np.where(w_valid, (w_range, w_sigma, w_noise), np.nan)
    fused, fused_sigma = fuse(g_range, g_sigma, w_range, w_sigma)
    lateral = object_lateral_m(road, boxes, fused, prior[:, 0], border_margin_px=config.border_margin_px)
    return RangeCues(g_valid, g_range, g_sigma, g_noise, w_valid, w_range, w_sigma, w_noise, lateral, why,
                     fused, fused_sigma)


def _prior_table(ids: npt.NDArray[np.int_], config: CueConfig, width_m: npt.ArrayLike | None,
                 width_sigma_m: npt.ArrayLike | None) -> tuple[npt.NDArray[np.bool_], npt.NDArray[np.float64]]:
    """(n,) has a prior, and (n, 6) width, width sigma, tyre offset, its sigma, length, largest width / height
    (inf without a prior); a known (learned)
    width replaces the class's where finite."""
    n = len(ids)
    priors = [config.priors.get(int(c)) for c in ids.tolist()]
    has_prior = np.array([p is not None for p in priors], bool).reshape(n)
    prior = np.array([[p.width_m, p.width_sigma_m, p.tyre_offset_m, p.tyre_offset_sigma_m, p.length_m,
                       p.max_width_over_height] if p else [np.nan, np.nan, 0.0, 0.0, 0.0, np.inf] for p in priors],
                     np.float64).reshape(n, 6)
    if width_m is not None and width_sigma_m is not None:
        width = np.asarray(width_m, np.float64).reshape(-1)
        known = np.isfinite(width) & has_prior
        prior[known, 0] = width[known]
        prior[known, 1] = np.asarray(width_sigma_m, np.float64).reshape(-1)[known]
    return has_prior, prior


def _ground_cue(road: RoadGeometry, boxes: npt.NDArray[np.float64], prior: npt.NDArray[np.float64],
                edge: npt.NDArray[np.float64], occluded: npt.NDArray[np.bool_], config: CueConfig
                ) -> tuple[npt.NDArray[np.float64], npt.NDArray[np.float64], npt.NDArray[np.float64], tuple[str, ...]]:
    """Range, sigma and frame-to-frame sigma of the ground-contact cue, and why it is not valid ("" if it is)."""
    g_range = road.ground_ahead_m((boxes[:, 0] + boxes[:, 2]) / 2, boxes[:, 3]) - prior[:, 2]
    g_noise = road.range_per_px(boxes[:, 3]) * edge
    g_sigma = np.hypot(g_noise, prior[:, 3])
    w_img, h_img = road.calibration.image_size_wh
    mrg, rel = config.border_margin_px, config.max_ground_rel_sigma
    bottom, right, horizon = h_img - mrg, w_img - mrg, road.horizon_row_px + config.horizon_band_px
    # Per box on plain floats (cheaper than a dozen array operations on a frame's few boxes): the contact is cut by
    # the image border, hidden by a nearer box, or too near the horizon / too uncertain / not on the road.
    why = tuple("border" if (y2 >= bottom or x1 <= mrg or x2 >= right) else "occlusion" if hidden
                else "horizon" if (y2 < horizon or not sigma <= rel * abs(rng) or not math.isfinite(rng)) else ""
                for (x1, _, x2, y2), hidden, rng, sigma in zip(boxes.tolist(), occluded.tolist(), g_range.tolist(),
                                                               g_sigma.tolist()))
    return g_range, g_sigma, g_noise, why


def object_lateral_m(road: RoadGeometry, xyxy_px: npt.ArrayLike, range_m: npt.ArrayLike, width_m: npt.ArrayLike,
                     *, border_margin_px: float = 5.0) -> npt.NDArray[np.float64]:
    """(n,) lateral offset of each object's centre, metres, at the range of its rear face.

    An object beside the ego lane shows its side towards the image centre, so its box's *inner* edge is
    the side's far corner (too far in) and the *outer* edge is the rear face's edge (exact, unless cut by
    the image border, then too far in as well). Both edges, moved half a width into the box, are therefore
    lower bounds of how far out the object is, and the larger of them is used. A box spanning the centre
    line shows no side: its centre is the middle of the box (or, when one side is cut, the other edge
    moved half a width in).

    Args:
        road: geometry of the calibration.
        xyxy_px: (n, 4) boxes, pixels.
        range_m: (n,) range of the rear face, metres.
        width_m: (n,) object width, metres (NaN: 0).
        border_margin_px: an edge this close to the border counts as cut.
    """
    boxes = np.asarray(xyxy_px, np.float64).reshape(-1, 4)
    x1s, x2s, ranges, widths = columns(boxes[:, 0], boxes[:, 2], range_m, width_m)
    centres, scales = road.centre_line_at(ranges)
    right_border = road.calibration.image_size_wh[0] - border_margin_px
    return np.array([lateral_of(x1, x2, centre, scale, width, border_margin_px, right_border)
                     for x1, x2, centre, scale, width in zip(x1s, x2s, centres, scales, widths)], np.float64)


def lateral_of(x1: float, x2: float, centre: float, scale: float, width: float, margin: float,
               right_border: float) -> float:
    """:func:`object_lateral_m` of one box (edges ``x1``, ``x2``) given the centre line's column and the lateral scale
    at its range, the object's width (metres), and the columns at which a side counts as cut (plain floats)."""
    left, right, half = (x1 - centre) * scale, (x2 - centre) * scale, nan_to_num(width / 2.0)
    from_left, from_right = left + half, right - half
    if left > 0:
        return maximum(from_left, from_right)
    if right < 0:
        return minimum(from_left, from_right)
    if (x1 <= margin) != (x2 >= right_border):  # one side cut: the other edge moved half a width in
        return from_right if x1 <= margin else from_left
    return (left + right) / 2.0  # both sides or neither: the middle of the box


def _rows_in(boxes: npt.NDArray[np.float64], context: npt.NDArray[np.float64]) -> npt.NDArray[np.intp]:
    """Index in ``context`` of each box (exact match; boxes must be among the context boxes)."""
    if context is boxes:
        return np.arange(len(boxes))
    eq = (np.abs(boxes[:, None, :] - context[None, :, :]) < 1e-6).all(axis=2)
    if len(boxes) and not eq.any(axis=1).all():
        raise ValueError("context_xyxy_px must contain every box of xyxy_px")
    return eq.argmax(axis=1)


def _width_cue(road: RoadGeometry, bw: npt.NDArray[np.float64], prior: npt.NDArray[np.float64],
               edge: npt.NDArray[np.float64], boxes: npt.NDArray[np.float64], g_range: npt.NDArray[np.float64],
               g_valid: npt.NDArray[np.bool_]
               ) -> tuple[npt.NDArray[np.float64], npt.NDArray[np.float64], npt.NDArray[np.float64]]:
    """Range from the box width; a laterally offset object also shows its side, which widens its box.

    The side adds about ``(|lateral| - W/2) * L / (Z + L)`` metres at the rear face (its far corner
    projects towards the image centre); the width is corrected for it with a first range estimate and
    half of the correction is added to the sigma (the object's yaw and length are not known).
    """
    first = road.range_from_width(bw, prior[:, 0])
    guess = np.where(g_valid, g_range, first)
    lateral = np.abs(object_lateral_m(road, boxes, guess, prior[:, 0]))
    depth = guess + road.setback_m
    with np.errstate(invalid="ignore", divide="ignore"):
        outside = lateral - prior[:, 0] / 2
        if not np.logical_and.reduce(np.isfinite(outside)):
            outside = np.nan_to_num(outside)
        side = np.maximum(outside, 0.0) * prior[:, 4] / np.maximum(depth + prior[:, 4], 1e-3)
        apparent = prior[:, 0] + side
        rng = road.range_from_width(bw, apparent)
        pixel_rel = np.sqrt(2.0) * edge / bw
        rel = np.hypot(np.hypot(prior[:, 1], 0.5 * side) / apparent, pixel_rel)
        depth = rng + road.setback_m
    return rng, rel * depth, pixel_rel * depth
