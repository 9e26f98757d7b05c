"""The one front door: open a source, resolve its calibration, create the detector with the one
fallback policy, tune threads, warm up and build the pipeline.

``aeb-app run``, the GUI's live session, fleet replay and the screenshot script all open streams
here, so they agree on every default and every failure::

    with open_stream(StreamConfig("clip.mp4", mode="auto")) as stream:
        for frame in stream.source.frames():
            result = stream.pipeline.process(frame)

:func:`open_steps` is the same as a generator of :class:`Progress` steps (the GUI shows them).

Calibration policy (:func:`resolve_calibration`): a file given explicitly must load and must be
for frames of the same aspect ratio (it is rescaled to the video's size, with a log line); a
problem is a :class:`~aeb_app.errors.CalibrationError` unless ``lenient`` (the GUI), which runs
detections only and says why. Without an explicit file the shipped sample-footage calibration is
used only for videos of its exact size; anything else runs detections only ("AEB unavailable").
"""

from __future__ import annotations

import contextlib
import logging
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Generator, Iterator

import numpy as np

from aeb_app.errors import AebError, CalibrationError
from aeb_app.geometry.calibration import Calibration
from aeb_app.inference.base import Detector
from aeb_app.pipeline import Pipeline, PipelineSettings, tune_cpu_threads
from aeb_app.safety import WarningConfig, ZoneConfig
from aeb_app.safety.settings import LogicSettings
from aeb_app.video import VideoSource

__all__ = ["StreamConfig", "Progress", "Stream", "open_steps", "open_stream", "create_detector",
           "resolve_calibration", "DEFAULT_MODEL"]

log = logging.getLogger(__name__)

DEFAULT_MODEL = "ssd_mobilenet_v1"




@dataclass(frozen=True)
class StreamConfig:
    """What to open and how to process it.

    Attributes:
        source: video path, folder of frames (:mod:`aeb_app.video.sequence`) or camera index.
        fps: frame rate of a folder of frames without timestamps, or to replace a video header's (None: theirs).
        model: model name.
        weights: ``auto`` (asset mirror/cache), ``random`` (speed work only) or a file.
        mode: inference mode, or ``auto`` to walk ``fallback``.
        fallback: modes tried in order when ``mode`` is ``auto`` (None: the order for the device, see
            :func:`aeb_app.defaults.fallback_order`).
        device: ``cpu``, ``cuda`` or ``cuda:N``; None picks.
        threads: CPU threads for inference (torch/ONNX Runtime); None keeps the tuned defaults.
        calibration: road calibration YAML; None uses the shipped one for the sample's frame size.
        lenient_calibration: a calibration problem runs detections only instead of raising.
        zone: braking-zone settings.
        warning: warning settings.
        settings: per-frame pipeline options.
        logic: filter, cue and scale-change settings of the warning logic (``--settings``).
        batch: frames per network call (``aeb-app run --batch``): the warm-up runs at this size, so a
            CUDA Graph or compiled network meets its run's shape before the first timed frame.
    """

    source: str | int
    fps: float | None = None
    model: str = DEFAULT_MODEL
    weights: str = "auto"
    mode: str = "auto"
    fallback: tuple[str, ...] | None = None
    device: str | None = None
    threads: int | None = None
    calibration: Path | None = None
    lenient_calibration: bool = False
    zone: ZoneConfig = ZoneConfig()
    warning: WarningConfig = WarningConfig()
    settings: PipelineSettings = PipelineSettings()
    logic: LogicSettings = LogicSettings()
    batch: int = 1


@dataclass(frozen=True)
class Progress:
    """An opening step: ``fraction`` in [0, 1] and what is happening."""

    text: str
    fraction: float


@dataclass
class Stream:
    """An opened stream (valid inside :func:`open_stream`'s ``with`` block).

    Attributes:
        source: the open video source.
        detector: the activated detector.
        calibration: the calibration in use (rescaled to the frames), or None (detections only).
        calibration_note: why there is none, or how it was adapted; "" when used as is.
        pipeline: the pipeline over both.
        warmup_ms: the untimed warm-up inference, milliseconds.
    """

    source: VideoSource
    detector: Detector
    calibration: Calibration | None
    calibration_note: str
    pipeline: Pipeline
    warmup_ms: float


def create_detector(*, model: str = DEFAULT_MODEL, weights: str = "auto", mode: str = "auto",
                    fallback: tuple[str, ...] | None = None, device: str | None = None,
                    threads: int | None = None, engines_dir: Path | None = None) -> Detector:
    """Load the model and create (not activate) the detector: the one fallback policy.

    ``mode="auto"`` walks ``fallback`` (None: :func:`aeb_app.defaults.fallback_order` for ``device``,
    CPU- or GPU-first) and takes the first mode this machine can run; another mode is created as
    asked or fails.

    Raises:
        ModelLoadError, BackendUnavailableError: one-line reasons.
    """
    from aeb_app.inference.registry import create, create_with_fallback
    from aeb_app.model.registry import load_model

    if threads:
        import torch

        torch.set_num_threads(threads)
    from aeb_app.defaults import fallback_order

    loaded = load_model(model, weights)
    where = {"engines_dir": Path(engines_dir)} if engines_dir is not None else {}
    if mode == "auto":
        detector = create_with_fallback(loaded, list(fallback or fallback_order(device)), device=device, **where)
    else:
        options = {"intra_op_threads": threads} if threads and mode.endswith("_ort") else {}
        detector = create(loaded, mode, device=device, **where, **options)
    if not threads:
        _default_ort_threads(detector)
    return detector


def _default_ort_threads(detector: Detector) -> None:
    """Give an ONNX Runtime detector on the CPU :func:`aeb_app.defaults.pipeline_cpu_threads` intra-op threads
    (all cores but one) instead of ORT's default (all cores).

    The frame loop decodes, runs the AEB logic, draws and encodes beside the network, on its own threads;
    with every core in ORT's pool (which spins between runs) those stages and the pool take cores from each
    other. Measured on the idle 2-core machine: 52.9 FPS with one ORT thread, 48.3 with two (README,
    docs/benchmarks/headless_cpu.md). A detector the fallback walk already activated is re-opened once.
    """
    from aeb_app.defaults import pipeline_cpu_threads

    if detector.info.backend != "onnxruntime" or detector.info.device != "cpu" or detector.intra_op_threads:
        return
    detector.intra_op_threads = pipeline_cpu_threads()
    if detector.session is not None:  # opened by the fallback walk with ORT's default: open it again
        detector.deactivate()
        detector.activate()
    log.info("ONNX Runtime on the CPU: %d intra-op thread(s) (the other cores run the frame loop's stages)",
             detector.intra_op_threads)


def resolve_calibration(path: Path | None, size_wh: tuple[int, int], *,
                        lenient: bool = False) -> tuple[Calibration | None, str]:
    """The calibration for frames of ``size_wh`` and a note (see the module docstring).

    Raises:
        CalibrationError: an explicit file that cannot be used, unless ``lenient``.
    """
    from aeb_app.geometry import load_calibration
    from aeb_app.geometry.calibration import shipped_calibration
    from aeb_app.geometry.rescale import rescale_calibration

    if path is None:
        shipped = load_calibration(shipped_calibration())
        if tuple(shipped.image_size_wh) == tuple(size_wh):
            return shipped, ""
        w, h = size_wh
        return None, (f"no calibration for {w}x{h} frames: detections only, AEB unavailable "
                      "(calibrate with 'aeb-app calibrate' or Tools > Calibrate camera)")
    try:
        calibration = load_calibration(path)  # its errors name the file
        try:
            adapted = rescale_calibration(calibration, size_wh)
        except AebError as exc:  # name the file, and the sizes when rescaling made the geometry degenerate
            cw, ch = calibration.image_size_wh
            sizes = "" if "aspect ratio" in str(exc) else f"rescaled from {cw}x{ch} to {size_wh[0]}x{size_wh[1]}: "
            raise CalibrationError(f"{path}: {sizes}{exc}") from exc
    except AebError as exc:
        if not lenient:
            raise CalibrationError(str(exc)) from exc
        advice = "" if "calibrate this camera" in str(exc) else " (calibrate this camera)"
        return None, f"{exc}: detections only, AEB unavailable{advice}"
    if adapted is calibration:
        return calibration, ""
    cw, ch = calibration.image_size_wh
    note = f"{path}: calibration for {cw}x{ch} rescaled to {size_wh[0]}x{size_wh[1]} (same aspect ratio)"
    log.info(note)
    return adapted, note


def _log_tiles(size_wh: tuple[int, int], tiling) -> None:
    """Say when frames go through the network as tiles (it costs a network call per tile)."""
    from aeb_app.model.tiling import plan_tiles

    windows = plan_tiles((size_wh[1], size_wh[0]), tiling).windows
    if windows:
        log.info("%dx%d frames are wider than %g:1: each goes through the network as %d tiles + the whole frame "
                 "(--no-tiles squeezes it whole)", *size_wh, tiling.max_aspect, len(windows))


def _warm_up(detector: Detector, size_hw: tuple[int, int], batch: int, postprocess) -> None:
    """Lazy set-up at the run's frame size and batch, untimed: the host path, and on a GPU the device path
    too (the frame loop's; its whole-frame CUDA Graph is captured here, not at the first frame)."""
    blank = np.zeros((*size_hw, 3), np.uint8)
    detector.infer([blank] * batch, postprocess)
    if detector.device_input() is not None:
        from aeb_app.inference.run.gpu_frames import bgr_to_device

        detector.infer_tensors([bgr_to_device(blank, detector.info.device)] * batch, postprocess)


def open_steps(config: StreamConfig, stack: contextlib.ExitStack, *,
               detector: Detector | None = None) -> Generator[Progress, None, Stream]:
    """Open ``config`` step by step, yielding :class:`Progress`; returns the :class:`Stream`.

    Everything opened is registered on ``stack`` (closed with it, also on failure). ``detector``: an
    already active, warmed-up detector to use (e.g. one per replay worker), owned by the caller;
    ``config``'s model and mode are then not used.

    Raises:
        InputError: the source cannot be opened.
        CalibrationError: an explicit calibration cannot be used (not ``lenient_calibration``).
        ModelLoadError, BackendUnavailableError: the model or mode cannot be loaded.
    """
    yield Progress(f"opening {config.source}", 0.05)
    source = stack.enter_context(VideoSource(config.source, fps=config.fps))
    calibration, note = resolve_calibration(config.calibration, source.info.size_wh,
                                            lenient=config.lenient_calibration)
    if calibration is None:
        log.warning(note)
    _log_tiles(source.info.size_wh, config.settings.postprocess.tiling)
    warmup_ms = 0.0
    if detector is None:
        yield Progress(f"loading {config.model}", 0.2)
        detector = stack.enter_context(create_detector(
            model=config.model, weights=config.weights, mode=config.mode, fallback=config.fallback,
            device=config.device, threads=config.threads))
        log.info("detector: %s", detector.info)
        tune_cpu_threads(detector)
        compiling = " (compiling the network: about 20 s the first time)" if detector.info.notes.get("compile") else ""
        yield Progress(f"warming up {detector.info.mode}{compiling}", 0.8)
        t0 = time.perf_counter()
        _warm_up(detector, (source.info.height, source.info.width), config.batch, config.settings.postprocess)
        warmup_ms = (time.perf_counter() - t0) * 1e3
        log.info("warm-up inference: %.0f ms (not timed)", warmup_ms)
    from aeb_app.video.nvdec import prefer_nvdec

    source = prefer_nvdec(source, detector.info.device, stack)  # NVDEC for a CUDA detector, when installed
    pipeline = Pipeline(detector, calibration, zone_config=config.zone, warning_config=config.warning,
                        settings=config.settings, no_calibration_reason=note or "no calibration",
                        logic=config.logic)
    return Stream(source, detector, calibration, note, pipeline, warmup_ms)


@contextlib.contextmanager
def open_stream(config: StreamConfig, *, detector: Detector | None = None) -> Iterator[Stream]:
    """:func:`open_steps` as a context manager (progress goes to the debug log)."""
    with contextlib.ExitStack() as stack:
        steps = open_steps(config, stack, detector=detector)
        while True:
            try:
                log.debug(next(steps).text)
            except StopIteration as done:
                stream: Stream = done.value
                break
        yield stream
