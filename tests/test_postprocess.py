"""Shared post-processing (threshold, per-class NMS, top-k) and the Detections type."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from aeb_app.model.postprocess import PostprocessConfig, decode_boxes, select, to_detections
from aeb_app.model.spec import ModelSpec
from aeb_app.types import Detections


def _boxes_scores(rows):
    """rows: (xyxy, class_channel, score) per anchor; 3 channels (0 = background)."""
    boxes = torch.tensor([[r[0] for r in rows]], dtype=torch.float32)
    scores = torch.zeros(1, len(rows), 3)
    for i, (_, ch, s) in enumerate(rows):
        scores[0, i, ch] = s
    return boxes, scores


CLASS_IDS = torch.tensor([0, 3, 1])  # channel 1 -> car (3), channel 2 -> person (1)


@pytest.mark.parametrize(
    ("rows", "expected_scores", "expected_ids"),
    [
        # two overlapping cars: the weaker one is suppressed
        ([([0, 0, .5, .5], 1, .9), ([.01, .01, .5, .5], 1, .8)], [.9], [3]),
        # same boxes, different classes: NMS is per class, both stay
        ([([0, 0, .5, .5], 1, .9), ([.01, .01, .5, .5], 2, .8)], [.9, .8], [3, 1]),
        # disjoint boxes of one class: both stay, best first
        ([([0, 0, .2, .2], 1, .6), ([.5, .5, .9, .9], 1, .7)], [.7, .6], [3, 3]),
        # below the score threshold: dropped
        ([([0, 0, .2, .2], 1, .2)], [], []),
        # background channel never yields a detection
        ([([0, 0, .2, .2], 0, .99)], [], []),
    ],
)
def test_select(rows, expected_scores, expected_ids) -> None:
    boxes, scores = _boxes_scores(rows)
    [(b, s, ids)] = select(boxes, scores, CLASS_IDS, PostprocessConfig(score_threshold=0.3, iou_threshold=0.5))
    assert s.tolist() == pytest.approx(expected_scores)
    assert ids.tolist() == expected_ids
    assert b.shape == (len(expected_scores), 4)


def test_class_agnostic_keeps_one_class_per_box() -> None:
    boxes, scores = _boxes_scores([([0, 0, .5, .5], 1, .9), ([.01, .01, .5, .5], 2, .8)])
    [(_, s, ids)] = select(boxes, scores, CLASS_IDS, PostprocessConfig(score_threshold=0.3, class_agnostic=True))
    assert s.tolist() == pytest.approx([.9]) and ids.tolist() == [3]


def test_select_batches_are_independent_and_top_k_applies() -> None:
    rng = np.random.default_rng(0)
    xy = rng.uniform(0, 0.9, size=(2, 50, 2)).astype(np.float32)
    boxes = torch.from_numpy(np.concatenate([xy, xy + 0.02], -1))  # tiny, mostly disjoint
    scores = torch.zeros(2, 50, 3)
    scores[0, :, 1] = torch.linspace(0.4, 0.9, 50)
    scores[1, :5, 2] = 0.95
    out = select(boxes, scores, CLASS_IDS, PostprocessConfig(score_threshold=0.3, max_detections=10))
    assert len(out[0][1]) == 10 and out[0][1][0] == pytest.approx(0.9)
    assert (out[1][2] == 1).all() and len(out[1][1]) <= 5
    assert (out[0][1][:-1] >= out[0][1][1:]).all()  # best first


def test_decode_yxhw_layout_equals_xywh_after_swap() -> None:
    anchors = torch.tensor([[0.5, 0.4, 0.2, 0.1]])
    enc_xywh = torch.tensor([[[1.0, -2.0, 0.5, -0.5]]])
    make = lambda layout: ModelSpec("t", (1, 1), (0, 0, 0), (1, 1, 1), "bilinear",  # noqa: E731
                                    anchors.numpy(), layout, (0.1, 0.2), "sigmoid", (0, 1))
    a = decode_boxes(enc_xywh, anchors, make("xywh"))
    b = decode_boxes(enc_xywh[..., [1, 0, 3, 2]], anchors, make("yxhw"))
    assert torch.allclose(a, b)
    cx = 0.5 + 1.0 * 0.1 * 0.2
    w = 0.2 * np.exp(0.5 * 0.2)
    assert a[0, 0, 0].item() == pytest.approx(cx - w / 2)


def test_to_detections_scales_and_clips_to_frame() -> None:
    dets = to_detections(torch.tensor([[-0.1, 0.5, 0.5, 1.2]]), torch.tensor([0.8]), torch.tensor([3]), (540, 960))
    assert dets.xyxy_px.tolist() == [[0.0, 270.0, 480.0, 540.0]]
    assert dets.names == ("car",)
    assert dets.ground_points_px.tolist() == [[240.0, 540.0]]


def test_detections_validation_and_indexing() -> None:
    dets = Detections(np.array([[0, 0, 10, 10], [5, 5, 20, 30]]), np.array([0.9, 0.4]), np.array([3, 1]),
                      ("car", "person"))
    assert len(dets[dets.scores > 0.5]) == 1 and dets[dets.scores > 0.5].names == ("car",)
    assert dets.to_json()[1]["name"] == "person"
    assert len(Detections.empty()) == 0
    with pytest.raises(ValueError, match="NaN"):
        Detections(np.array([[np.nan, 0, 1, 1]]), np.array([0.5]), np.array([1]))
    with pytest.raises(ValueError, match="disagree"):
        Detections(np.zeros((2, 4)), np.array([0.5]), np.array([1, 2]))
    with pytest.raises(ValueError, match="x2 >= x1"):
        Detections(np.array([[10, 0, 5, 5]]), np.array([0.5]), np.array([1]))


@pytest.mark.parametrize("kwargs", [{"score_threshold": 1.5}, {"iou_threshold": 0}, {"max_detections": 0}])
def test_postprocess_config_rejects_bad_values(kwargs) -> None:
    with pytest.raises(ValueError):
        PostprocessConfig(**kwargs)


def _assert_same_selection(got, want) -> None:
    """The NumPy path's per-image (boxes, scores, ids) equal the torch path's, bit for bit and in order."""
    assert len(got) == len(want)
    for (gb, gs, gc), (wb, ws, wc) in zip(got, want):
        assert np.array_equal(gb, wb.numpy()) and gb.dtype == np.float32
        assert np.array_equal(gs, ws.numpy()) and gs.dtype == np.float32
        assert np.array_equal(gc, wc.numpy()) and gc.dtype == np.int64


@pytest.mark.parametrize("config", [PostprocessConfig(score_threshold=0.4), PostprocessConfig(score_threshold=0.3),
                                    PostprocessConfig(score_threshold=0.2, iou_threshold=0.6, class_agnostic=True),
                                    PostprocessConfig(score_threshold=0.25, max_detections=3)])
def test_numpy_selection_equals_torch_on_real_frames(clip_outputs, config) -> None:
    """The CPU path (threshold first, NumPy NMS) keeps exactly what the torch path keeps, on real frames."""
    from aeb_app.model.postprocess import _class_ids, select_numpy

    spec, outputs = clip_outputs
    class_ids = _class_ids(spec, torch.device("cpu"))
    kept = 0
    for boxes, scores in outputs:
        got = select_numpy(boxes.numpy(), scores.numpy(), class_ids.numpy(), config)
        assert got is not None  # a few dozen candidates: the NumPy path applies
        _assert_same_selection(got, select(boxes, scores, class_ids, config))
        kept += len(got[0][1])
    assert kept >= len(outputs)


def test_numpy_selection_hands_over_when_top_k_would_cut(clip_outputs) -> None:
    from aeb_app.model.postprocess import _class_ids, select_numpy

    spec, outputs = clip_outputs
    class_ids = _class_ids(spec, torch.device("cpu")).numpy()
    boxes, scores = outputs[0]
    # COCO evaluation's threshold: thousands of near-uniform softmax scores pass, more than top-k keeps
    assert select_numpy(boxes.numpy(), scores.numpy(), class_ids, PostprocessConfig(score_threshold=0.01)) is None


def test_numpy_selection_equals_torch_on_random_crowded_batches() -> None:
    """Many overlapping boxes of few classes (NMS does real work), batches of several images."""
    from aeb_app.model.postprocess import select_numpy

    from tests._inference_helpers import crowded_batches

    compared = suppressed = 0
    for boxes, scores, class_ids, config in crowded_batches(0):
        got = select_numpy(boxes.numpy(), scores.numpy(), class_ids.numpy(), config)
        assert got is not None
        _assert_same_selection(got, select(boxes, scores, class_ids, config))
        compared += 1
        suppressed += int(((scores > config.score_threshold) & (class_ids > 0)).sum()) - sum(len(g[1]) for g in got)
    assert compared == 4 and suppressed > 100


@pytest.mark.parametrize(("mean", "std"), [((128.0,) * 3, (128.0,) * 3),  # MobileNet (TFLite)
                                           ((123.675, 116.28, 103.53), (58.395, 57.12, 57.375)),  # ImageNet (SSD300)
                                           ((127.5,) * 3, (127.5,) * 3)])  # SSDLite ([-1, 1])
def test_normalize_numpy_equals_cast_subtract_divide(mean, std) -> None:
    """The two-pass host normalisation gives the float32 values of cast, subtract, divide (bit for bit)."""
    from aeb_app.model.preprocess import normalize_numpy

    spec = ModelSpec("t", (37, 53), mean, std, "bilinear", np.zeros((1, 4), np.float32), "xywh", (0.1, 0.2),
                     "sigmoid", (0, 1))
    batch = np.random.default_rng(1).integers(0, 256, (2, 37, 53, 3), dtype=np.uint8)
    ref = (batch.astype(np.float32).transpose(0, 3, 1, 2) - np.float32(mean).reshape(1, 3, 1, 1)) \
        / np.float32(std).reshape(1, 3, 1, 1)
    got = normalize_numpy(batch, spec)
    assert got.dtype == np.float32 and got.flags.c_contiguous and got.shape == (2, 3, 37, 53)
    assert np.array_equal(got, ref)
