"""TensorRT-compatibility check (no TensorRT): every ONNX the project exports passes; the old
INT32-bias Q/DQ model (regenerated here with ONNX Runtime's default options) fails, naming the node."""

from __future__ import annotations

import numpy as np
import onnx
import pytest
from onnx import helper, numpy_helper

from aeb_app.cli import main
from aeb_app.inference.build import calibration as cd
from aeb_app.inference.build import trt_compat as tc
from aeb_app.inference.build.export import export_onnx
from aeb_app.inference.build.quantize import QuantizeConfig, quantize_model
from aeb_app.model.registry import load_model
from tests._inference_helpers import shared_engines

MODELS = {"ssd_mobilenet_v1": ("auto", 16), "ssd300_resnet50": ("random", 4)}


@pytest.fixture(scope="module")
def exported(coco_dir, tmp_path_factory):
    """FP32 and Q/DQ ONNX of both models, as the project exports them."""
    engines = shared_engines(tmp_path_factory)
    paths = {}
    for name, (weights, n) in MODELS.items():
        loaded = load_model(name, weights=weights)
        paths[f"{name}-fp32"] = export_onnx(loaded, engines_dir=engines)
        paths[f"{name}-qdq"] = quantize_model(loaded, coco_dir, engines_dir=engines,
                                              config=QuantizeConfig(num_images=n, seed=0))
    return paths


@pytest.fixture(scope="module")
def old_int32_bias_model(exported, coco_dir, tmp_path_factory):
    """The Q/DQ model as quantize.py made it before: ONNX Runtime's defaults (QuantizeBias on)."""
    from onnxruntime.quantization import QuantFormat, QuantType, quantize_static

    spec = load_model("ssd_mobilenet_v1").spec
    batch, _ = cd.calibration_batch(coco_dir, spec, num_images=2, seed=0)
    out = tmp_path_factory.mktemp("old") / "old-int32-bias.onnx"
    quantize_static(str(exported["ssd_mobilenet_v1-fp32"]), str(out), cd.ort_reader(batch, spec, batch_size=2),
                    quant_format=QuantFormat.QDQ, per_channel=True, activation_type=QuantType.QInt8,
                    weight_type=QuantType.QInt8, extra_options={"ActivationSymmetric": True, "WeightSymmetric": True})
    return out


@pytest.mark.parametrize("which", [f"{m}-{k}" for m in MODELS for k in ("fp32", "qdq")])
def test_every_exported_model_passes(exported, which):
    report = tc.check_file(exported[which])
    assert report.ok, report.verdict()
    assert report.num_nodes > 50 and "parser compatible" in report.verdict()


def test_old_int32_bias_model_fails_naming_the_node(old_int32_bias_model):
    report = tc.check_file(old_int32_bias_model)
    assert not report.ok
    bias = [i for i in report.issues if "is INT32" in i.problem]
    assert len({i.node for i in bias}) == 47  # every Conv bias of MobileNet
    assert all(i.op_type == "DequantizeLinear" and i.node.endswith("bias_DequantizeLinear") for i in bias)
    assert "node 'network." in report.verdict() and "\n" not in report.verdict()


def test_table_is_the_documented_version():
    table = tc.operator_table()
    assert table.tensorrt_version == "10.15" and "onnx-tensorrt" in table.source
    assert table.operators["DequantizeLinear"] == (True, ("INT8", "FP8", "FP4", "INT4"))
    assert table.operators["QLinearConv"][0] is False


def _tiny(*, zero_point=np.int8(0), axis=0, dims=("N", 3, 4, 4), opset=18, op="Conv"):
    """A one-conv Q/DQ graph to break one rule at a time."""
    w = numpy_helper.from_array(np.ones((2, 3, 1, 1), np.int8), "w_q")
    inits = [w, numpy_helper.from_array(np.full(2, 0.1, np.float32), "w_s"),
             numpy_helper.from_array(np.zeros(2, np.int8), "w_z"),
             numpy_helper.from_array(np.float32(0.05), "x_s"), numpy_helper.from_array(np.array(zero_point), "x_z")]
    nodes = [helper.make_node("QuantizeLinear", ["x", "x_s", "x_z"], ["xq"], name="q_x"),
             helper.make_node("DequantizeLinear", ["xq", "x_s", "x_z"], ["xd"], name="dq_x"),
             helper.make_node("DequantizeLinear", ["w_q", "w_s", "w_z"], ["wd"], name="dq_w", axis=axis),
             helper.make_node(op, ["xd", "wd"], ["y"], name="the_conv")]
    graph = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("x", onnx.TensorProto.FLOAT, list(dims))],
                              [helper.make_tensor_value_info("y", onnx.TensorProto.FLOAT, None)], inits)
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])


@pytest.mark.parametrize("kwargs, text", [
    ({}, None),
    ({"zero_point": np.int8(3)}, "node 'q_x' (QuantizeLinear): zero point 'x_z' is int8 non-zero"),
    ({"zero_point": np.uint8(0)}, "zero point 'x_z' is uint8"),
    ({"axis": 1}, "node 'dq_w' (DequantizeLinear): per-channel scale of 'w_q' on axis 1"),
    ({"dims": ("N", 3, "H", 4)}, "node 'x' (graph input): axes [2] are dynamic"),
    ({"opset": 12}, "default-domain opset 12"),
    ({"op": "ConvInteger"}, "node 'the_conv' (ConvInteger): not supported"),
])
def test_each_rule_fails_on_its_own(kwargs, text):
    report = tc.check_model(_tiny(**kwargs), "tiny.onnx")
    if text is None:
        assert report.ok, report.verdict()
    else:
        assert not report.ok and text in report.verdict()


def test_check_only_cli_prints_the_verdict_without_tensorrt(exported, old_int32_bias_model, capsys):
    assert main(["build-engine", "--check-only", "--onnx", str(exported["ssd_mobilenet_v1-qdq"])]) == 0
    assert "parser compatible" in capsys.readouterr().out
    assert main(["build-engine", "--check-only", "--onnx", str(old_int32_bias_model)]) == 1
    out = capsys.readouterr().out
    assert "NOT TensorRT 10.15 parser compatible" in out and "bias_DequantizeLinear" in out


def test_check_only_exports_the_model_it_would_build(exported, tmp_path_factory, capsys):
    rc = main(["build-engine", "--check-only", "--model", "ssd300_resnet50", "--weights", "random",
               "--precision", "fp16", "--engines-dir", str(shared_engines(tmp_path_factory))])
    assert rc == 0 and "ssd300_resnet50" in capsys.readouterr().out
