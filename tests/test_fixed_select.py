"""The fixed-shape selection of a whole-frame CUDA Graph (aeb_app.model.fixed_select) against the shared one.

It runs on the CPU as well as on a GPU, so its equality with ``select`` (threshold, per-class NMS, top-k) is
checked here on real frames; tests/test_gpu_contract.py checks the captured graph on CUDA.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from aeb_app.inference.run.frame_graph import unpack_selection
from aeb_app.model.fixed_select import select_fixed
from aeb_app.model.postprocess import PostprocessConfig, _class_ids, postprocess, select


def _fixed(boxes, scores, class_ids, config: PostprocessConfig, **kwargs):
    return select_fixed(boxes, scores, class_ids, score_threshold=config.score_threshold,
                        iou_threshold=config.iou_threshold, max_detections=config.max_detections,
                        class_agnostic=config.class_agnostic, pre_nms_top_k=config.pre_nms_top_k, **kwargs)


def _assert_equals_select(fixed, boxes, scores, class_ids, config) -> int:
    """Each image's kept slots are ``select``'s boxes, scores and ids, bit for bit and in order; returns how
    many candidates NMS or top-k dropped."""
    assert not fixed.overflow.any() and fixed.converged.all()
    dropped = 0
    for i, (want_boxes, want_scores, want_ids) in enumerate(select(boxes, scores, class_ids, config)):
        kept = fixed.kept[i]
        assert torch.equal(fixed.boxes[i][kept], want_boxes.float())
        assert torch.equal(fixed.scores[i][kept], want_scores)
        assert torch.equal(fixed.category_ids[i][kept], want_ids)
        dropped += int((fixed.scores[i] > config.score_threshold).sum()) - int(kept.sum())
    return dropped


@pytest.mark.parametrize("config", [PostprocessConfig(), PostprocessConfig(score_threshold=0.2),
                                    PostprocessConfig(score_threshold=0.2, iou_threshold=0.6, class_agnostic=True),
                                    PostprocessConfig(score_threshold=0.25, max_detections=3),
                                    PostprocessConfig(score_threshold=0.1, pre_nms_top_k=20)])  # top-k before NMS cuts
def test_fixed_selection_equals_select_on_real_frames(clip_outputs, config) -> None:
    """COCO photos and dashcam frames, one at a time and as one batch: the same boxes as ``select``."""
    spec, outputs = clip_outputs
    class_ids = _class_ids(spec, torch.device("cpu"))
    dropped = 0
    for boxes, scores in outputs:
        dropped += _assert_equals_select(_fixed(boxes, scores, class_ids, config), boxes, scores, class_ids, config)
    boxes = torch.cat([b for b, _ in outputs])
    scores = torch.cat([s for _, s in outputs])
    _assert_equals_select(_fixed(boxes, scores, class_ids, config), boxes, scores, class_ids, config)
    assert dropped >= len(outputs)  # NMS (or top-k) had work to do


def test_fixed_selection_equals_select_on_random_crowded_batches() -> None:
    """Clusters of overlapping boxes of few classes, batches of several images: NMS does real work."""
    from tests._inference_helpers import crowded_batches

    dropped = 0
    for boxes, scores, class_ids, config in crowded_batches(1):
        fixed = _fixed(boxes, scores, class_ids, config, capacity=1024, rounds=64)
        dropped += _assert_equals_select(fixed, boxes, scores, class_ids, config)
    assert dropped > 100


def _chain(length: int):
    """Boxes in a row, each overlapping the next (IoU 0.54) but not the one after (0.25), best first: greedy
    NMS keeps every other one, and each decision depends on the one before it."""
    x0 = 0.3 * torch.arange(length, dtype=torch.float32) / length
    boxes = torch.stack([x0, torch.zeros(length), x0 + 1.0 / length, torch.full((length,), 0.5)], dim=1) * 0.9
    scores = torch.zeros(1, length, 2)
    scores[0, :, 1] = torch.linspace(0.9, 0.5, length)
    return boxes[None], scores, torch.tensor([0, 3])


def test_a_long_suppression_chain_is_reported_until_enough_rounds() -> None:
    """The fixed point needs about one round per link of the chain: too few rounds say "not converged"
    (the caller then selects the ordinary way), enough rounds give greedy NMS's alternating answer."""
    boxes, scores, class_ids = _chain(12)
    config = PostprocessConfig(score_threshold=0.3)
    short = _fixed(boxes, scores, class_ids, config, rounds=4)
    assert not short.converged.all()
    assert unpack_selection(short.packed().numpy(), [(100, 100)]) is None
    enough = _fixed(boxes, scores, class_ids, config, rounds=16)
    _assert_equals_select(enough, boxes, scores, class_ids, config)
    assert enough.kept[0][:12].tolist() == [True, False] * 6


def test_more_candidates_than_slots_is_reported() -> None:
    boxes, scores, class_ids = _chain(12)
    fixed = _fixed(boxes, scores, class_ids, PostprocessConfig(score_threshold=0.3), capacity=8, rounds=16)
    assert fixed.overflow.all()
    assert unpack_selection(fixed.packed().numpy(), [(100, 100)]) is None
    roomy = _fixed(boxes, scores, class_ids, PostprocessConfig(score_threshold=0.3), capacity=13, rounds=16)
    assert not roomy.overflow.any()


def test_no_candidate_gives_empty_detections() -> None:
    boxes, scores, class_ids = _chain(5)
    fixed = _fixed(boxes, scores, class_ids, PostprocessConfig(score_threshold=0.95))
    (dets,) = unpack_selection(fixed.packed().numpy(), [(540, 960)])
    assert len(dets.scores) == 0 and fixed.converged.all()


def test_unpacked_detections_equal_postprocess_in_frame_pixels(clip_outputs) -> None:
    """The host side of the graph (drop empty slots, scale to the frame) gives ``postprocess``'s Detections."""
    spec, outputs = clip_outputs
    class_ids = _class_ids(spec, torch.device("cpu"))
    config = PostprocessConfig()
    found = 0
    for boxes, scores in outputs:
        (got,) = unpack_selection(_fixed(boxes, scores, class_ids, config).packed().numpy(), [(540, 960)])
        (want,) = postprocess(boxes, scores, spec, [(540, 960)], config)
        assert np.array_equal(got.xyxy_px, want.xyxy_px) and np.array_equal(got.scores, want.scores)
        assert np.array_equal(got.category_ids, want.category_ids) and got.names == want.names
        found += len(got.scores)
    assert found >= len(outputs)


@pytest.mark.parametrize(("kwargs", "message"), [({"rounds": 1}, "rounds"), ({"capacity": 0}, "capacity")])
def test_bad_fixed_selection_arguments_are_refused(kwargs, message) -> None:
    boxes, scores, class_ids = _chain(3)
    with pytest.raises(ValueError, match=message):
        _fixed(boxes, scores, class_ids, PostprocessConfig(), **kwargs)
