"""JPEG decoding on the GPU's hardware JPEG engines, through NVIDIA nvImageCodec (optional).

A100, H100 and H200 carry dedicated JPEG decoding engines (NVJPG) beside the SMs; torchvision's
``decode_jpeg(device="cuda")`` runs nvJPEG's CUDA kernels on the SMs instead, where they compete with the
network. nvImageCodec (``pip install nvidia-nvimgcodec-cu13 nvidia-nvjpeg`` for CUDA 13, ``-cu12`` for
CUDA 12) reaches the engines (backend ``HW_GPU_ONLY``), with its CUDA decoder (``GPU_ONLY``) for what the
engines do not take (progressive JPEGs, other formats). An image neither decodes goes to
:func:`~aeb_app.inference.run.gpu_frames.decode_images` (nvJPEG, then OpenCV), so results and errors are the
ones of the default path.

Used by :func:`~aeb_app.inference.run.gpu_frames.stream_jpeg_batches` with ``device_decoder="nvimgcodec"``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Callable, Sequence

from aeb_app.errors import BackendUnavailableError
from aeb_app.names import JPEG_DEVICE_DECODERS

if TYPE_CHECKING:
    import torch

__all__ = ["DEVICE_DECODERS", "check_nvimgcodec", "device_decoder"]

#: What decodes JPEGs on the device: torchvision's nvJPEG (SM kernels) or nvImageCodec (hardware engines).
DEVICE_DECODERS = JPEG_DEVICE_DECODERS

DeviceDecode = Callable[[Sequence[bytes], Sequence[str]], list["torch.Tensor"]]


def check_nvimgcodec():
    """The ``nvidia.nvimgcodec`` module.

    Raises:
        BackendUnavailableError: not installed (the message says what to install).
    """
    try:
        from nvidia import nvimgcodec
    except ImportError as exc:
        raise BackendUnavailableError(
            "device decoder nvimgcodec: nvImageCodec is not installed "
            "(pip install nvidia-nvimgcodec-cu13 nvidia-nvjpeg, or -cu12 for CUDA 12)") from exc
    return nvimgcodec


def device_decoder(name: str, device: "str | torch.device") -> DeviceDecode:
    """``(datas, names) -> RGB uint8 (3, H, W) tensors on device`` for ``name`` in :data:`DEVICE_DECODERS`.

    Raises:
        ValueError: an unknown name.
        BackendUnavailableError: ``nvimgcodec`` without the package (the message says what to install).
    """
    import torch

    from aeb_app.inference.run.gpu_frames import decode_images

    device = torch.device(device)
    if name == "nvjpeg":
        return lambda datas, names: decode_images(datas, device, names=names)
    if name != "nvimgcodec":
        raise ValueError(f"unknown device decoder {name!r} (expected one of {', '.join(DEVICE_DECODERS)})")
    nvimgcodec = check_nvimgcodec()
    kinds = (nvimgcodec.BackendKind.HW_GPU_ONLY, nvimgcodec.BackendKind.GPU_ONLY)
    decoder = nvimgcodec.Decoder(device_id=device.index or 0, backends=[nvimgcodec.Backend(k) for k in kinds])

    def decode(datas: Sequence[bytes], names: Sequence[str]) -> list["torch.Tensor"]:
        stream = torch.cuda.current_stream(device)
        images = decoder.decode([nvimgcodec.CodeStream(bytes(d)) for d in datas], cuda_stream=stream.cuda_stream)
        out: list = [None if im is None else torch.as_tensor(im, device=device).permute(2, 0, 1) for im in images]
        missing = [i for i, t in enumerate(out) if t is None]
        if missing:  # what the engines and nvImageCodec's CUDA decoder refused: the default path, errors included
            for i, tensor in zip(missing, decode_images([datas[i] for i in missing], device,
                                                        names=[names[i] for i in missing])):
                out[i] = tensor
        return out

    return decode
