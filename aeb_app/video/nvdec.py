"""Video files decoded by NVIDIA's NVDEC through PyNvVideoCodec (the optional ``[nvdec]`` extra).

:class:`NvdecVideoSource` has :class:`~aeb_app.video.VideoSource`'s interface and behaviour (validation,
failed and implausible frames, seeking, looping): it *is* a ``VideoSource`` whose capture object
decodes on the GPU. Its frames are :class:`GpuVideoFrame` values: ``image`` is the usual BGR host
frame (drawing and the plausibility checks need it; one device-to-host copy, the colour swap done on
the GPU) and ``device_image`` the same frame as an RGB uint8 (3, H, W) CUDA tensor, which
:meth:`Detector.infer_tensors` takes without another upload.

:func:`prefer_nvdec` is the front door's hook: for a file and a CUDA detector it swaps the OpenCV
source for this one; without PyNvVideoCodec (or when NVDEC cannot open the file) it keeps OpenCV and
says so in one INFO line. ``AEB_APP_VIDEO_DECODER=opencv`` keeps OpenCV on purpose.
"""

from __future__ import annotations

import contextlib
import logging
import os
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any

import cv2

from aeb_app.errors import InputError
from aeb_app.video.reader import VideoFrame, VideoSource

__all__ = ["GpuVideoFrame", "NvdecVideoSource", "prefer_nvdec", "nvdec_module"]

log = logging.getLogger(__name__)

#: Frames decoded per call to the decoder (NVDEC keeps several in flight).
DECODE_BATCH = 8


@dataclass(frozen=True)
class GpuVideoFrame(VideoFrame):
    """A :class:`VideoFrame` that also lives on the GPU.

    Attributes:
        device_image: RGB uint8 (3, H, W) CUDA tensor of ``image``, or None when decoding failed.
    """

    device_image: Any = None


@lru_cache(maxsize=1)
def nvdec_module():
    """PyNvVideoCodec, imported once; None (with one INFO line) when it is not installed or fails to load."""
    try:
        import PyNvVideoCodec as nvc  # noqa: N813
    except (ImportError, OSError) as exc:  # OSError: the wheel is there but libnvcuvid is not
        log.info("PyNvVideoCodec unavailable (%s): decoding video with OpenCV; pip install 'aeb_app[nvdec]' "
                 "for NVDEC", str(exc).splitlines()[0] if str(exc) else type(exc).__name__)
        return None
    return nvc


class _NvdecCapture:
    """The subset of ``cv2.VideoCapture`` that :class:`VideoSource` uses, on top of NVDEC."""

    def __init__(self, path: Path, device) -> None:
        import torch

        nvc = nvdec_module()
        if nvc is None:
            raise InputError(f"{path}: NVDEC unavailable (PyNvVideoCodec is not installed)")
        self._torch = torch
        self._device = torch.device(device)
        options = dict(gpu_id=self._device.index or 0, use_device_memory=True,
                       output_color_type=nvc.OutputColorType.RGB)
        try:  # decode on torch's current stream: the frames are ready for kernels queued after them
            stream = torch.cuda.current_stream(self._device).cuda_stream
            self._decoder = nvc.SimpleDecoder(str(path), cuda_stream=stream, **options)
            self._own_stream = False
        except TypeError:  # a binding that takes only its own stream objects: synchronise per batch instead
            self._decoder = nvc.SimpleDecoder(str(path), **options)
            self._own_stream = True
        meta = self._decoder.get_stream_metadata()
        self._fps = float(getattr(meta, "average_fps", 0.0) or 0.0)
        self._count = len(self._decoder)
        self._size = (int(meta.height), int(meta.width))
        self._next = 0
        self._buffer: list = []
        self.last_device = None

    def isOpened(self) -> bool:  # noqa: N802 - cv2.VideoCapture's name
        return self._decoder is not None

    def get(self, prop: int) -> float:
        if prop == cv2.CAP_PROP_FPS:
            return self._fps
        if prop == cv2.CAP_PROP_FRAME_COUNT:
            return float(self._count)
        if prop == cv2.CAP_PROP_POS_MSEC and self._fps > 0:  # the last frame read (the reader numbers frames by it)
            return (self._next - 1) * 1000.0 / self._fps
        return 0.0

    def set(self, prop: int, value: float) -> bool:
        if prop != cv2.CAP_PROP_POS_FRAMES:
            return False
        self._decoder.seek_to_index(int(value))
        self._next, self._buffer = int(value), []
        return True

    def release(self) -> None:
        self._decoder, self._buffer = None, []

    def read(self):
        """``(ok, BGR host frame)``; the frame's RGB (3, H, W) CUDA tensor is kept in ``last_device``."""
        if not self._buffer:
            if self._next >= self._count:
                return False, None
            try:
                self._buffer = self._decode()
            except Exception as exc:  # noqa: BLE001 - the binding raises plain Exceptions; a failed frame, not a crash
                log.debug("NVDEC failed at frame %d: %s", self._next, exc)
                self._next += 1  # the source counts it as failed; go on with the next one
                if self._next < self._count:
                    self._decoder.seek_to_index(self._next)
                return False, None
            if not self._buffer:
                return False, None
        rgb = self._buffer.pop(0)
        self._next += 1
        self.last_device = rgb.permute(2, 0, 1)
        return True, rgb.flip(2).cpu().numpy()  # BGR swap on the GPU, one copy

    def _decode(self) -> list:
        """The next frames (up to :data:`DECODE_BATCH`) as (H, W, 3) RGB CUDA tensors of our own."""
        h, w = self._size
        frames = self._decoder.get_batch_frames(DECODE_BATCH)
        # Own copies: the decoder reuses its surfaces.
        out = [self._torch.from_dlpack(f).reshape(h, w, 3).clone() for f in frames]
        if self._own_stream:
            self._torch.cuda.synchronize(self._device)  # the decoder's own stream has finished
        return out


class NvdecVideoSource(VideoSource):
    """:class:`VideoSource` over NVDEC (files only).

    Args:
        source: video file path.
        device: the CUDA device to decode on (``cuda`` or ``cuda:N``).
        loop / check_frames: as :class:`VideoSource`.

    Raises:
        InputError: on :meth:`open`, as :class:`VideoSource`; also when PyNvVideoCodec is missing or NVDEC
            cannot decode the file.
    """

    def __init__(self, source: str | os.PathLike[str], *, device: str = "cuda", fps: float | None = None,
                 loop: bool = False, check_frames: bool = True) -> None:
        super().__init__(source, fps=fps, loop=loop, check_frames=check_frames)
        if isinstance(self.source, int) or Path(self.source).is_dir():
            raise InputError(f"{self.name}: NVDEC decodes video files only")
        self.device = device

    def _open_file(self, path: Path) -> Any:
        super()._open_file(path).release()  # the same up-front checks and messages as OpenCV's source
        try:
            return _NvdecCapture(path, self.device)
        except Exception as exc:  # noqa: BLE001 - any NVDEC failure means "use OpenCV"
            raise InputError(f"{path}: NVDEC cannot decode this file ({str(exc).splitlines()[0][:160]})") from exc

    def read(self) -> VideoFrame | None:
        frame = super().read()
        if frame is None or frame.image is None:
            return frame
        return GpuVideoFrame(frame.index, frame.timestamp_s, frame.image, frame.decode_ms, frame.error,
                             device_image=self._cap.last_device)


def prefer_nvdec(source: VideoSource, device: str, stack: contextlib.ExitStack) -> VideoSource:
    """The front door's hook: an open NVDEC source for ``source``'s file when ``device`` is CUDA.

    Returns ``source`` itself (still open) for a camera, a CPU device, ``AEB_APP_VIDEO_DECODER=opencv``,
    or when NVDEC is unavailable or cannot open the file (one INFO line says why); otherwise closes it
    and returns the NVDEC source, registered on ``stack``.
    """
    if (not str(device).startswith("cuda") or isinstance(source.source, int) or isinstance(source, NvdecVideoSource)
            or Path(source.source).is_dir()):
        return source  # a camera, a CPU detector, a folder of frames (decoded one image at a time)
    if os.environ.get("AEB_APP_VIDEO_DECODER", "").lower() == "opencv" or nvdec_module() is None:
        return source
    gpu = NvdecVideoSource(source.source, device=device, fps=source.fps, loop=source.loop,
                           check_frames=source._check is not None)
    try:
        stack.enter_context(gpu)
    except InputError as exc:
        log.info("%s; decoding with OpenCV", exc)
        return source
    if gpu.info.size_wh != source.info.size_wh:
        log.info("%s: NVDEC frame size %s differs from OpenCV's %s; decoding with OpenCV", source.name,
                 gpu.info.size_wh, source.info.size_wh)
        gpu.close()
        return source
    source.close()
    log.info("%s: decoding on the GPU with NVDEC", source.name)
    return gpu
