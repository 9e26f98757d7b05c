"""Greedy non-maximum suppression on host arrays, bit for bit as torchvision's CPU kernel (pure NumPy: no torch).

Used by the NumPy fast path of :mod:`aeb_app.model.postprocess` and by the tile merge of :mod:`aeb_app.model.tiling`.
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

__all__ = ["batched_nms_numpy", "nms_numpy"]


def batched_nms_numpy(boxes: npt.NDArray[np.float32], scores: npt.NDArray[np.float32],
                       groups: npt.NDArray[np.int64], iou_threshold: float) -> npt.NDArray[np.int64]:
    """``torchvision.ops.batched_nms`` for up to 1000 boxes: each group's boxes moved apart by an offset, one NMS."""
    if len(boxes) == 0:
        return np.zeros(0, np.int64)
    max_coordinate = boxes.max()
    offsets = groups.astype(np.float32) * (max_coordinate + np.float32(1))
    return nms_numpy(boxes + offsets[:, None], scores, iou_threshold)


def nms_numpy(boxes: npt.NDArray[np.float32], scores: npt.NDArray[np.float32],
               iou_threshold: float) -> npt.NDArray[np.int64]:
    """Greedy NMS as torchvision's CPU kernel computes it (float32 IoU, ``IoU > threshold`` in double),
    kept indices best first."""
    x1, y1, x2, y2 = boxes.T
    areas = (x2 - x1) * (y2 - y1)
    w = np.maximum(np.float32(0), np.minimum(x2[:, None], x2[None, :]) - np.maximum(x1[:, None], x1[None, :]))
    h = np.maximum(np.float32(0), np.minimum(y2[:, None], y2[None, :]) - np.maximum(y1[:, None], y1[None, :]))
    inter = w * h
    over = (inter / (areas[:, None] + areas[None, :] - inter)).astype(np.float64) > iou_threshold
    suppressed = np.zeros(len(boxes), bool)
    keep = []
    for i in np.argsort(-scores, kind="stable"):
        if not suppressed[i]:
            keep.append(i)
            suppressed |= over[i]
    return np.asarray(keep, np.int64)
