"""A live session as a plain generator (no Qt): open, load, then play frames under user control.

:func:`live_session` runs inside the GUI worker thread. It yields :class:`Progress` while the video
opens and the model loads, a :class:`Started` once ready, :class:`~aeb_app.types.FrameResult`
values while playing, :class:`~aeb_app.pipeline.WarningEvent` values (never dropped), and
:class:`Notice` texts for the message bar. The GUI steers it through a thread-safe
:class:`PlaybackControl` (pause, step, seek, loop, settings, stop).

When processing falls behind the video clock, frames are skipped (decoded, not processed) so the
view stays live instead of lagging; each processed frame comes as a :class:`LiveFrame` carrying that count.
"""

from __future__ import annotations

import contextlib
import logging
import threading
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Iterator

from aeb_app.pipeline import EventRecorder, Pipeline, PipelineSettings
from aeb_app.safety import WarningConfig, ZoneConfig
from aeb_app.safety.settings import LogicSettings
from aeb_app.stream import Progress, StreamConfig, open_steps
from aeb_app.tracks import TracksCsvWriter
from aeb_app.types import FrameResult
from aeb_app.video import VideoInfo, VideoSource
from aeb_app.video.pacing import PlaybackClock

__all__ = ["SessionConfig", "PlaybackControl", "Progress", "Started", "Notice", "EndOfStream", "LiveFrame",
           "live_session"]

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class SessionConfig:
    """What to open and how to process it.

    Attributes:
        source: video path or camera index.
        model: model name.
        mode: inference mode (e.g. ``fp32``, ``fp32_ort``).
        calibration_path: road calibration YAML, or None.
        zone: braking-zone settings.
        settings: pipeline options (ego speed, thresholds).
        realtime: pace files at their frame rate and skip frames when behind.
        warning: warning thresholds.
        tracks_path: write the tracks CSV of ``aeb-app run --tracks`` here (same writer, same columns;
            rows appended and flushed per processed frame), or None.
        logic: range-filter, cue and scale-change settings of the warning logic (``--settings``).
        fps: frame rate of a folder of frames without a ``timestamps.txt`` (None: its timestamps, or the video's).
    """

    source: str | int
    model: str = "ssd_mobilenet_v1"
    mode: str = "auto"
    calibration_path: Path | None = None
    zone: ZoneConfig = ZoneConfig()
    settings: PipelineSettings = PipelineSettings()
    realtime: bool = True
    warning: WarningConfig = WarningConfig()
    tracks_path: Path | None = None
    logic: LogicSettings = LogicSettings()
    fps: float | None = None


@dataclass(frozen=True)
class Started:
    """The session is ready: what was opened and with which detector."""

    video: VideoInfo
    detector: object
    calibrated: bool


@dataclass(frozen=True)
class Notice:
    """A message for the user (also logged)."""

    text: str


@dataclass(frozen=True)
class LiveFrame:
    """A processed frame and the playback counters at that point.

    Attributes:
        result: the pipeline's result for the frame.
        skipped: frames decoded but not processed so far, to keep up with the video clock.
    """

    result: FrameResult
    skipped: int


@dataclass(frozen=True)
class EndOfStream:
    """The last frame of a file was shown (playback pauses)."""

    frame_index: int


@dataclass(frozen=True)
class Commands:
    """What the GUI asked for since the last frame (None: unchanged)."""

    seek: int | None
    step: bool
    zone: ZoneConfig | None
    settings: PipelineSettings | None
    warning: WarningConfig | None


class PlaybackControl:
    """Commands from the GUI thread to the session generator (thread-safe)."""

    def __init__(self, *, paused: bool = False, loop: bool = False) -> None:
        self._lock = threading.Lock()
        self._wake = threading.Event()
        self._stop = threading.Event()
        self.paused = paused
        self.loop = loop
        self._seek: int | None = None
        self._step = False
        self._zone: ZoneConfig | None = None
        self._settings: PipelineSettings | None = None
        self._warning: WarningConfig | None = None

    def _notify(self) -> None:
        self._wake.set()

    def set_paused(self, paused: bool) -> None:
        with self._lock:
            self.paused = paused
        self._notify()

    def set_loop(self, loop: bool) -> None:
        with self._lock:
            self.loop = loop

    def step(self) -> None:
        """Process one frame while paused."""
        with self._lock:
            self.paused, self._step = True, True
        self._notify()

    def seek(self, frame_index: int) -> None:
        with self._lock:
            self._seek = int(frame_index)
        self._notify()

    def configure(self, *, zone: ZoneConfig | None = None, settings: PipelineSettings | None = None,
                  warning: WarningConfig | None = None) -> None:
        with self._lock:
            self._zone = zone or self._zone
            self._settings = settings or self._settings
            self._warning = warning or self._warning
        self._notify()

    def stop(self) -> None:
        self._stop.set()
        self._notify()

    @property
    def stopped(self) -> bool:
        return self._stop.is_set()

    def wait(self, timeout_s: float) -> None:
        """Sleep until a command arrives or ``timeout_s`` passes."""
        self._wake.wait(timeout_s)
        self._wake.clear()

    def take(self) -> "Commands":
        """The pending commands, cleared."""
        with self._lock:
            out = Commands(self._seek, self._step, self._zone, self._settings, self._warning)
            self._seek, self._step, self._zone, self._settings, self._warning = None, False, None, None, None
        return out


def stream_config(config: SessionConfig) -> StreamConfig:
    """The front door's configuration for a GUI session (calibration problems are not fatal here)."""
    return StreamConfig(config.source, fps=config.fps, model=config.model, mode=config.mode, calibration=config.calibration_path,
                        lenient_calibration=True, zone=config.zone, warning=config.warning,
                        settings=config.settings, logic=config.logic)


def live_session(config: SessionConfig, control: PlaybackControl) -> Iterator[object]:
    """The session generator (see the module docstring).

    Raises:
        InputError: the video/camera cannot be opened.
        ModelLoadError, BackendUnavailableError: the model or mode cannot be loaded.
    """
    with contextlib.ExitStack() as stack:
        stream = yield from open_steps(stream_config(config), stack)
        if stream.calibration_note:
            yield Notice(stream.calibration_note)
        tracks = stack.enter_context(TracksCsvWriter(config.tracks_path)) if config.tracks_path else None
        yield Started(stream.source.info, stream.detector.info, stream.calibration is not None)
        yield from _play(stream.source, stream.pipeline, control, realtime=config.realtime, tracks=tracks)


def _play(source: VideoSource, pipeline: Pipeline, control: PlaybackControl, *, realtime: bool,
          tracks: TracksCsvWriter | None = None) -> Iterator[object]:
    info = source.info
    recorder = EventRecorder()
    clock = PlaybackClock(info.fps)
    while not control.stopped:
        seek, step = _apply_commands(source, pipeline, control)
        if seek:
            clock.restart()
        if control.paused and not step and not seek:
            clock.restart()
            control.wait(0.05)
            continue
        source.loop = control.loop
        live = realtime and not info.is_camera and not control.paused
        if live:
            clock.wait_for_next()  # decode the next frame at its time, as a camera delivers it
        frame = source.read()
        if frame is None:
            control.set_paused(True)
            yield EndOfStream(max(0, source.position - 1))
            continue
        if live and not clock.admit(frame.timestamp_s):
            continue  # behind the video clock: skipped (counted by the clock)
        result = pipeline.process(frame)
        if tracks is not None:
            tracks.write(result.state)
        event = recorder.update(result)
        yield LiveFrame(result, clock.skipped)
        if event is not None:
            yield event


def _apply_commands(source: VideoSource, pipeline: Pipeline, control: PlaybackControl) -> tuple[bool, bool]:
    """Apply pending settings and seek; returns (seeked, step requested).

    A seek on a camera is ignored (it cannot rewind, and must not read a frame while paused); an
    index past the end is clamped to the last frame when the length is known.
    """
    commands = control.take()
    seek, step = commands.seek, commands.step
    if (commands.zone, commands.settings, commands.warning) != (None, None, None):
        pipeline.configure(zone_config=commands.zone, settings=commands.settings, warning_config=commands.warning)
    info = source.info
    if seek is None or info.is_camera:
        return False, step
    last = info.frame_count - 1 if info.frame_count else seek
    source.seek(max(0, min(seek, last)))
    return True, step


def with_settings(config: SessionConfig, **changes) -> SessionConfig:
    """A copy of ``config`` with fields changed (helper for the GUI)."""
    return replace(config, **changes)
