"""Pure helpers for drawing detections legibly: class colours, duplicate merging, label placement.

No OpenCV here (the caller measures text); everything is numpy and testable without an image.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np
import numpy.typing as npt

from aeb_app.types import Detections

#: BGR colours for boxes, one per class (by COCO id, cycled). Chosen to stay clear of the overlay's
#: meanings: pure red / green (ground points in / out of the zone) and yellow (the zone) are absent.
PALETTE: tuple[tuple[int, int, int], ...] = (
    (255, 160, 0),    # azure
    (255, 0, 170),    # violet
    (0, 140, 255),    # orange
    (255, 255, 0),    # cyan
    (180, 0, 255),    # magenta-pink
    (170, 120, 60),   # steel blue
    (60, 180, 255),   # light orange
    (200, 80, 140),   # purple
    (140, 200, 40),   # teal
    (80, 80, 200),    # brick
    (255, 200, 150),  # pale blue
    (120, 60, 180),   # plum
)
#: How many label heights a label may move down or up to avoid an earlier one.
MAX_LABEL_SHIFTS = 8
#: Two boxes of different classes overlapping more than this are one object shown twice.
CROSS_CLASS_IOU = 0.8


def class_color(category_id: int) -> tuple[int, int, int]:
    """The stable BGR colour of a COCO category id (the same in every frame and every run)."""
    return PALETTE[int(category_id) % len(PALETTE)]


def iou_matrix(a: npt.ArrayLike, b: npt.ArrayLike) -> npt.NDArray[np.float64]:
    """(n, m) intersection over union of xyxy boxes ``a`` (n, 4) and ``b`` (m, 4), any unit."""
    a = np.asarray(a, np.float64).reshape(-1, 4)
    b = np.asarray(b, np.float64).reshape(-1, 4)
    lt = np.maximum(a[:, None, :2], b[None, :, :2])
    rb = np.minimum(a[:, None, 2:], b[None, :, 2:])
    inter = np.prod(np.clip(rb - lt, 0, None), axis=2)
    area = lambda x: np.prod(np.clip(x[:, 2:] - x[:, :2], 0, None), axis=1)  # noqa: E731
    union = area(a)[:, None] + area(b)[None, :] - inter
    return np.divide(inter, union, out=np.zeros_like(inter), where=union > 0)


def merge_cross_class_duplicates(detections: Detections, iou_threshold: float = CROSS_CLASS_IOU) -> Detections:
    """Drop a box that overlaps a higher-scoring box of another class by more than ``iou_threshold``.

    Per-class NMS leaves one object labelled twice (``cup 0.69`` and ``bowl 0.56`` on the same box);
    for display only the more confident label is kept. Same-class pairs are NMS's business and stay.

    Returns:
        The kept detections, in descending score order.
    """
    if len(detections) < 2:
        return detections
    order = np.argsort(-detections.scores, kind="stable")
    iou = iou_matrix(detections.xyxy_px[order], detections.xyxy_px[order])
    ids = detections.category_ids[order]
    kept: list[int] = []
    for i in range(len(order)):
        if not any(iou[i, j] > iou_threshold and ids[i] != ids[j] for j in kept):
            kept.append(i)
    return detections[order[kept]]


#: A label's rectangle in pixels: (x1, y1, x2, y2).
Rect = tuple[int, int, int, int]


def drop_repeated_boxes(boxes_xyxy: npt.ArrayLike, iou_threshold: float = CROSS_CLASS_IOU) -> list[int]:
    """Indices of the boxes to keep, in order: a box overlapping an earlier kept one by more than
    ``iou_threshold`` is the same object shown again (NaN boxes overlap nothing)."""
    boxes = np.nan_to_num(np.asarray(boxes_xyxy, np.float64).reshape(-1, 4), nan=0.0)
    iou = iou_matrix(boxes, boxes)
    kept: list[int] = []
    for i in range(len(boxes)):
        if not any(iou[i, j] > iou_threshold for j in kept):
            kept.append(i)
    return kept


def place_labels(boxes_xyxy: npt.ArrayLike, sizes_wh: Sequence[tuple[int, int]],
                 image_hw: tuple[int, int], *, occupied: list[Rect] | None = None) -> list[tuple[int, int]]:
    """Top-left corner of each box's label, so that no label covers an earlier one.

    A label sits just above its box (inside the top edge when there is no room above). When it
    would overlap a label already placed, it takes the nearest free slot one, two, ... label heights
    below or above (down first, at most :data:`MAX_LABEL_SHIFTS` each way, inside the image); if every
    slot is taken it keeps the first one.

    Args:
        boxes_xyxy: (n, 4) boxes in pixels, in drawing order (most important first).
        sizes_wh: label (width, height) in pixels, including its background padding.
        image_hw: image (height, width), to keep labels inside.
        occupied: rectangles already taken (labels drawn before these); the new labels avoid them
            too and are appended to it, so successive calls share one layout.

    Returns:
        n (x, y) top-left corners in pixels.
    """
    h_img, w_img = image_hw
    placed: list[Rect] = occupied if occupied is not None else []
    corners = []
    for box, (w, h) in zip(np.asarray(boxes_xyxy, np.float64).reshape(-1, 4), sizes_wh):
        x = int(min(max(round(box[0]), 0), max(w_img - w, 0)))
        first = int(round(box[1])) - h if box[1] - h >= 0 else int(round(box[1]))
        shifts = [0] + [s for k in range(1, MAX_LABEL_SHIFTS + 1) for s in (k, -k)]
        candidates = [first + s * h for s in shifts if 0 <= first + s * h <= h_img - h] or [max(first, 0)]
        y = next((c for c in candidates if not _overlaps((x, c, x + w, c + h), placed)), candidates[0])
        placed.append((x, y, x + w, y + h))
        corners.append((x, y))
    return corners


def place_point_labels(points_xy: npt.ArrayLike, sizes_wh: Sequence[tuple[int, int]], image_hw: tuple[int, int],
                       *, offset_xy: tuple[int, int], occupied: list[Rect] | None = None) -> list[tuple[int, int]]:
    """Top-left corner of a label beside each point (its corner at point + ``offset_xy``), none covering
    another or a rectangle in ``occupied``: the rules of :func:`place_labels` (shifts of a label height).
    """
    pts = np.asarray(points_xy, np.float64).reshape(-1, 2)
    boxes = [(x + offset_xy[0], y + offset_xy[1] + h, x + offset_xy[0] + w, y + offset_xy[1] + h)
             for (x, y), (w, h) in zip(pts, sizes_wh)]  # a label "above" this flat box sits at the corner
    return place_labels(np.array(boxes, np.float64).reshape(-1, 4), sizes_wh, image_hw, occupied=occupied)


def _overlaps(rect: Rect, others: list[Rect]) -> bool:
    x1, y1, x2, y2 = rect
    return any(x1 < o[2] and o[0] < x2 and y1 < o[3] and o[1] < y2 for o in others)
