"""The GPU-resident frame path: JPEG bytes (or frames already on the GPU) -> kept boxes on the host.

On a CUDA detector every step after the bytes stays on the device:

1. :func:`decode_images`: nvJPEG through ``torchvision.io.decode_jpeg(device="cuda")``, one batched
   call. A frame nvJPEG cannot decode (a PNG, an unsupported JPEG flavour) is decoded by OpenCV on
   the CPU and uploaded, with one log line for that frame; one the CPU cannot decode either raises.
2. :func:`resize_to_input`: resize to the network's input on the device, rounded to uint8 as the CPU
   path (:func:`aeb_app.model.preprocess.resize_frame`) does, then the shared
   :func:`~aeb_app.model.preprocess.normalize`. ``bilinear`` (OpenCV ``INTER_LINEAR``) maps to
   ``F.interpolate(mode="bilinear", align_corners=False)`` (the same half-pixel sampling; OpenCV uses
   11-bit fixed-point weights, so pixels differ by at most 1 LSB); ``bilinear_antialias`` (PIL's
   bilinear filter) maps to ``antialias=True``, torch's port of PIL's separable filter (PIL rounds
   its intermediate row pass to uint8, torch does not: at most 1-2 LSB).
3. The network (:meth:`TorchDetector.forward_normalized`), box decoding in the network's head.
4. :func:`kept_to_host`: threshold, per-class NMS and top-k for the whole batch
   (:func:`aeb_app.model.postprocess.select_flat`, the shared selection), then ONE device-to-host copy
   of the kept boxes of the batch, split per image on the host.

Host synchronisations per batch: the batched decode's own, the threshold compaction and
``batched_nms``'s internal one (shared with the CPU path, for identical results), and the final
copy. None per image.

Over many batches (COCO evaluation, the benchmark's throughput column) :func:`stream_jpeg_batches`
pipelines them: steps 1-2 of the next batch run on a side CUDA stream in their own thread while
steps 3-4 of the current one run, joined by a CUDA event.

A detector without a device path (ONNX Runtime, a CPU detector) gets the same call through the
host: frames are copied back and go through :meth:`Detector.infer`.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Iterable, Iterator, Sequence

import numpy as np

from aeb_app.errors import InputError
from aeb_app.model.postprocess import PostprocessConfig, select_flat, to_detections
from aeb_app.model.preprocess import normalize
from aeb_app.model.spec import ModelSpec
from aeb_app.names import GPU_RESIZE_METHODS
from aeb_app.types import Detections

if TYPE_CHECKING:
    import torch

    from aeb_app.inference.base import Detector

__all__ = ["decode_images", "host_decode", "resize_to_input", "kept_to_host", "infer_device_frames", "bgr_to_device",
           "RESIZE_TOLERANCE_LSB", "RESIZE_METHODS", "resize_weights", "DeviceBatch", "prepare_device_batch", "device_batch_from_u8", "finish_device_batch",
           "stream_jpeg_batches"]

log = logging.getLogger(__name__)

#: Largest per-pixel difference (uint8 levels) between :func:`resize_to_input` and the CPU resize,
#: by the spec's ``resize`` mode (see the module docstring).
RESIZE_TOLERANCE_LSB = {"bilinear": 1, "bilinear_antialias": 2}


def decode_images(datas: Sequence[bytes], device: "str | torch.device", *,
                  names: Sequence[str] | None = None) -> list["torch.Tensor"]:
    """Encoded images -> RGB uint8 (3, H, W) tensors on ``device``, in order.

    Args:
        datas: encoded files (JPEG for the GPU decoder; anything OpenCV reads via the fallback).
        device: ``cuda``/``cuda:N`` for nvJPEG; ``cpu`` decodes with OpenCV.
        names: for log lines and errors (default ``image <i>``).

    Raises:
        InputError: an image neither decoder can read (named).
    """
    import torch

    device = torch.device(device)
    names = list(names) if names is not None else [f"image {i}" for i in range(len(datas))]
    if device.type != "cuda":
        return [_cpu_decode(d, name, device) for d, name in zip(datas, names)]
    from torchvision.io import ImageReadMode, decode_jpeg

    encoded = [torch.frombuffer(bytearray(d), dtype=torch.uint8) for d in datas]
    try:
        return list(decode_jpeg(encoded, mode=ImageReadMode.RGB, device=device))
    except RuntimeError:
        pass  # one bad frame fails the batched call: decode one by one to find it
    out = []
    for data, tensor, name in zip(datas, encoded, names):
        try:
            out.append(decode_jpeg(tensor, mode=ImageReadMode.RGB, device=device))
        except RuntimeError as exc:
            log.warning("%s: GPU JPEG decoding failed (%s); decoded on the CPU", name,
                        str(exc).splitlines()[0][:120] if str(exc) else type(exc).__name__)
            out.append(_cpu_decode(data, name, device))
    return out


def host_decode(data: bytes, name: str) -> np.ndarray:
    """Encoded image -> BGR uint8 (H, W, 3) with OpenCV on the host.

    Raises:
        InputError: not decodable (``name`` and the byte count in the message).
    """
    import cv2

    image = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR) if len(data) else None
    if image is None:
        raise InputError(f"{name}: not a decodable image ({len(data)} bytes)")
    return image


def _cpu_decode(data: bytes, name: str, device) -> "torch.Tensor":
    return bgr_to_device(host_decode(data, name), device)


def bgr_to_device(frame_bgr: np.ndarray, device: "str | torch.device") -> "torch.Tensor":
    """A BGR uint8 (H, W, 3) host frame -> RGB uint8 (3, H, W) on ``device`` (one upload)."""
    import torch

    chw = torch.from_numpy(np.ascontiguousarray(frame_bgr)).to(device, non_blocking=True).permute(2, 0, 1)
    return chw.flip(0).contiguous()


#: How :func:`resize_to_input` resizes: ``interpolate`` (one ``F.interpolate`` call per distinct image
#: size) or ``matmul`` (the whole batch as ``Wy @ X @ Wx^T`` over a zero-padded batch, two batched
#: matrix products; the resize is linear and separable, and the weight matrices are ``F.interpolate``'s
#: own, taken from identity matrices). The two agree to float rounding (<= 1 uint8 level).
RESIZE_METHODS = GPU_RESIZE_METHODS


def resize_to_input(images: Sequence["torch.Tensor"], spec: ModelSpec, *,
                    method: str = "interpolate") -> "torch.Tensor":
    """RGB uint8 (3, H, W) tensors of any sizes -> (N, h, w, 3) uint8 at the spec's input size.

    Runs on the images' device (CPU works too). ``method``: one of :data:`RESIZE_METHODS`.
    """
    import torch

    for image in images:
        if image.dtype != torch.uint8 or image.ndim != 3 or image.shape[0] != 3:
            raise ValueError(f"expected RGB uint8 (3, H, W) tensors, got {image.dtype} {tuple(image.shape)}")
    if method not in RESIZE_METHODS:
        raise ValueError(f"unknown resize method {method!r} (expected one of {', '.join(RESIZE_METHODS)})")
    antialias = spec.resize == "bilinear_antialias"
    resized = (_resize_matmul if method == "matmul" else _resize_interpolate)(images, spec.input_hw, antialias)
    return resized.round_().clamp_(0, 255).to(torch.uint8).permute(0, 2, 3, 1)


def _resize_interpolate(images: Sequence["torch.Tensor"], out_hw: tuple[int, int],
                        antialias: bool) -> "torch.Tensor":
    """(N, 3, h, w) float32: same-size images resized in one ``F.interpolate`` call."""
    import torch
    import torch.nn.functional as F

    groups: dict[tuple[int, int], list[int]] = {}
    for i, image in enumerate(images):
        groups.setdefault(tuple(image.shape[1:]), []).append(i)
    if len(groups) == 1:
        return F.interpolate(torch.stack(list(images)).float(), size=out_hw, mode="bilinear", align_corners=False,
                             antialias=antialias)
    out = torch.empty((len(images), 3, *out_hw), dtype=torch.float32, device=images[0].device)
    for idx in groups.values():
        x = torch.stack([images[i] for i in idx]).float()
        resized = F.interpolate(x, size=out_hw, mode="bilinear", align_corners=False, antialias=antialias)
        for j, i in enumerate(idx):  # slice copies, no index tensor: a CUDA Graph can capture them
            out[i].copy_(resized[j])
    return out


_WEIGHTS: dict[tuple, "torch.Tensor"] = {}


def resize_weights(n_in: int, n_out: int, padded: int, antialias: bool, device) -> "torch.Tensor":
    """(n_out, padded) float32: row i holds the weights of the input samples of output sample i along
    one axis (zero beyond ``n_in``), exactly as ``F.interpolate(mode="bilinear", align_corners=False,
    antialias=antialias)`` weighs them (its response to each unit impulse). Cached per arguments."""
    import torch
    import torch.nn.functional as F

    key = (n_in, n_out, padded, antialias, str(device))
    if key not in _WEIGHTS:
        impulses = torch.eye(n_in, dtype=torch.float32, device=device).view(n_in, 1, 1, n_in)
        rows = F.interpolate(impulses, size=(1, n_out), mode="bilinear", align_corners=False, antialias=antialias)
        weights = torch.zeros((n_out, padded), dtype=torch.float32, device=device)
        weights[:, :n_in] = rows.view(n_in, n_out).t()
        _WEIGHTS[key] = weights
    return _WEIGHTS[key]


def _resize_matmul(images: Sequence["torch.Tensor"], out_hw: tuple[int, int], antialias: bool) -> "torch.Tensor":
    """(N, 3, h, w) float32: ``Wy @ X @ Wx^T`` for the whole batch, zero-padded to its largest image."""
    import torch

    device = images[0].device
    pad_h = max(int(im.shape[1]) for im in images)
    pad_w = max(int(im.shape[2]) for im in images)
    x = torch.zeros((len(images), 3, pad_h, pad_w), dtype=torch.float32, device=device)
    for i, image in enumerate(images):
        x[i, :, :image.shape[1], :image.shape[2]] = image  # the copy casts to float
    wy = torch.stack([resize_weights(int(im.shape[1]), out_hw[0], pad_h, antialias, device) for im in images])
    wx = torch.stack([resize_weights(int(im.shape[2]), out_hw[1], pad_w, antialias, device) for im in images])
    # fp32 products at the process's matmul precision: full fp32 unless someone enabled TF32 (not toggled here:
    # a global flag flipped on the preparing thread would race with the network's thread).
    return torch.matmul(torch.matmul(wy[:, None], x), wx.transpose(1, 2)[:, None])


def kept_to_host(boxes: "torch.Tensor", scores: "torch.Tensor", spec: ModelSpec,
                 frame_hws: Sequence[tuple[int, int]], config: PostprocessConfig) -> list[Detections]:
    """Decoded batch outputs on the device -> one :class:`Detections` per frame, with one copy.

    The same selection as :func:`aeb_app.model.postprocess.postprocess`, but the kept boxes of the
    whole batch cross to the host in one tensor and are split per image there.
    """
    import torch

    from aeb_app.model.postprocess import _class_ids

    kept = select_flat(boxes, scores, _class_ids(spec, scores.device), config)
    packed = torch.cat([kept.image_index.float()[:, None], kept.boxes, kept.scores[:, None],
                        kept.category_ids.float()[:, None], kept.within_top_k.float()[:, None]], dim=1)
    host = packed.cpu().numpy()  # the one device-to-host copy (and the wait for the batch)
    host = host[host[:, 7] > 0]
    img = host[:, 0].astype(np.int64)
    return [to_detections(host[img == i, 1:5], host[img == i, 5], host[img == i, 6].astype(np.int64), hw)
            for i, hw in enumerate(frame_hws)]


@dataclass
class DeviceBatch:
    """A batch ready for the network: normalised input on the device, and its frames' sizes.

    ``ready`` is a CUDA event recorded on the stream that prepared ``x`` (None: prepared on the
    stream that will run the network).
    """

    x: "torch.Tensor"
    frame_hws: list[tuple[int, int]]
    ready: object | None = None


def prepare_device_batch(detector: "Detector", images: Sequence["torch.Tensor"], *,
                         resize: str = "interpolate") -> DeviceBatch:
    """Resize (``resize``: one of :data:`RESIZE_METHODS`) + normalise RGB uint8 (3, H, W) device tensors
    into the detector's input layout."""
    return device_batch_from_u8(detector, resize_to_input(images, detector.spec, method=resize),
                                [(int(im.shape[1]), int(im.shape[2])) for im in images])


def device_batch_from_u8(detector: "Detector", batch_u8: "torch.Tensor",
                         frame_hws: Sequence[tuple[int, int]]) -> DeviceBatch:
    """(N, h, w, 3) RGB uint8 at the input size on the device -> normalised, in the detector's layout."""
    import torch

    dtype, channels_last = detector.device_input()
    x = normalize(batch_u8, detector.spec, dtype=dtype)
    if channels_last:
        x = x.contiguous(memory_format=torch.channels_last)
    return DeviceBatch(x, list(frame_hws))


def finish_device_batch(detector: "Detector", batch: DeviceBatch, config: PostprocessConfig) -> list[Detections]:
    """Network, box decoding, NMS of a prepared batch on the current stream; one copy of the kept boxes."""
    import torch

    if batch.ready is not None:
        stream = torch.cuda.current_stream(batch.x.device)
        stream.wait_event(batch.ready)
        batch.x.record_stream(stream)  # allocated on the preparing stream, used on this one
    boxes, scores = detector.forward_normalized(batch.x)
    return kept_to_host(boxes, scores, detector.spec, batch.frame_hws, config)


def infer_device_frames(detector: "Detector", images: Sequence["torch.Tensor"],
                        config: PostprocessConfig) -> list[Detections]:
    """:meth:`Detector.infer_tensors`: RGB uint8 (3, H, W) tensors -> detections in their pixels.

    Runs on the device when the detector has a device path (:meth:`Detector.device_input`), else
    through the host and :meth:`Detector.infer`.
    """
    from aeb_app.inference.base import InferTimes

    if not images:
        return []
    if detector.device_input() is None or not images[0].is_cuda:
        frames = [im.permute(1, 2, 0).flip(2).cpu().numpy() for im in images]
        return detector.infer(frames, config)
    graph = detector.frame_graph([tuple(im.shape) for im in images], config)
    if graph is not None:
        t0 = time.perf_counter()
        dets = graph(images)
        # One host interval: the input copies, the replay, the wait for the device and the unpacking.
        detector.last_times = InferTimes(0.0, (time.perf_counter() - t0) * 1e3, 0.0)
        return dets
    t0 = time.perf_counter()
    batch = prepare_device_batch(detector, images)
    t1 = time.perf_counter()
    boxes, scores = detector.forward_normalized(batch.x)
    t2 = time.perf_counter()
    dets = kept_to_host(boxes, scores, detector.spec, batch.frame_hws, config)
    # Host clock: the first two are launch times (the device runs ahead); the last one waits for it all.
    detector.last_times = InferTimes((t1 - t0) * 1e3, (t2 - t1) * 1e3, (time.perf_counter() - t2) * 1e3)
    return dets


def stream_jpeg_batches(detector: "Detector", batches: Iterable[Sequence[bytes]],
                        config: PostprocessConfig, *, names: Iterable[Sequence[str]] | None = None,
                        capacity: int = 2, resize: str = "interpolate", decode: str = "gpu",
                        host_threads: int | None = None, device_decoder: str = "nvjpeg") -> Iterator[list[Detections]]:
    """The GPU path over many batches, pipelined: one :class:`Detections` list per batch, in order.

    A thread decodes (nvJPEG), resizes and normalises batch i+1 on its own CUDA stream while
    another runs batch i's network, NMS and copy on the detector's (the default) stream, joined by
    a CUDA event per batch, so decoding overlaps the network instead of adding to it. At most
    ``capacity`` prepared batches wait (bounded memory); a failure in either stage ends the
    iteration with that error (:func:`aeb_app.stages.run_stages`; batches still in flight are not
    delivered). Results equal
    :meth:`Detector.infer_tensors` on each batch (to float rounding on the GPU). Two threads, not three:
    a separate decoding thread was measured slower on the H200 (GIL hand-offs between three Python
    threads; docs/benchmarks/gpu_frame_path.md). A detector without a device path gets the batches
    decoded on the CPU and run through :meth:`Detector.infer`, in series. ``resize``: one of
    :data:`RESIZE_METHODS`. ``decode``: one of :data:`~aeb_app.inference.run.split_decode.DECODE_PLACES`
    (``host``/``split``: ``host_threads`` host threads decode beside or instead of the device,
    :mod:`aeb_app.inference.run.split_decode`). ``device_decoder``: what decodes on the device, one of
    :data:`~aeb_app.inference.run.hardware_jpeg.DEVICE_DECODERS` (``nvimgcodec``: the hardware JPEG engines).
    """
    from aeb_app.inference.run.split_decode import DECODE_PLACES

    if decode not in DECODE_PLACES:
        raise ValueError(f"unknown decode place {decode!r} (expected one of {', '.join(DECODE_PLACES)})")
    from aeb_app.stages import Stage, run_stages

    device = detector.info.device
    names_iter = iter(names) if names is not None else None
    if detector.device_input() is None or not str(device).startswith("cuda"):
        for datas in batches:
            detector.check_batch(len(datas))
            images = decode_images(datas, "cpu", names=next(names_iter) if names_iter else None)
            yield detector.infer([im.permute(1, 2, 0).flip(2).numpy() for im in images], config)
        return
    import torch

    from aeb_app.inference.run.hardware_jpeg import device_decoder as make_decoder
    from aeb_app.inference.run.split_decode import HostDecoders, decode_split

    side: list = []  # the preparing thread's stream, made in that thread on first use
    gpu_decode = make_decoder(device_decoder, device)  # before any thread: an unavailable decoder fails here
    host = HostDecoders(host_threads) if decode != "gpu" else None

    def to_device(datas: Sequence[bytes], batch_names: Sequence[str] | None) -> DeviceBatch:
        if host is None and device_decoder == "nvjpeg":
            return prepare_device_batch(detector, decode_images(datas, device, names=batch_names), resize=resize)
        batch_names = batch_names or [f"image {i}" for i in range(len(datas))]
        u8, hws, _ = decode_split(datas, batch_names, detector.spec, device, host, use_gpu=decode != "host",
                                  gpu_decode=gpu_decode)
        return device_batch_from_u8(detector, u8, hws)

    def prepare(item: tuple[Sequence[bytes], Sequence[str] | None]) -> DeviceBatch:
        datas, batch_names = item
        detector.check_batch(len(datas))
        with torch.cuda.device(device):
            if not side:
                side.append(torch.cuda.Stream(device))
            with torch.cuda.stream(side[0]):
                batch = to_device(datas, batch_names)
                batch.ready = torch.cuda.Event()
                batch.ready.record(side[0])
        return batch

    def finish(batch: DeviceBatch) -> list[Detections]:
        with torch.cuda.device(device):
            return finish_device_batch(detector, batch, config)

    source = ((datas, next(names_iter) if names_iter else None) for datas in batches)
    try:
        yield from run_stages(source, [Stage("decode+resize", prepare), Stage("network+nms", finish)],
                              capacity=capacity)
    finally:
        if host is not None:
            host.close()
