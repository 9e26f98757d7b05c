"""ONNX Runtime backend: factory, sessions, errors."""

from __future__ import annotations

import pytest
import torch

from aeb_app.errors import BackendUnavailableError, EngineLoadError
from aeb_app.inference import registry
from aeb_app.inference.run.onnxrt_backend import OnnxRuntimeDetector, pick_providers
from tests._inference_helpers import real_frames, shared_engines



def test_fp32_ort_detects_on_real_frames(mobilenet, tmp_path_factory, data_dir, coco_dir):
    det = registry.create(mobilenet, "fp32_ort", device="cpu", engines_dir=shared_engines(tmp_path_factory))
    assert det.info.backend == "onnxruntime" and det.info.precision == "fp32" and det.info.device == "cpu"
    frames = real_frames(data_dir, coco_dir)
    with det:
        boxes, scores = det.run_decoded(__import__("numpy").zeros((2, 300, 300, 3), "uint8"))
        assert isinstance(boxes, torch.Tensor) and boxes.shape == (2, 1917, 4) and scores.shape == (2, 1917, 91)
        dets = det.infer(frames)
    assert len(dets) == len(frames)
    assert sum(len(d) for d in dets) > 0
    for d, f in zip(dets, frames):
        assert (d.xyxy_px[:, 2] <= f.shape[1]).all() and (d.xyxy_px[:, 3] <= f.shape[0]).all()


def test_int8_ort_without_quantized_model_is_unavailable(mobilenet, tmp_path):
    with pytest.raises(BackendUnavailableError, match="no INT8 Q/DQ model .* 'aeb-app quantize"):
        registry.create(mobilenet, "int8_ort", device="cpu", engines_dir=tmp_path)
    assert list(tmp_path.iterdir()) == []


def test_fp32_ort_without_export_when_disabled(mobilenet, tmp_path):
    with pytest.raises(BackendUnavailableError, match="export-onnx"):
        registry.create(mobilenet, "fp32_ort", device="cpu", engines_dir=tmp_path, export_if_missing=False)


def test_cuda_provider_choice_or_clear_error():
    import onnxruntime as ort

    if "CUDAExecutionProvider" in ort.get_available_providers():  # onnxruntime-gpu on a GPU machine
        assert pick_providers("cuda") == ["CUDAExecutionProvider", "CPUExecutionProvider"]
    else:
        with pytest.raises(BackendUnavailableError, match="CUDAExecutionProvider missing"):
            pick_providers("cuda")
    assert pick_providers("cpu") == ["CPUExecutionProvider"]


def test_unparsable_onnx_gives_engine_load_error(mobilenet, tmp_path):
    bad = tmp_path / "bad.onnx"
    bad.write_bytes(b"\x08\x07not really an onnx protobuf" * 10)
    det = OnnxRuntimeDetector(bad, mobilenet.spec, mode="fp32_ort", precision="fp32")
    with pytest.raises(EngineLoadError, match="bad.onnx: ONNX Runtime cannot load it"):
        det.__enter__()
    missing = OnnxRuntimeDetector(tmp_path / "none.onnx", mobilenet.spec, mode="fp32_ort", precision="fp32")
    with pytest.raises(EngineLoadError, match="none.onnx: ONNX file not found"):
        missing.__enter__()


def test_old_sidecar_beside_a_cached_onnx_is_rebuilt_through_the_one_door(mobilenet, tmp_path, tmp_path_factory,
                                                                          caplog):
    """A model exported by an older aeb_app (sidecar without a schema version) is a cache miss: the backend
    asks registry.build_artifact, which says so in the log, and the new file gets a schema-2 sidecar."""
    import json
    import logging
    import shutil

    from aeb_app.inference import artifacts as ac

    shared = ac.find_onnx(mobilenet, shared_engines(tmp_path_factory)) or registry.build_artifact(
        ac.ONNX, mobilenet, engines_dir=shared_engines(tmp_path_factory))
    target = tmp_path / shared.name
    shutil.copy(shared, target)
    side = ac.read_sidecar(shared)
    ac.sidecar_path(target).write_text(json.dumps({  # the pre-schema-2 layout
        "kind": "onnx", "model": side.model, "weights_sha256": side.weights_sha256, "opset": ac.OPSET,
        "torch_version": torch.__version__, "sha256": side.sha256}))
    with caplog.at_level(logging.INFO):
        det = registry.create(mobilenet, "fp32_ort", device="cpu", engines_dir=tmp_path)
    assert "older aeb_app" in caplog.text and "treated as missing" in caplog.text
    assert f"no cached onnx for ssd_mobilenet_v1 in {tmp_path}: building it now" in caplog.text
    assert det.info.backend == "onnxruntime" and ac.read_sidecar(target).schema_version == ac.SCHEMA_VERSION


def test_build_artifact_refuses_what_is_not_built_on_demand(mobilenet, tmp_path):
    with pytest.raises(BackendUnavailableError, match="no trt-engine artifact .* not built on demand"):
        registry.build_artifact("trt-engine", mobilenet, engines_dir=tmp_path)
    assert list(tmp_path.iterdir()) == []
