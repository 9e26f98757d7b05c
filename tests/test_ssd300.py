"""SSD300-ResNet50 in NVIDIA's layout: shapes, default boxes, checkpoint loading, decoding."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from aeb_app.errors import ModelLoadError
from aeb_app.model.postprocess import DecodeHead
from aeb_app.model.registry import DetectionNet, load_model
from aeb_app.model.ssd300 import SSD300, default_boxes_300, load_nvidia_checkpoint, ssd300_spec


@pytest.fixture(scope="module")
def ssd300() -> SSD300:
    torch.manual_seed(0)
    return load_model("ssd300_resnet50", "random").network


def test_outputs_8732_boxes_and_81_classes(ssd300: SSD300) -> None:
    with torch.inference_mode():
        boxes, logits = ssd300(torch.randn(2, 3, 300, 300))
        locs, confs = ssd300.raw_forward(torch.randn(1, 3, 300, 300))
    assert boxes.shape == (2, 8732, 4) and logits.shape == (2, 8732, 81)
    assert locs.shape == (1, 4, 8732) and confs.shape == (1, 81, 8732)  # NVIDIA's native layout
    assert torch.isfinite(boxes).all() and torch.isfinite(logits).all()


def test_feature_maps_are_38_19_10_5_3_1(ssd300: SSD300) -> None:
    sizes = []
    x = ssd300.feature_extractor(torch.randn(1, 3, 300, 300))
    sizes.append((x.shape[1], x.shape[2]))
    for block in ssd300.additional_blocks:
        x = block(x)
        sizes.append((x.shape[1], x.shape[2]))
    assert sizes == [(1024, 38), (512, 19), (512, 10), (256, 5), (256, 3), (256, 1)]


def test_default_boxes_follow_nvidia_order() -> None:
    boxes = default_boxes_300()
    assert boxes.shape == (8732, 4) and boxes.min() >= 0 and boxes.max() <= 1
    # First map (38x38), first size (21/300 square): cells row-major, x varying fastest.
    assert np.allclose(boxes[0], [0.5 / 37.5, 0.5 / 37.5, 0.07, 0.07])
    assert np.allclose(boxes[1, :2], [1.5 / 37.5, 0.5 / 37.5])
    # Second block of the first map: the sqrt(21*45)/300 square box at cell (0, 0).
    assert np.allclose(boxes[38 * 38, 2:], [np.sqrt(21 * 45) / 300] * 2)
    # The last box: the 1x1 map's last aspect-ratio box, centred.
    assert np.allclose(boxes[-1, :2], [0.5, 0.5])


def test_decoding_matches_nvidia_formula() -> None:
    spec = ssd300_spec()
    head = DecodeHead(spec)
    rng = np.random.default_rng(1)
    enc = torch.from_numpy(rng.normal(size=(1, 8732, 4)).astype(np.float32))
    logits = torch.from_numpy(rng.normal(size=(1, 8732, 81)).astype(np.float32))
    boxes, scores = head(enc, logits)
    d = torch.from_numpy(spec.anchors_cxcywh)
    # NVIDIA's Encoder.scale_back_batch, written out.
    xy = 0.1 * enc[0, :, :2] * d[:, 2:] + d[:, :2]
    wh = torch.exp(0.2 * enc[0, :, 2:]) * d[:, 2:]
    ltrb = torch.cat([xy - wh / 2, xy + wh / 2], 1)
    assert torch.allclose(boxes[0], ltrb, atol=1e-6)
    assert torch.allclose(scores[0], torch.softmax(logits[0], -1), atol=1e-6)


def test_nvidia_checkpoint_roundtrip(tmp_path: Path, ssd300: SSD300) -> None:
    """A checkpoint saved the way NVIDIA's training does (DDP 'module.' prefix under 'model')."""
    state = {f"module.{k}": v for k, v in ssd300.state_dict().items()}
    path = tmp_path / "nvidia_ssdpyt_amp_200703.pt"
    torch.save({"model": state, "epoch": 65}, path)
    loaded = load_model("ssd300_resnet50", path)
    assert loaded.weights == str(path)
    x = torch.randn(1, 3, 300, 300)
    with torch.inference_mode():
        assert torch.equal(loaded.network(x)[1], ssd300(x)[1])


@pytest.mark.parametrize(
    ("content", "match"),
    [
        (b"", "not a readable PyTorch checkpoint"),
        (b"\x00garbage" * 100, "not a readable PyTorch checkpoint"),
    ],
)
def test_bad_checkpoint_files(tmp_path: Path, content: bytes, match: str) -> None:
    path = tmp_path / "ckpt.pt"
    path.write_bytes(content)
    with pytest.raises(ModelLoadError, match=match) as err:
        load_nvidia_checkpoint(SSD300(), path)
    assert str(path) in str(err.value) and "\n" not in str(err.value)


def test_truncated_and_mismatched_checkpoints(tmp_path: Path, ssd300: SSD300) -> None:
    good = tmp_path / "good.pt"
    torch.save({"model": ssd300.state_dict()}, good)
    truncated = tmp_path / "truncated.pt"
    truncated.write_bytes(good.read_bytes()[: good.stat().st_size // 2])
    with pytest.raises(ModelLoadError, match="truncated.pt: not a readable"):
        load_nvidia_checkpoint(SSD300(), truncated)
    wrong = tmp_path / "wrong.pt"
    torch.save({"model": {"conv.weight": torch.zeros(1)}}, wrong)
    with pytest.raises(ModelLoadError, match="does not fit SSD300"):
        load_nvidia_checkpoint(SSD300(), wrong)


def test_missing_weights_name_the_fetch_command() -> None:
    with pytest.raises(ModelLoadError, match="ssd300_resnet50.*assets fetch ssd300_resnet50.*random"):
        load_model("ssd300_resnet50")
    with pytest.raises(ModelLoadError, match="unknown model"):
        load_model("yolo")


def test_detection_net_outputs_normalised_boxes(ssd300: SSD300) -> None:
    net = DetectionNet(ssd300, ssd300_spec()).eval()
    with torch.inference_mode():
        boxes, scores = net(torch.randn(1, 3, 300, 300))
    assert boxes.shape == (1, 8732, 4) and scores.shape == (1, 8732, 81)
    assert torch.allclose(scores.sum(-1), torch.ones(1, 8732), atol=1e-5)


def test_checkpoint_with_training_state_loads(tmp_path: Path, ssd300: SSD300) -> None:
    """NVIDIA's training script saves optimizer/scheduler state and a label map beside the model."""
    import collections

    path = tmp_path / "full.pt"
    optimizer = torch.optim.SGD(ssd300.parameters(), lr=0.1)
    scheduler = torch.optim.lr_scheduler.MultiStepLR(optimizer, milestones=[43, 54])
    assert isinstance(scheduler.state_dict()["milestones"], collections.Counter)
    torch.save({"epoch": 65, "iteration": 1000, "optimizer": optimizer.state_dict(),
                "scheduler": scheduler.state_dict(), "label_map": {1: "person"},
                "model": ssd300.state_dict()}, path)
    net = SSD300()
    load_nvidia_checkpoint(net, path)
    assert torch.equal(net.state_dict()["conf.0.weight"], ssd300.state_dict()["conf.0.weight"])


def test_random_weights_score_like_a_trained_detector_on_real_images(ssd300: SSD300, coco_dir) -> None:
    """Random weights get the prior-initialised class head: on real COCO images every anchor stays
    near P(object) = 1 %, so timing the post-processing does not time NMS over thousands of garbage
    boxes; the head's weights still vary the logits (the fusion tests keep their meaning)."""
    from aeb_app.bench.sweep import sample_jpegs
    from aeb_app.inference.run.gpu_frames import decode_images, resize_to_input
    from aeb_app.model.preprocess import normalize
    from aeb_app.model.ssd300 import RANDOM_OBJECT_PRIOR

    spec = ssd300_spec()
    x = normalize(resize_to_input(decode_images(sample_jpegs(coco_dir, 4), "cpu"), spec), spec)
    with torch.inference_mode():
        _, logits = ssd300(x)
    probs = logits.softmax(-1)
    foreground = 1.0 - probs[..., 0]
    assert abs(float(foreground.mean()) - RANDOM_OBJECT_PRIOR) < 0.01
    assert int((probs[..., 1:] > 0.3).sum()) < 4 * 20  # at most a handful per image at the app's threshold
    assert float(logits[..., 1:].std()) > 0.3  # not a constant head
