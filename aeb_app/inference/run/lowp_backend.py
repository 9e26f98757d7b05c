"""Modes ``fp8_gpu`` / ``int8_gpu`` (8-bit GEMMs on NVIDIA tensor cores, no TensorRT) and their
CPU simulations ``fp8_sim`` / ``int8_sim`` (the same arithmetic with float matmuls).

The network is :func:`aeb_app.inference.run.lowp.quantize_network`'s: eligible 1x1 convolutions in
8 bits, 3x3/depthwise convolutions and the rest in 16 bits on the GPU (BF16 with FP8, whose GEMM
outputs BF16; FP16 with int8), FP32 in the simulation (whose quantised layers still round their
outputs to that 16-bit type, as the GPU does).
Activation scales come from the calibration ``aeb-app quantize`` made for the CPU Q/DQ path.

Availability: ``fp8_gpu`` needs compute capability >= 8.9 (Ada, Hopper: FP8 tensor cores);
``int8_gpu`` >= 8.0 (``torch._int_mm``'s cuBLASLt kernels). Otherwise, or when the GEMM fails its
first call, the mode raises :class:`BackendUnavailableError` with the reason and a fallback list
goes on to the next mode.
"""

from __future__ import annotations

import logging
from pathlib import Path

from aeb_app.errors import BackendUnavailableError, CalibrationError
from aeb_app.inference.run.torch_backend import TorchDetector
from aeb_app.model.registry import RANDOM, DetectionNet, LoadedModel

log = logging.getLogger(__name__)

#: Minimum CUDA compute capability per format.
MIN_CAPABILITY = {"fp8": (8, 9), "int8": (8, 0)}


def gpu_support(fmt: str, device: str = "cuda") -> str | None:
    """None when ``device`` can run ``fmt`` GEMMs, else the reason it cannot."""
    import torch

    if not torch.cuda.is_available():
        return "needs an NVIDIA GPU; this machine has no CUDA device"
    cap = torch.cuda.get_device_capability(device)
    need = MIN_CAPABILITY[fmt]
    if cap < need:
        return (f"{fmt.upper()} tensor cores need compute capability >= {need[0]}.{need[1]}; "
                f"{torch.cuda.get_device_name(device)} has {cap[0]}.{cap[1]}")
    return None


class LowpDetector(TorchDetector):
    """:class:`TorchDetector` whose network has 8-bit 1x1 convolutions.

    Args:
        loaded: model (CPU float32).
        fmt: ``"fp8"`` or ``"int8"``.
        kernel: ``"gemm"`` (GPU) or ``"sim"``.
        ranges: calibrated activation max |x| per conv name.
        device / cuda_graph / compile / mode: as :class:`TorchDetector`.
    """

    def __init__(self, loaded: LoadedModel, *, fmt: str, kernel: str, ranges: dict[str, float],
                 device: str, cuda_graph: bool = False, compile: bool = False, mode: str) -> None:
        # 16 bits between layers on the GPU (BF16 for FP8: its GEMM's output type; FP16 for int8);
        # FP32 for the simulation and on a CPU (the quantised layers still round their outputs the same way).
        act = ("bf16" if fmt == "fp8" else "fp16") if kernel == "gemm" and device.startswith("cuda") else "fp32"
        super().__init__(loaded, precision=act, device=device, cuda_graph=cuda_graph, compile=compile, mode=mode)
        self.info.precision = fmt
        self.info.backend = "pytorch-lowp"
        self._fmt, self._kernel, self._ranges = fmt, kernel, ranges

    def activate(self) -> None:
        import torch

        from aeb_app.inference.run.lowp import quantize_network

        network, plan = quantize_network(self._loaded.network, self._ranges, self._fmt, self._kernel)
        self.info.notes.update(quantized=len(plan.quantized), kept_16bit=len(plan.kept), kernel=self._kernel,
                               activations=str(self._dtype).removeprefix("torch."))
        net = DetectionNet(network, self.spec).eval()
        net.network.to(self._device, dtype=self._dtype)  # 8-bit buffers keep their dtype (QuantConv1x1._apply)
        net.decode.to(self._device)
        net.network.to(memory_format=torch.channels_last)
        self.net = net
        if self._kernel == "gemm":  # a GEMM this GPU/PyTorch cannot run makes the mode unavailable
            self._probe(net, 2, (RuntimeError, NotImplementedError),
                        f"the {self._fmt} GEMM failed on {self._device}")
        self._ready(net)


def create(loaded: LoadedModel, mode, *, device: str | None = None, engines_dir: str | Path | None = None,
           calibration: str | Path | None = None, cuda_graph: bool | None = None, compile: bool = False,
           ranges: dict[str, float] | None = None) -> LowpDetector:
    """Factory for ``fp8_gpu``, ``int8_gpu``, ``fp8_sim``, ``int8_sim`` (see the module docstring).

    Args:
        calibration: a Q/DQ model (``aeb-app quantize``) to take the ranges from, instead of the
            newest one for this model in ``engines_dir`` (default ``engines``).
        ranges: ranges given directly (benchmarks of random-weight models).

    Raises:
        BackendUnavailableError: no suitable GPU, or no calibration in ``engines_dir``.
        CalibrationError: ``calibration`` belongs to another model or other weights.
    """
    fmt = mode.precision
    mode_options = dict(mode.options)
    kernel = mode_options.get("kernel", "gemm")
    compile = compile or bool(mode_options.get("compile", False))
    if kernel == "gemm":
        device = device or "cuda"
        if not device.startswith("cuda") or (reason := gpu_support(fmt, device)):
            raise BackendUnavailableError(f"{mode.name}: {reason if device.startswith('cuda') else 'needs a CUDA device, got ' + device}")
    else:
        device = device or "cpu"
    if ranges is None and calibration is None and loaded.weights == RANDOM:
        ranges = _random_weight_ranges(loaded)
    if ranges is None:
        from aeb_app.inference.run.lowp import activation_ranges

        try:
            ranges = activation_ranges(loaded, Path(engines_dir or "engines"), calibration)
        except CalibrationError as exc:
            if calibration is not None:
                raise  # a file the user named is wrong: an error, not a reason to fall back
            raise BackendUnavailableError(f"{mode.name}: {exc}") from exc
    graph = kernel == "gemm" if cuda_graph is None else cuda_graph
    return LowpDetector(loaded, fmt=fmt, kernel=kernel, ranges=ranges, device=device, cuda_graph=graph,
                        compile=compile, mode=mode.name)


def _random_weight_ranges(loaded: LoadedModel) -> dict[str, float]:
    """Ranges of a random-weight model (speed work only): max |x| on one seeded random batch."""
    import torch

    from aeb_app.inference.run.lowp import observed_ranges

    log.warning("%s has RANDOM weights: 8-bit scales from one random batch, for speed only", loaded.spec.name)
    gen = torch.Generator().manual_seed(0)
    x = torch.rand(2, 3, *loaded.spec.input_hw, generator=gen) * 2 - 1
    return observed_ranges(loaded.network, x)
