"""The lazy ``import tensorrt``, version helpers, tensor names and :func:`machine_info`, shared by the
TensorRT builder (:mod:`aeb_app.inference.build.trt_build`) and runtime (:mod:`aeb_app.inference.run.tensorrt_backend`).

Written for TensorRT 10.13.2+ (the first release with CUDA 13 wheels, ``tensorrt-cu13``,
matching the default ``torch`` +cu130 build) and TensorRT 11; never run here (TensorRT
cannot be installed on these machines, see docs/nvidia-setup.md).
"""

from __future__ import annotations

from aeb_app.errors import BackendUnavailableError
from aeb_app.inference.artifacts import MachineInfo

#: Engine I/O tensor names (the ONNX export's names).
INPUT_NAME = "images"
OUTPUT_NAMES = ("boxes", "scores")

#: One CUDA runtime per process: the TensorRT wheel must match torch's CUDA major (torch +cu130 -> cu13).
INSTALL_HINT = ("TensorRT is not installed: pip install --extra-index-url https://pypi.nvidia.com "
                "'tensorrt-cu13>=10.13.2,<12' (CUDA 13 wheels, matching torch +cu130) on a machine with an "
                "NVIDIA GPU and driver R580+ (see docs/nvidia-setup.md)")


def import_trt():
    """``import tensorrt`` or a :class:`BackendUnavailableError` saying how to install it."""
    try:
        import tensorrt as trt
    except ImportError as exc:
        raise BackendUnavailableError(f"{INSTALL_HINT} ({exc})") from exc
    return trt


def trt_major(trt) -> int:
    """Major version of the imported TensorRT (``"10.3.0"`` -> 10)."""
    return int(str(trt.__version__).split(".")[0])


def machine_info() -> MachineInfo:
    """TensorRT version + current CUDA GPU name and compute capability."""
    import torch

    trt = import_trt()
    if not torch.cuda.is_available():
        raise BackendUnavailableError("TensorRT needs a CUDA GPU; torch.cuda.is_available() is False")
    major, minor = torch.cuda.get_device_capability()
    return MachineInfo(trt.__version__, torch.cuda.get_device_name(), f"{major}.{minor}")
