"""A small IoU tracker: boxes of consecutive frames are matched by intersection over union.

Enough for the few road users of a dashcam view; each track carries the range filter of its object.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import numpy.typing as npt
from scipy.optimize import linear_sum_assignment

from aeb_app.safety.kinematics import RangeFilter, RangeFilterConfig

__all__ = ["Track", "IouTracker", "iou_matrix"]


def iou_matrix(a_xyxy: npt.ArrayLike, b_xyxy: npt.ArrayLike) -> npt.NDArray[np.float64]:
    """(n, m) IoU of (n, 4) and (m, 4) xyxy boxes in pixels."""
    a = np.asarray(a_xyxy, dtype=np.float64).reshape(-1, 4)
    b = np.asarray(b_xyxy, dtype=np.float64).reshape(-1, 4)
    lt = np.maximum(a[:, None, :2], b[None, :, :2])
    rb = np.minimum(a[:, None, 2:], b[None, :, 2:])
    inter = np.clip(rb - lt, 0, None).prod(axis=2)
    area_a = (a[:, 2:] - a[:, :2]).prod(axis=1)
    area_b = (b[:, 2:] - b[:, :2]).prod(axis=1)
    union = area_a[:, None] + area_b[None, :] - inter
    return np.where(union > 0, inter / np.maximum(union, 1e-12), 0.0)


@dataclass
class Track:
    """One tracked object.

    Attributes:
        track_id: stable id, counting from 1.
        xyxy_px: (4,) last matched box.
        category_id: COCO id of the last match.
        hits: number of frames matched.
        missed: consecutive frames without a match.
        range_filter: filtered range / range rate / range acceleration.
    """

    track_id: int
    xyxy_px: npt.NDArray[np.float64]
    category_id: int
    range_filter: RangeFilter
    hits: int = 1
    missed: int = 0
    last_timestamp_s: float = field(default=0.0)


class IouTracker:
    """Greedy-optimal (Hungarian) IoU matching with track ageing.

    Args:
        iou_threshold: minimum IoU for a match.
        max_missed: frames a track survives without a match.
        filter_config: range filter settings for new tracks.
    """

    def __init__(self, *, iou_threshold: float = 0.2, max_missed: int = 5,
                 filter_config: RangeFilterConfig | None = None) -> None:
        self.iou_threshold = iou_threshold
        self.max_missed = max_missed
        self.filter_config = filter_config or RangeFilterConfig()
        self.tracks: list[Track] = []
        self._next_id = 1

    def reset(self) -> None:
        """Forget every track (after a gap in the frames)."""
        self.tracks = []

    def update(self, xyxy_px: npt.ArrayLike, category_ids: npt.ArrayLike) -> list[Track]:
        """Match (n, 4) boxes to tracks; returns the n matched-or-new tracks in input order."""
        boxes = np.asarray(xyxy_px, dtype=np.float64).reshape(-1, 4)
        ids = np.asarray(category_ids).reshape(-1)
        assigned: list[Track | None] = [None] * len(boxes)
        if self.tracks and len(boxes):
            iou = iou_matrix([t.xyxy_px for t in self.tracks], boxes)
            rows, cols = linear_sum_assignment(-iou)
            for r, c in zip(rows, cols):
                if iou[r, c] >= self.iou_threshold:
                    assigned[c] = self.tracks[r]
        matched = {id(t) for t in assigned if t is not None}
        for track in self.tracks:
            if id(track) not in matched:
                track.missed += 1
        self.tracks = [t for t in self.tracks if t.missed <= self.max_missed]
        for i, box in enumerate(boxes):
            existing = assigned[i]
            if existing is None:
                new = Track(self._next_id, box, int(ids[i]), RangeFilter(self.filter_config))
                self._next_id += 1
                self.tracks.append(new)
                assigned[i] = new
            else:
                existing.xyxy_px, existing.category_id = box, int(ids[i])
                existing.hits += 1
                existing.missed = 0
        return [t for t in assigned if t is not None]
