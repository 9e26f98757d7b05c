"""Machine fingerprint, device peak rates, and counted FLOPs: the context every figure needs."""

from __future__ import annotations

import os
import platform
import subprocess
from functools import lru_cache

#: Dense peak rates in TFLOP/s (TOPS for int8) from vendor datasheets, keyed by a name fragment.
#: "fp32" is plain FP32 (CUDA cores); "tf32" the tensor-core FP32 mode. Used only to flag
#: physically impossible results and to express achieved throughput as a share of peak.
DEVICE_PEAKS: dict[str, dict[str, float]] = {
    "H200": {"fp32": 67.0, "tf32": 495.0, "fp16": 989.0, "bf16": 989.0, "int8": 1979.0},
    "H100": {"fp32": 67.0, "tf32": 495.0, "fp16": 989.0, "bf16": 989.0, "int8": 1979.0},
    "A100": {"fp32": 19.5, "tf32": 156.0, "fp16": 312.0, "bf16": 312.0, "int8": 624.0},
    # The seed study's card (Pascal GP107): no tensor cores, FP16 at 1/64 rate, INT8 via DP4A.
    "GTX 1050 Ti": {"fp32": 2.14, "tf32": 2.14, "fp16": 0.033, "bf16": 0.0, "int8": 8.5},
}


def peak_tflops(device_name: str, precision: str, *, tf32: bool) -> float | None:
    """Datasheet peak for ``precision`` on ``device_name`` (None when the device is not in the table)."""
    key = "tf32" if precision == "fp32" and tf32 else precision
    for fragment, peaks in DEVICE_PEAKS.items():
        if fragment.lower() in device_name.lower():
            return peaks.get(key)
    return None


def sanity_check(flops_per_image: float | None, fps: float | None, peak: float | None) -> str:
    """'ok', 'unknown', or 'IMPOSSIBLE: ...' when throughput needs more than the device's peak."""
    if not flops_per_image or not fps or not peak:
        return "unknown"
    achieved = flops_per_image * fps / 1e12
    if achieved > peak:
        return (f"IMPOSSIBLE: {achieved:.1f} TFLOP/s needed, device peak {peak:.1f} "
                f"(likely unsynchronised timing)")
    return "ok"


@lru_cache(maxsize=8)
def count_flops(model_name: str, weights: str = "auto") -> float:
    """FLOPs per 300x300 image of the network (2 per multiply-add), counted by PyTorch."""
    import torch
    from torch.utils.flop_counter import FlopCounterMode

    from aeb_app.model.registry import load_model

    loaded = load_model(model_name, "random" if model_name == "ssd300_resnet50" else weights)
    h, w = loaded.spec.input_hw
    counter = FlopCounterMode(display=False)
    with counter, torch.inference_mode():
        loaded.network(torch.zeros(1, 3, h, w))
    return float(counter.get_total_flops())


def _run(cmd: list[str]) -> str:
    try:
        return subprocess.run(cmd, capture_output=True, text=True, timeout=10).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return ""


def fingerprint() -> dict:
    """GPU, driver, CUDA, cuDNN, torch, TensorRT, ONNX Runtime versions and the CPU."""
    import torch

    info: dict = {
        "python": platform.python_version(), "torch": torch.__version__,
        "cpu": _cpu_name(), "cpu_count": os.cpu_count(), "platform": platform.platform(),
        "torch_threads": torch.get_num_threads(),
    }
    if torch.cuda.is_available():
        props = torch.cuda.get_device_properties(0)
        info.update(gpu=props.name, compute_capability=f"{props.major}.{props.minor}",
                    gpu_memory_gb=round(props.total_memory / 2**30, 1), cuda=torch.version.cuda,
                    cudnn=torch.backends.cudnn.version(),
                    driver=_run(["nvidia-smi", "--query-gpu=driver_version", "--format=csv,noheader"]) or None)
    else:
        info.update(gpu=None, driver=None, cuda=None)
    for module in ("tensorrt", "onnxruntime", "torch2trt"):
        info[module] = _version(module)
    return info


def _version(module: str) -> str | None:
    from importlib import metadata

    try:
        return metadata.version(module)
    except metadata.PackageNotFoundError:
        return None


def _cpu_name() -> str:
    try:
        for line in open("/proc/cpuinfo", encoding="utf-8"):
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"
