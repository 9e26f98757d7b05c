"""The one small interface every inference backend implements.

Shaped like Polygraphy's runners: a context manager whose ``activate`` loads what is heavy
(weights to the device, an engine, a session) once, and whose ``infer`` only moves data.
Pre-processing (:mod:`aeb_app.model.preprocess`) and post-processing
(:mod:`aeb_app.model.postprocess`) are shared, so backends cannot drift apart: a backend
implements just :meth:`Detector.run_decoded` (uint8 batch in, decoded tensors out).
"""

from __future__ import annotations

import abc
import dataclasses
import time
from dataclasses import dataclass, field
from typing import Callable, Sequence

import numpy as np
import numpy.typing as npt

from aeb_app.errors import EngineError
from aeb_app.model.postprocess import PostprocessConfig, postprocess
from aeb_app.model.preprocess import resize_batch
from aeb_app.model.spec import ModelSpec
from aeb_app.model.tiling import NO_TILING, merge_tiles, plan_tiles
from aeb_app.types import Detections


@dataclass
class InferTimes:
    """Milliseconds spent in the last :meth:`Detector.infer` call, by stage."""

    preprocess_ms: float = 0.0
    inference_ms: float = 0.0
    postprocess_ms: float = 0.0


@dataclass
class DetectorInfo:
    """What a detector is, for HUDs, logs and benchmark rows."""

    mode: str
    backend: str
    precision: str
    device: str
    model: str
    max_batch: int | None = None
    notes: dict = field(default_factory=dict)


class Detector(abc.ABC):
    """Base of all backends. Use as ``with detector: detector.infer(frames)``."""

    def __init__(self, spec: ModelSpec, info: DetectorInfo) -> None:
        self.spec = spec
        self.info = info
        self.last_times = InferTimes()
        self._active = False

    # -- lifecycle -------------------------------------------------------------------------
    def __enter__(self) -> "Detector":
        if not self._active:
            self.activate()
            self._active = True
        return self

    def __exit__(self, *exc: object) -> None:
        if self._active:
            self.deactivate()
            self._active = False

    def activate(self) -> None:
        """Load weights/engine/session. Called once by ``__enter__``."""

    def deactivate(self) -> None:
        """Release device memory and handles."""

    # -- work ------------------------------------------------------------------------------
    @abc.abstractmethod
    def run_decoded(self, batch_nhwc_u8: npt.NDArray[np.uint8]):
        """Resized RGB uint8 batch (N, H, W, 3) -> decoded ``(boxes (N, A, 4), scores (N, A, C))``.

        Returns torch tensors, on the backend's device where it has one, so NMS runs there.
        """

    def synchronize(self) -> None:
        """Wait for queued device work (no-op on the CPU); used by timing code."""

    def network_fn(self, batch_nhwc_u8: npt.NDArray[np.uint8]) -> tuple[Callable[[], object], str]:
        """A zero-argument callable that runs only the network on ``batch`` (prepared once), and
        a phrase saying what one call includes. Backends override it to exclude input upload."""
        return (lambda: self.run_decoded(batch_nhwc_u8)), "input upload + normalisation + network + box decoding"

    def infer(
        self,
        frames_bgr: Sequence[npt.NDArray[np.uint8]],
        config: PostprocessConfig = PostprocessConfig(),
    ) -> list[Detections]:
        """BGR uint8 frames of any size -> one :class:`Detections` per frame, in frame pixels.

        A frame wider than ``config.tiling.max_aspect`` goes through the network as overlapping tiles plus the
        whole frame, in the same batch, merged back (:mod:`aeb_app.model.tiling`)."""
        return self._tiled(frames_bgr, config, self._infer_whole, lambda f: f.shape[:2],
                           lambda f, x0, x1: f[:, x0:x1])

    def _infer_whole(self, frames_bgr: Sequence[npt.NDArray[np.uint8]], config: PostprocessConfig) -> list[Detections]:
        self.check_batch(len(frames_bgr))
        if len(frames_bgr) == 0:
            return []
        t0 = time.perf_counter()
        batch = resize_batch(frames_bgr, self.spec)
        t1 = time.perf_counter()
        boxes, scores = self.run_decoded(batch)
        self.synchronize()
        t2 = time.perf_counter()
        dets = postprocess(boxes, scores, self.spec, [f.shape[:2] for f in frames_bgr], config)
        t3 = time.perf_counter()
        self.last_times = InferTimes((t1 - t0) * 1e3, (t2 - t1) * 1e3, (t3 - t2) * 1e3)
        return dets

    def check_batch(self, n: int) -> None:
        """Raise :class:`EngineError` outside the ``with`` block or above the engine's maximum batch."""
        if not self._active:
            raise EngineError(f"{self.info.mode}: detector used outside its 'with' block")
        if self.info.max_batch is not None and n > self.info.max_batch:
            raise EngineError(f"{self.info.mode}: batch of {n} exceeds this engine's maximum {self.info.max_batch}")

    # -- GPU-resident frames (aeb_app.inference.run.gpu_frames) --------------------------------
    def device_input(self):
        """``(torch dtype, channels_last)`` of :meth:`forward_normalized`'s input when this detector takes
        normalised CUDA tensors; None (the default) sends :meth:`infer_tensors` through the host."""
        return None

    def frame_graph(self, shapes: Sequence[tuple[int, int, int]], config: PostprocessConfig):
        """A :class:`~aeb_app.inference.run.frame_graph.FrameGraph` for frames of these (3, H, W) shapes, made
        on first use and kept; None (the default) when this detector cannot be captured whole."""
        return None

    def infer_tensors(self, images_chw_u8, config: PostprocessConfig = PostprocessConfig()) -> list[Detections]:
        """RGB uint8 (3, H, W) torch tensors (e.g. decoded on the GPU) -> one :class:`Detections` per
        image, in its pixels. On a CUDA detector resize, normalisation, network, NMS stay on the device
        and the kept boxes cross to the host in one copy (:func:`aeb_app.inference.run.gpu_frames.infer_device_frames`).
        """
        from aeb_app.inference.run.gpu_frames import infer_device_frames

        def whole(images, cfg: PostprocessConfig) -> list[Detections]:
            self.check_batch(len(images))
            return infer_device_frames(self, images, cfg)

        return self._tiled(images_chw_u8, config, whole, lambda im: tuple(im.shape[1:]),
                           lambda im, x0, x1: im[:, :, x0:x1])

    def _tiled(self, images: Sequence, config: PostprocessConfig, run: Callable[[Sequence, PostprocessConfig], list],
               size_hw: Callable, crop: Callable) -> list[Detections]:
        """``run`` over the images, each wide one as its tiles + itself (in chunks of the engine's maximum batch),
        and the tiles' detections merged into their frame's."""
        plans = [plan_tiles(size_hw(im), config.tiling) for im in images]
        if all(not p.windows for p in plans):
            return run(images, config)
        views = [v for im, p in zip(images, plans) for v in (*(crop(im, x0, x1) for x0, x1 in p.windows), im)]
        step = self.info.max_batch or len(views)
        as_is = dataclasses.replace(config, tiling=NO_TILING)  # each view goes through as it is
        dets = [d for i in range(0, len(views), step) for d in run(views[i:i + step], as_is)]
        out, i = [], 0
        for plan in plans:
            tiles, whole = dets[i:i + len(plan.windows)], dets[i + len(plan.windows)]
            out.append(merge_tiles(plan, tiles, whole, config=config.tiling, iou_threshold=config.iou_threshold,
                                   class_agnostic=config.class_agnostic, max_detections=config.max_detections)
                       if plan.windows else whole)
            i += plan.views
        return out
