"""torch2trt path without torch2trt (not on PyPI) or TensorRT: both models' traced calls against the
converter list read from torch2trt's sources, replayed on a stand-in TensorRT 10 network that
refuses ``add_padding`` and any tensor no earlier layer produced (what torch2trt would freeze
into a constant). The model changes that made this pass keep the outputs identical."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from aeb_app.cli import main
from aeb_app.errors import EngineError
from aeb_app.inference.build.torch2trt import WRITTEN_FOR, preflight
from aeb_app.inference.build.torch2trt_check import converter_table, plan_conversion, replay
from aeb_app.model.mobilenet_v1 import ConvAct, tf_same_padding
from aeb_app.model.registry import DetectionNet, load_model

#: INetworkDefinition methods of TensorRT 10 that torch2trt's converters for these models call.
TRT10_METHODS = {"add_convolution_nd", "add_activation", "add_elementwise", "add_scale_nd", "add_pooling_nd",
                 "add_softmax", "add_unary", "add_concatenation", "add_slice", "add_shuffle"}


class StandInNetwork:
    """Records layers; refuses methods TensorRT 10 lacks and inputs no earlier layer produced."""

    def __init__(self, input_name: str) -> None:
        self.produced = {input_name}
        self.layers: list[tuple[str, str]] = []

    def __getattr__(self, method):
        if method not in TRT10_METHODS:
            raise AttributeError(f"'INetworkDefinition' object has no attribute '{method}' (TensorRT 10)")

        def add(inputs, node):
            unknown = [i for i in inputs if i not in self.produced]
            if unknown:
                raise ValueError(f"{method} for {node}: inputs {unknown} were never produced by a layer "
                                 "(torch2trt would embed them as constants)")
            self.layers.append((method, node))
            self.produced.add(node)
        return add

    def alias(self, inputs, node):
        """A call that adds no layer: its output is its input's tensor."""
        if not set(inputs) <= self.produced:
            raise ValueError(f"{node}: alias of an unknown tensor")
        self.produced.add(node)


def _net(name):
    loaded = load_model(name, weights="auto" if name == "ssd_mobilenet_v1" else "random")
    return loaded, DetectionNet(loaded.network, loaded.spec).eval()


@pytest.mark.parametrize("name, convs", [("ssd_mobilenet_v1", 47), ("ssd300_resnet50", 65)])
def test_both_models_convert_on_a_trt10_stand_in(name, convs):
    _, net = _net(name)
    plan = plan_conversion(net, torch.zeros(2, 3, 300, 300))
    assert plan.missing == ()
    network = StandInNetwork(plan.input_name)
    replay(plan, network)
    methods = [m for m, _ in network.layers]
    assert methods.count("add_convolution_nd") == convs and "add_padding" not in methods
    # Both outputs are produced by layers that depend on the input, not by constants.
    assert {plan.calls[-1].node, plan.calls[-2].node} <= network.produced
    preflight(net, torch.zeros(1, 3, 300, 300))  # the library's own check agrees


class _OldMobileNetBits(nn.Module):
    """What the models did before: ZeroPad2d, torch.softmax, unflatten + flip."""

    def __init__(self) -> None:
        super().__init__()
        self.pad, self.conv = nn.ZeroPad2d((0, 1, 0, 1)), nn.Conv2d(3, 4, 3, 2)

    def forward(self, x):
        y = self.conv(self.pad(x)).flatten(2).permute(0, 2, 1)
        return torch.softmax(y, dim=-1), y.unflatten(-1, (2, 2)).flip(-1)


def test_the_old_ops_are_caught():
    plan = plan_conversion(_OldMobileNetBits().eval(), torch.zeros(1, 3, 8, 8))
    missing = " ".join(plan.missing)
    assert "torch.softmax" in missing and "torch.Tensor.unflatten" in missing and "torch.Tensor.flip" in missing
    with pytest.raises(AttributeError, match="no attribute 'add_padding'"):
        replay(plan, StandInNetwork(plan.input_name))
    with pytest.raises(EngineError, match=r"no converter: .*torch.softmax.*removed in TensorRT 10: .*add_padding"):
        preflight(_OldMobileNetBits().eval(), torch.zeros(1, 3, 8, 8))


class _FlipThenScale(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 1)

    def forward(self, x):
        return self.conv(x).flip(-1) * 2.0


def test_stand_in_refuses_a_tensor_torch2trt_would_freeze():
    """flip has no converter: its output has no TensorRT tensor, so the multiply's input is unknown."""
    plan = plan_conversion(_FlipThenScale().eval(), torch.zeros(1, 3, 4, 4))
    assert [m.split(" ")[1] for m in plan.missing] == ["(torch.Tensor.flip)"]
    with pytest.raises(ValueError, match=r"add_elementwise for mul: inputs \['flip'\] were never produced"):
        replay(plan, StandInNetwork(plan.input_name))


def _tf_same_reference(layer: ConvAct, x):
    """The pre-change formulation: explicit asymmetric zero padding, then an unpadded conv."""
    (t, b), (l, r) = (tf_same_padding(s, layer.conv.kernel_size[0], layer.stride) for s in x.shape[-2:])
    if (t, l) == (b, r):
        return layer.act(layer.conv(x))
    y = F.conv2d(F.pad(x, (l, r, t, b)), layer.conv.weight, layer.conv.bias, layer.stride, 0, 1, layer.conv.groups)
    return layer.act(y)


def test_mobilenet_outputs_are_unchanged_by_the_padding_rewrite():
    loaded = load_model("ssd_mobilenet_v1")
    inputs: dict = {}
    hooks = [m.register_forward_pre_hook(lambda mod, a: inputs.__setitem__(mod, a[0]))
             for m in loaded.network.modules() if isinstance(m, ConvAct)]
    x = torch.rand(2, 3, 300, 300) * 2 - 1
    with torch.no_grad():
        loaded.network(x)
        for h in hooks:
            h.remove()
        cropped = [m for m in inputs if m.crop != (0, 0)]
        assert len(cropped) == 5
        for layer, inp in inputs.items():
            assert float((layer(inp) - _tf_same_reference(layer, inp)).abs().max()) < 1e-5


def test_converter_table_names_its_source_and_versions():
    table = converter_table()
    assert "torch2trt" in table["source"] and table["torch2trt_version"] and "10" in table["tensorrt_version"]
    assert table["converters"]["torch.nn.functional.pad"] == ["add_padding"]
    assert "torch.softmax" not in table["converters"] and "torch.nn.functional.softmax" in table["converters"]
    assert "torch2trt" in WRITTEN_FOR and "TensorRT 10" in WRITTEN_FOR


def test_check_only_torch2trt_prints_a_verdict(capsys):
    assert main(["build-engine", "--check-only", "--converter", "torch2trt", "--model", "ssd_mobilenet_v1",
                 "--precision", "fp16"]) == 0
    assert "every call has a torch2trt converter" in capsys.readouterr().out
