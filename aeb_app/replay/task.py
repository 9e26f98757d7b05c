"""The per-recording work of a replay: one library function, the same in-process and on a Dask worker.

:func:`replay_recording` opens the video, loads its calibration, takes the detector from this process's
cache (the model is loaded once per process, not once per recording), runs
:class:`~aeb_app.pipeline.Pipeline` with rendering off through the staged frame loop of ``aeb-app run``, and writes ``DIR/<recording-id>/events.csv`` and
``summary.json`` atomically, the summary last: a folder with a summary that matches the input and the
settings is finished, and a re-run skips it. Running it twice (a Dask retry after a killed worker) gives
the same files.
"""

from __future__ import annotations

import contextlib
import logging
import os
import socket
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import cv2
import numpy as np

from aeb_app.atomic import write_json
from aeb_app.errors import AebError, CalibrationError
from aeb_app.inference.base import Detector
from aeb_app.pipeline import EventRecorder, Pipeline, PipelineSettings, tally_level
from aeb_app.replay.sinks import CsvRowsSink, EventsSink, Sink
from aeb_app.replay.types import EVENTS_NAME, SUMMARY_NAME, TRACKS_NAME, RecordingResult, RecordingSpec, ReplayOptions
from aeb_app.tracks import TRACK_COLUMNS, track_rows
from aeb_app.video import VideoSource

__all__ = ["replay_recording", "open_replay_pipeline", "OpenedStream", "DetectorCache", "DETECTORS"]

log = logging.getLogger(__name__)


class DetectorCache:
    """This process's activated detectors, by the options that make them: one model load per worker."""

    def __init__(self) -> None:
        self._detectors: dict[tuple, Detector] = {}

    def get(self, options: ReplayOptions) -> tuple[Detector, bool]:
        """The detector for ``options`` (activated and warmed up) and whether it was already loaded."""
        key = (options.model, options.mode, options.device, options.engines_dir, options.threads)
        if key in self._detectors:
            return self._detectors[key], True
        detector = _create_detector(options)
        detector.__enter__()
        from aeb_app.pipeline import tune_cpu_threads

        tune_cpu_threads(detector)
        detector.infer([np.zeros((300, 300, 3), np.uint8)])  # first-run set-up outside the timed loop
        log.info("process %d loaded %s", os.getpid(), detector.info)
        self._detectors[key] = detector
        return detector, False

    def clear(self) -> None:
        """Deactivate and forget every detector (frees device memory)."""
        for detector in self._detectors.values():
            detector.__exit__(None, None, None)
        self._detectors.clear()


#: The per-process cache used by :func:`replay_recording` (filled lazily, on first use in a worker).
DETECTORS = DetectorCache()
_ONE_AT_A_TIME = threading.Lock()


def _create_detector(options: ReplayOptions) -> Detector:
    from aeb_app.stream import create_detector

    return create_detector(model=options.model, mode=options.mode or "auto", device=options.device,
                           threads=options.threads, engines_dir=options.engines_dir)


@dataclass
class OpenedStream:
    """A recording ready to run: its source, its pipeline, and whether the detector was cached."""

    source: VideoSource
    pipeline: Pipeline
    detector_reused: bool


@contextlib.contextmanager
def open_replay_pipeline(spec: RecordingSpec, options: ReplayOptions) -> Iterator[OpenedStream]:
    """Open one recording through the front door (:func:`aeb_app.stream.open_stream`) with this
    process's cached detector, rendering off.

    Raises:
        CalibrationError: no calibration for this recording, or one for another aspect ratio (one of
            the same aspect ratio is rescaled, as in ``aeb-app run``).
        InputError: the video is missing, empty or undecodable.
        EngineError: the detector cannot be created here.
    """
    from aeb_app.model.postprocess import PostprocessConfig
    from aeb_app.model.tiling import NO_TILING, TileConfig
    from aeb_app.stream import StreamConfig, open_stream

    if spec.calibration is None:
        raise CalibrationError(f"{spec.path}: no calibration (no rule of the calibration map matches it)")
    detector, reused = DETECTORS.get(options)
    tiling = TileConfig() if options.tiles else NO_TILING
    settings = PipelineSettings(postprocess=PostprocessConfig(score_threshold=options.score_threshold, tiling=tiling),
                                ego_speed_mps=options.ego_speed_mps, render=False)
    config = StreamConfig(str(spec.path), fps=options.fps, calibration=Path(spec.calibration), zone=options.zone,
                          warning=options.warning, settings=settings)
    with open_stream(config, detector=detector) as stream:
        yield OpenedStream(stream.source, stream.pipeline, reused)


def _event_counts(recorder: EventRecorder) -> tuple[dict[str, int], dict[str, int]]:
    """Onsets per level, and CAUTION/BRAKE onsets per ``level/class`` (class of the critical object)."""
    by_level: dict[str, int] = {}
    by_class: dict[str, int] = {}
    for event in recorder.events:
        by_level[event.level] = by_level.get(event.level, 0) + 1
        if event.level in ("CAUTION", "BRAKE"):
            key = f"{event.level}/{event.object.split(' #')[0] or 'unknown'}"
            by_class[key] = by_class.get(key, 0) + 1
    return by_level, by_class


def _run_frames(stream: OpenedStream, sinks: list[Sink], result: RecordingResult, options: ReplayOptions) -> None:
    """The frame loop (:func:`aeb_app.frame_loop.staged_results`, as ``aeb-app run``): every result to every
    sink; frame and level counts into ``result``."""
    from tqdm import tqdm

    from aeb_app.frame_loop import staged_results

    info = stream.source.info
    stream.pipeline.detector.check_batch(options.batch)
    bar = tqdm(total=info.frame_count, unit="frame", desc=result.recording_id, leave=False, position=1,
               disable=not options.progress, file=sys.stderr, dynamic_ncols=True)
    t0 = time.perf_counter()
    works = staged_results(stream.pipeline, stream.source.frames(), hud_lines=lambda number, fps: [],
                           sequential=options.sequential, batch=options.batch)
    for frame_result in (work.result for work in works):
        for sink in sinks:
            sink.update(frame_result)
        tally_level(result.levels, result.unavailable_reasons, frame_result)
        result.frames += 1
        result.failed_frames += not frame_result.ok
        bar.update(1)
    bar.close()
    result.processing_s = round(time.perf_counter() - t0, 3)
    result.video_fps = info.fps
    result.duration_s = round(result.frames / info.fps, 3)


def _replay(spec: RecordingSpec, folder: Path, options: ReplayOptions) -> RecordingResult:
    result = RecordingResult(spec.recording_id, spec.path, size_bytes=spec.size_bytes, mtime_ns=spec.mtime_ns,
                             settings_hash=spec.settings_hash)
    events = EventsSink()
    # The per-recording files: events (onsets) and tracks (one row per frame per tracked object,
    # the columns of `aeb-app run --tracks`), streamed to a temp file renamed when the recording is done.
    tracks = CsvRowsSink(folder, "tracks", TRACKS_NAME, TRACK_COLUMNS, lambda r: track_rows(r.state))
    sinks: list[Sink] = [events, tracks]
    with open_replay_pipeline(spec, options) as stream:
        info = stream.pipeline.detector.info
        result.detector = f"{info.mode} on {info.device}"
        result.detector_reused = stream.detector_reused
        _run_frames(stream, sinks, result, options)
    result.files = {sink.name: sink.write(folder) for sink in sinks}
    result.events, result.warnings_by_class = _event_counts(events.recorder)
    return result


def _remove_stale_temps(folder: Path) -> None:
    """Temp files of a process killed mid-write (atomic writes leave ``.<stem>.*<suffix>`` behind then)."""
    for name in (SUMMARY_NAME, EVENTS_NAME, TRACKS_NAME):
        stem, suffix = os.path.splitext(name)
        for stale in folder.glob(f".{stem}.*{suffix}"):
            stale.unlink(missing_ok=True)


def replay_recording(spec: RecordingSpec, out_dir: str | os.PathLike[str],
                     options: ReplayOptions) -> RecordingResult:
    """Replay one recording into ``out_dir/<recording-id>/``; skip it when already finished.

    A bad recording (missing, corrupt, no or wrong calibration, detector unavailable) does not raise: the
    result says ``failed`` with the reason, and its summary is written so the folder tells why.

    Args:
        spec: the recording.
        out_dir: the replay's output folder (shared by every worker).
        options: how to replay.

    Returns:
        The result; ``skipped`` is True when a finished summary was found and nothing was replayed.
    """
    folder = Path(out_dir) / spec.recording_id
    done = RecordingResult.load(folder / SUMMARY_NAME)
    if done is not None and done.finishes(spec):
        done.skipped = True
        return done
    folder.mkdir(parents=True, exist_ok=True)
    _remove_stale_temps(folder)
    (folder / SUMMARY_NAME).unlink(missing_ok=True)  # until the new one is written, the folder is unfinished
    try:
        with _ONE_AT_A_TIME:  # a worker with several threads shares one detector: one recording at a time
            result = _replay(spec, folder, options)
    except (AebError, OSError, cv2.error) as exc:
        log.warning("%s failed: %s", spec.recording_id, exc)
        _remove_stale_temps(folder)  # a streamed file of the failed attempt
        result = RecordingResult.failed(spec, str(exc))
    result.worker = f"{socket.gethostname()}:{os.getpid()}"
    write_json(folder / SUMMARY_NAME, result.to_json())
    return result
