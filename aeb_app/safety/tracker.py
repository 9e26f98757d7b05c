"""A small IoU tracker: boxes of consecutive frames are matched by intersection over union.

Enough for the few road users of a dashcam view; each track carries the range filter of its object.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
import numpy.typing as npt
from scipy.optimize import linear_sum_assignment

from aeb_app.safety.expansion import ExpansionConfig, ExpansionTracker, RangeTrend
from aeb_app.safety.kinematics import RangeFilter, RangeFilterConfig

__all__ = ["Track", "IouTracker", "iou_matrix", "box_iou", "edges_agreeing"]


def iou_matrix(a_xyxy: npt.ArrayLike, b_xyxy: npt.ArrayLike) -> npt.NDArray[np.float64]:
    """(n, m) IoU of (n, 4) and (m, 4) xyxy boxes in pixels."""
    a = np.asarray(a_xyxy, dtype=np.float64).reshape(-1, 4)
    b = np.asarray(b_xyxy, dtype=np.float64).reshape(-1, 4)
    return box_iou(a[:, None, :], b[None, :, :])


def box_iou(a_xyxy: npt.NDArray[np.float64], b_xyxy: npt.NDArray[np.float64]) -> npt.NDArray[np.float64]:
    """IoU of (..., 4) xyxy boxes broadcast against each other (e.g. (n, 4) and (n, 4): n pairs)."""
    ax1, ay1, ax2, ay2 = (a_xyxy[..., k] for k in range(4))
    bx1, by1, bx2, by2 = (b_xyxy[..., k] for k in range(4))
    # Per coordinate column, np.maximum(., 0.0) (NaN and -0.0 kept, as np.clip(., 0, None) does): the values of
    # np.clip(...).prod(axis=-1) bit for bit, without their per-call overhead (this runs on every box pair); each
    # box's area is computed once, before broadcasting.
    inter = np.maximum(np.minimum(ax2, bx2) - np.maximum(ax1, bx1), 0.0)
    inter *= np.maximum(np.minimum(ay2, by2) - np.maximum(ay1, by1), 0.0)
    union = (ax2 - ax1) * (ay2 - ay1) + (bx2 - bx1) * (by2 - by1) - inter
    return np.where(union > 0, inter / np.maximum(union, 1e-12), 0.0)


def edges_agreeing(a_xyxy: npt.ArrayLike, b_xyxy: npt.ArrayLike, tolerance: float) -> npt.NDArray[np.int_]:
    """(n, m) how many of the four edges of box b lie within ``tolerance`` of box a's (x edges relative
    to a's width, y edges relative to a's height)."""
    a = np.asarray(a_xyxy, dtype=np.float64).reshape(-1, 4)
    b = np.asarray(b_xyxy, dtype=np.float64).reshape(-1, 4)
    size = np.maximum(np.concatenate([a[:, 2:] - a[:, :2]] * 2, axis=1)[:, [0, 1, 0, 1]], 1e-6)
    return (np.abs(a[:, None, :] - b[None, :, :]) <= tolerance * size[:, None, :]).sum(axis=2)


@dataclass
class Track:
    """One tracked object.

    Attributes:
        track_id: stable id, counting from 1.
        xyxy_px: (4,) last matched box.
        category_id: the track's COCO id: the class with the highest summed detection score over its
            matches (a detector flips a far car between "car", "truck" and "person" from frame to
            frame; the class prior, hence the width cue's range, must not flip with it).
        class_votes: summed detection score per COCO id over the track's matches.
        ranged_as: the class its range filter was started with (None: not yet ranged).
        range_filter: filtered range / range rate / range acceleration.
        expansion: width history for the scale-change TTC.
        first_seen_s: time of the first match, seconds.
        last_seen_s: time of the last match, seconds.
        hits: number of frames matched.
        width_info: sum of 1/sigma^2 of the object's width measured through the ground cue, 1/m^2.
        width_info_m: sum of width/sigma^2 of those measurements, 1/m.
        last_ground_s: last time the ground-contact cue was used, seconds.
        last_occluded_s: last time the box's bottom was an occlusion edge (something nearer in front), seconds.
        lateral_m: the object's lateral offset when last seen whole (not cut at a side), metres.
        match_box_px: (4,) the box matched against: the average of the last match and the one before
            (an exponential mean), so that one jumped edge does not break the track.
        agreed: the track's TTC cues allowed a warning in the last frame it was seen.
        braking: its range filter's relative acceleration was significantly negative (the lead braking) in the last
            frame it was seen; a frame in which it is missed keeps that decision (no new evidence).
        zone_lateral_m: the lateral offset its zone membership was judged with in that frame, metres.
        trend: its measured ranges over the last seconds (is the gap really shrinking?), made by the user.
    """

    track_id: int
    xyxy_px: npt.NDArray[np.float64]
    category_id: int
    range_filter: RangeFilter
    expansion: ExpansionTracker
    first_seen_s: float = 0.0
    last_seen_s: float = 0.0
    hits: int = 1
    width_info: float = 0.0
    width_info_m: float = 0.0
    last_ground_s: float = -math.inf
    last_occluded_s: float = -math.inf
    lateral_m: float = math.nan
    match_box_px: npt.NDArray[np.float64] | None = None
    agreed: bool = False
    braking: bool = False
    zone_lateral_m: float = math.nan
    trend: RangeTrend | None = None
    class_votes: dict[int, float] = field(default_factory=dict)
    ranged_as: int | None = None

    def __post_init__(self) -> None:
        if self.match_box_px is None:
            self.match_box_px = np.asarray(self.xyxy_px, np.float64).copy()
        if not self.class_votes:
            self.class_votes[self.category_id] = 0.0

    def vote_class(self, category_id: int, score: float) -> None:
        """Add one detection's class (weighted by its score); the track's class is the leader (ties: kept)."""
        self.class_votes[category_id] = self.class_votes.get(category_id, 0.0) + score
        if self.class_votes[category_id] > self.class_votes.get(self.category_id, 0.0):
            self.category_id = category_id

    def learn_width(self, width_m: float, sigma_m: float) -> None:
        """Add one measurement of the object's true width (metres, with its sigma)."""
        if math.isfinite(width_m) and math.isfinite(sigma_m) and sigma_m > 0:
            self.width_info += 1.0 / sigma_m**2
            self.width_info_m += width_m / sigma_m**2

    def width_m(self, prior_m: float, prior_sigma_m: float) -> tuple[float, float]:
        """Posterior (width, sigma) in metres: the class prior combined with the learned measurements."""
        info = 1.0 / prior_sigma_m**2 + self.width_info
        return (prior_m / prior_sigma_m**2 + self.width_info_m) / info, 1.0 / math.sqrt(info)

    def age_s(self, now_s: float) -> float:
        """Seconds since the track was first seen, or since its ranging last restarted."""
        return now_s - self.first_seen_s

    def restart_ranging(self, now_s: float) -> None:
        """Start the range filter and the closing trend afresh, and count the age from ``now_s``: what they
        hold came from another class's prior (width, tyre offset). The learned width is measured, it stays."""
        self.range_filter = RangeFilter(self.range_filter.config)
        self.trend = None
        self.braking = False
        self.first_seen_s = now_s


class IouTracker:
    """Greedy-optimal (Hungarian) IoU matching with track ageing in seconds.

    Boxes left unmatched by IoU get a second chance against the tracks left unmatched (of a class the track was seen as): a
    detector's box edge that jumps 10-30 px can shrink a box so much that its IoU with its own track falls
    below the threshold, although its other three edges are where they were. A box with at least three
    edges within ``edge_tolerance`` of the track's box (x edges relative to the track's box width, y edges
    to its height) continues the track instead of starting a new one, so the track's filter and expansion
    history (and their settling time) are not lost, and the box does not land on a neighbouring track.

    Args:
        iou_threshold: minimum IoU for a match.
        edge_tolerance: second stage: how far an edge may move and still agree, fraction of the box size.
        max_coast_s: seconds a track survives without a match.
        filter_config: range filter settings for new tracks.
        expansion_config: scale-change settings for new tracks.
    """

    def __init__(self, *, iou_threshold: float = 0.2, max_coast_s: float = 0.5, edge_tolerance: float = 0.25,
                 filter_config: RangeFilterConfig | None = None,
                 expansion_config: ExpansionConfig | None = None) -> None:
        self.iou_threshold = iou_threshold
        self.edge_tolerance = edge_tolerance
        self.max_coast_s = max_coast_s
        self.filter_config = filter_config or RangeFilterConfig()
        self.expansion_config = expansion_config or ExpansionConfig()
        self.tracks: list[Track] = []
        self._next_id = 1

    def reset(self) -> None:
        """Forget every track (after a gap in the frames)."""
        self.tracks = []

    def update(self, xyxy_px: npt.ArrayLike, category_ids: npt.ArrayLike, timestamp_s: float,
               scores: npt.ArrayLike | None = None) -> list[Track]:
        """Match (n, 4) boxes seen at ``timestamp_s`` to tracks; returns the n matched-or-new tracks in order.

        ``scores``: the boxes' detection scores, the weights of their class votes (None: 1 each).
        """
        boxes = np.asarray(xyxy_px, dtype=np.float64).reshape(-1, 4)
        ids = np.asarray(category_ids).reshape(-1)
        weights = np.ones(len(boxes)) if scores is None else np.asarray(scores, np.float64).reshape(-1)
        assigned = self._associate(boxes, ids)
        taken = {id(a) for a in assigned if a is not None}
        self.tracks = [t for t in self.tracks if timestamp_s - t.last_seen_s <= self.max_coast_s + 1e-6
                       or id(t) in taken]
        smoothed = self._smoothed(boxes, assigned)
        for i, (box, category_id, weight) in enumerate(zip(boxes, ids.tolist(), weights.tolist())):
            existing = assigned[i]
            if existing is None:
                new = Track(self._next_id, box, int(category_id), RangeFilter(self.filter_config),
                            ExpansionTracker(self.expansion_config), timestamp_s, timestamp_s)
                self._next_id += 1
                self.tracks.append(new)
                assigned[i] = existing = new
            else:
                existing.match_box_px = smoothed[i]
                existing.xyxy_px = box
                existing.hits += 1
                existing.last_seen_s = timestamp_s
            existing.vote_class(int(category_id), float(weight))
        return [t for t in assigned if t is not None]

    @staticmethod
    def _smoothed(boxes: npt.NDArray[np.float64], assigned: list[Track | None]) -> npt.NDArray[np.float64]:
        """(n, 4) the new match box of each matched box's track, all at once (rows of unmatched boxes: unused).

        Match against a smoothed box: one edge that jumps 20 px must not break the track."""
        previous = boxes.copy()
        for i, track in enumerate(assigned):
            if track is not None:
                previous[i] = track.match_box_px
        return 0.5 * (previous + boxes)

    def _associate(self, boxes: npt.NDArray[np.float64], ids: npt.NDArray[np.int_]) -> list[Track | None]:
        """The track of each box (None: new object): IoU first, then three agreeing edges for the leftovers."""
        assigned: list[Track | None] = [None] * len(boxes)
        if not (self.tracks and len(boxes)):
            return assigned
        reference = np.array([t.match_box_px for t in self.tracks], np.float64).reshape(-1, 4)
        iou = iou_matrix(reference, boxes)
        self._iou_cascade(iou, assigned)
        taken = {id(a) for a in assigned if a is not None}
        free_t = [r for r, t in enumerate(self.tracks) if id(t) not in taken]
        free_b = [c for c in range(len(boxes)) if assigned[c] is None]
        if not (free_t and free_b):
            return assigned
        # A class the track has been seen as (its detector flips classes) may continue it.
        same_class = np.array([[int(ids[c]) in self.tracks[r].class_votes for c in free_b] for r in free_t])
        agreeing = edges_agreeing(reference[free_t], boxes[free_b], self.edge_tolerance)
        ok = same_class & (agreeing >= 3)
        score = agreeing + iou[free_t][:, free_b]  # iou[np.ix_(free_t, free_b)], cheaper
        rows, cols = linear_sum_assignment(-np.where(ok, score, 0.0))
        for r, c in zip(rows, cols):
            if ok[r, c]:
                assigned[free_b[c]] = self.tracks[free_t[r]]
        return assigned

    def _iou_cascade(self, iou: npt.NDArray[np.float64], assigned: list[Track | None]) -> None:
        """IoU matching of the confirmed tracks (seen in more than one frame) first, then of the tentative ones
        with the boxes left (as Deep SORT matches confirmed tracks before unconfirmed ones, Wojke et al. 2017).

        A track born from a detector's duplicate box or a false positive, seen once, must not take the box of
        the established track only because its box overlaps a little more than the established one's smoothed box.
        """
        for confirmed in (True, False):
            rows_t = [r for r, t in enumerate(self.tracks) if (t.hits > 1) == confirmed]
            cols_b = [c for c in range(len(assigned)) if assigned[c] is None]
            if not (rows_t and cols_b):
                continue
            sub = iou[rows_t][:, cols_b]  # iou[np.ix_(rows_t, cols_b)], cheaper
            rows, cols = linear_sum_assignment(-sub)
            for r, c, good in zip(rows.tolist(), cols.tolist(), (sub[rows, cols] >= self.iou_threshold).tolist()):
                if good:
                    assigned[cols_b[c]] = self.tracks[rows_t[r]]
