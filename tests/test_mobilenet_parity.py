"""Parity of the float PyTorch SSD MobileNet v1 with the original uint8 TFLite model.

The reference is the published ``detect.tflite`` run by ``ai-edge-litert`` with its reference
kernels (no XNNPACK delegate, all tensors preserved), so its raw pre-post-process tensors can be
read: ``Squeeze`` (1, 1917, 4) box encodings, ``concat_1`` (1, 1917, 91) class logits and
``convert_scores`` (sigmoid of the logits), each uint8 with its own scale / zero point.

Tolerances (see docs/mobilenet_parity.md): errors are measured in quantisation steps of the
TFLite output tensor. The uint8 model rounds every one of its 47 conv outputs to 8 bits; those
rounding errors propagate, so a float rebuild differs by a few steps on average and by tens of
steps in rare tails. A wrong rebuild (a mis-padded layer, swapped channels, wrong scales) differs
by far more: see :func:`test_tolerance_rejects_a_mispadded_rebuild`.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
from torch import nn
from torchvision.ops import box_iou

from aeb_app.errors import ModelLoadError
from aeb_app.model.mobilenet_v1 import SSDMobileNetV1, build_ssd_mobilenet_v1
from aeb_app.model.postprocess import DecodeHead, PostprocessConfig, postprocess
from aeb_app.model.preprocess import normalize, resize_batch

# Raw tensors, per image, in steps of the TFLite output tensor's scale.
# Measured worst over the 161 images in brackets (median image ~0.5 / 4 / 7 steps).
MEAN_STEPS_MAX = 3.0  # mean |error| per image [2.3]
P999_STEPS_MAX = 32.0  # 99.9th percentile per image [25.1]
MAX_STEPS_MAX = 48.0  # worst single value per image [37.8], at anchors far from any object
CORR_MIN = 0.98  # Pearson r of ours vs TFLite per image [0.988]
PROB_TOL = 0.07  # |sigmoid(ours) - TFLite probability| [0.054]
# Detections.
CONFIDENT = 0.5
# The file's NMS settings; the threshold leaves room for the score tolerance (see match_detections).
POST = PostprocessConfig(score_threshold=CONFIDENT - PROB_TOL, iou_threshold=0.6, max_detections=10,
                         class_agnostic=True)  # one class per box, like TFLite_Detection_PostProcess
STRICT_MATCH_MIN = 0.94  # fraction of TFLite's confident detections found (same class, IoU >= 0.9)


@dataclass
class Reference:
    """TFLite outputs of one image: dequantised raw tensors and the post-process op's result."""

    encoded: np.ndarray  # (1917, 4) float32, ty tx th tw
    logits: np.ndarray  # (1917, 91) float32
    probs: np.ndarray  # (1917, 91) float32, the LOGISTIC op's uint8 output dequantised
    steps: tuple[float, float, float]  # output scales of encoded, logits, probs
    enc_range: np.ndarray  # (1917, 2) real range [lo, hi] the uint8 tensors can hold, per anchor
    logit_range: np.ndarray  # (1917, 2)
    boxes_yxyx: np.ndarray  # (k, 4) normalised, TFLite order ymin xmin ymax xmax
    category_ids: np.ndarray  # (k,) COCO ids (TFLite class index + 1)
    scores: np.ndarray  # (k,)


def _images(data_dir: Path, coco_every: int = 2) -> list[Path]:
    """Every other COCO image (78, to keep the file under a minute on 2 CPU cores) + 6 dashcam stills."""
    coco = sorted((data_dir / "coco" / "val2017_subset" / "val2017").glob("*.jpg"))
    stills = sorted((data_dir / "videos" / "udacity" / "test_images").glob("*.jpg"))
    assert len(coco) >= 150 and len(stills) == 6, "data mirror incomplete"
    return coco[::coco_every] + stills


def _representable(details: dict, kind: str, concat: str) -> np.ndarray:
    """(1917, 2) real [lo, hi] of each anchor's uint8 chain: predictor output, then the concat.

    Each predictor's uint8 output (and the concat after it) saturates outside
    ``scale * ([0, 255] - zero_point)``; the float network has no such cap.
    """
    rows = []
    for i in range(6):
        d = details[f"BoxPredictor_{i}/{kind}/BiasAdd"]
        (scale, zero), (_, h, w, c) = d["quantization"], d["shape"]
        per_anchor = 4 if kind == "BoxEncodingPredictor" else 91
        rows += [(scale * (0 - zero), scale * (255 - zero))] * (h * w * c // per_anchor)
    scale, zero = details[concat]["quantization"]
    lo_hi = np.array(rows, np.float32)
    return np.stack([np.maximum(lo_hi[:, 0], scale * -zero), np.minimum(lo_hi[:, 1], scale * (255 - zero))], 1)


def _run_tflite(path: Path, batch_u8: np.ndarray) -> list[Reference]:
    from ai_edge_litert.interpreter import Interpreter, OpResolverType

    interp = Interpreter(
        model_path=str(path),
        experimental_preserve_all_tensors=True,
        experimental_op_resolver_type=OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES,
    )
    interp.allocate_tensors()
    details = {d["name"]: d for d in interp.get_tensor_details()}

    def deq(name: str) -> tuple[np.ndarray, float]:
        scale, zero = details[name]["quantization"]
        return (interp.get_tensor(details[name]["index"]).astype(np.float32) - zero) * scale, scale

    enc_range = _representable(details, "BoxEncodingPredictor", "Squeeze")
    logit_range = _representable(details, "ClassPredictor", "concat_1")
    refs = []
    for frame in batch_u8:
        interp.set_tensor(interp.get_input_details()[0]["index"], frame[None])
        interp.invoke()
        (enc, s_enc), (logit, s_logit), (prob, s_prob) = deq("Squeeze"), deq("concat_1"), deq("convert_scores")
        boxes, classes, scores, num = (interp.get_tensor(o["index"]) for o in interp.get_output_details())
        n = int(num[0])
        refs.append(Reference(
            enc.reshape(-1, 4), logit.reshape(-1, 91), prob.reshape(-1, 91), (s_enc, s_logit, s_prob),
            enc_range, logit_range,
            boxes[0, :n].copy(), classes[0, :n].astype(np.int64) + 1, scores[0, :n].copy(),
        ))
    return refs


def _run_torch(model: nn.Module, spec, batch_u8: np.ndarray, batch_size: int = 8):
    """Our (encoded, logits) for all frames, in batches; numpy float32."""
    enc, logits = [], []
    with torch.inference_mode():
        for i in range(0, len(batch_u8), batch_size):
            e, lg = model(normalize(torch.from_numpy(batch_u8[i: i + batch_size]), spec))
            enc.append(e)
            logits.append(lg)
    return torch.cat(enc).numpy(), torch.cat(logits).numpy()


@pytest.fixture(scope="module")
def built(tflite_path: Path):
    return build_ssd_mobilenet_v1(tflite_path)


@dataclass(repr=False)  # keep failure reports free of 161-image array dumps
class Run:
    paths: list[Path]
    frames: list[np.ndarray]
    batch_u8: np.ndarray
    refs: list[Reference]
    enc: np.ndarray
    logits: np.ndarray


@pytest.fixture(scope="module")
def run(built, tflite_path: Path, data_dir: Path) -> Run:
    """Everything computed once: frames, TFLite references, our raw outputs."""
    spec, model = built
    paths = _images(data_dir)
    frames = [cv2.imread(str(p)) for p in paths]
    assert all(f is not None for f in frames), "unreadable image in the mirror"
    batch_u8 = resize_batch(frames, spec)
    enc, logits = _run_torch(model, spec, batch_u8)
    return Run(paths, frames, batch_u8, _run_tflite(tflite_path, batch_u8), enc, logits)


def raw_errors(enc: np.ndarray, logits: np.ndarray, ref: Reference) -> dict[str, float]:
    """Per-image error statistics, in quantisation steps of each TFLite output tensor."""
    s_enc, s_logit, _ = ref.steps
    # Compare what the uint8 tensors can hold: clip ours to their range (rarely active: confident
    # logits above ~1.4, i.e. p > 0.8, on the 3x3/2x2/1x1 maps).
    enc = np.clip(enc, ref.enc_range[:, :1], ref.enc_range[:, 1:])
    logits = np.clip(logits, ref.logit_range[:, :1], ref.logit_range[:, 1:])
    e_enc = np.abs(enc - ref.encoded) / s_enc
    e_log = np.abs(logits - ref.logits) / s_logit
    probs = 1.0 / (1.0 + np.exp(-logits.astype(np.float64)))
    return {
        "enc_mean": float(e_enc.mean()), "enc_p999": float(np.percentile(e_enc, 99.9)), "enc_max": float(e_enc.max()),
        "log_mean": float(e_log.mean()), "log_p999": float(np.percentile(e_log, 99.9)), "log_max": float(e_log.max()),
        "enc_corr": float(np.corrcoef(enc.ravel(), ref.encoded.ravel())[0, 1]),
        "log_corr": float(np.corrcoef(logits.ravel(), ref.logits.ravel())[0, 1]),
        "prob_max": float(np.abs(probs - ref.probs).max()),
    }


def _check_raw(stats: dict[str, float]) -> list[str]:
    bad = []
    for key in ("enc", "log"):
        if stats[f"{key}_mean"] > MEAN_STEPS_MAX:
            bad.append(f"{key} mean {stats[f'{key}_mean']:.2f} steps")
        if stats[f"{key}_p999"] > P999_STEPS_MAX:
            bad.append(f"{key} p99.9 {stats[f'{key}_p999']:.1f} steps")
        if stats[f"{key}_max"] > MAX_STEPS_MAX:
            bad.append(f"{key} max {stats[f'{key}_max']:.1f} steps")
        if stats[f"{key}_corr"] < CORR_MIN:
            bad.append(f"{key} corr {stats[f'{key}_corr']:.4f}")
    if stats["prob_max"] > PROB_TOL:
        bad.append(f"prob max diff {stats['prob_max']:.3f}")
    return bad


def anchor_level(spec, enc: np.ndarray, logits: np.ndarray, ref: Reference) -> list[tuple[float, float]]:
    """For each confident TFLite detection: (IoU, prob diff) of our output at the same anchor.

    The anchor is found by decoding TFLite's own raw encodings: the post-process op's box must
    equal one of them (to float rounding), which also checks our decoding of the file's anchors.
    """
    head = DecodeHead(spec)
    ref_boxes, _ = head(torch.from_numpy(ref.encoded)[None], torch.zeros(1, 1, 1))
    our_boxes, our_probs = head(torch.from_numpy(enc)[None], torch.from_numpy(logits)[None])
    out = []
    for box_yxyx, cat, score in zip(ref.boxes_yxyx, ref.category_ids, ref.scores):
        if score < CONFIDENT:
            continue
        xyxy = torch.from_numpy(box_yxyx[[1, 0, 3, 2]].copy())
        dist = (ref_boxes[0] - xyxy).abs().amax(dim=1)
        anchor = int(dist.argmin())
        assert float(dist[anchor]) < 1e-4, f"TFLite box {box_yxyx} is no decoded anchor ({float(dist[anchor])})"
        assert abs(float(ref.probs[anchor, cat]) - float(score)) < 1e-6, "TFLite class/score not at that anchor"
        iou = float(box_iou(xyxy[None], our_boxes[0, anchor][None])[0, 0])
        out.append((iou, float(our_probs[0, anchor, cat]) - float(score)))
    return out


def match_detections(ours, ref: Reference, frame_hw: tuple[int, int]) -> tuple[int, int, int, int]:
    """Confident TFLite dets, how many ours has; our confident dets, how many TFLite has.

    A match is the same COCO id with IoU >= 0.9. A confident detection (score >= 0.5) is looked
    for among the other side's detections down to 0.5 - PROB_TOL, since scores legitimately differ
    by up to PROB_TOL.
    """
    h, w = frame_hw
    ref_xyxy = (ref.boxes_yxyx[:, [1, 0, 3, 2]] * np.array([w, h, w, h], np.float32)).clip(0, [w, h, w, h])
    if len(ref_xyxy) == 0 or len(ours) == 0:
        return int((ref.scores >= CONFIDENT).sum()), 0, int((ours.scores >= CONFIDENT).sum()), 0
    iou = box_iou(torch.from_numpy(ref_xyxy.astype(np.float32)), torch.from_numpy(ours.xyxy_px)).numpy()
    same = (iou >= 0.9) & (ref.category_ids[:, None] == ours.category_ids[None, :])
    ref_conf, ref_low = ref.scores >= CONFIDENT, ref.scores >= CONFIDENT - PROB_TOL
    our_conf, our_low = ours.scores >= CONFIDENT, ours.scores >= CONFIDENT - PROB_TOL
    ref_hit = (same & our_low[None, :]).any(1) & ref_conf
    our_hit = (same & ref_low[:, None]).any(0) & our_conf
    return int(ref_conf.sum()), int(ref_hit.sum()), int(our_conf.sum()), int(our_hit.sum())


def _our_detections(spec, enc: np.ndarray, logits: np.ndarray, frames: list[np.ndarray]):
    boxes, probs = DecodeHead(spec)(torch.from_numpy(enc), torch.from_numpy(logits))
    return postprocess(boxes, probs, spec, [f.shape[:2] for f in frames], POST)


# ---------------------------------------------------------------------------------------------- tests


def test_spec_from_file(built, tflite_path: Path) -> None:
    spec, model = built
    assert spec.input_hw == (300, 300) and spec.num_anchors == 1917 and spec.num_channels == 91
    assert spec.mean_rgb == (128.0,) * 3 and spec.std_rgb == (128.0,) * 3
    assert spec.variances == pytest.approx((0.1, 0.2)) and spec.box_layout == "yxhw" and spec.score_fn == "sigmoid"
    labels = (tflite_path.parent / "labelmap.txt").read_text().splitlines()
    assert len(labels) == 91
    assert [j for j, name in enumerate(labels) if name != "???"] == [j for j, c in enumerate(spec.class_ids) if c]
    assert sum(isinstance(m, nn.Conv2d) for m in model.modules()) == 34 + 13


def test_raw_tensors_match_tflite(built, run) -> None:
    spec, _ = built
    failures = {
        p.name: bad for p, e, lg, r in zip(run.paths, run.enc, run.logits, run.refs)
        if (bad := _check_raw(raw_errors(e, lg, r)))
    }
    assert not failures, f"raw parity outside tolerance: {failures}"


def test_confident_detections_same_anchor_same_object(built, run) -> None:
    spec, _ = built
    pairs = [pair for e, lg, r in zip(run.enc, run.logits, run.refs) for pair in anchor_level(spec, e, lg, r)]
    assert len(pairs) > 150, f"too few confident TFLite detections to judge: {len(pairs)}"
    ious, dprob = np.array(pairs).T
    assert ious.min() >= 0.9, f"worst IoU at the same anchor {ious.min():.3f}"
    assert np.abs(dprob).max() <= PROB_TOL, f"worst probability diff {np.abs(dprob).max():.3f}"


def test_final_detections_agree(built, run) -> None:
    spec, _ = built
    ours = _our_detections(spec, run.enc, run.logits, run.frames)
    counts = np.array([match_detections(d, r, f.shape[:2]) for d, r, f in zip(ours, run.refs, run.frames)])
    n_ref, hit_ref, n_ours, hit_ours = counts.sum(0)
    assert n_ref > 150 and n_ours > 150
    assert hit_ref / n_ref >= STRICT_MATCH_MIN, f"{hit_ref}/{n_ref} TFLite detections found in ours"
    assert hit_ours / n_ours >= STRICT_MATCH_MIN, f"{hit_ours}/{n_ours} of ours found in TFLite's"


def test_tolerance_rejects_a_mispadded_rebuild(built, run) -> None:
    """The tolerance is tight enough to catch a plausible bug: PyTorch-style symmetric padding."""
    spec, model = built
    broken = copy.deepcopy(model)
    n_changed = 0
    for layer in broken.modules():
        if getattr(layer, "crop", (0, 0)) != (0, 0):
            layer.conv.padding, layer.crop = (1, 1), (0, 0)  # same output size, but shifted by half a pixel
            n_changed += 1
    assert n_changed == 5
    enc, logits = _run_torch(broken, spec, run.batch_u8[::10])
    failing = [bool(_check_raw(raw_errors(e, lg, r))) for e, lg, r in zip(enc, logits, run.refs[::10])]
    assert all(failing), f"mis-padded rebuild passed the raw tolerance on {failing.count(False)} images"


def test_dashcam_still_has_cars(built, run) -> None:
    spec, _ = built
    idx = [i for i, p in enumerate(run.paths) if p.name == "solidWhiteRight.jpg"][0]
    frame = run.frames[idx]
    det = _our_detections(spec, run.enc[idx: idx + 1], run.logits[idx: idx + 1], [frame])[0]
    cars = det[(det.category_ids == 3) & (det.scores >= CONFIDENT)]
    assert len(cars) >= 3, f"expected >= 3 cars, got {list(zip(det.names, det.scores))}"
    assert set(cars.names) == {"car"}
    # The cars are on the road ahead: the lower half of the 960x540 frame, below the horizon.
    assert (cars.ground_points_px[:, 1] > frame.shape[0] * 0.55).all(), cars.xyxy_px


def _truncated(src: Path, tmp_path: Path) -> Path:
    out = tmp_path / "truncated.tflite"
    out.write_bytes(src.read_bytes()[: src.stat().st_size // 2])
    return out


def _random_bytes(src: Path, tmp_path: Path) -> Path:
    out = tmp_path / "random.tflite"
    out.write_bytes(np.random.default_rng(0).integers(0, 256, 100_000, dtype=np.uint8).tobytes())
    return out


def _tail_cut(src: Path, tmp_path: Path) -> Path:
    out = tmp_path / "tail_cut.tflite"
    out.write_bytes(src.read_bytes()[:-1000])  # keeps every weight buffer, loses the graph tables
    return out


@pytest.mark.parametrize(
    "make, cause",
    [
        (lambda src, tmp: tmp / "missing.tflite", "cannot read"),
        (_truncated, "truncated or corrupt"),
        (_tail_cut, "truncated or corrupt"),
        (_random_bytes, "not a TFLite flatbuffer"),
    ],
    ids=["missing", "truncated", "tail_cut", "random_bytes"],
)
def test_bad_file_raises_model_load_error(make, cause: str, tflite_path: Path, tmp_path: Path) -> None:
    bad = make(tflite_path, tmp_path)
    with pytest.raises(ModelLoadError) as info:
        build_ssd_mobilenet_v1(bad)
    message = str(info.value)
    assert str(bad) in message and cause in message and "\n" not in message, message
