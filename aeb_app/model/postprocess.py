"""Box decoding and non-maximum suppression, shared by every backend (torch, any device).

The network emits encoded box offsets against its anchors and raw class logits.
:class:`DecodeHead` turns them into normalised xyxy boxes and class probabilities; it is
part of the exported ONNX graph, so ONNX Runtime and TensorRT return the same decoded
tensors as PyTorch. :func:`select` then applies the score threshold, per-class NMS
(``torchvision.ops.batched_nms``) and top-k on the device the tensors live on, so only the
kept boxes cross to the host.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache
from typing import Sequence

import numpy as np
import numpy.typing as npt
import torch
import torch.nn.functional as F
from torch import nn

from aeb_app.model.boxes import batched_nms_numpy as _batched_nms_numpy
from aeb_app.model.coco import name_of
from aeb_app.model.spec import ModelSpec
from aeb_app.model.tiling import TileConfig
from aeb_app.types import Detections


@dataclass(frozen=True)
class PostprocessConfig:
    """Named thresholds of the detection selection.

    Attributes:
        score_threshold: drop (box, class) pairs whose probability is below this.
        iou_threshold: per-class NMS overlap above which the weaker box is dropped.
        max_detections: keep at most this many boxes per image, best first.
        pre_nms_top_k: consider at most this many (box, class) candidates per image.
        class_agnostic: suppress overlapping boxes across classes too (one class per box, as
            TFLite's detection post-process op does); default per-class NMS.
        tiling: how frames wider than 2:1 are sliced into tiles for the network and merged back
            (:mod:`aeb_app.model.tiling`); ``NO_TILING`` squeezes every frame whole.
    """

    score_threshold: float = 0.3
    iou_threshold: float = 0.5
    max_detections: int = 100
    pre_nms_top_k: int = 2000
    class_agnostic: bool = False
    tiling: TileConfig = TileConfig()

    def __post_init__(self) -> None:
        if not 0.0 <= self.score_threshold < 1.0:
            raise ValueError(f"score_threshold must be in [0, 1), got {self.score_threshold}")
        if not 0.0 < self.iou_threshold <= 1.0:
            raise ValueError(f"iou_threshold must be in (0, 1], got {self.iou_threshold}")
        if self.max_detections < 1 or self.pre_nms_top_k < 1:
            raise ValueError("max_detections and pre_nms_top_k must be >= 1")


#: For COCO mAP: a low threshold and 100 boxes per image, as the COCO protocol expects.
EVAL_POSTPROCESS = PostprocessConfig(score_threshold=0.01, iou_threshold=0.5, max_detections=100)


def decode_boxes(encoded: torch.Tensor, anchors_cxcywh: torch.Tensor, spec: ModelSpec) -> torch.Tensor:
    """Decode (N, A, 4) offsets into (N, A, 4) normalised xyxy boxes.

    ``cx = ax + tx * v_c * aw``, ``w = aw * exp(tw * v_s)``; the same for y/h. This is both
    NVIDIA's ``Encoder.scale_back_batch`` (xywh, 0.1/0.2) and TF's
    ``FasterRcnnBoxCoder`` (yxhw, scales 10/5, i.e. 0.1/0.2).
    """
    if spec.box_layout == "yxhw":
        # (ty, tx, th, tw) -> (tx, ty, tw, th) with slices + cat: no index tensor (CUDA-Graph
        # capturable, plain Slice/Concat in ONNX) and ops torch2trt converts (unflatten/flip not).
        encoded = torch.cat([encoded[..., 1:2], encoded[..., 0:1], encoded[..., 3:4], encoded[..., 2:3]], dim=-1)
    v_c, v_s = spec.variances
    a_xy, a_wh = anchors_cxcywh[..., :2], anchors_cxcywh[..., 2:]
    xy = encoded[..., :2] * v_c * a_wh + a_xy
    half_wh = 0.5 * torch.exp(encoded[..., 2:] * v_s) * a_wh
    return torch.cat([xy - half_wh, xy + half_wh], dim=-1)


class DecodeHead(nn.Module):
    """(encoded boxes, logits) -> (normalised xyxy boxes, class probabilities)."""

    anchors: torch.Tensor

    def __init__(self, spec: ModelSpec) -> None:
        super().__init__()
        self.spec = spec
        self.register_buffer("anchors", torch.from_numpy(spec.anchors_cxcywh.copy()), persistent=False)

    def forward(self, encoded: torch.Tensor, logits: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        boxes = decode_boxes(encoded.float(), self.anchors, self.spec)
        logits = logits.float()
        # The functional softmax: torch2trt converts torch.nn.functional.softmax, not torch.softmax.
        scores = F.softmax(logits, dim=-1) if self.spec.score_fn == "softmax" else torch.sigmoid(logits)
        return boxes, scores


def select(
    boxes: torch.Tensor,
    scores: torch.Tensor,
    class_ids: torch.Tensor,
    config: PostprocessConfig,
) -> list[tuple[torch.Tensor, torch.Tensor, torch.Tensor]]:
    """Threshold, per-class NMS and top-k for a batch, on the tensors' device.

    Args:
        boxes: (N, A, 4) normalised xyxy.
        scores: (N, A, C) probabilities.
        class_ids: (C,) int64 COCO id per channel, 0 for background channels.
        config: thresholds.

    Returns:
        One ``(boxes (k, 4), scores (k,), category_ids (k,))`` tuple per image, best first.
    """
    kept = select_flat(boxes, scores, class_ids, config)
    img, b, s, c = (t[kept.within_top_k] for t in (kept.image_index, kept.boxes, kept.scores, kept.category_ids))
    counts = torch.bincount(img, minlength=scores.shape[0]).tolist()
    return list(zip(b.split(counts), s.split(counts), c.split(counts)))


@dataclass(frozen=True)
class KeptBoxes:
    """The boxes NMS kept for a whole batch, as flat tensors on the scores' device.

    Grouped by image (ascending index), best first within an image. ``within_top_k`` marks the first
    ``max_detections`` of each image: compacting with it gives :func:`select`'s result, and it can be
    done on the host after one copy (no device synchronisation per image).

    Attributes:
        image_index: (k,) int64 image of each box.
        boxes: (k, 4) normalised xyxy, float32.
        scores: (k,) float32.
        category_ids: (k,) int64 COCO ids.
        within_top_k: (k,) bool.
    """

    image_index: torch.Tensor
    boxes: torch.Tensor
    scores: torch.Tensor
    category_ids: torch.Tensor
    within_top_k: torch.Tensor


def select_flat(boxes: torch.Tensor, scores: torch.Tensor, class_ids: torch.Tensor,
                config: PostprocessConfig) -> KeptBoxes:
    """:func:`select` for the whole batch at once, without splitting per image (see :class:`KeptBoxes`).

    The only host synchronisations are the score-threshold compaction and the one inside
    ``torchvision.ops.batched_nms``; nothing per image.
    """
    from torchvision.ops import batched_nms

    n, a, c = scores.shape
    valid = class_ids > 0
    masked = scores.float() * valid.view(1, 1, c)
    flat = masked.reshape(n, a * c)
    k = min(config.pre_nms_top_k, a * c)
    top_scores, top_idx = flat.topk(k, dim=1)
    keep_mask = top_scores > config.score_threshold
    img_idx = torch.arange(n, device=scores.device).view(n, 1).expand(n, k)[keep_mask]
    cand_idx = top_idx[keep_mask]
    cand_scores = top_scores[keep_mask]
    anchor_idx = cand_idx // c
    chan_idx = cand_idx % c
    cand_boxes = boxes.float()[img_idx, anchor_idx]
    # Offset per (image, class) so one NMS call handles the whole batch.
    group = img_idx if config.class_agnostic else img_idx * c + chan_idx
    kept = batched_nms(cand_boxes, cand_scores, group, config.iou_threshold)  # best first
    kept = kept[torch.sort(img_idx[kept], stable=True).indices]  # grouped by image, still best first
    kept_img = img_idx[kept]
    first = torch.searchsorted(kept_img, torch.arange(n, device=scores.device))
    rank = torch.arange(kept.numel(), device=scores.device) - first[kept_img]
    return KeptBoxes(kept_img, cand_boxes[kept], cand_scores[kept], class_ids[chan_idx[kept]],
                     rank < config.max_detections)


def to_detections(
    boxes_norm: torch.Tensor | np.ndarray,
    scores: torch.Tensor | np.ndarray,
    category_ids: torch.Tensor | np.ndarray,
    frame_hw: tuple[int, int],
) -> Detections:
    """Scale normalised boxes to the original frame's pixels and clip them to it."""
    h, w = frame_hw
    b = boxes_norm.detach().cpu().numpy() if isinstance(boxes_norm, torch.Tensor) else np.asarray(boxes_norm)
    s = scores.detach().cpu().numpy() if isinstance(scores, torch.Tensor) else np.asarray(scores)
    ids = category_ids.detach().cpu().numpy() if isinstance(category_ids, torch.Tensor) else np.asarray(category_ids)
    xyxy = b.astype(np.float32).reshape(-1, 4) * np.array([w, h, w, h], np.float32)
    xyxy[:, [0, 2]] = xyxy[:, [0, 2]].clip(0, w)
    xyxy[:, [1, 3]] = xyxy[:, [1, 3]].clip(0, h)
    ids = ids.astype(np.int64).reshape(-1)
    return Detections(xyxy, s.astype(np.float32), ids, tuple(name_of(int(i)) for i in ids))


# -- CPU path: the same selection in NumPy ------------------------------------------------------------
# On the CPU the torch path above costs about 1.2 ms per frame (the top-k over every anchor x class score)
# and 40 small torch calls, each of which releases and re-takes the GIL: in the threaded frame loop
# (aeb_app.stages) every re-take can wait for a Python stage's switch interval. This path thresholds
# first, runs torchvision's NMS algorithm in NumPy (same float32 arithmetic, same coordinate-offset trick)
# and holds the GIL but for two passes over the scores, about 0.1 ms. It gives the torch path's boxes bit for
# bit, except that exactly equal scores may come out in another order (torch's sorts leave it
# unspecified); tests/test_postprocess.py checks it on real frames and random batches.

#: Candidates above which the NumPy path hands over to torch (torchvision switches its NMS strategy there).
_NUMPY_MAX_CANDIDATES = 1000


def select_numpy(boxes: npt.NDArray[np.float32], scores: npt.NDArray[np.float32],
                 class_ids: npt.NDArray[np.int64], config: PostprocessConfig
                 ) -> list[tuple[np.ndarray, np.ndarray, np.ndarray]] | None:
    """:func:`select` on host arrays; None when an image has more than ``pre_nms_top_k`` candidates or the
    batch more than :data:`_NUMPY_MAX_CANDIDATES` (the caller then uses :func:`select`)."""
    n, a, c = scores.shape
    flat = scores.reshape(-1)
    hit = np.flatnonzero(flat > config.score_threshold)  # the only passes over all scores
    hit = hit[class_ids[hit % c] > 0]
    img, cand = np.divmod(hit, a * c)
    counts = np.bincount(img, minlength=n)
    if n == 0 or counts.max() > min(config.pre_nms_top_k, a * c) or counts.sum() > _NUMPY_MAX_CANDIDATES:
        return None
    cand_scores = flat[hit]
    order = np.argsort(-cand_scores, kind="stable")
    order = order[np.argsort(img[order], kind="stable")]  # grouped by image, best first (top-k's order)
    img, cand, cand_scores = img[order], cand[order], cand_scores[order]
    anchor, chan = cand // c, cand % c
    cand_boxes = boxes[img, anchor]
    group = img if config.class_agnostic else img * c + chan
    kept = _batched_nms_numpy(cand_boxes, cand_scores, group, config.iou_threshold)
    kept = kept[np.argsort(img[kept], kind="stable")]  # grouped by image, still best first
    out = []
    for i in range(n):
        mine = kept[img[kept] == i][:config.max_detections]
        out.append((cand_boxes[mine], cand_scores[mine], class_ids[chan[mine]]))
    return out


@lru_cache(maxsize=16)
def _class_ids(spec: ModelSpec, device: torch.device) -> torch.Tensor:
    """The spec's channel -> COCO id table on ``device``: made once, not per frame."""
    return torch.as_tensor(spec.class_ids, dtype=torch.int64, device=device)


def postprocess(
    boxes: torch.Tensor,
    scores: torch.Tensor,
    spec: ModelSpec,
    frame_hws: Sequence[tuple[int, int]],
    config: PostprocessConfig,
) -> list[Detections]:
    """Decoded batch outputs -> one :class:`Detections` per frame, in original pixels."""
    class_ids = _class_ids(spec, scores.device)
    picked = None
    if scores.device.type == "cpu":
        picked = select_numpy(boxes.detach().float().numpy(), scores.detach().float().numpy(),
                              class_ids.numpy(), config)
    if picked is None:
        picked = select(boxes, scores, class_ids, config)
    return [to_detections(b, s, c, hw) for (b, s, c), hw in zip(picked, frame_hws)]
