"""Frames -> detections -> AEB logic -> rendered :class:`~aeb_app.types.FrameResult`, as a plain generator.

Used by the headless runner (``aeb-app run``) and by the GUI worker alike; nothing here knows Qt.
A frame that failed to decode, failed inference, or arrived stale gives a result whose warning
level is ``UNAVAILABLE`` (never "all clear"); the stream goes on.

Each frame gives a typed :class:`~aeb_app.types.FrameResult`: its level and reason, the AEB state, the
raw frame and, when rendering, the annotated frame and the bird's-eye-view panel.
"""

from __future__ import annotations

import csv
import io
import json
import logging
import math
import os
import re
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Iterable, Iterator

import cv2
import numpy as np
import numpy.typing as npt

from aeb_app import render
from aeb_app.atomic import write_text
from aeb_app.errors import AebError, CalibrationError
from aeb_app.geometry.calibration import Calibration
from aeb_app.inference.base import Detector
from aeb_app.model.coco import name_of
from aeb_app.model.postprocess import PostprocessConfig
from aeb_app.safety import AebLogic, WarningConfig, ZoneConfig
from aeb_app.safety.settings import LogicSettings
from aeb_app.safety.ego_speed import EgoSpeedProfile
from aeb_app.types import FrameResult, StageTimes, WarningLevel
from aeb_app.video import VideoFrame

__all__ = [
    "PipelineSettings", "Pipeline", "check_calibration", "level_of",
    "WarningEvent", "EventRecorder", "write_events", "tune_cpu_threads",
]

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class PipelineSettings:
    """Per-run options.

    Attributes:
        postprocess: detection thresholds.
        ego_speed_mps: ego speed for the zone length; None uses the zone's fixed length.
        render: draw overlays (``FrameResult.annotated``) and the BEV panel (``FrameResult.bev``).
        bev_background: warp the camera frame into the BEV panel.
        hud: burn HUD text into the annotated frame (headless output; the GUI has its own HUD).
        banner: burn the warning banner into the annotated frame (the GUI has its own banner).
        ego_speed_profile: ego speed over time (``--ego-speed CSV``); when set it replaces ``ego_speed_mps``
            (outside the file's time span the speed is unknown).
    """

    postprocess: PostprocessConfig = PostprocessConfig(score_threshold=0.4)
    ego_speed_mps: float | None = None
    render: bool = True
    bev_background: bool = True
    hud: bool = False
    banner: bool = True
    ego_speed_profile: EgoSpeedProfile | None = None

    def ego_speed_at(self, timestamp_s: float) -> float | None:
        """Ego speed for the frame at ``timestamp_s``, m/s (None: unknown)."""
        if self.ego_speed_profile is not None:
            return self.ego_speed_profile.at(timestamp_s)
        return self.ego_speed_mps


def check_calibration(calibration: Calibration, size_wh: tuple[int, int], *, where: str = "video") -> None:
    """Raise :class:`CalibrationError` unless ``calibration`` was made for frames of ``size_wh``."""
    if tuple(calibration.image_size_wh) != tuple(size_wh):
        cw, ch = calibration.image_size_wh
        raise CalibrationError(f"calibration is for {cw}x{ch} images, the {where} is {size_wh[0]}x{size_wh[1]}")


def tune_cpu_threads(detector: Detector) -> None:
    """Thread settings for a sequential CPU pipeline (call once, after creating the detector).

    Measured on a 2-core CPU (docs/benchmarks/headless_cpu.md): OpenCV's and PyTorch's own thread
    pools compete with the inference threads (ONNX Runtime spins its pool between runs), so the
    small OpenCV/torch work around inference runs faster on one thread: +30 % end-to-end FPS with
    ``fp32_ort``. ORT keeps its own pool. PyTorch modes get :func:`aeb_app.defaults.pipeline_cpu_threads`
    (one core left for decoding, drawing and encoding): torch's OpenMP pool collapses when another
    thread or process takes one of its cores (812 ms instead of 84 ms per frame on the busy 2-core
    machine, docs/benchmarks/headless_cpu.md). An explicit lower setting (``run --threads``) is kept.
    """
    if detector.info.device != "cpu":
        return
    import cv2
    import torch

    from aeb_app.defaults import pipeline_cpu_threads

    cv2.setNumThreads(1)
    if detector.info.backend == "onnxruntime":
        torch_threads = 1  # torch only runs the shared post-processing here
    else:
        torch_threads = min(torch.get_num_threads(), pipeline_cpu_threads())
    torch.set_num_threads(torch_threads)
    log.info("CPU threads tuned for %s: OpenCV 1, torch %d", detector.info.mode, torch_threads)


def level_of(result: FrameResult) -> WarningLevel:
    """The warning level of a pipeline result (UNAVAILABLE when it carries none)."""
    return WarningLevel(result.level)


def tally_level(levels: dict[str, int], unavailable: dict[str, int], result: FrameResult) -> None:
    """Count ``result`` under its level name and, when UNAVAILABLE, under its short reason (what a user fixes:
    the calibration, the file), e.g. ``{"the calibration does not fit this video": 216}``."""
    level = level_of(result)
    levels[level.name] = levels.get(level.name, 0) + 1
    if level == WarningLevel.UNAVAILABLE:
        why = short_reason(result.reason) or "unknown"
        unavailable[why] = unavailable.get(why, 0) + 1


class Pipeline:
    """One stream's processing. Owns the AEB logic state (tracks, hysteresis); not the detector.

    Args:
        detector: an activated detector (inside its ``with`` block).
        calibration: road calibration for these frames, or None (detections only, level UNAVAILABLE).
        zone_config: braking-zone settings.
        warning_config: warning settings.
        settings: per-run options.
        no_calibration_reason: why the AEB logic is unavailable when ``calibration`` is None.
        logic: range-filter, cue and scale-change settings of the AEB logic (e.g. from ``--settings``);
            its zone and warning sections are not used here (``zone_config``/``warning_config`` are).
    """

    #: A forward jump of more frames than this (a seek) resets the logic; smaller ones are frames
    #: skipped to keep up with real time, which the AEB logic handles through the timestamps.
    max_skip_frames: int = 10

    def __init__(self, detector: Detector, calibration: Calibration | None, *,
                 zone_config: ZoneConfig | None = None, warning_config: WarningConfig | None = None,
                 settings: PipelineSettings = PipelineSettings(),
                 no_calibration_reason: str = "no calibration for this video",
                 logic: LogicSettings | None = None) -> None:
        self.detector = detector
        self.logic = logic or LogicSettings()
        self.no_calibration_reason = no_calibration_reason
        self.calibration = calibration
        self.zone_config = zone_config or ZoneConfig()
        self.warning_config = warning_config or WarningConfig()
        self.settings = settings
        self._image_to_metric = calibration.image_to_metric_matrix() if calibration is not None else None
        self._logic: AebLogic | None = None
        self._last_index: int | None = None
        self._last_image: npt.NDArray[np.uint8] | None = None
        self._dimmed: tuple[npt.NDArray[np.uint8], npt.NDArray[np.uint8]] | None = None  # (source, dimmed)
        self.reset()

    def configure(self, *, zone_config: ZoneConfig | None = None, settings: PipelineSettings | None = None,
                  warning_config: WarningConfig | None = None) -> None:
        """Change zone, warning or run settings between frames (the logic restarts with them)."""
        if zone_config is not None:
            self.zone_config = zone_config
        if warning_config is not None:
            self.warning_config = warning_config
        if settings is not None:
            self.settings = settings
        self.reset()

    def reset(self) -> None:
        """Forget tracks and warning history (after a seek, a loop or a settings change)."""
        self._logic = (AebLogic(self.calibration, self.zone_config, self.warning_config, self.logic.filter,
                                cue_config=self.logic.cues, expansion_config=self.logic.expansion)
                       if self.calibration is not None else None)
        self._last_index = None

    def run(self, frames: Iterable[VideoFrame]) -> Iterator[FrameResult]:
        """Process ``frames`` lazily, one result per frame."""
        for frame in frames:
            yield self.process(frame)

    def process(self, frame: VideoFrame, *, hud_lines: list[str] | None = None) -> FrameResult:
        """One frame through detection, AEB logic and rendering."""
        if self._last_index is not None and not 0 < frame.index - self._last_index <= self.max_skip_frames:
            self.reset()  # a seek or a loop: old tracks and timestamps no longer apply
        self._last_index = frame.index
        times = StageTimes(decode_ms=frame.decode_ms)
        detections, error = None, frame.error
        if frame.image is not None and frame.error is None:  # frozen/blank/torn frames get no detections
            self._last_image = frame.image
            try:
                detections = self.detector.infer([frame.image], self.settings.postprocess)[0]
                t = self.detector.last_times
                times.preprocess_ms, times.inference_ms, times.postprocess_ms = (
                    t.preprocess_ms, t.inference_ms, t.postprocess_ms)
            except (AebError, RuntimeError, ValueError) as exc:
                error = f"frame {frame.index}: inference failed ({exc})"
                log.warning(error)
        t0 = time.perf_counter()
        state = None
        if self._logic is not None:
            state = self._logic.update(frame.index, frame.timestamp_s, detections,
                                       ego_speed_mps=self.settings.ego_speed_at(frame.timestamp_s))
        times.geometry_ms = (time.perf_counter() - t0) * 1e3
        level, reason = self._level(state, error, self.no_calibration_reason)
        result = FrameResult(frame.index, frame.timestamp_s, detections, times, error, level=level, reason=reason,
                             state=state, frame=frame.image)
        if self.settings.render:
            self._render(result, frame, hud_lines or [])
        return result

    @staticmethod
    def _level(state, error: str | None,
               no_calibration_reason: str = "no calibration") -> tuple[WarningLevel, str]:
        """The frame's level and, when UNAVAILABLE, why."""
        if state is None:
            return WarningLevel.UNAVAILABLE, error or no_calibration_reason
        if error is not None:  # a failed frame is never "all clear"; its error says more than the logic's reason
            return WarningLevel.UNAVAILABLE, error
        level = WarningLevel(state.level)
        return level, state.reason if level == WarningLevel.UNAVAILABLE else ""

    def _dimmed_last_image(self) -> npt.NDArray[np.uint8]:
        """The last good frame at 40 % brightness, computed once per run of failed frames."""
        if self._dimmed is None or self._dimmed[0] is not self._last_image:
            self._dimmed = (self._last_image, cv2.convertScaleAbs(self._last_image, alpha=0.4))
        return self._dimmed[1]

    def _render(self, result: FrameResult, frame: VideoFrame, hud_lines: list[str]) -> None:
        t0 = time.perf_counter()
        if frame.image is not None:
            image = frame.image
        elif self._last_image is not None:  # a failed frame: the last good one, dimmed (stale)
            image = self._dimmed_last_image()
        else:
            image = np.zeros((540, 960, 3), np.uint8)
        level, state = result.level, result.state
        detail = "no calibration" if state is None and result.error is None else (
            short_reason(result.error or result.reason) if result.error or level == WarningLevel.UNAVAILABLE else "")
        result.annotated = render.render_frame(
            image, result.detections, state, level=level if self.settings.banner else WarningLevel.NONE,
            banner_detail=detail,
            hud_lines=hud_lines if self.settings.hud else (),
        )
        objects = state.objects if state is not None else ()
        result.bev = render.render_bev(
            objects_m=np.array([(o.lateral_m, o.distance_m) for o in objects], np.float64).reshape(-1, 2),
            in_zone=[o.in_zone for o in objects],
            zone_polygon_m=state.zone_polygon_m if state is not None else None,
            lane_width_m=self.zone_config.lane_width_m,
            frame=frame.image if self.settings.bev_background else None,
            image_to_metric=self._image_to_metric,
        )
        result.times.render_ms = (time.perf_counter() - t0) * 1e3


#: A video frame's reason starts with its source and frame ("clip.mp4: frame 12: torn frame (...)").
_FRAME_PREFIX = re.compile(r"^.*?: frame \d+: ")


def short_reason(reason: str) -> str:
    """The banner's (and the run summary's) few words of a reason: its first clause ("the calibration does not
    fit this video"); for a video frame's, what happened after the file and frame ("torn frame", "cannot be
    decoded", "frame times unknown"), so the counts add up over frames and files."""
    return re.split(r":| \(", _FRAME_PREFIX.sub("", reason, count=1), maxsplit=1)[0].strip()


@dataclass(frozen=True)
class WarningEvent:
    """A warning onset: the overall level rose to CAUTION, BRAKE or UNAVAILABLE on this frame.

    Attributes:
        timestamp_s: frame time, seconds.
        frame_index: frame index.
        level: the new level's name.
        object: ``"<class> #<track id>"`` of the most critical in-zone object, or "" (UNAVAILABLE).
        distance_m: that object's distance ahead, metres (NaN if none).
        ttc_s: that object's TTC, seconds (inf when not closing, NaN if none).
        reason: why the system is unavailable, else "".
        cues: the TTC cues that agreed on the threat, e.g. "range+scale" ("" for UNAVAILABLE).
    """

    timestamp_s: float
    frame_index: int
    level: str
    object: str = ""
    distance_m: float = math.nan
    ttc_s: float = math.nan
    reason: str = ""
    cues: str = ""


@dataclass
class EventRecorder:
    """Turns the stream of results into warning events (rising edges of the overall level)."""

    events: list[WarningEvent] = field(default_factory=list)
    _previous: WarningLevel = WarningLevel.NONE

    def update(self, result: FrameResult) -> WarningEvent | None:
        """Record an event if this result raises the level; returns it (or None).

        A warning that follows UNAVAILABLE directly is an onset too (UNAVAILABLE ranks highest, but
        CAUTION/BRAKE after it is a new warning); BRAKE -> CAUTION is not.
        """
        level = level_of(result)
        previous, self._previous = self._previous, level
        if level in (WarningLevel.NONE, previous) or (level < previous and previous != WarningLevel.UNAVAILABLE):
            return None
        state = result.state
        in_zone = [o for o in (state.objects if state is not None else ()) if o.in_zone]
        event = WarningEvent(result.timestamp_s, result.frame_index, level.name,
                             reason=result.reason if level == WarningLevel.UNAVAILABLE else "")
        if in_zone and level != WarningLevel.UNAVAILABLE:
            obj = min(in_zone, key=lambda o: (o.ttc_s, o.distance_m))
            event = WarningEvent(result.timestamp_s, result.frame_index, level.name,
                                 f"{name_of(obj.category_id)} #{obj.track_id}", obj.distance_m, obj.ttc_s,
                                 cues=obj.cues_text)
        self.events.append(event)
        return event

    @property
    def warning_count(self) -> int:
        """Number of CAUTION/BRAKE onsets."""
        return sum(e.level in ("CAUTION", "BRAKE") for e in self.events)


def _event_row(event: WarningEvent) -> dict:
    row = asdict(event)
    for key in ("timestamp_s", "distance_m", "ttc_s"):
        value = row[key]
        row[key] = None if math.isnan(value) else (round(value, 3) if math.isfinite(value) else "inf")
    return row


def write_events(path: str | os.PathLike[str], events: Iterable[WarningEvent]) -> None:
    """Write events atomically as CSV (``.csv``) or JSON (``.json``), chosen by the extension.

    Raises:
        ValueError: another extension.
    """
    path = Path(path)
    rows = [_event_row(e) for e in events]
    suffix = path.suffix.lower()
    if suffix == ".json":
        write_text(path, json.dumps(rows, indent=2) + "\n")
    elif suffix == ".csv":
        buf = io.StringIO()
        writer = csv.DictWriter(buf, fieldnames=list(WarningEvent.__dataclass_fields__))
        writer.writeheader()
        writer.writerows({k: ("" if v is None else v) for k, v in row.items()} for row in rows)
        write_text(path, buf.getvalue())
    else:
        raise ValueError(f"{path}: events file must end in .csv or .json")
