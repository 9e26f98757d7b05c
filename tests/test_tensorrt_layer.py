"""TensorRT layer without TensorRT.

The tests with a fake ``tensorrt`` module injected in ``sys.modules`` check only that our code
calls the documented TensorRT 10 API names, with the documented arguments, in the right order
(the fakes raise AttributeError on any other name) -- NOT TensorRT's behaviour: no engine is
built or run here, and no TensorRT speed or accuracy is claimed anywhere.
"""

from __future__ import annotations

import hashlib
import sys
import types

import numpy as np
import pytest
import torch

from aeb_app.atomic import write_bytes, write_json
from aeb_app.cli import main
from aeb_app.errors import BackendUnavailableError, EngineError, EngineLoadError
from aeb_app.inference import engine_cache as ec
from aeb_app.inference import tensorrt_backend as tb
from aeb_app.inference.calibration_data import trt_calibrator

H200 = ec.MachineInfo("10.3.0", "NVIDIA H200", "9.0")


def test_build_engine_cli_fails_with_one_install_line(capsys, tmp_path):
    rc = main(["build-engine", "--model", "ssd_mobilenet_v1", "--precision", "int8", "--engines-dir", str(tmp_path)])
    err = capsys.readouterr().err.strip()
    assert rc == 2 and len(err.splitlines()) == 1
    assert "TensorRT is not installed: pip install" in err and "pypi.nvidia.com" in err
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("flag", ["--num-images=0", "--max-batch=-4", "--opt-batch=x"])
def test_build_engine_cli_rejects_non_positive_counts(capsys, flag):
    with pytest.raises(SystemExit) as exc:
        main(["build-engine", "--model", "ssd_mobilenet_v1", "--precision", "fp16", flag])
    err = capsys.readouterr().err
    assert exc.value.code == 2 and ("must be >= 1" in err or "not an integer" in err)


def test_bad_precision_or_method_is_named_before_tensorrt_is_needed():
    with pytest.raises(EngineError, match="unknown precision 'bf16'"):
        tb.build_engine(None, precision="bf16", profile=ec.Profile())
    with pytest.raises(EngineError, match="unknown INT8 method 'minmax'"):
        tb.build_engine(None, precision="int8", profile=ec.Profile(), int8_method="minmax")


def test_torch2trt_unavailable():
    from aeb_app.inference.torch2trt_backend import build_engine_torch2trt

    with pytest.raises(BackendUnavailableError, match="torch2trt is not installed"):
        build_engine_torch2trt(None, precision="fp16", profile=ec.Profile())


class _Strict:
    """Records calls to the named methods only, as (object.method, args); anything else raises."""

    def __init__(self, calls: list, name: str, methods: dict) -> None:
        self._calls, self._name, self._methods = calls, name, methods

    def __getattr__(self, attr):
        if attr.startswith("_") or attr not in self._methods:
            raise AttributeError(f"{self._name}.{attr} is not in the fake TensorRT 10 API")

        def call(*args):
            self._calls.append((f"{self._name}.{attr}", args))
            ret = self._methods[attr]
            return ret(*args) if callable(ret) else ret
        return call


def _fake_trt(monkeypatch, version="10.3.0"):
    calls: list = []
    trt = types.ModuleType("tensorrt")
    trt.__version__ = version

    class Logger:
        WARNING, VERBOSE = "WARNING", "VERBOSE"

        def __init__(self, level):
            pass

    net_input = types.SimpleNamespace(name="images", shape=(-1, 3, 300, 300))
    network = _Strict(calls, "network", {"get_input": net_input})
    config = _Strict(calls, "config", {"set_memory_pool_limit": None, "add_optimization_profile": 0,
                                       "set_flag": None, "clear_flag": None, "set_calibration_profile": True})
    profile = _Strict(calls, "profile", {"set_shape": None})
    builder = _Strict(calls, "builder", {"create_builder_config": config, "create_network": network,
                                         "create_optimization_profile": profile,
                                         "build_serialized_network": b"ENGINE"})

    class Parser:
        num_errors = 1

        def __init__(self, net, logger):
            pass

        def parse_from_file(self, path):
            calls.append(("parser.parse_from_file", (path,)))
            return not path.endswith("bad.onnx")

        def get_error(self, i):
            return "In node 3 (Conv):\nINVALID_NODE"

    class Calibrator:
        def __init__(self):
            pass

    trt.Logger, trt.OnnxParser, trt.IInt8EntropyCalibrator2 = Logger, Parser, Calibrator
    trt.Builder = lambda logger: (calls.append(("trt.Builder", ())), builder)[1]
    trt.MemoryPoolType = types.SimpleNamespace(WORKSPACE="WORKSPACE")
    flags = {"TF32": "TF32"} if version.startswith("11") else {"FP16": "FP16", "INT8": "INT8", "TF32": "TF32"}
    trt.BuilderFlag = types.SimpleNamespace(**flags)
    trt.NetworkDefinitionCreationFlag = types.SimpleNamespace(STRONGLY_TYPED=0)
    monkeypatch.setitem(sys.modules, "tensorrt", trt)
    return trt, calls, config


@pytest.fixture
def fake_trt(monkeypatch):
    return _fake_trt(monkeypatch)


def _names(calls):
    return [c[0] for c in calls]


def test_builder_calls_trt10_api_in_order(fake_trt, tmp_path):
    """Builder -> config/pool -> create_network(0) -> parse -> profile -> flags -> build, with arguments."""
    _, calls, _ = fake_trt
    b = tb.EngineBuilder(workspace_gib=1)
    b.create_network(tmp_path / "m.onnx")
    assert b.create_engine("int8", ec.Profile(2, 16, 64)) == b"ENGINE"
    assert _names(calls) == [
        "trt.Builder", "builder.create_builder_config", "config.set_memory_pool_limit", "builder.create_network",
        "parser.parse_from_file", "network.get_input", "builder.create_optimization_profile", "profile.set_shape",
        "config.add_optimization_profile", "config.set_flag", "config.set_flag", "builder.build_serialized_network",
    ]
    args = dict(calls)
    assert args["config.set_memory_pool_limit"] == ("WORKSPACE", 1 << 30)
    assert args["builder.create_network"] == (0,)  # explicit batch is implicit in TensorRT 10
    assert args["profile.set_shape"] == ("images", (2, 3, 300, 300), (16, 3, 300, 300), (64, 3, 300, 300))
    assert [a for n, a in calls if n == "config.set_flag"] == [("FP16",), ("INT8",)]


def test_fp32_clears_tf32(fake_trt, tmp_path):
    _, calls, _ = fake_trt
    b = tb.EngineBuilder()
    b.create_network(tmp_path / "m.onnx")
    b.create_engine("fp32", ec.Profile())
    assert ("config.clear_flag", ("TF32",)) in calls and "config.set_flag" not in _names(calls)


def test_legacy_calibrator_uses_the_profile_as_calibration_profile(fake_trt, tmp_path):
    _, calls, config = fake_trt
    b = tb.EngineBuilder()
    b.create_network(tmp_path / "m.onnx")
    calibrator = object()
    b.create_engine("int8", ec.Profile(1, 4, 8), calibrator=calibrator)
    assert config.int8_calibrator is calibrator  # attribute set, as documented
    assert "config.set_calibration_profile" in _names(calls)


def test_tensorrt11_is_strongly_typed_without_precision_flags(monkeypatch, tmp_path):
    _, calls, _ = _fake_trt(monkeypatch, "11.0.0")
    b = tb.EngineBuilder()
    b.create_network(tmp_path / "q.onnx", strongly_typed=True)
    b.create_engine("int8", ec.Profile())
    assert "config.set_flag" not in _names(calls) and dict(calls)["builder.create_network"] == (1,)
    with pytest.raises(EngineError, match="FP16 engine needs an FP16 ONNX"):
        b.create_engine("fp16", ec.Profile())


def test_parse_failure_is_one_line_naming_the_file(fake_trt, tmp_path):
    b = tb.EngineBuilder()
    with pytest.raises(EngineError, match=r"bad.onnx: TensorRT cannot parse the ONNX \(In node 3 \(Conv\): INVALID") as e:
        b.create_network(tmp_path / "bad.onnx")
    assert "\n" not in str(e.value)


def test_calibrator_reuses_one_buffer_and_caches_atomically(fake_trt, tmp_path):
    batches = [np.full((4, 3, 2, 2), i, np.float32) for i in range(3)] + [np.zeros((3, 3, 2, 2), np.float32)]
    cache = tmp_path / "calib" / "x.trtcache"
    cal = trt_calibrator(iter(batches), cache, 4, device="cpu")
    assert cal.get_batch_size() == 4 and cal.read_calibration_cache() is None
    ptrs = [cal.get_batch(["images"]) for _ in range(3)]
    assert len({p[0] for p in ptrs}) == 1 and float(cal._buffer[0, 0, 0, 0]) == 2.0
    with pytest.raises(EngineError, match="calibration batch of 3 images; TensorRT expects 4"):
        cal.get_batch(["images"])
    assert cal.get_batch(["images"]) is None
    cal.write_calibration_cache(memoryview(b"CACHE"))
    assert cal.read_calibration_cache() == b"CACHE" and [p.name for p in cache.parent.iterdir()] == ["x.trtcache"]


def _stored_engine(tmp_path, max_batch=64):
    data = b"serialized" * 10
    path = tmp_path / "m_fp16_b1-16-64_sm90_trt10.3.0_abc.engine"
    write_bytes(path, data)
    write_json(ec.sidecar_path(path), ec.make_sidecar(
        model="m", precision="fp16", profile=ec.Profile(1, 16, max_batch), machine=H200, onnx_sha256="0" * 64,
        engine_sha256=hashlib.sha256(data).hexdigest()))
    return path


def _fake_runtime(trt, calls, *, max_batch=64, out_dtype="FLOAT"):
    trt.TensorIOMode = types.SimpleNamespace(INPUT="IN", OUTPUT="OUT")
    trt.DataType = types.SimpleNamespace(FLOAT="FLOAT", HALF="HALF", INT8="INT8")
    names = ["images", "boxes", "scores"]
    context = _Strict(calls, "context", {
        "set_input_shape": True, "set_tensor_address": True, "execute_async_v3": True,
        "get_tensor_shape": lambda n: (2, 10, 4) if n == "boxes" else (2, 10, 91)})
    engine = _Strict(calls, "engine", {
        "get_tensor_name": lambda i: names[i], "create_execution_context": context,
        "get_tensor_mode": lambda n: "IN" if n == "images" else "OUT",
        "get_tensor_dtype": lambda n: "FLOAT" if n == "images" else out_dtype,
        "get_tensor_profile_shape": lambda n, i: [(1, 3, 300, 300), (16, 3, 300, 300), (max_batch, 3, 300, 300)]})
    engine.__dict__["num_io_tensors"] = 3
    trt.Runtime = lambda logger: types.SimpleNamespace(deserialize_cuda_engine=lambda data: engine)


def _detector(tmp_path, monkeypatch):
    det = tb.TensorRTDetector(_stored_engine(tmp_path), types.SimpleNamespace(name="m"), mode="fp16_trt",
                              precision="fp16", machine=H200)
    monkeypatch.setattr(det, "_stream_handle", lambda: 1234)
    return det


def test_runtime_binds_named_tensors_and_runs_on_the_stream(fake_trt, tmp_path, monkeypatch):
    trt, calls, _ = fake_trt
    _fake_runtime(trt, calls)
    det = _detector(tmp_path, monkeypatch)
    det.activate()
    boxes, scores = det.forward_normalized(torch.zeros(2, 3, 300, 300))
    det.forward_normalized(torch.zeros(2, 3, 300, 300))
    assert boxes.shape == (2, 10, 4) and scores.shape == (2, 10, 91) and boxes.dtype == torch.float32
    assert [a for n, a in calls if n == "context.set_input_shape"] == [("images", (2, 3, 300, 300))]  # once per shape
    assert [a[0] for n, a in calls if n == "context.set_tensor_address"][:3] == ["images", "boxes", "scores"]
    assert [a for n, a in calls if n == "context.execute_async_v3"] == [(1234,), (1234,)]


@pytest.mark.parametrize("kwargs, text", [({"max_batch": 32}, "profile max batch 32 differs from its sidecar's 64"),
                                          ({"out_dtype": "INT8"}, "output 'boxes' has unsupported dtype INT8")])
def test_runtime_refuses_engines_that_do_not_match(fake_trt, tmp_path, monkeypatch, kwargs, text):
    trt, calls, _ = fake_trt
    _fake_runtime(trt, calls, **kwargs)
    with pytest.raises(EngineLoadError, match=text):
        _detector(tmp_path, monkeypatch).activate()


def test_find_engine_ignores_other_tensorrt_versions(tmp_path):
    _stored_engine(tmp_path)
    assert tb.find_engine(tmp_path, "m", "fp16", H200).name.startswith("m_fp16_")
    assert tb.find_engine(tmp_path, "m", "fp16", ec.MachineInfo("10.8.0", "NVIDIA H200", "9.0")) is None
    assert tb.find_engine(tmp_path, "m", "int8", H200) is None


def test_batch_over_profile_max_is_a_clear_error(tmp_path):
    """The runtime's guard, exercised on a detector object built without TensorRT."""
    from aeb_app.inference.base import DetectorInfo

    det = tb.TensorRTDetector.__new__(tb.TensorRTDetector)
    det.info = DetectorInfo("fp16_trt", "tensorrt", "fp16", "cuda", "m", max_batch=64)
    x = types.SimpleNamespace(shape=(65, 3, 300, 300))
    with pytest.raises(EngineError, match="batch of 65 exceeds the engine profile's max batch 64; rebuild"):
        det.forward_normalized(x)
