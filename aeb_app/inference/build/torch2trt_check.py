"""Which torch2trt converters a network needs, checked without torch2trt or TensorRT.

torch2trt runs the PyTorch module and replaces each hooked call (``torch.nn.Conv2d.forward``,
``torch.cat``, ``torch.Tensor.__getitem__`` ...) by TensorRT layers. A call without a
converter leaves its output without a TensorRT tensor; the next converter then adds the
tensor's *current value* as a constant, so the engine silently ignores the input from there
on. This module traces the network with ``torch.fx`` (+ shape propagation), maps every call
whose output depends on the input to the torch2trt converter key it would hit, and looks it
up in ``aeb_app/data/torch2trt_converters.json`` (the converters and the
``INetworkDefinition`` methods each calls, read from torch2trt's sources; version inside).
:func:`replay` drives any network-like object with those method calls in order, so a test
can use a stand-in that refuses methods TensorRT 10 removed (``add_padding``) and tensors
no earlier layer produced.
"""

from __future__ import annotations

import json
import operator
from dataclasses import dataclass, field
from functools import lru_cache
from importlib import resources

_DUNDER = {operator.add: "add", operator.iadd: "iadd", operator.mul: "mul", operator.imul: "imul",
           operator.sub: "sub", operator.isub: "isub", operator.getitem: "getitem", operator.truediv: "truediv"}


@dataclass(frozen=True)
class ConverterCall:
    """One call torch2trt would convert: fx node name, converter key, tensor inputs, network methods."""

    node: str
    key: str
    inputs: tuple[str, ...]
    layers: tuple[str, ...]


@dataclass(frozen=True)
class ConversionPlan:
    """Calls in execution order, and those with no converter (``"node (key)"``)."""

    calls: tuple[ConverterCall, ...]
    missing: tuple[str, ...] = field(default_factory=tuple)
    input_name: str = "images"


@lru_cache(maxsize=1)
def converter_table() -> dict:
    """The checked-in converter list (``aeb_app/data/torch2trt_converters.json``)."""
    return json.loads(resources.files("aeb_app").joinpath("data/torch2trt_converters.json").read_text("utf-8"))


def _key(node, modules: dict, tainted: set) -> str:
    """The torch2trt converter key the fx ``node`` corresponds to."""
    if node.op == "call_module":
        cls = type(modules[node.target])
        via = converter_table()["module_calls"].get(cls.__name__)
        return via or f"torch.nn.{cls.__name__}.forward"
    if node.op == "call_method":
        return f"torch.Tensor.{node.target}"
    if node.target in _DUNDER:
        op = _DUNDER[node.target]
        first = node.args[0]
        if not (hasattr(first, "name") and first.name in tainted) and node.target is not operator.getitem:
            op = "r" + op.removeprefix("i")  # constant * tensor: Python calls the tensor's reflected method
        return f"torch.Tensor.__{op}__"
    module = getattr(node.target, "__module__", None) or "torch"
    module = "torch" if module.startswith("torch._") or module == "torch._C._VariableFunctions" else module
    return f"{module}.{getattr(node.target, '__name__', str(node.target))}"


def plan_conversion(module, example) -> ConversionPlan:
    """Trace ``module`` on ``example`` and list the converter calls torch2trt would make.

    Args:
        module: the network (e.g. ``DetectionNet``), eval mode, on the example's device.
        example: an input batch (N, 3, H, W) float32.
    """
    import torch.fx
    from torch.fx.passes.shape_prop import ShapeProp

    graph_module = torch.fx.symbolic_trace(module)
    ShapeProp(graph_module).propagate(example)
    modules = dict(graph_module.named_modules())
    table = converter_table()["converters"]
    calls, missing, tainted = [], [], set()
    placeholder = next(n.name for n in graph_module.graph.nodes if n.op == "placeholder")
    tainted.add(placeholder)
    for node in graph_module.graph.nodes:
        if node.op not in ("call_module", "call_method", "call_function"):
            continue
        inputs = tuple(n.name for n in node.all_input_nodes if n.name in tainted)
        if not inputs or "tensor_meta" not in node.meta:
            continue  # a constant (torch2trt embeds it legitimately) or not a tensor (shapes, sizes)
        tainted.add(node.name)
        key = _key(node, modules, tainted)
        if key not in table:
            missing.append(f"{node.name} ({key})")
            continue
        calls.append(ConverterCall(node.name, key, inputs, tuple(table[key])))
    return ConversionPlan(tuple(calls), tuple(missing), placeholder)


def replay(plan: ConversionPlan, network) -> None:
    """Call ``network.<method>(inputs, node)`` for every layer of every call, in order.

    For calls that add no layer (``Identity``, ``float`` on a float tensor) nothing is called.
    A network stand-in can refuse methods and check that each input was produced before.
    """
    for call in plan.calls:
        for method in call.layers:
            getattr(network, method)(call.inputs, call.node)
        if not call.layers:
            network.alias(call.inputs, call.node)


def removed_layers(plan: ConversionPlan) -> list[str]:
    """``"node (key): method"`` for every call needing a network method TensorRT 10 removed."""
    removed = set(converter_table()["removed_in_tensorrt_10"])
    return [f"{c.node} ({c.key}): {m}" for c in plan.calls for m in c.layers if m in removed]
