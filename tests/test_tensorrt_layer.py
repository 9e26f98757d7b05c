"""TensorRT layer without TensorRT: the project's call flow against NVIDIA's own sample flow.

``tests/_fake_tensorrt.py`` stands in for ``tensorrt``: every method type-checks its arguments
against the TensorRT 10 API reference and records the call; the builder runs an INT8
calibrator the way TensorRT does (swallowing ``get_batch`` exceptions). The flows below are
recorded from NVIDIA's ``samples/python/efficientdet/build_engine.py`` (builder + calibrator)
and ``samples/python/common_runtime.py`` (runtime), with TensorRT 10 names
(``set_memory_pool_limit`` for ``max_workspace_size``, ``parse_from_file`` for
``parse(bytes)``). These tests check call order, argument types and our own logic, NOT
TensorRT's behaviour: no engine is built or run, and no TensorRT figure is claimed anywhere.
"""

from __future__ import annotations

import shutil
import sys

import numpy as np
import pytest
import torch

from aeb_app.atomic import write_bytes
from aeb_app.cli import main
from aeb_app.errors import BackendUnavailableError, CalibrationError, EngineError, EngineLoadError
from aeb_app.inference import artifacts as ac
from aeb_app.inference import registry
from aeb_app.inference.build import trt_build as tbuild
from aeb_app.inference.run import tensorrt_backend as tb
from aeb_app.inference.build.calibration_cache import CalibrationKey
from aeb_app.inference.build.trt_calibrator import legacy_calibration_key, trt_calibrator
from aeb_app.model.registry import load_model
from tests import _fake_tensorrt
from tests._inference_helpers import shared_engines

H200 = ac.MachineInfo("10.13.2", "NVIDIA H200", "9.0")

#: NVIDIA efficientdet build_engine.py: EngineBuilder.__init__, create_network, create_engine (int8).
SAMPLE_BUILD_FLOW = [
    "builder.__init__", "builder.create_builder_config", "config.set_memory_pool_limit", "builder.create_network",
    "parser.__init__", "parser.parse_from_file", "network.get_input", "builder.create_optimization_profile",
    "profile.set_shape", "config.add_optimization_profile", "config.set_flag", "config.set_flag",
    "config.int8_calibrator=", "builder.build_serialized_network",
]
#: Calls the project adds to the sample flow, each for a documented reason.
ALLOWED_EXTRA = {
    "config.create_timing_cache", "config.set_timing_cache",  # load the timing cache before building
    "config.get_timing_cache", "timing_cache.serialize",  # save it after building
    "config.set_calibration_profile",  # TensorRT calibrates at this profile's opt shape (dynamic batch)
    "config.clear_flag",  # FP32 engines: TF32 off
}
#: NVIDIA common_runtime.py: allocate_buffers + do_inference (execute_async_v3 on a created stream).
SAMPLE_RUN_FLOW = ["runtime.__init__", "runtime.deserialize_cuda_engine", "engine.create_execution_context",
                   "context.set_tensor_address", "context.set_tensor_address", "context.set_tensor_address",
                   "context.execute_async_v3"]


def follows(flow: list[str], calls: list[str], extra: set[str]) -> None:
    """Assert ``calls`` is ``flow`` in order with only ``extra`` calls interleaved."""
    step = 0
    for name in calls:
        if step < len(flow) and name == flow[step]:
            step += 1
        elif name not in extra:
            raise AssertionError(f"call {name!r} at sample step {step} ({flow[step:step + 1]}) is not in the sample "
                                 f"flow and not an allowed extra; calls: {calls}")
    assert step == len(flow), f"sample steps never reached: {flow[step:]}"


@pytest.fixture
def fake(monkeypatch):
    trt, log = _fake_tensorrt.make_module()
    monkeypatch.setitem(sys.modules, "tensorrt", trt)
    monkeypatch.setattr(tb, "machine_info", lambda: H200)
    monkeypatch.setattr(tbuild, "machine_info", lambda: H200)
    monkeypatch.setattr("aeb_app.inference.build.trt_calibrator.DEVICE", "cpu")  # no GPU in CI
    return trt, log


@pytest.fixture(scope="module")
def mobilenet():
    return load_model("ssd_mobilenet_v1")


def _names(log):
    return [name for name, _ in log]


def test_build_engine_cli_fails_with_one_install_line(capsys, tmp_path):
    rc = main(["build-engine", "--model", "ssd_mobilenet_v1", "--precision", "int8", "--engines-dir", str(tmp_path)])
    err = capsys.readouterr().err.strip()
    assert rc == 2 and len(err.splitlines()) == 1
    assert "TensorRT is not installed: pip install" in err and "tensorrt-cu13" in err and "+cu130" in err
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("flag", ["--num-images=0", "--max-batch=-4", "--opt-batch=x"])
def test_build_engine_cli_rejects_non_positive_counts(capsys, flag):
    code = main(["build-engine", "--model", "ssd_mobilenet_v1", "--precision", "fp16", flag])  # argparse's exit code
    err = capsys.readouterr().err
    assert code == 2 and ("must be >= 1" in err or "not an integer" in err)


def test_bad_precision_or_method_is_named_before_tensorrt_is_needed():
    with pytest.raises(EngineError, match="unknown precision 'bf16'"):
        tbuild.build_engine(None, precision="bf16", profile=ac.Profile())
    with pytest.raises(EngineError, match="unknown INT8 method 'minmax'"):
        tbuild.build_engine(None, precision="int8", profile=ac.Profile(), int8_method="minmax")


def test_torch2trt_unavailable():
    from aeb_app.inference.build.torch2trt import build_engine_torch2trt

    with pytest.raises(BackendUnavailableError, match="torch2trt is not installed"):
        build_engine_torch2trt(None, precision="fp16", profile=ac.Profile())


def _legacy_build(mobilenet, coco_dir, engines, **kwargs):
    args = {"precision": "int8", "profile": ac.Profile(1, 4, 8), "engines_dir": engines, "int8_method": "calibrator",
            "coco_dir": coco_dir, "num_images": 8, "seed": 0, **kwargs}
    return tbuild.build_engine(mobilenet, **args)


def test_legacy_int8_build_follows_nvidias_sample(fake, mobilenet, coco_dir, tmp_path_factory):
    _, log = fake
    engines = shared_engines(tmp_path_factory) / "legacy-flow"
    shutil.rmtree(engines, ignore_errors=True)
    target = _legacy_build(mobilenet, coco_dir, engines)
    follows(SAMPLE_BUILD_FLOW, _names(log), ALLOWED_EXTRA)
    args = dict(log)
    assert args["builder.create_network"] == (0,)  # weakly typed: the calibrator path
    assert args["profile.set_shape"] == ("images", (1, 3, 300, 300), (4, 3, 300, 300), (8, 3, 300, 300))
    meta = ac.read_sidecar(target).details
    assert meta["calibration_images_used"] == 8 and meta["calibration_batch"] == 4 and meta["strongly_typed"] is False
    cache = next((engines / "calib").glob("*.trtcache"))
    assert "-n8-s0-b4-" in cache.name and cache.with_name(cache.name + ".key.json").is_file()


def test_qdq_build_on_tensorrt10_is_strongly_typed_without_precision_flags(fake, mobilenet, coco_dir,
                                                                           tmp_path_factory):
    _, log = fake
    tbuild.build_engine(mobilenet, precision="int8", profile=ac.Profile(1, 4, 8), engines_dir=shared_engines(
        tmp_path_factory), int8_method="qdq", coco_dir=coco_dir, num_images=16, seed=0, rebuild=True)
    names = _names(log)
    assert dict(log)["builder.create_network"] == (1 << 1,)  # 1 << STRONGLY_TYPED
    assert "config.set_flag" not in names and "config.int8_calibrator=" not in names


def test_calibrator_error_is_reraised_after_the_build(fake, tmp_path):
    def batches():
        yield np.zeros((2, 3, 4, 4), np.float32)
        raise OSError("disk vanished while reading image 3")

    key = CalibrationKey("trt-entropy2", "m", "0" * 64, "1" * 64, 4, 0, "entropy", 2)
    cal = trt_calibrator(batches(), cache_file=tmp_path / "c.trtcache", key=key, cached=None, batch_size=2,
                         device="cpu")
    builder = tbuild.EngineBuilder()
    builder.create_network(tmp_path / "m.onnx")
    with pytest.raises(CalibrationError, match="failed after 1 batches .OSError: disk vanished"):
        builder.create_engine("int8", ac.Profile(1, 2, 4), calibrator=cal)
    assert builder.builder.calibration_batches == 1  # TensorRT itself just saw "end of data"


def test_calibrator_subclasses_the_entropy2_base_and_hands_out_real_pointers(fake, tmp_path):
    trt, _ = fake
    key = CalibrationKey("trt-entropy2", "m", "0" * 64, "1" * 64, 4, 0, "entropy", 2)
    batches = [np.full((2, 3, 4, 4), i, np.float32) for i in range(2)]
    cal = trt_calibrator(iter(batches), cache_file=tmp_path / "c.trtcache", key=key, cached=None, batch_size=2,
                         device="cpu")
    assert isinstance(cal, trt.IInt8EntropyCalibrator2) and cal._base_initialised
    pointers = cal.get_batch(["images"])
    assert pointers == [cal._buffer.data_ptr()] and type(pointers[0]) is int
    assert cal.get_batch(["images"]) == pointers and float(cal._buffer[0, 0, 0, 0]) == 1.0  # one buffer, reused
    cal.write_calibration_cache(memoryview(b"TABLE"))
    from aeb_app.inference.build.calibration_cache import read_cache

    assert read_cache(tmp_path / "c.trtcache", key) == b"TABLE"


def test_calibration_key_changes_with_every_setting(mobilenet, coco_dir, tmp_path):
    base = dict(num_images=8, seed=0, batch=4, trt_version="10.13.2")
    key = legacy_calibration_key(mobilenet, "a" * 64, coco_dir, **base)
    variants = [legacy_calibration_key(mobilenet, "b" * 64, coco_dir, **base)]
    for field, value in (("num_images", 12), ("seed", 1), ("batch", 2), ("trt_version", "10.14.1")):
        variants.append(legacy_calibration_key(mobilenet, "a" * 64, coco_dir, **{**base, field: value}))
    chosen = sorted((coco_dir / "val2017").glob("*.jpg"))
    copy_dir = tmp_path / "coco"
    copy_dir.mkdir()
    for p in chosen:
        shutil.copy(p, copy_dir / p.name)
    assert legacy_calibration_key(mobilenet, "a" * 64, copy_dir, **base) == key  # same content, other folder
    from aeb_app.inference.build.calibration import select_images

    victim = copy_dir / select_images(copy_dir, 8, 0)[3].name
    victim.write_bytes(victim.read_bytes()[:-10] + b"0123456789")  # one image's content changed
    variants.append(legacy_calibration_key(mobilenet, "a" * 64, copy_dir, **base))
    digests = {k.digest() for k in [key, *variants]}
    assert len(digests) == len(variants) + 1 and len({k.file_name(".trtcache") for k in [key, *variants]}) == len(digests)


def test_num_images_change_builds_a_new_engine_and_rebuild_ignores_the_stale_cache(fake, mobilenet, coco_dir,
                                                                                   tmp_path):
    first = _legacy_build(mobilenet, coco_dir, tmp_path)
    second = _legacy_build(mobilenet, coco_dir, tmp_path, num_images=12)
    assert first != second and first.is_file() and second.is_file()  # not reused across --num-images
    builders = []
    real_builder = sys.modules["tensorrt"].Builder
    sys.modules["tensorrt"].Builder = lambda logger: builders.append(real_builder(logger)) or builders[-1]
    _legacy_build(mobilenet, coco_dir, tmp_path, rebuild=True)
    assert builders[-1].calibration_batches == 2  # calibrated again: the cache was not read
    cache = next(p for p in (tmp_path / "calib").glob("*-n8-*.trtcache"))
    cache.write_bytes(b"TRT-1013-EntropyCalibration2\nimages: 00000000\n")  # tampered table
    second.unlink()
    with pytest.raises(CalibrationError, match="does not match the hash"):
        _legacy_build(mobilenet, coco_dir, tmp_path, num_images=8, profile=ac.Profile(1, 4, 16))


def test_timing_cache_is_saved_and_loaded(fake, tmp_path):
    _, log = fake
    for _ in range(2):
        b = tbuild.EngineBuilder()
        timing = tmp_path / "t.cache"
        b.load_timing_cache(timing.read_bytes() if timing.is_file() else None)
        b.create_network(tmp_path / "m.onnx")
        b.create_engine("fp16", ac.Profile())
        write_bytes(timing, b.timing_cache_bytes())
    created = [a for n, a in log if n == "config.create_timing_cache"]
    assert created == [(b"",), (b"+timed",)] and timing.read_bytes() == b"+timed+timed"
    assert [a[1] for n, a in log if n == "config.set_timing_cache"] == [False, False]  # never ignore mismatches


def test_parse_failure_is_one_line_naming_the_file(monkeypatch, tmp_path):
    trt, _ = _fake_tensorrt.make_module(parse_ok=False)
    monkeypatch.setitem(sys.modules, "tensorrt", trt)
    with pytest.raises(EngineError, match=r"bad.onnx: TensorRT cannot parse the ONNX \(In node 3 \(Conv\): INVALID") as e:
        tbuild.EngineBuilder().create_network(tmp_path / "bad.onnx")
    assert "\n" not in str(e.value)


def test_tensorrt11_is_strongly_typed_and_refuses_fp16_and_calibrators(monkeypatch, tmp_path):
    trt, log = _fake_tensorrt.make_module("11.2.1")
    monkeypatch.setitem(sys.modules, "tensorrt", trt)
    b = tbuild.EngineBuilder()
    b.create_network(tmp_path / "q.onnx", strongly_typed=True)
    b.create_engine("int8", ac.Profile())
    assert "config.set_flag" not in _names(log)
    with pytest.raises(EngineError, match="strongly typed FP16 engine needs an FP16 ONNX"):
        b.create_engine("fp16", ac.Profile())


class _FakeStream:
    def __init__(self, handle: int, events: list) -> None:
        self.cuda_stream, self._events = handle, events

    def wait_stream(self, other) -> None:
        self._events.append(("wait", self.cuda_stream, other.cuda_stream))


def _stored_engine(engines, machine=H200, max_batch=64, model="m"):
    data = b"serialized" * 10
    key = ac.engine_key(model=model, precision="fp16", profile=ac.Profile(1, 16, max_batch), source_sha256="0" * 64,
                        machine=machine)
    path = ac.engine_path(engines, key)
    write_bytes(path, data)
    ac.write_sidecar(path, ac.Sidecar(
        kind=ac.TRT_ENGINE, model=model, weights_sha256="0" * 64, precision="fp16", batch=ac.Profile(1, 16, max_batch),
        sha256=ac.hashlib.sha256(data).hexdigest(), builder="tensorrt-onnx",
        versions={"tensorrt": machine.runtime_version}, machine=machine))
    return path


def _detector(tmp_path, monkeypatch, events):
    det = tb.TensorRTDetector(_stored_engine(tmp_path), type("Spec", (), {"name": "m"})(), mode="fp16_trt",
                              precision="fp16", machine=H200)
    monkeypatch.setattr(det, "_make_stream", lambda: _FakeStream(7001, events))
    monkeypatch.setattr(det, "_current_stream", lambda: _FakeStream(0, events))  # the legacy default stream
    return det


def test_runtime_follows_the_sample_on_its_own_stream(fake, tmp_path, monkeypatch):
    _, log = fake
    events: list = []
    det = _detector(tmp_path, monkeypatch, events)
    det.activate()
    x = torch.zeros(2, 3, 300, 300)
    boxes, scores = det.forward_normalized(x)
    follows(SAMPLE_RUN_FLOW, _names(log), {"context.set_input_shape"})
    bound = {a[0]: a[1] for n, a in log if n == "context.set_tensor_address"}
    assert bound == {"images": x.data_ptr(), "boxes": boxes.data_ptr(), "scores": scores.data_ptr()}  # real allocations
    assert [a for n, a in log if n == "context.execute_async_v3"] == [(7001,)]  # not the default stream (0)
    assert events == [("wait", 7001, 0), ("wait", 0, 7001)]  # after the producer, before the consumers


def test_refused_tensor_address_is_an_error(monkeypatch, tmp_path):
    trt, _ = _fake_tensorrt.make_module(set_address_ok=False)
    monkeypatch.setitem(sys.modules, "tensorrt", trt)
    det = _detector(tmp_path, monkeypatch, [])
    det.activate()
    with pytest.raises(EngineError, match="TensorRT refused the address of tensor 'images'"):
        det.forward_normalized(torch.zeros(2, 3, 300, 300))


def test_engine_key_and_lookup_include_the_gpu_name(tmp_path):
    h100 = ac.MachineInfo("10.13.2", "NVIDIA H100 80GB HBM3", "9.0")  # same SM as the H200
    path = _stored_engine(tmp_path)
    assert "nvidia-h200" in path.name
    assert tb.find_engine(tmp_path, "m", "fp16", H200) == path
    assert tb.find_engine(tmp_path, "m", "fp16", h100) is None
    assert tb.find_engine(tmp_path, "m", "fp16", ac.MachineInfo("10.14.1", "NVIDIA H200", "9.0")) is None


@pytest.mark.parametrize("failure", ["corrupt", "activate"])
def test_auto_mode_falls_back_on_engine_load_and_activate_errors(fake, mobilenet, tmp_path, monkeypatch, caplog,
                                                                 failure, tmp_path_factory):
    trt, _ = fake
    from aeb_app.inference.build.export import export_onnx

    onnx = export_onnx(mobilenet, engines_dir=shared_engines(tmp_path_factory))  # fp32_ort reuses the cached export
    for src in (onnx, onnx.with_name(onnx.name + ".json")):
        shutil.copy(src, tmp_path / src.name)
    path = _stored_engine(tmp_path, model="ssd_mobilenet_v1")
    if failure == "corrupt":
        path.write_bytes(b"truncated")
    else:
        monkeypatch.setattr(trt.Runtime, "deserialize_cuda_engine", lambda self, data: 1 / 0)
    caplog.set_level("DEBUG", logger="aeb_app.inference.registry")
    det = registry.create_with_fallback(mobilenet, ["fp16_trt", "fp32_ort"], engines_dir=tmp_path)
    with det:
        assert det.info.mode == "fp32_ort"
    records = [r for r in caplog.records if r.name == "aeb_app.inference.registry" and "fp16_trt" in r.getMessage()]
    info = [r.getMessage() for r in records if r.levelname == "INFO"]  # one line for the user ...
    debug = [r.getMessage() for r in records if r.levelname == "DEBUG"]  # ... and why, with -v
    assert info == ["mode auto: using fp32_ort (unavailable here: fp16_trt; -v for why)"]
    assert len(debug) == 1 and "EngineLoadError" in debug[0]


def test_batch_over_profile_max_is_a_clear_error(fake, tmp_path, monkeypatch):
    det = _detector(tmp_path, monkeypatch, [])
    det.activate()
    with pytest.raises(EngineError, match="batch of 65 exceeds the engine profile's max batch 64; rebuild"):
        det.forward_normalized(torch.zeros(65, 3, 300, 300))
