"""Engine cache: keys, sidecars, machine checks, corrupt/truncated/missing engines (no TensorRT needed)."""

from __future__ import annotations

import hashlib
import os

import pytest

from aeb_app.atomic import write_bytes, write_json
from aeb_app.errors import EngineLoadError
from aeb_app.inference import artifacts as ec

H200 = ec.MachineInfo("10.3.0", "NVIDIA H200", "9.0")
PROFILE = ec.Profile(1, 16, 64)


def _store(tmp_path, data: bytes = b"serialized-engine" * 100, machine=H200):
    key = ec.engine_key(model="ssd300_resnet50", precision="fp16", profile=PROFILE, source_sha256="ab" * 32,
                        machine=machine)
    path = ec.engine_path(tmp_path, key)
    write_bytes(path, data)
    write_json(ec.sidecar_path(path), ec.make_sidecar(
        model="ssd300_resnet50", precision="fp16", profile=PROFILE, machine=machine, onnx_sha256="ab" * 32,
        engine_sha256=hashlib.sha256(data).hexdigest()))
    return path


def test_key_names_fields_and_changes_with_inputs():
    key = ec.engine_key(model="m", precision="int8", profile=PROFILE, source_sha256="0" * 64, machine=H200,
                        int8_method="qdq")
    assert key.startswith("m_int8-qdq_b1-16-64_sm90_trt10.3.0_")
    other = ec.engine_key(model="m", precision="int8", profile=PROFILE, source_sha256="1" * 64, machine=H200,
                          int8_method="qdq")
    assert other != key


def test_profile_validation():
    with pytest.raises(ValueError, match="min <= opt <= max"):
        ec.Profile(1, 128, 64)


def test_valid_engine_loads(tmp_path):
    path = _store(tmp_path)
    data, meta = ec.load_checked(path, H200)
    assert data.startswith(b"serialized") and meta["profile"]["max_batch"] == 64
    assert not ec.needs_build(path, H200)


@pytest.mark.parametrize("machine, text", [
    (ec.MachineInfo("10.3.0", "NVIDIA L4", "8.9"), "built for NVIDIA H200 (sm_90) with TensorRT 10.3.0; "
                                                    "this machine has NVIDIA L4 (sm_89) with TensorRT 10.3.0"),
    (ec.MachineInfo("10.8.0", "NVIDIA H200", "9.0"), "this machine has NVIDIA H200 (sm_90) with TensorRT 10.8.0"),
])
def test_other_gpu_or_version_is_a_clear_error_or_a_rebuild(tmp_path, machine, text):
    path = _store(tmp_path)
    with pytest.raises(EngineLoadError, match=text.replace("(", r"\(").replace(")", r"\)")):
        ec.load_checked(path, machine)
    assert ec.needs_build(path, machine)
    with pytest.raises(EngineLoadError):
        ec.needs_build(path, machine, rebuild_on_mismatch=False)


def test_random_bytes_and_truncated_engines(tmp_path):
    path = _store(tmp_path)
    path.write_bytes(os.urandom(1700))
    with pytest.raises(EngineLoadError, match="do not match its sidecar hash .*corrupt or truncated"):
        ec.load_checked(path, H200)
    path = _store(tmp_path)
    path.write_bytes(path.read_bytes()[:100])
    with pytest.raises(EngineLoadError, match="100 bytes; corrupt or truncated"):
        ec.load_checked(path, H200)
    path.write_bytes(b"")
    with pytest.raises(EngineLoadError, match="empty engine file"):
        ec.load_checked(path, H200)
    assert ec.needs_build(path, H200)


def test_missing_engine_or_sidecar(tmp_path):
    with pytest.raises(EngineLoadError, match="engine file not found"):
        ec.load_checked(tmp_path / "none.engine", H200)
    path = _store(tmp_path)
    ec.sidecar_path(path).unlink()
    with pytest.raises(EngineLoadError, match="no sidecar"):
        ec.load_checked(path, H200)
    ec.sidecar_path(path).write_text("{not json")
    with pytest.raises(EngineLoadError, match="unreadable engine sidecar"):
        ec.load_checked(path, H200)


def test_failed_write_leaves_engines_dir_clean(tmp_path):
    from aeb_app.atomic import atomic_path

    with pytest.raises(RuntimeError):
        with atomic_path(tmp_path / "x.engine") as tmp:
            tmp.write_bytes(b"half")
            raise RuntimeError("builder died")
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("sidecar, text", [("[1, 2]", "not a JSON object"), ('{"runtime_version": "10.3.0", '
                                           '"gpu_name": "g", "compute_capability": "9.0", "engine_sha256": "x", '
                                           '"profile": [1]}', "sidecar lacks profile.max_batch")])
def test_malformed_sidecar_is_named(tmp_path, sidecar, text):
    path = _store(tmp_path)
    ec.sidecar_path(path).write_text(sidecar)
    with pytest.raises(EngineLoadError, match=text):
        ec.load_checked(path, H200)
    assert ec.needs_build(path, H200)
