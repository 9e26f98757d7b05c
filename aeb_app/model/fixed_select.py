"""The detection selection (threshold, per-class NMS, top-k) in tensors of fixed shape, for a CUDA Graph.

:func:`aeb_app.model.postprocess.select_flat` compacts the candidates above the score threshold and calls
``torchvision.ops.batched_nms``; both wait for the device, because their output sizes depend on the data,
so a CUDA Graph cannot capture them and every frame pays a host round trip in the middle of its GPU work.
:func:`select_fixed` keeps every shape fixed instead, so the whole frame (resize, network, selection) can
be one graph replay followed by one copy (:mod:`aeb_app.inference.run.frame_graph`):

- The ``capacity`` best (box, class) pairs of each image, best first (``topk``); those above the score
  threshold are the candidates. More candidates than ``capacity`` is reported (``overflow``), not cut.
- Greedy NMS as a fixed point. With the candidates best first, candidate ``j`` is kept exactly when no kept
  candidate before it overlaps it by more than the IoU threshold (in its class). Call that rule ``f``:
  greedy NMS's answer is the one ``keep`` with ``keep = f(keep)`` (unique: decide ``j = 0, 1, ...`` in
  turn). Iterating ``f`` from "every candidate kept" reaches it after as many rounds as the longest chain of
  candidates each of which decides the next (Cluster-NMS, Zheng et al., IEEE T-Cybernetics 2021); two equal
  successive rounds prove it has been reached. ``rounds`` is fixed; an image that needed more is reported
  (``converged`` false), not guessed.
- IoU as torchvision computes it for ``batched_nms`` on a batch of up to 5,000 CUDA boxes: the boxes moved
  apart per (image, class) by the coordinate offset trick, float32 arithmetic.

A caller falls back to :func:`~aeb_app.model.postprocess.select_flat` for a batch with an image that
overflowed or did not converge; otherwise the result equals ``select_flat``'s (tests/test_fixed_select.py).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

__all__ = ["FixedSelection", "select_fixed", "DEFAULT_CAPACITY", "DEFAULT_ROUNDS", "PACKED_COLUMNS"]

#: Candidates per image the fixed selection holds (real frames at the app's 0.3 threshold have tens; crowded
#: COCO photos at 0.2 a few hundred).
DEFAULT_CAPACITY = 512
#: Rounds of the NMS fixed-point iteration (real frames converge in a few; more is reported, not guessed).
DEFAULT_ROUNDS = 8
#: Columns of :meth:`FixedSelection.packed`: x1, y1, x2, y2 (normalised), score, COCO id, kept within top-k.
PACKED_COLUMNS = 7


@dataclass(frozen=True)
class FixedSelection:
    """The selection of a batch in fixed shapes: ``capacity`` slots per image, best first.

    Attributes:
        boxes: (N, K, 4) normalised xyxy, float32.
        scores: (N, K) float32.
        category_ids: (N, K) int64 COCO ids.
        kept: (N, K) bool, the slots :func:`~aeb_app.model.postprocess.select_flat` keeps (NMS, then the
            first ``max_detections`` of the image).
        overflow: (N,) bool, more candidates than slots: the result is incomplete.
        converged: (N,) bool, the NMS iteration reached its fixed point: the result is exact.
    """

    boxes: torch.Tensor
    scores: torch.Tensor
    category_ids: torch.Tensor
    kept: torch.Tensor
    overflow: torch.Tensor
    converged: torch.Tensor

    def packed(self) -> torch.Tensor:
        """Everything as one float32 tensor, for one device-to-host copy: (N, K + 1, 7); row K of an
        image holds ``overflow`` and ``converged`` in its first two columns."""
        n, k = self.scores.shape
        rows = torch.cat([self.boxes, self.scores[..., None], self.category_ids.float()[..., None],
                          self.kept.float()[..., None]], dim=2)
        flags = torch.zeros((n, 1, PACKED_COLUMNS), dtype=torch.float32, device=rows.device)
        flags[:, 0, 0] = self.overflow.float()
        flags[:, 0, 1] = self.converged.float()
        return torch.cat([rows, flags], dim=1)


def select_fixed(boxes: torch.Tensor, scores: torch.Tensor, class_ids: torch.Tensor, *, score_threshold: float,
                 iou_threshold: float, max_detections: int, class_agnostic: bool = False, pre_nms_top_k: int = 2000,
                 capacity: int = DEFAULT_CAPACITY, rounds: int = DEFAULT_ROUNDS) -> FixedSelection:
    """Threshold, per-class (or class-agnostic) NMS and top-k with no data-dependent shape (see the module).

    Args:
        boxes: (N, A, 4) normalised xyxy.
        scores: (N, A, C) probabilities.
        class_ids: (C,) int64 COCO id per channel, 0 for background channels.
        score_threshold, iou_threshold, max_detections, class_agnostic, pre_nms_top_k: as
            :class:`~aeb_app.model.postprocess.PostprocessConfig`.
        capacity: candidate slots per image (fewer when ``pre_nms_top_k`` or A * C is smaller).
        rounds: NMS fixed-point rounds (>= 2: convergence is seen as two equal rounds).
    """
    if rounds < 2 or capacity < 1:
        raise ValueError(f"rounds must be >= 2 and capacity >= 1, got {rounds} and {capacity}")
    n, a, c = scores.shape
    flat = (scores.float() * (class_ids > 0).view(1, 1, c)).reshape(n, a * c)
    considered = min(pre_nms_top_k, a * c)  # what select_flat considers
    top_scores, top_idx = flat.topk(min(capacity, considered), dim=1)
    valid = top_scores > score_threshold
    overflow = valid[:, -1] if capacity < considered else torch.zeros_like(valid[:, -1])
    chan = top_idx % c
    cand = torch.gather(boxes.float(), 1, (top_idx // c)[..., None].expand(-1, -1, 4))
    over = _overlaps(_offset_boxes(cand, valid, chan, c, class_agnostic), iou_threshold)
    later = torch.ones(over.shape[1:], dtype=torch.bool, device=over.device).triu(1)
    suppress = (over & later & valid[:, :, None] & valid[:, None, :]).float()
    keep, previous = valid, valid
    for _ in range(rounds):
        previous = keep
        hit = torch.bmm(keep.float()[:, None, :], suppress)[:, 0]  # kept earlier candidates overlapping j
        keep = valid & (hit == 0)
    converged = (keep == previous).all(dim=1)
    rank = keep.long().cumsum(dim=1) - 1
    return FixedSelection(cand, top_scores, class_ids[chan], keep & (rank < max_detections), overflow, converged)


def _offset_boxes(cand: torch.Tensor, valid: torch.Tensor, chan: torch.Tensor, channels: int,
                  class_agnostic: bool) -> torch.Tensor:
    """torchvision's coordinate trick as ``select_flat`` calls it: the group (image, or image x channel) moved
    by group * (the largest coordinate of the batch's candidates + 1)."""
    n, k = valid.shape
    image = torch.arange(n, device=cand.device).view(n, 1).expand(n, k)
    group = image if class_agnostic else image * channels + chan
    largest = torch.where(valid[..., None], cand, torch.full_like(cand, float("-inf"))).amax()
    largest = torch.where(valid.any(), largest, torch.zeros_like(largest))  # no candidate: nothing to offset
    return cand + (group.to(cand.dtype) * (largest + 1))[..., None]


def _overlaps(boxes: torch.Tensor, iou_threshold: float) -> torch.Tensor:
    """(N, K, K) bool: IoU of each pair of an image's boxes above the threshold (float32, as torchvision)."""
    x1, y1, x2, y2 = boxes.unbind(dim=2)
    areas = (x2 - x1) * (y2 - y1)
    w = (torch.minimum(x2[:, :, None], x2[:, None, :]) - torch.maximum(x1[:, :, None], x1[:, None, :])).clamp_(min=0)
    h = (torch.minimum(y2[:, :, None], y2[:, None, :]) - torch.maximum(y1[:, :, None], y1[:, None, :])).clamp_(min=0)
    inter = w * h
    return inter / (areas[:, :, None] + areas[:, None, :] - inter) > iou_threshold
