"""Parity of the PyTorch SSDLite MobileNet v2 with the TF.js graph model it is rebuilt from.

The reference (tests/fixtures/ssdlite_tfjs_reference.json) was produced once by TF.js 4.22.0's
CPU backend in Node (scripts/tfjs_reference/), on five COCO images resized to 300x300 by the
app's own ``resize_frame``; TF.js did the per-class NMS itself. Both runtimes compute in float32,
so raw outputs agree to about 2e-6 (docs/ssdlite_parity.md); the tolerances leave a margin for
other BLAS/conv orderings, and a wrong rebuild (a missing shortcut) fails them by far.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
from torchvision.ops import box_iou

from aeb_app.errors import ModelLoadError
from aeb_app.model.postprocess import DecodeHead, PostprocessConfig, select
from aeb_app.model.preprocess import normalize, resize_frame
from aeb_app.model.ssdlite_mobilenet_v2 import build_ssdlite_mobilenet_v2

FIXTURE = Path(__file__).parent / "fixtures" / "ssdlite_tfjs_reference.json"
RAW_TOL = 1e-4  # |ours - TF.js| of probabilities and normalised box coordinates [measured 1.8e-6]
MATCH_MIN = 0.95  # detections found in the other runtime's list (same class, IoU >= 0.5), both ways
IOU_MIN = 0.5


@pytest.fixture(scope="module")
def reference() -> dict:
    return json.loads(FIXTURE.read_text())


@pytest.fixture(scope="module")
def model_json(data_dir: Path) -> Path:
    return data_dir / "models" / "ssdlite_mobilenet_v2_coco_tfjs" / "model.json"


@pytest.fixture(scope="module")
def rebuilt(model_json: Path):
    return build_ssdlite_mobilenet_v2(model_json)


def _outputs(spec, network, image: Path) -> tuple[torch.Tensor, torch.Tensor]:
    """Decoded (boxes xyxy (1917, 4), probabilities (1917, 91)) of one image."""
    frame = cv2.imread(str(image), cv2.IMREAD_COLOR)
    assert frame is not None, image
    x = normalize(torch.from_numpy(resize_frame(frame, spec))[None], spec)
    with torch.no_grad():
        boxes, scores = DecodeHead(spec)(*network(x))
    return boxes[0], scores[0]


def _match_rate(a_boxes, a_ids, b_boxes, b_ids) -> float:
    """Fraction of detections of a that b has too (same class, IoU >= IOU_MIN)."""
    if len(a_ids) == 0:
        return 1.0
    if len(b_ids) == 0:
        return 0.0
    iou = box_iou(a_boxes, b_boxes) * (a_ids[:, None] == b_ids[None, :])
    return float((iou.max(dim=1).values >= IOU_MIN).float().mean())


def _agreement(spec, network, reference: dict, coco_dir: Path) -> tuple[list[float], list[float], float]:
    """Per image: share of TF.js detections we find, share of ours TF.js has; worst raw error."""
    nms = reference["nms"]
    config = PostprocessConfig(score_threshold=nms["score_threshold"], iou_threshold=nms["iou_threshold"],
                               max_detections=nms["max_detections"])
    found, confirmed, raw_err = [], [], 0.0
    for image in reference["images"]:
        boxes, scores = _outputs(spec, network, coco_dir / "val2017" / image["name"])
        raw = image["raw"]
        anchors, channels = torch.tensor(raw["top_anchor"]), torch.tensor(raw["top_class_index"]) + 1
        yxyx = boxes[:, [1, 0, 3, 2]]
        raw_err = max(raw_err,
                      float((scores[anchors, channels] - torch.tensor(raw["top_score"])).abs().max()),
                      float((yxyx[anchors] - torch.tensor(raw["top_box_yxyx"])).abs().max()),
                      float((yxyx[raw["grid_anchor"]] - torch.tensor(raw["grid_box_yxyx"])).abs().max()))
        (ours_b, _, ours_c), = select(boxes[None], scores[None], torch.tensor(spec.class_ids), config)
        ref_b = torch.tensor([d["box_yxyx"] for d in image["detections"]]).reshape(-1, 4)[:, [1, 0, 3, 2]]
        ref_c = torch.tensor([d["category_id"] for d in image["detections"]], dtype=torch.int64)
        found.append(_match_rate(ref_b, ref_c, ours_b, ours_c))
        confirmed.append(_match_rate(ours_b, ours_c, ref_b, ref_c))
    return found, confirmed, raw_err


def test_fixture_records_its_runtime(reference: dict) -> None:
    assert reference["versions"]["tfjs"] == "4.22.0" and reference["versions"]["backend"] == "cpu"
    assert len(reference["images"]) == 5
    assert sum(len(im["detections"]) for im in reference["images"]) >= 30


def test_matches_tfjs(rebuilt, reference: dict, coco_dir: Path) -> None:
    spec, network = rebuilt
    found, confirmed, raw_err = _agreement(spec, network, reference, coco_dir)
    assert raw_err < RAW_TOL, f"raw outputs differ from TF.js by up to {raw_err:.2e}"
    assert min(found) >= MATCH_MIN, f"TF.js detections found per image: {found}"
    assert min(confirmed) >= MATCH_MIN, f"our detections confirmed by TF.js per image: {confirmed}"


def test_tolerance_rejects_a_rebuild_without_shortcuts(rebuilt, reference: dict, coco_dir: Path) -> None:
    """The same weights without the residual adds: the check must fail, or it proves nothing."""
    import copy

    spec, network = rebuilt
    broken = copy.deepcopy(network)
    for block in broken.blocks:
        block.residual = False
    found, confirmed, raw_err = _agreement(spec, broken, {**reference, "images": reference["images"][:2]}, coco_dir)
    assert raw_err > 100 * RAW_TOL
    assert min(found + confirmed) < MATCH_MIN


def test_spec_from_graph(rebuilt) -> None:
    spec, network = rebuilt
    assert spec.input_hw == (300, 300) and spec.num_anchors == network.num_anchors == 1917
    assert spec.mean_rgb[0] == pytest.approx(127.5, abs=1e-4) and spec.std_rgb[0] == pytest.approx(127.5, abs=1e-4)
    assert spec.variances == pytest.approx((0.1, 0.2)) and spec.box_layout == "yxhw" and spec.score_fn == "sigmoid"
    assert spec.class_ids[:4] == (0, 1, 2, 3) and spec.class_ids[12] == 0 and len(spec.class_ids) == 91
    # First anchor of the 19x19 map: centre of cell (0, 0), TF OD API's smallest box 0.1.
    assert spec.anchors_cxcywh[0] == pytest.approx([0.5 / 19, 0.5 / 19, 0.1, 0.1], abs=1e-5)
    assert sum(isinstance(m, torch.nn.Conv2d) for m in network.modules()) == 88
    assert sum(b.residual for b in network.blocks) == 10


def _copy_model(model_json: Path, dest: Path) -> Path:
    for f in model_json.parent.iterdir():
        shutil.copy(f, dest / f.name)
    return dest / "model.json"


def test_missing_shard_is_named(model_json: Path, tmp_path: Path) -> None:
    copy = _copy_model(model_json, tmp_path)
    (tmp_path / "group1-shard3of5").unlink()
    with pytest.raises(ModelLoadError, match="group1-shard3of5.*missing"):
        build_ssdlite_mobilenet_v2(copy)


def test_truncated_shard_is_refused(model_json: Path, tmp_path: Path) -> None:
    copy = _copy_model(model_json, tmp_path)
    last = tmp_path / "group1-shard5of5"
    last.write_bytes(last.read_bytes()[:-1000])
    with pytest.raises(ModelLoadError, match="truncated"):
        build_ssdlite_mobilenet_v2(copy)


@pytest.mark.parametrize("text", ["not json", '{"modelTopology": {}}', "[]"])
def test_not_a_graph_model(tmp_path: Path, text: str) -> None:
    path = tmp_path / "model.json"
    path.write_text(text)
    with pytest.raises(ModelLoadError, match="not a TF.js graph model"):
        build_ssdlite_mobilenet_v2(path)


def test_other_graph_is_refused(model_json: Path, tmp_path: Path) -> None:
    """A graph whose predictors were cut off is not taken for SSDLite."""
    copy = _copy_model(model_json, tmp_path)
    raw = json.loads(copy.read_text())
    raw["modelTopology"]["node"] = [n for n in raw["modelTopology"]["node"] if not n["name"].startswith("BoxPredictor_5")]
    copy.write_text(json.dumps(raw))
    with pytest.raises(ModelLoadError, match="SSDLite|differ|predictors"):
        build_ssdlite_mobilenet_v2(copy)


def test_registry_loads_it_from_the_mirror() -> None:
    from aeb_app.model.registry import MODEL_NAMES, load_model

    assert "ssdlite_mobilenet_v2" in MODEL_NAMES
    loaded = load_model("ssdlite_mobilenet_v2")
    assert loaded.weights.endswith("model.json") and loaded.spec.name == "ssdlite_mobilenet_v2"
    with pytest.raises(ModelLoadError, match="random"):
        load_model("ssdlite_mobilenet_v2", weights="random")


def test_onnx_export_matches_pytorch(tmp_path: Path) -> None:
    """The project's exporter (dynamic batch axis): ONNX Runtime gives PyTorch's decoded outputs."""
    import onnxruntime as ort

    from aeb_app.inference.build.export import export_onnx
    from aeb_app.model.registry import DetectionNet, load_model

    loaded = load_model("ssdlite_mobilenet_v2")
    path = export_onnx(loaded, engines_dir=tmp_path)
    x3 = torch.randn(3, 3, 300, 300).clamp(-1, 1)
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    got = session.run(None, {session.get_inputs()[0].name: x3.numpy()})
    with torch.no_grad():
        want = DetectionNet(loaded.network, loaded.spec).eval()(x3)
    for g, w in zip(got, want):
        np.testing.assert_allclose(g, w.numpy(), atol=1e-4)
