"""INT8 / FP8 convolutions without TensorRT: one arithmetic, a GPU kernel and a CPU simulation.

Scheme (the same for both formats, and the same as the CPU Q/DQ path's: symmetric, zero point 0):

* **Activations per tensor.** The input of each quantised convolution is scaled by
  ``amax / qmax`` (``amax`` from the entropy calibration of ``aeb-app quantize``, read by
  :func:`activation_ranges`) and rounded to the format: int8 (round to nearest, clamp +-127) or
  FP8 e4m3 (clamp +-448, round to nearest e4m3).
* **Weights per output channel**, the same way, with ``amax`` = the channel's largest |w|.
* **Higher-precision accumulation**: the product is summed in int32 (int8) or float32 (FP8), then
  multiplied by ``a_scale * w_scale[channel]``, rounded to the format's 16-bit activation type
  (BF16 for FP8: the row-wise scaled GEMM's only output type; FP16 for int8), and the bias added in it.

Which convolutions: 1x1, groups 1, no dilation, input channels a multiple of the format's GEMM
alignment (16 for FP8, 8 for int8) -- pointwise/expand/project layers, SSD predictors, ResNet 1x1s
(stride 2 by subsampling the input first). 3x3 and depthwise convolutions stay in 16 bits; the
decode head stays float. On the GPU a quantised 1x1 is one GEMM over the channels-last activations
(``torch._scaled_mm`` with row-wise scales for FP8, ``torch._int_mm`` for int8); ``kernel="sim"``
computes the same values with float matmuls on any device, so CI measures the mode's accuracy on a
CPU (the two agree to BF16 rounding: tests/test_lowp.py).
"""

from __future__ import annotations

import copy
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import torch
from torch import nn

from aeb_app.errors import CalibrationError

log = logging.getLogger(__name__)

Kernel = Literal["sim", "gemm"]


@dataclass(frozen=True)
class LowpFormat:
    """An 8-bit number format: its largest magnitude, the GEMM's channel alignment, and the 16-bit type
    the quantised layers output (and the rest of the network runs in on the GPU): BF16 for FP8, whose
    row-wise scaled GEMM returns BF16 only; FP16 for int8 (3 more mantissa bits than BF16)."""

    name: str
    qmax: float
    align: int
    act_dtype: torch.dtype

    def quantize(self, x_scaled: torch.Tensor) -> torch.Tensor:
        """float tensor already divided by its scale -> 8-bit tensor (int8 or float8_e4m3fn)."""
        if self.name == "int8":
            return x_scaled.round().clamp(-self.qmax, self.qmax).to(torch.int8)
        return x_scaled.clamp(-self.qmax, self.qmax).to(torch.float8_e4m3fn)


FORMATS = {"fp8": LowpFormat("fp8", 448.0, 16, torch.bfloat16), "int8": LowpFormat("int8", 127.0, 8, torch.float16)}


class QuantConv1x1(nn.Module):
    """A 1x1 convolution with 8-bit activations and weights (see the module docstring).

    Args:
        conv: the float convolution (1x1, groups 1); its weights are quantised once here.
        act_amax: calibrated max |input| of this layer.
        fmt: :data:`FORMATS` entry.
        kernel: ``"gemm"`` (``torch._scaled_mm`` / ``torch._int_mm``) or ``"sim"`` (float matmul).
    """

    def __init__(self, conv: nn.Conv2d, act_amax: float, fmt: LowpFormat, kernel: Kernel = "sim") -> None:
        super().__init__()
        if not eligible(conv, fmt):
            raise ValueError(f"{conv} cannot run as an 8-bit GEMM")
        if not act_amax > 0:
            raise CalibrationError(f"activation range {act_amax} of {conv} is not positive")
        w = conv.weight.detach().float().reshape(conv.out_channels, conv.in_channels)
        n_pad = -conv.out_channels % fmt.align  # GEMM N alignment: zero rows, sliced off after
        w_scale = w.abs().amax(dim=1).clamp_min(1e-12) / fmt.qmax
        bias = conv.bias.detach().float() if conv.bias is not None else torch.zeros(conv.out_channels)
        wq = fmt.quantize(w / w_scale[:, None])
        self.fmt, self.kernel = fmt, kernel
        self.out_channels, self.stride = conv.out_channels, conv.stride[0]
        self.a_scale = float(act_amax) / fmt.qmax
        # Stored as raw bytes so Module.to(dtype=...) cannot cast the 8-bit weights.
        self.register_buffer("weight_q", torch.cat([wq.view(torch.uint8), torch.zeros(n_pad, w.shape[1],
                                                                                       dtype=torch.uint8)]))
        self.register_buffer("out_scale", torch.cat([w_scale * self.a_scale, torch.ones(n_pad)]).view(1, -1))
        self.register_buffer("bias", torch.cat([bias, torch.zeros(n_pad)]).to(fmt.act_dtype))  # added in 16 bits
        self._ones: dict[tuple, torch.Tensor] = {}

    def _apply(self, fn, recurse=True):
        """Move with the network but keep each buffer's dtype (a BF16 scale would be off by up to 0.4%)."""
        keep = {k: v.dtype for k, v in self._buffers.items()}
        out = super()._apply(fn, recurse)
        for k, dtype in keep.items():
            if self._buffers[k].dtype != dtype:
                self._buffers[k] = self._buffers[k].to(dtype)
        self._ones = {}
        return out

    @property
    def weight_8bit(self) -> torch.Tensor:
        return self.weight_q.view(torch.int8 if self.fmt.name == "int8" else torch.float8_e4m3fn)

    def _accumulate(self, aq: torch.Tensor) -> torch.Tensor:
        """(M, K) 8-bit activations -> (M, N) ``sum(a * w) * a_scale * w_scale`` (float32; BF16 from the FP8 GEMM)."""
        wq = self.weight_8bit
        if self.kernel == "sim" or (self.fmt.name == "int8" and aq.shape[0] <= 16):
            # Float matmul of the 8-bit values: products and sums are those of the GEMM (fp32 accumulation).
            return (aq.float() @ wq.float().t()) * self.out_scale
        if self.fmt.name == "int8":
            return torch._int_mm(aq, wq.t()).float() * self.out_scale
        return torch._scaled_mm(aq, wq.t(), scale_a=self._row_ones(aq), scale_b=self.out_scale,
                                out_dtype=self.fmt.act_dtype)

    def _row_ones(self, aq: torch.Tensor) -> torch.Tensor:
        """(M, 1) float32 ones: the activation scale is folded into ``out_scale`` (row-wise scaling
        wants a scale per row of both operands). Cached per M in eager; made inline when compiling."""
        if torch.compiler.is_compiling():
            return torch.ones(aq.shape[0], 1, device=aq.device)
        key = (aq.shape[0], aq.device)
        if key not in self._ones:
            self._ones[key] = torch.ones(aq.shape[0], 1, device=aq.device)
        return self._ones[key]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.stride > 1:
            x = x[:, :, ::self.stride, ::self.stride]
        n, c, h, w = x.shape
        a = x.permute(0, 2, 3, 1).reshape(-1, c)  # a view when x is channels-last
        aq = self.fmt.quantize(a.float() * (1.0 / self.a_scale))
        y = self._accumulate(aq).to(self.fmt.act_dtype) + self.bias
        if y.shape[1] != self.out_channels:
            y = y[:, : self.out_channels]
        return y.to(x.dtype).reshape(n, h, w, self.out_channels).permute(0, 3, 1, 2)


def eligible(conv: nn.Module, fmt: LowpFormat) -> bool:
    """Whether ``conv`` runs as an 8-bit GEMM in ``fmt`` (1x1, groups 1, aligned input channels)."""
    return (isinstance(conv, nn.Conv2d) and conv.kernel_size == (1, 1) and conv.groups == 1
            and conv.padding in ((0, 0), "valid") and conv.dilation == (1, 1) and conv.stride[0] == conv.stride[1]
            and conv.in_channels % fmt.align == 0 and conv.padding_mode == "zeros")


@dataclass
class LowpPlan:
    """Which convolutions a conversion quantised, and which it kept in 16 bits (with why)."""

    quantized: list[str]
    kept: dict[str, str]

    @property
    def summary(self) -> str:
        return f"{len(self.quantized)} 1x1 convs in 8 bits, {len(self.kept)} kept in 16 bits"


def quantize_network(network: nn.Module, ranges: dict[str, float], fmt_name: str,
                     kernel: Kernel = "sim") -> tuple[nn.Module, LowpPlan]:
    """A copy of ``network`` (BatchNorm folded) whose eligible 1x1 convs are :class:`QuantConv1x1`.

    Args:
        network: float32 eval-mode network (left unchanged).
        ranges: calibrated input max |x| per conv module name (:func:`activation_ranges`).
        fmt_name: ``"fp8"`` or ``"int8"``.
        kernel: ``"gemm"`` (GPU) or ``"sim"``.

    Raises:
        CalibrationError: ``ranges`` names no conv of this network (another model's calibration).
    """
    from aeb_app.model.fuse import fold_batchnorm

    fmt = FORMATS[fmt_name]
    net = copy.deepcopy(network).float().eval()
    fold_batchnorm(net)
    convs = {name: m for name, m in net.named_modules() if isinstance(m, nn.Conv2d)}
    if not set(ranges) & set(convs):
        raise CalibrationError(f"the calibration names none of this network's {len(convs)} convolutions "
                               f"(e.g. {next(iter(ranges), '-')!r} vs {next(iter(convs), '-')!r})")
    plan = LowpPlan([], {})
    for name, conv in convs.items():
        if not eligible(conv, fmt):
            plan.kept[name] = "not a 1x1 GEMM" if conv.kernel_size != (1, 1) or conv.groups != 1 else \
                f"input channels {conv.in_channels} not a multiple of {fmt.align}"
        elif name not in ranges:
            plan.kept[name] = "no calibrated range"
        else:
            parent, _, leaf = name.rpartition(".")
            setattr(net.get_submodule(parent) if parent else net, leaf,
                    QuantConv1x1(conv, ranges[name], fmt, kernel))
            plan.quantized.append(name)
    log.info("%s: %s", fmt_name, plan.summary)
    return net, plan


def activation_ranges(loaded, engines_dir: str | Path, qdq_path: str | Path | None = None) -> dict[str, float]:
    """Calibrated input range (max |x|) of each convolution, from the CPU Q/DQ path's calibration.

    The one place that knows where the ranges come from: today the INT8 Q/DQ ONNX model that
    ``aeb-app quantize`` writes (entropy calibration); the scale of the ``DequantizeLinear``
    feeding each ``Conv`` is ``2 * amax / 255`` (ONNX Runtime's symmetric int8).

    Raises:
        CalibrationError: no Q/DQ model for this model in ``engines_dir``, or ``qdq_path`` was
            calibrated for another model or other weights (both names in the message).
    """
    from aeb_app.inference import artifacts as ac

    name, weights_hash = loaded.spec.name, ac.weights_sha256(loaded)
    if qdq_path is None:
        qdq_path = ac.find_qdq_model(loaded, engines_dir, weights_hash=weights_hash)
        if qdq_path is None:
            raise CalibrationError(f"no INT8 calibration for {name} in {engines_dir}; run "
                                   f"'aeb-app quantize --model {name} --coco-dir DIR' first")
    side = ac.cached_sidecar(qdq_path)
    if side is None or side.model != name or side.weights_sha256 != weights_hash:
        have = "no valid sidecar" if side is None else f"{side.model!r} with weights {side.weights_sha256[:12]}"
        raise CalibrationError(f"{qdq_path}: calibrated for {have}, not for {name!r} with weights {weights_hash[:12]}")
    return ranges_from_qdq(qdq_path)


def observed_ranges(network: nn.Module, x: torch.Tensor) -> dict[str, float]:
    """Max |input| of every conv on one batch ``x`` (random-weight speed work only: no calibration)."""
    ranges: dict[str, float] = {}
    hooks = [m.register_forward_pre_hook(
        lambda mod, args, name=name: ranges.__setitem__(name, max(ranges.get(name, 0.0),
                                                                   float(args[0].abs().max()) or 1.0)))
        for name, m in network.named_modules() if isinstance(m, nn.Conv2d)]
    try:
        with torch.no_grad():
            network(x)
    finally:
        for h in hooks:
            h.remove()
    return ranges


def ranges_from_qdq(path: str | Path) -> dict[str, float]:
    """``{conv module name: amax}`` read from a Q/DQ ONNX model's activation scales."""
    import onnx
    from onnx import numpy_helper

    model = onnx.load(str(path))
    producers = {out: node for node in model.graph.node for out in node.output}
    inits = {i.name: i for i in model.graph.initializer}
    ranges = {}
    for conv in (n for n in model.graph.node if n.op_type == "Conv"):
        x_dq, w_dq = producers.get(conv.input[0]), producers.get(conv.input[1])
        if x_dq is None or x_dq.op_type != "DequantizeLinear" or x_dq.input[1] not in inits:
            continue
        weight = w_dq.input[0] if w_dq is not None and w_dq.op_type == "DequantizeLinear" else conv.input[1]
        module = weight.removesuffix("_quantized").removeprefix("network.").removesuffix(".weight")
        ranges[module] = float(numpy_helper.to_array(inits[x_dq.input[1]]).reshape(-1)[0]) * 127.5
    if not ranges:
        raise CalibrationError(f"{path}: no quantised Conv inputs found (not a Q/DQ model?)")
    return ranges
