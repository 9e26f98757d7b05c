"""TensorRT layer without TensorRT.

The tests with a fake ``tensorrt`` module injected in ``sys.modules`` check only that our code
calls the documented TensorRT 10 API names in the right order (call sequence), NOT TensorRT's
behaviour: no engine is built or run here.
"""

from __future__ import annotations

import sys
import types

import pytest

from aeb_app.cli import main
from aeb_app.errors import BackendUnavailableError, EngineError
from aeb_app.inference import engine_cache as ec
from aeb_app.inference import tensorrt_backend as tb


def test_build_engine_cli_fails_with_one_install_line(capsys, tmp_path):
    rc = main(["build-engine", "--model", "ssd_mobilenet_v1", "--precision", "int8", "--engines-dir", str(tmp_path)])
    err = capsys.readouterr().err.strip()
    assert rc == 2 and len(err.splitlines()) == 1
    assert "TensorRT is not installed: pip install" in err and "pypi.nvidia.com" in err
    assert list(tmp_path.iterdir()) == []


def test_torch2trt_unavailable():
    from aeb_app.inference.torch2trt_backend import build_engine_torch2trt

    with pytest.raises(BackendUnavailableError, match="torch2trt is not installed"):
        build_engine_torch2trt(None, precision="fp16", profile=ec.Profile())


class _Recorder:
    """Records attribute calls as (name, args) in a shared list."""

    def __init__(self, calls: list, name: str, **returns) -> None:
        self._calls, self._name, self._returns = calls, name, returns

    def __getattr__(self, attr):
        def call(*args, **kwargs):
            self._calls.append(f"{self._name}.{attr}")
            return self._returns.get(attr)
        return call


@pytest.fixture
def fake_trt(monkeypatch):
    calls: list[str] = []
    trt = types.ModuleType("tensorrt")
    trt.__version__ = "10.3.0"

    class Logger:
        WARNING, VERBOSE = 2, 4

        def __init__(self, level):
            pass

    class Input:
        shape = (-1, 3, 300, 300)

    network = _Recorder(calls, "network", get_input=Input())
    config = _Recorder(calls, "config")
    profile = _Recorder(calls, "profile")
    builder = _Recorder(calls, "builder", create_builder_config=config, create_network=network,
                        create_optimization_profile=profile, build_serialized_network=b"ENGINE")

    class Parser:
        num_errors = 1

        def __init__(self, net, logger):
            pass

        def parse_from_file(self, path):
            calls.append("parser.parse_from_file")
            return not path.endswith("bad.onnx")

        def get_error(self, i):
            return "In node 3 (Conv): INVALID_NODE"

    trt.Logger, trt.OnnxParser = Logger, Parser
    trt.Builder = lambda logger: (calls.append("trt.Builder"), builder)[1]
    trt.MemoryPoolType = types.SimpleNamespace(WORKSPACE="WORKSPACE")
    trt.BuilderFlag = types.SimpleNamespace(FP16="FP16", INT8="INT8", TF32="TF32")
    trt.NetworkDefinitionCreationFlag = types.SimpleNamespace(STRONGLY_TYPED=0)
    monkeypatch.setitem(sys.modules, "tensorrt", trt)
    return calls


def test_builder_calls_trt10_api_in_order(fake_trt, tmp_path):
    """Call sequence only: Builder -> config/pool -> create_network(0) -> parse -> profile -> flags -> build."""
    b = tb.EngineBuilder(workspace_gib=1)
    b.create_network(tmp_path / "m.onnx")
    data = b.create_engine("int8", ec.Profile(1, 16, 64))
    assert data == b"ENGINE"
    assert fake_trt == [
        "trt.Builder", "builder.create_builder_config", "config.set_memory_pool_limit", "builder.create_network",
        "parser.parse_from_file", "network.get_input", "builder.create_optimization_profile", "profile.set_shape",
        "config.add_optimization_profile", "config.set_flag", "config.set_flag", "builder.build_serialized_network",
    ]


def test_parse_failure_is_an_engine_error_with_the_parser_message(fake_trt, tmp_path):
    b = tb.EngineBuilder()
    with pytest.raises(EngineError, match=r"bad.onnx: TensorRT cannot parse the ONNX \(In node 3 \(Conv\)"):
        b.create_network(tmp_path / "bad.onnx")


def test_batch_over_profile_max_is_a_clear_error(tmp_path):
    """The runtime's guard, exercised on a detector object built without TensorRT."""
    from aeb_app.inference.base import DetectorInfo

    det = tb.TensorRTDetector.__new__(tb.TensorRTDetector)
    det.info = DetectorInfo("fp16_trt", "tensorrt", "fp16", "cuda", "m", max_batch=64)
    x = types.SimpleNamespace(shape=(65, 3, 300, 300))
    with pytest.raises(EngineError, match="batch of 65 exceeds the engine profile's max batch 64; rebuild"):
        det.forward_normalized(x)
