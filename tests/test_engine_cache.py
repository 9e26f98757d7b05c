"""Artifact cache: engine keys, the sidecar contract, machine checks, corrupt/truncated/missing engines,
old sidecars (no TensorRT needed)."""

from __future__ import annotations

import hashlib
import json
import os

import pytest

from aeb_app.atomic import write_bytes
from aeb_app.errors import EngineLoadError
from aeb_app.inference import artifacts as ac

H200 = ac.MachineInfo("10.3.0", "NVIDIA H200", "9.0")
PROFILE = ac.Profile(1, 16, 64)


def _store(tmp_path, data: bytes = b"serialized-engine" * 100, machine=H200):
    key = ac.engine_key(model="ssd300_resnet50", precision="fp16", profile=PROFILE, source_sha256="ab" * 32,
                        machine=machine)
    path = ac.engine_path(tmp_path, key)
    write_bytes(path, data)
    ac.write_sidecar(path, engine_sidecar(data, machine))
    return path


def engine_sidecar(data: bytes, machine=H200, profile=PROFILE, model="ssd300_resnet50") -> ac.Sidecar:
    return ac.Sidecar(kind=ac.TRT_ENGINE, model=model, weights_sha256="cd" * 32, precision="fp16", batch=profile,
                      sha256=hashlib.sha256(data).hexdigest(), builder="tensorrt-onnx",
                      versions={"tensorrt": machine.runtime_version}, source_sha256="ab" * 32, machine=machine)


def test_key_names_fields_and_changes_with_inputs():
    key = ac.engine_key(model="m", precision="int8", profile=PROFILE, source_sha256="0" * 64, machine=H200,
                        int8_method="qdq")
    assert key.startswith("m_int8-qdq_b1-16-64_sm90_trt10.3.0_")
    other = ac.engine_key(model="m", precision="int8", profile=PROFILE, source_sha256="1" * 64, machine=H200,
                          int8_method="qdq")
    assert other != key


def test_profile_validation():
    with pytest.raises(ValueError, match="min <= opt <= max"):
        ac.Profile(1, 128, 64)


def test_valid_engine_loads(tmp_path):
    path = _store(tmp_path)
    data, side = ac.load_checked(path, H200)
    assert data.startswith(b"serialized") and side.batch == PROFILE and side.machine == H200
    assert side == ac.read_sidecar(path)  # the dataclass survives its JSON round trip
    assert not ac.needs_build(path, H200)


@pytest.mark.parametrize("machine, text", [
    (ac.MachineInfo("10.3.0", "NVIDIA L4", "8.9"), "built for NVIDIA H200 (sm_90) with TensorRT 10.3.0; "
                                                    "this machine has NVIDIA L4 (sm_89) with TensorRT 10.3.0"),
    (ac.MachineInfo("10.8.0", "NVIDIA H200", "9.0"), "this machine has NVIDIA H200 (sm_90) with TensorRT 10.8.0"),
])
def test_other_gpu_or_version_is_a_clear_error_or_a_rebuild(tmp_path, machine, text):
    path = _store(tmp_path)
    with pytest.raises(EngineLoadError, match=text.replace("(", r"\(").replace(")", r"\)")):
        ac.load_checked(path, machine)
    assert ac.needs_build(path, machine)
    with pytest.raises(EngineLoadError):
        ac.needs_build(path, machine, rebuild_on_mismatch=False)


def test_random_bytes_and_truncated_engines(tmp_path):
    path = _store(tmp_path)
    path.write_bytes(os.urandom(1700))
    with pytest.raises(EngineLoadError, match="do not match its sidecar hash .*corrupt or truncated"):
        ac.load_checked(path, H200)
    path = _store(tmp_path)
    path.write_bytes(path.read_bytes()[:100])
    with pytest.raises(EngineLoadError, match="100 bytes; corrupt or truncated"):
        ac.load_checked(path, H200)
    path.write_bytes(b"")
    with pytest.raises(EngineLoadError, match="empty engine file"):
        ac.load_checked(path, H200)
    assert ac.needs_build(path, H200)


def test_missing_engine_or_sidecar(tmp_path):
    with pytest.raises(EngineLoadError, match="engine file not found"):
        ac.load_checked(tmp_path / "none.engine", H200)
    path = _store(tmp_path)
    ac.sidecar_path(path).unlink()
    with pytest.raises(EngineLoadError, match="no sidecar"):
        ac.load_checked(path, H200)
    ac.sidecar_path(path).write_text("{not json")
    with pytest.raises(EngineLoadError, match="unreadable sidecar"):
        ac.load_checked(path, H200)


def test_failed_write_leaves_engines_dir_clean(tmp_path):
    from aeb_app.atomic import atomic_path

    with pytest.raises(RuntimeError):
        with atomic_path(tmp_path / "x.engine") as tmp:
            tmp.write_bytes(b"half")
            raise RuntimeError("builder died")
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("edit, text", [
    (lambda d: [1, 2], "not a JSON object"),
    (lambda d: {**d, "batch": [1]}, "batch is not an object"),
    (lambda d: {**d, "batch": {"min_batch": 1, "opt_batch": 2, "max_batch": True}}, "batch sizes must be integers"),
    (lambda d: {k: v for k, v in d.items() if k != "sha256"}, r"field\(s\) sha256 missing"),
    (lambda d: {**d, "model": 5}, r"field\(s\) model missing or of the wrong type"),
    (lambda d: {**d, "kind": "zip"}, r"field\(s\) kind"),
    (lambda d: {**d, "surprise": 1}, "unknown sidecar field"),
    (lambda d: {**d, "machine": {"gpu_name": "g"}}, "sidecar field machine"),
])
def test_malformed_sidecar_is_one_line_naming_the_file(tmp_path, edit, text):
    path = _store(tmp_path)
    good = json.loads(ac.sidecar_path(path).read_text())
    ac.sidecar_path(path).write_text(json.dumps(edit(good)))
    with pytest.raises(ac.SidecarError, match=text) as info:
        ac.load_checked(path, H200)
    message = str(info.value)
    assert "\n" not in message and message.startswith(str(ac.sidecar_path(path))) and message.endswith("rebuild it")
    assert ac.needs_build(path, H200)


#: What aeb_app wrote beside an engine before the one sidecar contract (schema 2).
OLD_ENGINE_SIDECAR = {"sidecar_version": 1, "builder": "tensorrt-onnx", "model": "ssd300_resnet50", "precision": "fp16",
                      "int8_method": None, "profile": {"min_batch": 1, "opt_batch": 16, "max_batch": 64},
                      "runtime_version": "10.3.0", "gpu_name": "NVIDIA H200", "compute_capability": "9.0",
                      "onnx_sha256": "ab" * 32, "engine_sha256": "", "created": "2026-11-01T00:00:00+0000"}
#: ... beside an ONNX export and a compiled package (no version field at all).
OLD_ONNX_SIDECAR = {"kind": "onnx", "model": "ssd_mobilenet_v1", "weights_sha256": "w", "opset": 18,
                    "torch_version": "2.14.1", "sha256": "x"}
OLD_AOTI_SIDECAR = {"kind": "aoti", "model": "m", "weights_sha256": "w", "precision": "fp16", "batch": 1,
                    "device": "cuda", "torch_version": "2.14.1"}


def test_old_engine_sidecar_is_a_rebuild_not_a_crash(tmp_path, caplog):
    path = _store(tmp_path)
    ac.sidecar_path(path).write_text(json.dumps({**OLD_ENGINE_SIDECAR,
                                                 "engine_sha256": hashlib.sha256(path.read_bytes()).hexdigest()}))
    with pytest.raises(ac.SidecarError, match=r"sidecar schema 1 is from an older aeb_app .*; rebuild it$"):
        ac.load_checked(path, H200)
    with caplog.at_level("INFO"):
        assert ac.needs_build(path, H200)
    assert "rebuilding" in caplog.text


@pytest.mark.parametrize("old", [OLD_ONNX_SIDECAR, OLD_AOTI_SIDECAR])
def test_old_versionless_sidecars_are_cache_misses(tmp_path, caplog, old):
    artifact = tmp_path / "m.onnx"
    artifact.write_bytes(b"bytes")
    ac.sidecar_path(artifact).write_text(json.dumps(old))
    with pytest.raises(ac.SidecarError, match=r"schema \(none\) is from an older aeb_app"):
        ac.read_sidecar(artifact)
    caplog.clear()
    assert ac.cached_sidecar(artifact) is None and ac.intact(artifact, old["kind"]) is None
    assert "treated as missing" in caplog.text and str(ac.sidecar_path(artifact)) in caplog.text
    assert ac.find_qdq_model  # the Q/DQ look-up shares intact(): covered in test_quantize


def test_no_sidecar_is_a_silent_miss_for_caches_and_an_error_for_loads(tmp_path, caplog):
    artifact = tmp_path / "m.onnx"
    artifact.write_bytes(b"bytes")
    assert ac.cached_sidecar(artifact) is None and not caplog.records
    with pytest.raises(ac.SidecarError, match="m.onnx: no sidecar m.onnx.json; rebuild it"):
        ac.read_sidecar(artifact)


def test_write_sidecar_replaces_atomically_and_round_trips(tmp_path):
    artifact = tmp_path / "x.pt2"
    artifact.write_bytes(b"pkg")
    side = ac.Sidecar(kind=ac.AOTI_PACKAGE, model="m", weights_sha256="w" * 64, precision="fp16",
                      batch=ac.Profile(4, 4, 4), sha256=ac.file_sha256(artifact), builder="torch._inductor.aoti",
                      versions={"torch": "2.14.1"}, details={"device": "cuda"})
    ac.write_sidecar(artifact, side)
    ac.write_sidecar(artifact, side)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["x.pt2", "x.pt2.json"]  # no temp file left
    assert ac.read_sidecar(artifact) == side and ac.intact(artifact, ac.AOTI_PACKAGE) == side
    key = ac.PackageKey("m", "w" * 64, "fp16", 4, "cuda", "2.14.1")
    assert key.differences(side) == {}
    assert ac.PackageKey("m", "w" * 64, "fp16", 8, "cuda", "2.14.1").differences(side) == {"batch": (4, 8)}
