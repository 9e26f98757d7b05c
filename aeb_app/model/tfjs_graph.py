"""Read a TensorFlow.js graph model (``model.json`` + weight shards) without TensorFlow.

``model.json`` holds ``modelTopology`` (a TensorFlow GraphDef as JSON: nodes with ``op``, ``input``
and ``attr``) and ``weightsManifest`` (groups of shard paths and the tensors they hold: name,
shape, dtype). The shards of a group are one byte stream, cut into files; the tensors are their
raw little-endian bytes in manifest order. :func:`load_tfjs_graph` returns the nodes and every
named constant as a NumPy array; :func:`conv_units` reads each convolution together with the
per-channel scale, bias, residual add and ReLU6 the graph applies after it, which is what a
float PyTorch rebuild needs (BatchNorm, in whichever form the converter left it, becomes scale
and bias).
"""

from __future__ import annotations

import base64
import json
import logging
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import numpy.typing as npt

from aeb_app.errors import ModelLoadError

__all__ = ["TfjsGraph", "TfNode", "ConvUnit", "load_tfjs_graph", "conv_units"]

_LOG = logging.getLogger(__name__)

#: Byte size and NumPy type of the manifest dtypes this reader accepts.
_DTYPES = {"float32": np.dtype("<f4"), "int32": np.dtype("<i4")}
_CONV_OPS = ("Conv2D", "DepthwiseConv2dNative")


@dataclass(frozen=True)
class TfNode:
    """One GraphDef node: ``inputs`` are tensor names (``node`` or ``node:k``)."""

    name: str
    op: str
    inputs: tuple[str, ...]
    attr: dict = field(default_factory=dict, compare=False)

    def ints(self, key: str) -> tuple[int, ...]:
        """An int-list attribute (``strides``, ``dilations``); () when absent."""
        return tuple(int(v) for v in self.attr.get(key, {}).get("list", {}).get("i", []))

    def string(self, key: str) -> str:
        """A bytes attribute (``padding``, ``data_format``) as text; '' when absent.

        The converter writes bytes either as a list of byte values or as base64 text.
        """
        raw = self.attr.get(key, {}).get("s", "")
        return bytes(raw).decode() if isinstance(raw, list) else base64.b64decode(raw).decode()

    def number(self, key: str, default: float) -> float:
        """A float attribute (``epsilon``)."""
        return float(self.attr.get(key, {}).get("f", default))


@dataclass
class TfjsGraph:
    """Nodes by name, consumers of each node, and the constants' values."""

    path: Path
    nodes: dict[str, TfNode]
    weights: dict[str, npt.NDArray]
    consumers: dict[str, list[TfNode]]

    def const(self, name: str) -> npt.NDArray:
        """Value of constant ``name`` (a tensor name; ``:0`` suffix allowed)."""
        base = name.split(":")[0]
        if base not in self.weights:
            raise ModelLoadError(f"{self.path}: constant {base!r} is not in the weights manifest")
        return self.weights[base]

    def is_const(self, name: str) -> bool:
        return name.split(":")[0] in self.weights

    def ops(self, op: str) -> list[TfNode]:
        return [n for n in self.nodes.values() if n.op == op]

    def node(self, name: str) -> TfNode:
        base = name.split(":")[0]
        if base not in self.nodes:
            raise ModelLoadError(f"{self.path}: graph has no node {base!r}")
        return self.nodes[base]


def _read_shards(model_dir: Path, manifest: list[dict]) -> dict[str, npt.NDArray]:
    weights: dict[str, npt.NDArray] = {}
    for group in manifest:
        parts = []
        for rel in group["paths"]:
            shard = model_dir / rel
            if not shard.is_file():
                raise ModelLoadError(f"{shard}: weight shard named in model.json is missing")
            parts.append(shard.read_bytes())
        blob, offset = b"".join(parts), 0
        for spec in group["weights"]:
            if "quantization" in spec or spec["dtype"] not in _DTYPES:
                raise ModelLoadError(f"{model_dir}: tensor {spec['name']!r} has dtype {spec['dtype']} "
                                     f"{'(quantised)' if 'quantization' in spec else ''}; only float32/int32 "
                                     "weights are read")
            dtype = _DTYPES[spec["dtype"]]
            count = int(np.prod(spec["shape"], dtype=np.int64))
            end = offset + count * dtype.itemsize
            if end > len(blob):
                raise ModelLoadError(f"{model_dir}: shards hold {len(blob)} bytes, tensor {spec['name']!r} "
                                     f"needs bytes {offset}..{end} (truncated shard?)")
            weights[spec["name"]] = np.frombuffer(blob, dtype, count, offset).reshape(spec["shape"]).copy()
            offset = end
        if offset != len(blob):
            raise ModelLoadError(f"{model_dir}: shards hold {len(blob)} bytes, the manifest names {offset}")
    return weights


def load_tfjs_graph(model_json: str | Path) -> TfjsGraph:
    """Parse ``model.json`` and its shards (beside it).

    Raises:
        ModelLoadError: missing/unreadable file, not a graph model, missing or short shards.
    """
    path = Path(model_json)
    try:
        raw = json.loads(path.read_text())
        topology, manifest = raw["modelTopology"], raw["weightsManifest"]
        node_list = topology["node"]
    except FileNotFoundError:
        raise ModelLoadError(f"{path}: TF.js model.json not found") from None
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise ModelLoadError(f"{path}: not a TF.js graph model ({type(exc).__name__}: {exc})") from None
    nodes = {n["name"]: TfNode(n["name"], n["op"], tuple(n.get("input", [])), n.get("attr", {}))
             for n in node_list}
    consumers: dict[str, list[TfNode]] = {name: [] for name in nodes}
    for node in nodes.values():
        for inp in node.inputs:
            consumers.setdefault(inp.lstrip("^").split(":")[0], []).append(node)
    graph = TfjsGraph(path, nodes, _read_shards(path.parent, manifest), consumers)
    _LOG.info("read %s: %d nodes, %d constants", path, len(nodes), len(graph.weights))
    return graph


@dataclass(frozen=True)
class ConvUnit:
    """A convolution and what the graph applies right after it.

    Attributes:
        scope: the weight's name scope, e.g. ``FeatureExtractor/MobilenetV2/expanded_conv_3/expand``.
        weight_oihw: (O, I/groups, kH, kW) float32 (TF HWIO, or depthwise HW C 1, transposed).
        bias: (O,) float32, BatchNorm folded in.
        depthwise: a ``DepthwiseConv2dNative``.
        stride: spatial stride.
        relu6: followed by ``Relu6``.
        residual_from: name of the tensor added to the output before the bias (a residual
            shortcut), or None.
        input_name: the tensor the convolution reads.
        output_name: the tensor after scale, bias, residual and ReLU6.
    """

    scope: str
    weight_oihw: npt.NDArray[np.float32]
    bias: npt.NDArray[np.float32]
    depthwise: bool
    stride: int
    relu6: bool
    residual_from: str | None
    input_name: str
    output_name: str


def _scope_of(weight_name: str) -> str:
    parts = weight_name.split("/")[:-1]
    return "/".join(parts[:-1] if parts and parts[-1] == "Conv2D" else parts)


def _single_consumer(graph: TfjsGraph, name: str) -> TfNode | None:
    """The one non-``Shape`` consumer of ``name`` (SSD predictors also feed Shape ops)."""
    users = [n for n in graph.consumers.get(name.split(":")[0], []) if n.op != "Shape"]
    return users[0] if len(users) == 1 else None


def _other(node: TfNode, name: str) -> str:
    return next(i for i in node.inputs if i.split(":")[0] != name)


def _read_unit(graph: TfjsGraph, conv: TfNode) -> ConvUnit:
    """Follow ``conv``'s output through Mul/Add/FusedBatchNorm/BiasAdd/AddN/Relu6."""
    w = graph.const(conv.inputs[1])
    depthwise = conv.op == "DepthwiseConv2dNative"
    out_ch = w.shape[2] * w.shape[3] if depthwise else w.shape[3]
    scale, bias = np.ones(out_ch, np.float32), np.zeros(out_ch, np.float32)
    residual, cur = None, conv.name
    while (nxt := _single_consumer(graph, cur)) is not None:
        if nxt.op == "Mul" and graph.is_const(_other(nxt, cur)) and residual is None:
            factor = graph.const(_other(nxt, cur))
            scale, bias = scale * factor, bias * factor
        elif nxt.op in ("Add", "BiasAdd") and graph.is_const(_other(nxt, cur)):
            bias = bias + graph.const(_other(nxt, cur))
        elif nxt.op == "FusedBatchNorm":
            gamma, beta, mean, var = (graph.const(i) for i in nxt.inputs[1:5])
            factor = gamma / np.sqrt(var + nxt.number("epsilon", 1e-3))
            scale, bias = scale * factor, (bias - mean) * factor + beta
        elif nxt.op in ("Add", "AddN") and residual is None and len(nxt.inputs) == 2:
            residual = _other(nxt, cur)  # a shortcut: the other input is a tensor, not a constant
        else:
            break
        cur = nxt.name
    relu6 = nxt is not None and nxt.op == "Relu6"
    if depthwise:  # (kH, kW, C, M) -> (C*M, 1, kH, kW)
        w_oihw = w.reshape(w.shape[0], w.shape[1], -1, 1).transpose(2, 3, 0, 1)
    else:  # HWIO -> OIHW
        w_oihw = w.transpose(3, 2, 0, 1)
    strides = conv.ints("strides") or (1, 1, 1, 1)
    if conv.string("padding") != "SAME" or conv.ints("dilations") not in ((), (1, 1, 1, 1)) \
            or conv.string("data_format") not in ("", "NHWC") or strides[1] != strides[2]:
        raise ModelLoadError(f"{graph.path}: convolution {conv.name!r} is not a SAME-padded NHWC conv "
                             f"with square strides and no dilation")
    return ConvUnit(
        scope=_scope_of(conv.inputs[1]),
        weight_oihw=np.ascontiguousarray(w_oihw * scale.reshape(-1, 1, 1, 1), dtype=np.float32),
        bias=bias.astype(np.float32), depthwise=depthwise, stride=strides[1], relu6=relu6,
        residual_from=residual, input_name=conv.inputs[0],
        output_name=nxt.name if relu6 else cur,
    )


def conv_units(graph: TfjsGraph) -> dict[str, ConvUnit]:
    """Every convolution of the graph, keyed by its weight's name scope."""
    units = {}
    for node in graph.nodes.values():
        if node.op in _CONV_OPS:
            unit = _read_unit(graph, node)
            if unit.scope in units:
                raise ModelLoadError(f"{graph.path}: two convolutions share the scope {unit.scope!r}")
            units[unit.scope] = unit
    return units
