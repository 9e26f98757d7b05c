"""Modes by name (``int8_trt``, ``fp16``, ``fp32_ort`` ...) and an explicit fallback order.

A *mode* names backend + precision (+ options), as in the seed's tables. Asking for a mode
that this machine cannot run raises :class:`BackendUnavailableError` with the reason;
:func:`create_with_fallback` walks a configurable list and logs every step, never silently.

This is also the run side's only door to the build side (:func:`build_artifact`): a backend that finds
no cached artifact it may make on demand (today only the FP32 ONNX export) asks here, and it is logged.
The mode names are checked against :data:`aeb_app.names.MODE_NAMES`, the table the CLI parses with.
"""

from __future__ import annotations

import importlib
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Sequence

from aeb_app import defaults, names
from aeb_app.errors import BackendUnavailableError, EngineLoadError
from aeb_app.inference.base import Detector
from aeb_app.model.registry import LoadedModel

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Mode:
    name: str
    backend: str  # "pytorch", "pytorch-compiled", "pytorch-aoti", "onnxruntime", "tensorrt"
    precision: str
    factory: str  # "module:function" taking (loaded, mode, device=..., **options) -> Detector
    options: tuple[tuple[str, object], ...] = ()
    description: str = ""


_FUSED = ("cudnn_fused", "fused_heads")  # aeb_app.model.fuse rewrites of the fused/compiled modes
_COMPILED = (("compile", True), ("cuda_graph", True), ("rewrites", _FUSED))
_LOWP = "aeb_app.inference.run.lowp_backend:create"

MODES: dict[str, Mode] = {
    m.name: m
    for m in (
        Mode("int8_trt", "tensorrt", "int8", "aeb_app.inference.run.tensorrt_backend:create",
             description="TensorRT INT8 engine (explicit Q/DQ or entropy calibration)"),
        Mode("fp16_trt", "tensorrt", "fp16", "aeb_app.inference.run.tensorrt_backend:create",
             description="TensorRT FP16 engine"),
        Mode("fp32_trt", "tensorrt", "fp32", "aeb_app.inference.run.tensorrt_backend:create",
             description="TensorRT FP32 engine (TF32 off unless stated)"),
        Mode("fp16", "pytorch", "fp16", "aeb_app.inference.registry:_torch",
             description="PyTorch eager FP16, channels-last (CUDA)"),
        Mode("fp32", "pytorch", "fp32", "aeb_app.inference.registry:_torch",
             description="PyTorch eager FP32 (CUDA or CPU)"),
        Mode("bf16", "pytorch", "bf16", "aeb_app.inference.registry:_torch",
             description="PyTorch eager BF16, channels-last (CUDA)"),
        Mode("fp16_graph", "pytorch", "fp16", "aeb_app.inference.registry:_torch",
             options=(("cuda_graph", True),), description="PyTorch FP16 + CUDA Graph replay (CUDA)"),
        Mode("fp16_fused", "pytorch", "fp16", "aeb_app.inference.registry:_torch",
             options=(("cuda_graph", True), ("rewrites", _FUSED)),
             description="PyTorch FP16, BatchNorm folded, conv+bias+ReLU(+residual) as single cuDNN calls, "
                         "fused SSD heads, CUDA Graph replay (CUDA)"),
        Mode("fp16_compiled", "pytorch-compiled", "fp16", "aeb_app.inference.registry:_torch",
             options=_COMPILED,
             description="fp16_fused's network through torch.compile (Inductor fuses the rest; frozen weights) "
                         "+ CUDA Graph replay (CUDA); compiles per batch size on first use (~20 s), "
                         "kernels cached in engines/inductor"),
        Mode("bf16_compiled", "pytorch-compiled", "bf16", "aeb_app.inference.registry:_torch",
             options=_COMPILED,
             description="as fp16_compiled, in BF16 (CUDA)"),
        Mode("fp32_compiled", "pytorch-compiled", "fp32", "aeb_app.inference.registry:_torch",
             options=_COMPILED,
             description="torch.compile (Inductor) FP32 (CUDA or CPU), as fp16_compiled"),
        Mode("fp16_aoti", "pytorch-aoti", "fp16", "aeb_app.inference.run.compiled_backend:create",
             description="AOTInductor package, FP16 (CUDA), built once into engines/"),
        Mode("fp32_ort", "onnxruntime", "fp32", "aeb_app.inference.run.onnxrt_backend:create",
             description="ONNX Runtime FP32 (CPU, or CUDA provider if present)"),
        Mode("int8_ort", "onnxruntime", "int8", "aeb_app.inference.run.onnxrt_backend:create",
             description="ONNX Runtime on the INT8 Q/DQ model (CPU)"),
        # 8-bit GEMMs without TensorRT (aeb_app.inference.run.lowp): 1x1 convs in 8 bits, the rest BF16.
        Mode("fp8_gpu", "pytorch-lowp", "fp8", _LOWP, options=(("kernel", "gemm"),),
             description="FP8 e4m3 1x1 convs via torch._scaled_mm (CUDA, capability >= 8.9), rest BF16, "
                         "CUDA Graph; scales from the INT8 Q/DQ calibration"),
        Mode("int8_gpu", "pytorch-lowp", "int8", _LOWP, options=(("kernel", "gemm"),),
             description="INT8 1x1 convs via torch._int_mm (CUDA, capability >= 8.0), rest BF16, CUDA Graph"),
        Mode("fp8_sim", "pytorch-lowp", "fp8", _LOWP, options=(("kernel", "sim"),),
             description="fp8_gpu's arithmetic simulated with float matmuls (any device; for accuracy)"),
        Mode("int8_sim", "pytorch-lowp", "int8", _LOWP, options=(("kernel", "sim"),),
             description="int8_gpu's arithmetic simulated with float matmuls (any device; for accuracy)"),
    )
}

names.check_registry("mode", names.MODE_NAMES, MODES)

#: Default fallback order with a GPU: fastest first. Configurable (CLI --fallback, GUI settings).
DEFAULT_FALLBACK: tuple[str, ...] = defaults.GPU_FALLBACK
#: Default fallback order on a CPU-only machine (measured: docs/benchmarks/headless_cpu.md).
CPU_FALLBACK: tuple[str, ...] = defaults.CPU_FALLBACK


def default_fallback(device: str | None = None) -> tuple[str, ...]:
    """:data:`CPU_FALLBACK` for ``device="cpu"`` (or no GPU when None), else :data:`DEFAULT_FALLBACK`."""
    return defaults.fallback_order(device)


def default_device() -> str:
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"


def _torch(loaded: LoadedModel, mode: Mode, *, device: str | None = None, **options) -> Detector:
    from aeb_app.inference.run.torch_backend import TorchDetector

    device = device or default_device()
    options = {**dict(mode.options), **options}
    if not options.get("compile"):
        options.pop("engines_dir", None)  # eager PyTorch builds nothing
    return TorchDetector(loaded, precision=mode.precision, device=device, mode=mode.name, **options)


def get_mode(name: str) -> Mode:
    try:
        return MODES[name]
    except KeyError:
        raise BackendUnavailableError(f"unknown mode {name!r}; choose one of {', '.join(MODES)}") from None


def create(loaded: LoadedModel, mode_name: str, *, device: str | None = None,
           engines_dir: Path | None = None, **options) -> Detector:
    """Create (not yet activate) the detector for ``mode_name``.

    ``engines_dir`` (exports, engines, compile caches) defaults to :func:`aeb_app.defaults.engines_dir`,
    the per-user cache, never the current folder.

    Raises:
        BackendUnavailableError: unknown mode, or this machine lacks what it needs.
    """
    mode = get_mode(mode_name)
    module_name, func_name = mode.factory.split(":")
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as exc:
        raise BackendUnavailableError(f"{mode_name}: backend module {module_name} is unavailable ({exc})") from exc
    factory: Callable[..., Detector] = getattr(module, func_name)
    options["engines_dir"] = Path(engines_dir) if engines_dir is not None else defaults.engines_dir()
    return factory(loaded, mode, device=device, **options)


def create_with_fallback(loaded: LoadedModel, modes: Sequence[str], *, activate: bool = True,
                         **kwargs) -> Detector:
    """The first mode of ``modes`` that this machine can run.

    A mode is skipped when it is unavailable here (:class:`BackendUnavailableError`), its
    stored engine/package is refused (:class:`EngineLoadError`: corrupt, or built for another
    GPU or runtime), or, with ``activate`` (default), its ``activate()`` raises (e.g. TensorRT
    cannot deserialize the engine). The detector returned is then already active; use it in a
    ``with`` block as usual (``__enter__`` does not activate it twice).

    Skipping a mode is expected (a CPU machine has no TensorRT), so it is one INFO line naming the
    modes skipped; each reason is logged at DEBUG (``-v``).

    Raises:
        BackendUnavailableError: none of them can run (every reason is in the message).
    """
    reasons = []
    for name in modes:
        try:
            detector = create(loaded, name, **kwargs)
            if activate:
                _activate(detector)
        except (BackendUnavailableError, EngineLoadError) as exc:
            log.debug("mode %s unavailable (%s: %s)", name, type(exc).__name__, exc)
            reasons.append(f"{name}: {exc}")
            continue
        if reasons:
            skipped = ", ".join(r.split(":", 1)[0] for r in reasons)
            log.info("mode auto: using %s (unavailable here: %s; -v for why)", name, skipped)
        return detector
    raise BackendUnavailableError("no requested mode can run here: " + "; ".join(reasons))


#: Artifacts the run side may build on demand, kind -> "module:function(loaded, *, engines_dir, weights_hash)".
#: Only the ONNX export is cheap enough (seconds); engines, Q/DQ models and packages need an explicit command.
_BUILDERS = {"onnx": "aeb_app.inference.build.export:export_onnx"}


def build_artifact(kind: str, loaded: LoadedModel, *, engines_dir: Path, weights_hash: str | None = None) -> Path:
    """The one door from the run side to the build side: make a missing artifact now (logged).

    Raises:
        BackendUnavailableError: ``kind`` cannot be built on demand (the message names the command).
        EngineError: the build failed.
    """
    if kind not in _BUILDERS:
        raise BackendUnavailableError(f"no {kind} artifact for {loaded.spec.name} in {engines_dir}, and it is not "
                                      "built on demand: build it with its aeb-app command")
    log.info("no cached %s for %s in %s: building it now", kind, loaded.spec.name, engines_dir)
    module_name, func_name = _BUILDERS[kind].split(":")
    builder = getattr(importlib.import_module(module_name), func_name)
    return builder(loaded, engines_dir=engines_dir, weights_hash=weights_hash)


def _activate(detector: Detector) -> None:
    """``detector.__enter__()``; any error from the backend's ``activate()`` becomes an :class:`EngineLoadError`."""
    try:
        detector.__enter__()
    except Exception as exc:  # noqa: BLE001 - a backend may raise anything while loading its engine
        if isinstance(exc, EngineLoadError):
            raise
        raise EngineLoadError(f"activate() failed ({type(exc).__name__}: {exc})") from exc
