"""JPEG batches decoded by host threads and the GPU at once, into one network input on the device.

On a GPU machine nvJPEG's decoding kernels take the same SMs the network needs: at SSD300 batch 64 on
the H200 decoding and resizing the batch on the GPU cost about as much GPU time as the network itself
(docs/benchmarks/h200/pending_1205b/). The host's cores are idle meanwhile. This module shares each
batch between the two, the way a work-stealing queue does, so neither side needs a tuned ratio:

- host threads (:class:`HostDecoders`) claim images from the front of the batch, decode them with
  OpenCV and resize them with the CPU path's own :func:`~aeb_app.model.preprocess.resize_frame`
  (so those images are the CPU path's bytes exactly), into a pinned host buffer;
- the preparing thread claims chunks of :data:`GPU_CHUNK` images from the back, decodes them on the
  device (nvJPEG, or the hardware JPEG engines: :mod:`aeb_app.inference.run.hardware_jpeg`) and resizes
  them there (:func:`~aeb_app.inference.run.gpu_frames.resize_to_input`), waiting for its own stream
  after each chunk so it claims only what the GPU actually keeps up with;
- when the claims meet, the host rows go up in one copy and the batch is assembled in order.

Decode place ``host`` leaves the GPU only the network (no decoding there at all); ``gpu`` is the all-GPU path.
Which wins depends on the machine's cores and GPU; ``scripts/gpu_e2e.py`` measures all three.
"""

from __future__ import annotations

import os
import threading
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import TYPE_CHECKING, Sequence

import numpy as np

from aeb_app.model.spec import ModelSpec
from aeb_app.names import JPEG_DECODE_PLACES

if TYPE_CHECKING:
    import torch

    from aeb_app.inference.run.hardware_jpeg import DeviceDecode

__all__ = ["DECODE_PLACES", "GPU_CHUNK", "Claims", "HostDecoders", "SplitStats", "decode_split",
           "default_host_threads"]

#: Where :func:`~aeb_app.inference.run.gpu_frames.stream_jpeg_batches` decodes a batch: ``gpu`` (the device
#: for all of it), ``host`` (host threads for all of it), ``split`` (both at once, work-stealing).
DECODE_PLACES = JPEG_DECODE_PLACES

#: Images nvJPEG claims at a time in ``split``: small enough that the last chunk does not leave the host
#: threads idle for long, large enough that nvJPEG's batched call pays off.
GPU_CHUNK = 8


def default_host_threads() -> int:
    """Host decoding threads: every core but two (the network's launching thread and the main thread)."""
    return max(1, (os.cpu_count() or 1) - 2)


class Claims:
    """Indices 0..n-1 handed out once each: single images from the front, chunks from the back."""

    def __init__(self, n: int):
        self._front, self._back = 0, n
        self._lock = threading.Lock()

    def front(self) -> int | None:
        with self._lock:
            if self._front >= self._back:
                return None
            self._front += 1
            return self._front - 1

    def back(self, k: int) -> range | None:
        with self._lock:
            if self._front >= self._back:
                return None
            start = max(self._front, self._back - k)
            claimed, self._back = range(start, self._back), start
            return claimed


def _decode_resize(data: bytes, name: str, spec: ModelSpec) -> tuple[np.ndarray, tuple[int, int]]:
    """One encoded image -> (RGB uint8 at the network's input size, exactly as the CPU path makes it;
    the image's own (height, width))."""
    from aeb_app.inference.run.gpu_frames import host_decode
    from aeb_app.model.preprocess import resize_frame

    image = host_decode(data, name)
    return resize_frame(image, spec), (int(image.shape[0]), int(image.shape[1]))


class HostDecoders:
    """A pool of host threads for :func:`decode_split` (OpenCV and PIL release the GIL while they work)."""

    def __init__(self, threads: int | None = None):
        self.threads = threads if threads is not None else default_host_threads()
        if self.threads < 1:
            raise ValueError(f"host decoding threads must be at least 1, not {self.threads}")
        self._pool = ThreadPoolExecutor(self.threads, thread_name_prefix="jpeg-host")

    def run(self, claims: Claims, datas: Sequence[bytes], names: Sequence[str], spec: ModelSpec,
            out: np.ndarray, hws: list) -> list:
        """Start every thread claiming from the front of ``claims`` into ``out`` (and the image sizes into
        ``hws``); the futures return the indices each decoded."""
        def work() -> list[int]:
            done = []
            while (i := claims.front()) is not None:
                out[i], hws[i] = _decode_resize(datas[i], names[i], spec)
                done.append(i)
            return done

        return [self._pool.submit(work) for _ in range(self.threads)]

    def close(self) -> None:
        self._pool.shutdown(wait=True)


@dataclass(frozen=True)
class SplitStats:
    """How a batch was shared: images decoded by the host threads and on the device."""

    host: int
    gpu: int


def decode_split(datas: Sequence[bytes], names: Sequence[str], spec: ModelSpec, device: "str | torch.device",
                 host: HostDecoders | None, *, use_gpu: bool = True, gpu_chunk: int = GPU_CHUNK,
                 gpu_decode: "DeviceDecode | None" = None) -> tuple["torch.Tensor", list[tuple[int, int]], SplitStats]:
    """Encoded images -> ((N, h, w, 3) RGB uint8 at the network's input size on ``device``, in order;
    each image's own (height, width); how the batch was shared).

    ``host`` None: the device decodes everything (in one call); ``use_gpu`` False: the host threads do.
    ``gpu_decode``: the device side's decoder (:func:`~aeb_app.inference.run.hardware_jpeg.device_decoder`;
    default nvJPEG through :func:`~aeb_app.inference.run.gpu_frames.decode_images`). Runs
    on the current CUDA stream (or on the CPU, where the "GPU" side is the device path's CPU fallback,
    which is how the CPU-only tests exercise the sharing).

    Raises:
        InputError: an image neither decoder can read (named).
    """
    import torch

    from aeb_app.inference.run.gpu_frames import resize_to_input
    from aeb_app.inference.run.hardware_jpeg import device_decoder

    n, (h, w) = len(datas), spec.input_hw
    device = torch.device(device)
    gpu_decode = gpu_decode or device_decoder("nvjpeg", device)
    gpu_chunk = gpu_chunk if host is not None else max(n, 1)
    claims = Claims(n)
    on_cuda = device.type == "cuda"
    host_rows = torch.empty((n, h, w, 3), dtype=torch.uint8, pin_memory=on_cuda)
    hws: list = [None] * n
    futures = host.run(claims, datas, names, spec, host_rows.numpy(), hws) if host is not None else []
    batch = torch.empty((n, h, w, 3), dtype=torch.uint8, device=device)
    gpu_count = 0
    try:
        while (use_gpu or host is None) and (chunk := claims.back(gpu_chunk)) is not None:
            images = gpu_decode([datas[i] for i in chunk], [names[i] for i in chunk])
            batch[chunk.start:chunk.stop] = resize_to_input(images, spec)
            hws[chunk.start:chunk.stop] = [(int(im.shape[1]), int(im.shape[2])) for im in images]
            gpu_count += len(chunk)
            if on_cuda:
                torch.cuda.current_stream(device).synchronize()  # claim only what the GPU keeps up with
    finally:
        done = sorted(i for f in futures for i in f.result())  # re-raises a host thread's error
    if done:
        index = torch.tensor(done, device=device)
        batch.index_copy_(0, index, host_rows.to(device, non_blocking=True).index_select(0, index))
    return batch, hws, SplitStats(host=len(done), gpu=gpu_count)
