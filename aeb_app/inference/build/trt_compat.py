"""Will TensorRT's ONNX parser take this file? A check that needs no TensorRT (only ``onnx``).

The rules come from onnx-tensorrt's ``docs/operators.md`` support matrix, checked in as
``aeb_app/data/onnx_trt_operators.json`` (source URL and TensorRT version inside; this
project's TensorRT path is written for 10.13.2+ and the table is 10.15's), plus what the
parser's Q/DQ import and TensorRT's explicit-quantization guide require:

* every op is in the table and supported; every typed input of a node has a type the table
  lists for that op (INT8/FP8/INT4/FP4 are "quantized types", only as Q/DQ);
* every ``DequantizeLinear`` input is an INT8 initializer or an activation (a
  ``QuantizeLinear`` output): an INT32 bias initializer is what made ONNX Runtime's default
  Q/DQ models unparsable; every Q/DQ zero point is 0;
* per-channel weight scales run along axis 0 (output channels) and match its length;
* the default-domain opset is >= 13 (per-axis Q/DQ) and inside the table's range;
* only the batch axis (0) of the graph inputs and outputs is dynamic.

A pass says the parser should accept the graph by these rules; it is not a TensorRT build.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from functools import lru_cache
from importlib import resources
from pathlib import Path

from aeb_app.errors import EngineError

MIN_OPSET = 13

#: ONNX TensorProto element types -> the type names of the support table.
_TYPE_NAMES = {1: "FP32", 10: "FP16", 16: "BF16", 6: "INT32", 7: "INT64", 9: "BOOL", 2: "UINT8", 3: "INT8",
               11: "FP32", 17: "FP8", 22: "INT4", 23: "FP4", 4: "UINT16", 5: "INT16", 12: "UINT32", 13: "UINT64"}


@dataclass(frozen=True)
class OperatorTable:
    """onnx-tensorrt's support matrix for one TensorRT version."""

    tensorrt_version: str
    source: str
    opset_min: int
    opset_max: int
    operators: dict[str, tuple[bool, tuple[str, ...]]]


@dataclass(frozen=True)
class CompatIssue:
    """One reason the parser would reject the graph: ``node`` is the node (or graph input/output) name."""

    node: str
    op_type: str
    problem: str

    def __str__(self) -> str:
        return f"node '{self.node}' ({self.op_type}): {self.problem}"


@dataclass(frozen=True)
class CompatReport:
    """Result of :func:`check_model`."""

    path: str
    tensorrt_version: str
    num_nodes: int
    issues: tuple[CompatIssue, ...] = field(default_factory=tuple)

    @property
    def ok(self) -> bool:
        return not self.issues

    def verdict(self) -> str:
        """One line: ``<file>: TensorRT 10.15 parser compatible (N nodes)`` or the first issues."""
        head = f"{self.path}: "
        if self.ok:
            return f"{head}TensorRT {self.tensorrt_version} parser compatible ({self.num_nodes} nodes checked)"
        shown = "; ".join(str(i) for i in self.issues[:3])
        more = f"; and {len(self.issues) - 3} more" if len(self.issues) > 3 else ""
        return f"{head}NOT TensorRT {self.tensorrt_version} parser compatible: {shown}{more}"


@lru_cache(maxsize=1)
def operator_table() -> OperatorTable:
    """The checked-in support matrix (``aeb_app/data/onnx_trt_operators.json``)."""
    raw = json.loads(resources.files("aeb_app").joinpath("data/onnx_trt_operators.json").read_text("utf-8"))
    ops = {name: (bool(row["supported"]), tuple(row["types"])) for name, row in raw["operators"].items()}
    return OperatorTable(raw["tensorrt_version"], raw["source"], int(raw["opset_min"]), int(raw["opset_max"]), ops)


def _tensor_types(model) -> dict[str, int]:
    """Element type of every named tensor (inputs, initializers, inferred intermediates)."""
    import onnx

    inferred = onnx.shape_inference.infer_shapes(model)
    types = {i.name: i.data_type for i in model.graph.initializer}
    for info in [*inferred.graph.input, *inferred.graph.value_info, *inferred.graph.output]:
        if info.type.HasField("tensor_type") and info.type.tensor_type.elem_type:
            types[info.name] = info.type.tensor_type.elem_type
    for node in model.graph.node:  # Constant nodes: their value's type
        if node.op_type == "Constant" and node.attribute and node.attribute[0].HasField("t"):
            types[node.output[0]] = node.attribute[0].t.data_type
    return types


def _opset_issues(model, table: OperatorTable) -> list[CompatIssue]:
    opset = next((o.version for o in model.opset_import if o.domain in ("", "ai.onnx")), 0)
    if opset < max(MIN_OPSET, table.opset_min) or opset > table.opset_max:
        return [CompatIssue("<model>", "opset", f"default-domain opset {opset}; need {max(MIN_OPSET, table.opset_min)}"
                                                f"..{table.opset_max} (per-axis Q/DQ needs >= 13)")]
    return []


def _shape_issues(model) -> list[CompatIssue]:
    issues = []
    for kind, values in (("graph input", model.graph.input), ("graph output", model.graph.output)):
        inits = {i.name for i in model.graph.initializer}
        for value in values:
            if value.name in inits:
                continue
            dims = value.type.tensor_type.shape.dim
            dynamic = [i for i, d in enumerate(dims) if i > 0 and not (d.HasField("dim_value") and d.dim_value > 0)]
            if dynamic:
                issues.append(CompatIssue(value.name, kind, f"axes {dynamic} are dynamic; only the batch axis 0 may be"))
    return issues


def _type_issues(node, types: dict[str, int], table: OperatorTable) -> list[CompatIssue]:
    supported, allowed = table.operators.get(node.op_type, (False, ()))
    if node.domain not in ("", "ai.onnx") or not supported:
        where = f"domain '{node.domain}'" if node.domain not in ("", "ai.onnx") else "the support matrix"
        return [CompatIssue(node.name, node.op_type, f"not supported by TensorRT {table.tensorrt_version} ({where})")]
    checked = node.input[:1] if node.op_type in ("QuantizeLinear", "DequantizeLinear") else node.input
    issues = []
    for name in checked:
        if name and name in types:
            type_name = _TYPE_NAMES.get(types[name], f"type {types[name]}")
            if type_name not in allowed:
                issues.append(CompatIssue(node.name, node.op_type, f"input '{name}' is {type_name}; TensorRT "
                                                                  f"{table.tensorrt_version} accepts {', '.join(allowed)}"))
    return issues


def _qdq_issues(node, inits: dict, producers: dict) -> list[CompatIssue]:
    """Zero points 0 (INT8); DQ input an INT8 initializer or a Q output; per-channel weights on axis 0."""
    from onnx import numpy_helper

    issues = []
    if len(node.input) > 2 and node.input[2] in inits:
        zp = numpy_helper.to_array(inits[node.input[2]])
        if zp.any() or zp.dtype.name != "int8":
            issues.append(CompatIssue(node.name, node.op_type, f"zero point '{node.input[2]}' is {zp.dtype.name} "
                                                               f"{'non-zero' if zp.any() else 'zero'}; TensorRT needs int8 0"))
    if node.op_type != "DequantizeLinear":
        return issues
    x = node.input[0]
    if x in inits:
        weight = numpy_helper.to_array(inits[x])
        if weight.dtype.name != "int8":
            issues.append(CompatIssue(node.name, node.op_type, f"input '{x}' is a {weight.dtype.name} initializer; "
                                                               "DequantizeLinear inputs must be INT8 (or an activation)"))
        scale = numpy_helper.to_array(inits[node.input[1]]) if node.input[1] in inits else None
        axis = next((a.i for a in node.attribute if a.name == "axis"), 1)
        if scale is not None and scale.size > 1 and weight.ndim >= 2 and (axis != 0 or scale.size != weight.shape[0]):
            issues.append(CompatIssue(node.name, node.op_type, f"per-channel scale of '{x}' on axis {axis} "
                                                               f"({scale.size} values); weights need axis 0"))
    elif producers.get(x) is None or producers[x].op_type != "QuantizeLinear":
        issues.append(CompatIssue(node.name, node.op_type, f"input '{x}' is neither an INT8 initializer nor a "
                                                           "QuantizeLinear output"))
    return issues


def _conv_weight_issues(node, inits: dict, producers: dict) -> list[CompatIssue]:
    """Conv weights must be build-time constants: an initializer, or a DequantizeLinear of one."""
    w = node.input[1]
    parent = producers.get(w)
    if w in inits or (parent is not None and parent.op_type == "DequantizeLinear" and parent.input[0] in inits):
        return []
    return [CompatIssue(node.name, node.op_type, f"weights '{w}' are not an initializer (or DQ of one)")]


def check_model(model, path: str = "<model>", table: OperatorTable | None = None) -> CompatReport:
    """Check a loaded ``onnx.ModelProto`` against the support table; see the module docstring."""
    table = table or operator_table()
    types = _tensor_types(model)
    inits = {i.name: i for i in model.graph.initializer}
    producers = {out: n for n in model.graph.node for out in n.output}
    issues = _opset_issues(model, table) + _shape_issues(model)
    for node in model.graph.node:
        issues += _type_issues(node, types, table)
        if node.op_type in ("QuantizeLinear", "DequantizeLinear"):
            issues += _qdq_issues(node, inits, producers)
        elif node.op_type in ("Conv", "ConvTranspose"):
            issues += _conv_weight_issues(node, inits, producers)
    return CompatReport(path, table.tensorrt_version, len(model.graph.node), tuple(issues))


def check_file(path: str | Path) -> CompatReport:
    """Load ``path`` and :func:`check_model` it.

    Raises:
        EngineError: the file cannot be read as ONNX.
    """
    import onnx

    try:
        model = onnx.load(str(path))
    except Exception as exc:  # onnx raises DecodeError, OSError ...
        raise EngineError(f"{path}: cannot read ONNX model ({type(exc).__name__}: {exc})") from exc
    return check_model(model, str(path))


def require_compatible(path: str | Path) -> CompatReport:
    """:func:`check_file`, raising when the parser would reject the file.

    Raises:
        EngineError: one line with the file and the first offending nodes.
    """
    report = check_file(path)
    if not report.ok:
        raise EngineError(report.verdict())
    return report
