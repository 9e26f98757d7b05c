"""The frame loop of ``aeb-app run``: decode, inference, AEB logic + drawing and encoding as stages.

By default each step runs on its own thread (:mod:`aeb_app.stages`, bounded queues, frame order kept,
nothing dropped), so decoding, drawing and encoding overlap with the network; ``sequential=True``
runs the same steps one after the other in the caller's thread (for comparison and debugging).
Frames travel in chunks of ``batch`` (1 by default, as live): the network runs once per chunk.

The pipeline (:class:`aeb_app.pipeline.Pipeline`) runs detection, logic and drawing in one call;
to move detection onto its own thread without changing it, the logic stage hands the pipeline a
:class:`_Handoff` in place of its detector, which returns the detections the inference stage
already computed for that frame (or raises the error it met, so failures are handled as before).

Latency: from "frame decoded" (the decoder returned it) to "warning decided" (the AEB logic has
run, i.e. the end of :meth:`Pipeline.process` minus its drawing time), per frame, milliseconds.
"""

from __future__ import annotations

import contextlib
import sys
import time
from dataclasses import dataclass, field
from typing import Callable, Iterator

import numpy as np

from aeb_app.errors import AebError
from aeb_app.inference.base import InferTimes
from aeb_app.stages import Stage, run_stages
from aeb_app.types import Detections, FrameResult
from aeb_app.video import VideoFrame

__all__ = ["FrameWork", "staged_results", "QUEUE_CAPACITY"]

#: The interpreter's thread switch interval while the stages run, seconds (Python's default: 0.005).
#: A stage that comes back from C++ work (ONNX Runtime, OpenCV, the codecs release the GIL) waits for
#: the GIL until the thread holding it (e.g. the AEB logic, pure Python) is asked to drop it, i.e. up to
#: one interval per hand-back; the inference stage hands back several times per frame, so at 5 ms it
#: waits longer than the network runs. 1 ms keeps those waits short; switching costs a few microseconds.
SWITCH_INTERVAL_S = 0.001

#: Frames each queue between two stages holds (back-pressure beyond it). The decoder's queue is the
#: shortest: a frame waiting there adds to the decode-to-warning latency without adding throughput.
QUEUE_CAPACITY = 2


@dataclass
class FrameWork:
    """One frame on its way through the stages.

    Attributes:
        frame: the decoded (or failed) frame.
        decoded_at: ``time.perf_counter()`` when the decoder returned it, seconds.
        detections: the inference stage's output (None: not run, or failed).
        infer_times: the detector's stage times for this frame.
        infer_error: what inference raised (re-raised inside the pipeline, which reports it).
        result: the pipeline's result (logic stage).
        decided_at: ``time.perf_counter()`` when the warning was decided, seconds.
        encode_ms: side-by-side composition + video encoding of this frame, milliseconds (0 without a writer).
    """

    frame: VideoFrame
    decoded_at: float
    detections: Detections | None = None
    infer_times: InferTimes = field(default_factory=InferTimes)
    infer_error: Exception | None = None
    result: FrameResult | None = None
    decided_at: float = 0.0
    encode_ms: float = 0.0

    @property
    def latency_ms(self) -> float:
        """Frame decoded -> warning decided, milliseconds."""
        return (self.decided_at - self.decoded_at) * 1e3


class _Handoff:
    """Stands in for the detector inside :meth:`Pipeline.process` (logic-stage thread only)."""

    def __init__(self, detector) -> None:
        self.info = detector.info
        self.spec = detector.spec
        self.last_times = InferTimes()
        self._work: FrameWork | None = None

    def give(self, work: FrameWork) -> None:
        self._work = work

    def infer(self, frames, config=None) -> list[Detections]:
        work = self._work
        if work is None or work.detections is None and work.infer_error is None:
            raise AebError("frame loop: the pipeline asked for detections the inference stage did not compute")
        if work.infer_error is not None:
            raise work.infer_error
        self.last_times = work.infer_times
        return [work.detections]


def _infer_stage(detector, config, batch: int = 1) -> Callable[[list[FrameWork]], list[FrameWork]]:
    """Detections for the valid frames of each chunk, in one detector call per chunk; on a CUDA detector
    through the GPU frame path (an NVDEC frame is already on the device; another is uploaded once, then
    resized, normalised and NMS'd there). A failed call marks every frame of the chunk failed.

    On the device a short chunk (the last one, or one with failed frames) is padded to ``batch`` with
    repeats of its last frame, whose detections are dropped: a CUDA Graph or compiled network then never
    meets a new input shape mid-run (capturing or compiling one costs seconds)."""
    from aeb_app.inference.run.gpu_frames import bgr_to_device

    on_device = detector.device_input() is not None

    def detect(frames: list[VideoFrame]) -> list[Detections]:
        if not on_device:
            return detector.infer([frame.image for frame in frames], config)
        images = [getattr(frame, "device_image", None) for frame in frames]  # NVDEC frames (aeb_app.video.nvdec)
        images = [bgr_to_device(f.image, detector.info.device) if im is None else im for f, im in zip(frames, images)]
        padded = images + images[-1:] * (batch - len(images))
        return detector.infer_tensors(padded, config)[:len(images)]

    def infer(works: list[FrameWork]) -> list[FrameWork]:
        valid = [w for w in works if w.frame.image is not None and w.frame.error is None]  # the pipeline's condition
        if not valid:
            return works
        try:
            found = detect([w.frame for w in valid])
        except (AebError, RuntimeError, ValueError) as exc:  # reported per frame by the pipeline
            for work in valid:
                work.infer_error = exc
            return works
        t, n = detector.last_times, len(valid)  # the chunk's times, shared out per frame
        share = InferTimes(t.preprocess_ms / n, t.inference_ms / n, t.postprocess_ms / n)
        for work, detections in zip(valid, found):
            work.detections, work.infer_times = detections, share
        return works
    return infer


def _logic_stage(pipeline, handoff: _Handoff, hud_lines: Callable[[int, float], list[str]]) -> Callable:
    last = [0.0]

    def decide_one(work: FrameWork) -> None:
        now = time.perf_counter()
        fps = 1.0 / (now - last[0]) if last[0] else 0.0
        last[0] = now
        handoff.give(work)
        work.result = pipeline.process(work.frame, hud_lines=hud_lines(work.frame.index, fps))
        work.decided_at = time.perf_counter() - work.result.times.render_ms / 1e3

    def decide(works: list[FrameWork]) -> list[FrameWork]:
        for work in works:
            decide_one(work)
        return works
    return decide


def _encode_stage(writer) -> Callable[[list[FrameWork]], list[FrameWork]]:
    from aeb_app import render

    def encode(works: list[FrameWork]) -> list[FrameWork]:
        for work in works:
            t0 = time.perf_counter()
            writer.write(render.side_by_side(work.result.annotated, work.result.bev))
            work.encode_ms = (time.perf_counter() - t0) * 1e3
        return works
    return encode


def _chunks(frames: Iterator[VideoFrame], batch: int) -> Iterator[list[FrameWork]]:
    """Decoded frames as :class:`FrameWork` lists of up to ``batch``, each stamped when decoded."""
    chunk: list[FrameWork] = []
    for frame in frames:
        chunk.append(FrameWork(frame, time.perf_counter()))
        if len(chunk) == batch:
            yield chunk
            chunk = []
    if chunk:
        yield chunk


def staged_results(pipeline, frames: Iterator[VideoFrame], *, writer=None,
                   hud_lines: Callable[[int, float], list[str]], sequential: bool = False,
                   capacity: int = QUEUE_CAPACITY, batch: int = 1) -> Iterator[FrameWork]:
    """Run ``frames`` through inference, logic + drawing and (with ``writer``) encoding.

    The stages pass chunks of up to ``batch`` consecutive frames: the network runs once per chunk
    (throughput for offline files), logic and encoding frame by frame in order, so the decisions do
    not depend on ``batch``; a frame's latency includes waiting for its chunk to fill.

    Args:
        pipeline: the stream's pipeline (its detector is used by the inference stage).
        frames: decoded frames (iterated on the decode thread).
        writer: an open :class:`~aeb_app.video.VideoWriter`, or None (no encoding stage).
        hud_lines: ``(frame index, FPS) -> HUD lines`` burnt into the annotated frame.
        sequential: run every step in the caller's thread instead.
        capacity: chunks per queue after the inference stage (the decoder's holds one; staged only).
        batch: frames per chunk (>= 1; the detector must accept it, see ``Detector.check_batch``).

    Yields:
        One :class:`FrameWork` per frame, in order, after it was encoded.

    Raises:
        Whatever a stage raised (after every stage thread has ended).
    """
    detector = pipeline.detector
    handoff = _Handoff(detector)
    stages = [Stage("inference", _infer_stage(detector, pipeline.settings.postprocess, batch)),
              Stage("logic", _logic_stage(pipeline, handoff, hud_lines))]
    if writer is not None:
        stages.append(Stage("encode", _encode_stage(writer)))
    if batch < 1:
        raise ValueError(f"batch must be >= 1, got {batch}")
    decoded = _chunks(frames, batch)
    pipeline.detector = handoff
    try:
        if sequential:
            for works in decoded:
                for stage in stages:
                    works = stage.fn(works)
                yield from works
        else:
            sizes = [1] + [capacity] * len(stages)
            with _switch_interval(SWITCH_INTERVAL_S), \
                    contextlib.closing(run_stages(decoded, stages, capacity=sizes)) as results:
                for works in results:
                    yield from works
    finally:
        pipeline.detector = detector


@contextlib.contextmanager
def _switch_interval(seconds: float) -> Iterator[None]:
    """``sys.setswitchinterval(seconds)`` for the block (at most the current one), restored after it."""
    before = sys.getswitchinterval()
    sys.setswitchinterval(min(seconds, before))
    try:
        yield
    finally:
        sys.setswitchinterval(before)


def latency_percentiles(latencies_ms: list[float]) -> tuple[float, float]:
    """(p50, p99) of per-frame latencies in ms; (0, 0) for none."""
    if not latencies_ms:
        return 0.0, 0.0
    arr = np.asarray(latencies_ms, np.float64)
    return float(np.percentile(arr, 50)), float(np.percentile(arr, 99))
