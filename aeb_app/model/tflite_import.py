"""Read a TensorFlow Lite flatbuffer into plain numpy data: tensors, constants, operators.

Only what a float rebuild needs: each tensor's name, shape, type and quantisation, the
constant buffers (dequantised on request), and each operator's type, inputs, outputs and
options (built-in options such as a convolution's strides, or the flexbuffer map of a custom
operator such as ``TFLite_Detection_PostProcess``).

The ``tflite`` package (generated flatbuffer accessors) is imported lazily, inside
:func:`load_tflite`. A missing, truncated or corrupt file raises
:class:`~aeb_app.errors.ModelLoadError` with one line naming the file and the cause.
"""

from __future__ import annotations

import logging
import struct
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from aeb_app.errors import ModelLoadError

__all__ = ["TfliteTensor", "TfliteOp", "TfliteGraph", "load_tflite"]

_LOG = logging.getLogger(__name__)

# tflite.TensorType values -> numpy dtypes (the subset a detector file uses).
_DTYPES: dict[int, np.dtype] = {
    0: np.dtype("<f4"), 1: np.dtype("<f2"), 2: np.dtype("<i4"), 3: np.dtype("u1"),
    4: np.dtype("<i8"), 6: np.dtype("?"), 7: np.dtype("<i2"), 9: np.dtype("i1"),
}
_PADDING = {0: "SAME", 1: "VALID"}
_ACTIVATION = {0: "NONE", 1: "RELU", 2: "RELU_N1_TO_1", 3: "RELU6", 4: "TANH"}
# Errors the generated flatbuffer accessors raise when offsets point outside the bytes.
_PARSE_ERRORS = (IndexError, struct.error, ValueError, TypeError, AttributeError, KeyError, OverflowError)


@dataclass(frozen=True)
class TfliteTensor:
    """One tensor of the graph.

    Attributes:
        index: position in the subgraph's tensor list.
        name: TF scope name, e.g. ``"BoxPredictor_0/ClassPredictor/BiasAdd"``.
        shape: dimensions (NHWC for activations, OHWI / 1HWC for weights).
        dtype: numpy dtype of the stored values.
        scales / zero_points: (Q,) float32 / int64 quantisation; empty when not quantised.
        quantized_dim: axis the per-channel parameters run along (when Q > 1).
        data: the constant values, shape ``shape``; ``None`` for activations.
    """

    index: int
    name: str
    shape: tuple[int, ...]
    dtype: np.dtype
    scales: npt.NDArray[np.float32]
    zero_points: npt.NDArray[np.int64]
    quantized_dim: int
    data: npt.NDArray[Any] | None

    @property
    def quantized(self) -> bool:
        return self.scales.size > 0 and self.dtype.kind in "iu"

    def dequantize(self) -> npt.NDArray[np.float32]:
        """Constant values as float32: ``(q - zero_point) * scale``, per tensor or per channel."""
        if self.data is None:
            raise ModelLoadError(f"tensor {self.name!r} is not a constant")
        values = self.data.astype(np.float64)
        if self.quantized:
            bshape = [1] * values.ndim
            if self.scales.size > 1:
                bshape[self.quantized_dim] = self.scales.size
            scale = self.scales.astype(np.float64).reshape(bshape)
            zero = self.zero_points.astype(np.float64).reshape(bshape)
            values = (values - zero) * scale
        return values.astype(np.float32)


@dataclass(frozen=True)
class TfliteOp:
    """One operator: its type name, tensor indices and decoded options."""

    index: int
    kind: str
    inputs: tuple[int, ...]
    outputs: tuple[int, ...]
    options: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class TfliteGraph:
    """The first subgraph of a .tflite file, fully decoded into numpy/python values."""

    path: Path
    tensors: tuple[TfliteTensor, ...]
    ops: tuple[TfliteOp, ...]
    inputs: tuple[int, ...]
    outputs: tuple[int, ...]

    def tensor(self, name: str) -> TfliteTensor:
        """The tensor with this exact name; ModelLoadError when absent."""
        for t in self.tensors:
            if t.name == name:
                return t
        raise ModelLoadError(f"{self.path}: no tensor named {name!r}")

    def ops_of(self, kind: str) -> list[TfliteOp]:
        return [op for op in self.ops if op.kind == kind]


def load_tflite(path: str | Path) -> TfliteGraph:
    """Parse a .tflite file.

    Args:
        path: the flatbuffer file.

    Returns:
        The decoded first subgraph.

    Raises:
        ModelLoadError: the file is missing, unreadable, not a TFLite flatbuffer, truncated
            or otherwise corrupt (one line naming the file and the cause).
    """
    path = Path(path)
    try:
        buf = path.read_bytes()
    except OSError as exc:
        raise ModelLoadError(f"{path}: cannot read TFLite model ({exc.strerror or exc})") from None
    if len(buf) < 8 or buf[4:8] != b"TFL3":
        raise ModelLoadError(f"{path}: not a TFLite flatbuffer (missing 'TFL3' identifier, {len(buf)} bytes)")
    import tflite  # lazy: only the importer needs the generated accessors

    try:
        graph = _parse(tflite, buf, path)
    except ModelLoadError:
        raise
    except _PARSE_ERRORS as exc:
        raise ModelLoadError(f"{path}: truncated or corrupt TFLite file ({type(exc).__name__}: {exc})") from None
    _LOG.debug("%s: %d tensors, %d operators", path, len(graph.tensors), len(graph.ops))
    return graph


def _parse(tflite: Any, buf: bytes, path: Path) -> TfliteGraph:
    model = tflite.Model.GetRootAsModel(buf, 0)
    if model.SubgraphsLength() < 1:
        raise ModelLoadError(f"{path}: TFLite file has no subgraph")
    sub = model.Subgraphs(0)
    tensors = tuple(_read_tensor(model, sub.Tensors(i), i, buf, path) for i in range(sub.TensorsLength()))
    names = {v: k for k, v in tflite.BuiltinOperator.__dict__.items() if not k.startswith("_")}
    ops = tuple(_read_op(tflite, model, sub.Operators(i), i, names) for i in range(sub.OperatorsLength()))
    inputs = tuple(int(i) for i in sub.InputsAsNumpy())
    outputs = tuple(int(i) for i in sub.OutputsAsNumpy())
    for idx in (i for op in ops for i in op.inputs + op.outputs):
        if not -1 <= idx < len(tensors):
            raise ModelLoadError(f"{path}: corrupt TFLite file (operator references tensor {idx})")
    return TfliteGraph(path, tensors, ops, inputs, outputs)


def _read_tensor(model: Any, t: Any, index: int, buf: bytes, path: Path) -> TfliteTensor:
    name = t.Name().decode("utf-8", errors="replace")
    if t.Type() not in _DTYPES:
        raise ModelLoadError(f"{path}: tensor {name!r} has unsupported type {t.Type()}")
    dtype = _DTYPES[t.Type()]
    shape = tuple(int(d) for d in t.ShapeAsNumpy()) if t.ShapeLength() else ()
    q = t.Quantization()
    scales = np.zeros(0, np.float32)
    zeros = np.zeros(0, np.int64)
    qdim = 0
    if q is not None and q.ScaleLength():
        scales = q.ScaleAsNumpy().astype(np.float32)
        zeros = q.ZeroPointAsNumpy().astype(np.int64) if q.ZeroPointLength() else np.zeros_like(scales, np.int64)
        qdim = int(q.QuantizedDimension())
    data = _read_buffer(model.Buffers(t.Buffer()), buf, name, shape, dtype, path)
    return TfliteTensor(index, name, shape, dtype, scales, zeros, qdim, data)


def _read_buffer(
    b: Any, buf: bytes, name: str, shape: tuple[int, ...], dtype: np.dtype, path: Path
) -> npt.NDArray[Any] | None:
    """A tensor's constant bytes as an array of ``shape``, or None for activations."""
    if b is None:
        return None
    if b.DataLength():
        raw = b.DataAsNumpy().tobytes()
    elif hasattr(b, "Offset") and b.Offset() > 1:
        # Files over 2 GiB keep buffers after the flatbuffer, addressed by offset/size.
        raw = buf[b.Offset(): b.Offset() + b.Size()]
    else:
        return None
    expected = int(np.prod(shape, dtype=np.int64)) * dtype.itemsize
    if len(raw) != expected:
        raise ModelLoadError(
            f"{path}: truncated or corrupt TFLite file (tensor {name!r} holds {len(raw)} bytes, "
            f"its shape {shape} needs {expected})"
        )
    return np.frombuffer(raw, dtype=dtype).reshape(shape)


def _read_op(tflite: Any, model: Any, op: Any, index: int, names: dict[int, str]) -> TfliteOp:
    code = model.OperatorCodes(op.OpcodeIndex())
    builtin = max(int(code.BuiltinCode()), int(code.DeprecatedBuiltinCode()))
    kind = names.get(builtin, f"OP_{builtin}")
    if kind == "CUSTOM":
        kind = (code.CustomCode() or b"CUSTOM").decode("utf-8", errors="replace")
    inputs = tuple(int(i) for i in op.InputsAsNumpy()) if op.InputsLength() else ()
    outputs = tuple(int(i) for i in op.OutputsAsNumpy()) if op.OutputsLength() else ()
    return TfliteOp(index, kind, inputs, outputs, _read_options(tflite, op, kind))


def _read_options(tflite: Any, op: Any, kind: str) -> dict[str, Any]:
    """Decoded options of the operator types a detector uses; {} for the others."""
    if op.CustomOptionsLength():
        from flatbuffers import flexbuffers  # a dependency of the tflite package

        loaded = flexbuffers.Loads(op.CustomOptionsAsNumpy().tobytes())
        return dict(loaded) if isinstance(loaded, dict) else {}
    if kind not in ("CONV_2D", "DEPTHWISE_CONV_2D"):
        return {}
    table = op.BuiltinOptions()
    if table is None:
        return {}
    opts = tflite.Conv2DOptions() if kind == "CONV_2D" else tflite.DepthwiseConv2DOptions()
    opts.Init(table.Bytes, table.Pos)
    out: dict[str, Any] = {
        "padding": _PADDING.get(opts.Padding(), str(opts.Padding())),
        "stride": (int(opts.StrideH()), int(opts.StrideW())),
        "dilation": (int(opts.DilationHFactor()), int(opts.DilationWFactor())),
        "activation": _ACTIVATION.get(opts.FusedActivationFunction(), str(opts.FusedActivationFunction())),
    }
    if kind == "DEPTHWISE_CONV_2D":
        out["depth_multiplier"] = int(opts.DepthMultiplier())
    return out
