"""ONNX export: graph shape, checker, cache/sidecar, and numerics against PyTorch via ONNX Runtime."""

from __future__ import annotations

import json

import numpy as np
import onnx
import pytest
import torch

from aeb_app.errors import EngineError
from aeb_app.inference import artifacts as ac
from aeb_app.inference.build import export as ox
from aeb_app.model.preprocess import normalize, resize_batch
from aeb_app.model.registry import DetectionNet, load_model
from tests._inference_helpers import real_frames, shared_engines



@pytest.fixture(scope="module")
def engines(tmp_path_factory):
    return shared_engines(tmp_path_factory)


def _dims(value_info) -> list:
    return [d.dim_param or d.dim_value for d in value_info.type.tensor_type.shape.dim]


def test_export_graph_is_clean_and_dynamic_in_batch_only(mobilenet, engines):
    path = ox.export_onnx(mobilenet, engines_dir=engines)
    model = onnx.load(str(path))
    onnx.checker.check_model(model, full_check=True)
    assert [i.name for i in model.graph.input] == ["images"]
    assert [o.name for o in model.graph.output] == ["boxes", "scores"]
    batch = _dims(model.graph.input[0])[0]
    assert isinstance(batch, str) and _dims(model.graph.input[0])[1:] == [3, 300, 300]
    assert _dims(model.graph.output[0])[1:] == [1917, 4]
    assert _dims(model.graph.output[1])[1:] == [1917, 91]
    assert model.opset_import[0].version == ac.OPSET
    ops = {n.op_type for n in model.graph.node}
    assert "Pad" not in ops and "Shape" not in ops  # TF-SAME pads folded into Conv; no shape chains
    assert {"Exp", "Sigmoid"} <= ops  # decoding is in the graph


def test_sidecar_and_cache_reuse(mobilenet, engines):
    path = ox.export_onnx(mobilenet, engines_dir=engines)
    side = ac.read_sidecar(path)
    assert side.kind == ac.ONNX and side.model == "ssd_mobilenet_v1" and side.schema_version == ac.SCHEMA_VERSION
    assert side.weights_sha256 == ac.weights_sha256(mobilenet)
    assert side.details["opset"] == ac.OPSET and side.versions["torch"] == torch.__version__
    assert side.sha256 == ac.file_sha256(path) and side.batch.max_batch == ac.MAX_EXPORT_BATCH
    mtime = path.stat().st_mtime_ns
    assert ox.export_onnx(mobilenet, engines_dir=engines) == path
    assert path.stat().st_mtime_ns == mtime  # reused, not re-exported


def test_corrupt_cached_file_is_detected(mobilenet, engines):
    path = ox.export_onnx(mobilenet, engines_dir=engines)
    expected = ac.sidecar_path(path).read_text()
    assert ac.onnx_current(path, mobilenet)
    copy = engines / "copy.onnx"
    copy.write_bytes(path.read_bytes()[:1000])
    ac.sidecar_path(copy).write_text(expected)
    assert not ac.onnx_current(copy, mobilenet)
    with pytest.raises(EngineError, match="copy.onnx: not a valid ONNX model"):
        ox.check_onnx(copy)
    copy.unlink()
    ac.sidecar_path(copy).unlink()


def test_failed_export_leaves_nothing(mobilenet, tmp_path, monkeypatch):
    def boom(*args, **kwargs):
        raise RuntimeError("exporter exploded")

    monkeypatch.setattr(ox, "_export_to", boom)
    with pytest.raises(EngineError, match="ONNX export failed .*exporter exploded"):
        ox.export_onnx(mobilenet, engines_dir=tmp_path)
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("name", ["ssd_mobilenet_v1", "ssd300_resnet50"])
def test_onnxruntime_matches_pytorch_on_real_images(name, mobilenet, engines, data_dir, coco_dir):
    import onnxruntime as ort

    torch.manual_seed(0)
    loaded = mobilenet if name == "ssd_mobilenet_v1" else load_model(name, weights="random")
    path = ox.export_onnx(loaded, engines_dir=engines)
    frames = real_frames(data_dir, coco_dir)
    frames = frames if name == "ssd_mobilenet_v1" else frames[-2:]  # ResNet-50 is slow on 2 CPU cores
    batch = resize_batch(frames, loaded.spec)
    x = normalize(torch.from_numpy(batch), loaded.spec)
    with torch.no_grad():
        ref_boxes, ref_scores = DetectionNet(loaded.network, loaded.spec).eval()(x)
    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    boxes, scores = sess.run(["boxes", "scores"], {"images": x.numpy()})
    assert boxes.shape == tuple(ref_boxes.shape) and scores.shape == tuple(ref_scores.shape)
    # FP32 reassociation differences only; scores are probabilities, boxes normalised coordinates.
    np.testing.assert_allclose(scores, ref_scores.numpy(), atol=2e-4)
    confident = ref_scores.numpy().max(-1) > 0.3
    np.testing.assert_allclose(boxes[confident], ref_boxes.numpy()[confident], rtol=1e-4, atol=2e-4)
    one, _ = sess.run(["boxes", "scores"], {"images": x[:1].numpy()})  # dynamic batch: 1 works too
    np.testing.assert_allclose(one[0], boxes[0], rtol=1e-4, atol=1e-4)


def test_sidecar_alone_is_enough_to_run_the_graph(mobilenet, engines, data_dir, coco_dir):
    """A tool that knows only the sidecar (colour order, size, normalisation, box format, names)
    gets the same top detection as aeb_app's own PyTorch path."""
    import cv2
    import onnxruntime as ort

    from aeb_app.inference.registry import create

    path = ox.export_onnx(mobilenet, engines_dir=engines)
    meta = json.loads(ac.sidecar_path(path).read_text())["usage"]  # read as plain JSON, as another tool would
    fmt, pre, out = meta["input_format"], meta["preprocessing"], meta["output_format"]
    assert fmt["color_order"] == "RGB" and fmt["layout"] == "NCHW" and out["boxes"]["format"] == "xyxy"
    assert len(meta["class_names"]) == _dims(onnx.load(str(path)).graph.output[1])[2]
    frame = real_frames(data_dir, coco_dir)[0]
    rgb = cv2.cvtColor(frame, cv2.COLOR_BGR2RGB) if fmt["color_order"] == "RGB" else frame
    x = cv2.resize(rgb, (fmt["width"], fmt["height"]), interpolation=cv2.INTER_LINEAR).astype(np.float32)
    x = (x - np.array(pre["mean_rgb"], np.float32)) / np.array(pre["std_rgb"], np.float32)
    boxes, scores = ort.InferenceSession(str(path)).run(None, {fmt["name"]: x.transpose(2, 0, 1)[None]})
    scores[..., out["scores"]["background_channels"]] = 0
    anchor, channel = np.unravel_index(np.argmax(scores[0]), scores[0].shape)
    h, w = frame.shape[:2]
    box_px = boxes[0, anchor] * [w, h, w, h]
    with create(mobilenet, "fp32", device="cpu") as det:
        [ref] = det.infer([frame])
    best = int(np.argmax(ref.scores))
    assert meta["class_names"][channel] == ref.names[best]
    assert np.abs(box_px - ref.xyxy_px[best]).max() < 2.0  # pixels


def test_older_sidecar_means_one_log_line_and_a_re_export(mobilenet, engines, caplog):
    """A sidecar written before the one sidecar contract (no schema version) is a cache miss, never a crash."""
    path = ox.export_onnx(mobilenet, engines_dir=engines)
    side = ac.read_sidecar(path)
    old = {"kind": "onnx", "model": side.model, "weights_sha256": side.weights_sha256, "opset": ac.OPSET,
           "torch_version": torch.__version__, "sha256": side.sha256, **side.usage.__dict__}
    ac.sidecar_path(path).write_text(json.dumps(old))
    caplog.clear()
    with caplog.at_level("INFO"):
        assert ox.export_onnx(mobilenet, engines_dir=engines) == path
    assert "schema (none) is from an older aeb_app" in caplog.text and "exported" in caplog.text
    again = ac.read_sidecar(path)
    assert again.schema_version == ac.SCHEMA_VERSION and again.usage.class_names[1] == "person"
    assert again.sha256 == ac.file_sha256(path)
