"""Wide frames seen as overlapping tiles plus the whole frame, and the detections merged back (pure NumPy).

SSD networks take a square input (300x300). A 16:9 dashcam frame is squeezed 1.8x horizontally to fit; a 1242x375
KITTI frame (3.3:1) 4.1x, so a car 60 px wide at 25 m reaches the network 15 px wide, far narrower than the cars
it was trained on, and its box edges jump by tens of pixels from frame to frame. Detectors deployed on wide cameras
therefore slice the frame (SAHI, "slicing aided hyper inference"): here a frame wider than
:attr:`TileConfig.max_aspect` is cut into overlapping windows of :attr:`TileConfig.tile_aspect` (full height) and
the whole frame is added for objects larger than the overlap; all of them go through the network as one batch.

Merging (:func:`merge_tiles`): boxes move back to frame pixels; the tiles' finer view wins over the whole frame's
for the same object; a box cut by a window's inner edge gives way to an uncut view of its object, and is kept when
it is the only one; then NMS over everything (per class unless the selection is class agnostic).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from aeb_app.model.boxes import batched_nms_numpy
from aeb_app.types import Detections

__all__ = ["NO_TILING", "TileConfig", "TilePlan", "merge_tiles", "plan_tiles"]


@dataclass(frozen=True)
class TileConfig:
    """How wide frames are sliced.

    Attributes:
        enabled: slice frames wider than ``max_aspect`` (False: every frame whole, squeezed as before).
        max_aspect: width / height up to which a frame goes through whole (16:9 dashcams do).
        tile_aspect: width / height of each window (full frame height).
        overlap: fraction of a window's width shared with its neighbour, at least.
        edge_margin_px: a box edge this close to a window's inner edge is a cut edge, pixels.
        cover: share of a cut box that an uncut box must cover to replace it.
        dup_iou: IoU from which a whole-frame box and an uncut tile box are the same object (the tile's is kept).
        max_tiles: at most this many windows (wider ones for an extreme aspect ratio), bounding the cost.
    """

    enabled: bool = True
    max_aspect: float = 2.0
    tile_aspect: float = 4.0 / 3.0
    overlap: float = 0.25
    edge_margin_px: float = 3.0
    cover: float = 0.5
    dup_iou: float = 0.3
    max_tiles: int = 6

    def __post_init__(self) -> None:
        if not (self.max_aspect >= 1.0 and 0.5 <= self.tile_aspect <= self.max_aspect):
            raise ValueError(f"tiling needs max_aspect >= 1 and 0.5 <= tile_aspect <= max_aspect, got "
                             f"{self.max_aspect}, {self.tile_aspect}")
        if not (0.0 <= self.overlap < 0.9 and self.edge_margin_px >= 0 and 0 < self.cover <= 1
                and 0 < self.dup_iou <= 1 and self.max_tiles >= 2):
            raise ValueError(f"tiling needs overlap in [0, 0.9), edge_margin_px >= 0, cover and dup_iou in (0, 1], "
                             f"got {self.overlap}, {self.edge_margin_px}, {self.cover}, {self.dup_iou}")


#: Every frame whole (the network's input squeezed), as before tiling existed.
NO_TILING = TileConfig(enabled=False)


@dataclass(frozen=True)
class TilePlan:
    """The windows one frame is seen through.

    Attributes:
        size_hw: the frame's (height, width).
        windows: (x0, x1) pixel columns of each tile (full height), left to right; empty: the frame goes whole.
    """

    size_hw: tuple[int, int]
    windows: tuple[tuple[int, int], ...] = ()

    @property
    def views(self) -> int:
        """Network inputs for this frame: the tiles and the whole frame (1 without tiles)."""
        return len(self.windows) + 1


def plan_tiles(size_hw: tuple[int, int], config: TileConfig) -> TilePlan:
    """The tiles of a frame of ``size_hw``: none up to ``max_aspect``, else the fewest windows of ``tile_aspect``
    (at most ``max_tiles``) that overlap by at least ``overlap``, spread evenly from edge to edge."""
    h, w = int(size_hw[0]), int(size_hw[1])
    if not config.enabled or h <= 0 or w <= config.max_aspect * h:
        return TilePlan((h, w))
    width = min(w, max(1, round(config.tile_aspect * h)))
    n = max(2, math.ceil((w - width) / (width * (1.0 - config.overlap))) + 1)
    if n > config.max_tiles:  # wider windows, still overlapping by ``overlap``
        n = config.max_tiles
        width = math.ceil(w / (n - (n - 1) * config.overlap))
    step = (w - width) / (n - 1)
    return TilePlan((h, w), tuple((round(i * step), round(i * step) + width) for i in range(n)))


def merge_tiles(plan: TilePlan, tiles: list[Detections], whole: Detections, *, config: TileConfig,
                iou_threshold: float, class_agnostic: bool, max_detections: int) -> Detections:
    """One frame's detections from those of its tiles (in tile pixels, in ``plan.windows`` order) and of the
    whole frame (in frame pixels).

    A tile sees finer, the whole frame sees objects wider than a tile: a whole-frame box that fits inside a window
    gives way to that window's uncut box of the same object (IoU >= ``config.dup_iou``); a tile box cut by its
    window's inner edge gives way to an uncut view (tile or whole frame) covering ``config.cover`` of it, and
    stays when nothing else sees that object; then NMS, best first, at most ``max_detections``.
    """
    if len(tiles) != len(plan.windows):
        raise ValueError(f"{len(tiles)} tile results for {len(plan.windows)} windows")
    m, w = config.edge_margin_px, plan.size_hw[1]
    parts, cut, window = [], [], []
    for k, ((x0, x1), dets) in enumerate(zip(plan.windows, tiles)):
        boxes = dets.xyxy_px + np.array([x0, 0, x0, 0], np.float32)
        cut.append(((x0 > 0) & (boxes[:, 0] <= x0 + m)) | ((x1 < w) & (boxes[:, 2] >= x1 - m)))
        parts.append(Detections(boxes, dets.scores, dets.category_ids, dets.names))
        window.append(np.full(len(dets), k, np.int64))
    tiled, is_cut = _concat(parts), np.concatenate(cut)
    uncut, span = tiled[~is_cut], np.array(plan.windows, np.float32)[np.concatenate(window)[~is_cut]]
    fits = (whole.xyxy_px[:, None, 0] >= span[None, :, 0] - m) & (whole.xyxy_px[:, None, 2] <= span[None, :, 1] + m)
    duplicate = fits & _same_class(whole, uncut, class_agnostic) & (
        _intersection(whole, uncut) >= config.dup_iou * _union(whole, uncut))
    seen = _concat([uncut, whole[~duplicate.any(axis=1)]])
    cut_dets = tiled[is_cut]
    covered = _same_class(cut_dets, seen, class_agnostic) & (
        _intersection(cut_dets, seen) >= config.cover * _area(cut_dets)[:, None])
    merged = _concat([seen, cut_dets[~covered.any(axis=1)]])
    groups = np.zeros(len(merged), np.int64) if class_agnostic else merged.category_ids
    keep = batched_nms_numpy(merged.xyxy_px, merged.scores, groups, iou_threshold)[:max_detections]
    return merged[keep]


def _concat(parts: list[Detections]) -> Detections:
    return Detections(np.concatenate([p.xyxy_px for p in parts]).reshape(-1, 4) if parts else np.zeros((0, 4)),
                      np.concatenate([p.scores for p in parts]) if parts else np.zeros(0),
                      np.concatenate([p.category_ids for p in parts]) if parts else np.zeros(0, np.int64),
                      tuple(n for p in parts for n in p.names))


def _area(d: Detections) -> npt.NDArray[np.float32]:
    return np.maximum((d.xyxy_px[:, 2] - d.xyxy_px[:, 0]) * (d.xyxy_px[:, 3] - d.xyxy_px[:, 1]), 1e-6)


def _intersection(a: Detections, b: Detections) -> npt.NDArray[np.float32]:
    """(len(a), len(b)) intersection areas."""
    p, q = a.xyxy_px, b.xyxy_px
    iw = np.clip(np.minimum(p[:, None, 2], q[None, :, 2]) - np.maximum(p[:, None, 0], q[None, :, 0]), 0, None)
    ih = np.clip(np.minimum(p[:, None, 3], q[None, :, 3]) - np.maximum(p[:, None, 1], q[None, :, 1]), 0, None)
    return iw * ih


def _union(a: Detections, b: Detections) -> npt.NDArray[np.float32]:
    return _area(a)[:, None] + _area(b)[None, :] - _intersection(a, b)


def _same_class(a: Detections, b: Detections, class_agnostic: bool) -> npt.NDArray[np.bool_]:
    if class_agnostic:
        return np.ones((len(a), len(b)), bool)
    return a.category_ids[:, None] == b.category_ids[None, :]
