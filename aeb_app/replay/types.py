"""Typed values of a fleet replay: what one recording is, how to replay it, what came out.

Pure data (no cv2, no torch, no Dask): these travel between the client and Dask workers by pickling,
and a :class:`RecordingResult` is also the per-recording ``summary.json`` on disk.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from aeb_app import __version__
from aeb_app.safety import WarningConfig, ZoneConfig

__all__ = [
    "RecordingSpec", "ReplayOptions", "RecordingResult", "SUMMARY_NAME", "EVENTS_NAME", "TRACKS_NAME",
    "settings_hash",
]

#: File names inside ``DIR/<recording-id>/``; the summary is written last and marks the recording done.
SUMMARY_NAME = "summary.json"
EVENTS_NAME = "events.csv"
TRACKS_NAME = "tracks.csv"


@dataclass(frozen=True)
class RecordingSpec:
    """One recording to replay (one task).

    Attributes:
        recording_id: folder name under the output directory (unique within a replay).
        path: absolute path of the video file or folder of frames (workers must see the same path).
        size_bytes: file size (a folder of frames: their total) when the replay was planned, bytes.
        mtime_ns: modification time (a folder of frames: the newest) when the replay was planned, nanoseconds.
        calibration: absolute path of its calibration YAML, or None (the recording fails: no calibration).
        settings_hash: hash of everything that changes the output (options, calibration content, app version).
    """

    recording_id: str
    path: str
    size_bytes: int
    mtime_ns: int
    calibration: str | None
    settings_hash: str


@dataclass(frozen=True)
class ReplayOptions:
    """How every recording is replayed.

    Attributes:
        model: model name (``ssd_mobilenet_v1`` ...).
        mode: inference mode (``fp32_ort``, ``fp16_trt`` ...); None walks the default fallback order.
        device: ``cpu``, ``cuda`` or ``cuda:N``; None lets the mode choose (CUDA when present).
        engines_dir: cache folder for exported/built models, or None for the mode's default (``engines``).
        threads: CPU threads for inference, or None for the backend's default.
        score_threshold: detection score threshold in [0, 1].
        ego_speed_mps: ego speed for the braking-zone length, m/s; None uses the zone's fixed length.
        warning: warning thresholds.
        zone: braking-zone settings.
        progress: show a frame progress bar (in-process runs only).
        batch: frames per network call (1 as live; more for GPU throughput; the events do not change).
        sequential: run decoding, inference and the logic one after the other on the task's thread instead
            of overlapped on their own threads (:mod:`aeb_app.frame_loop`; the events do not change).
        fps: frame rate of folders of frames without a ``timestamps.txt`` (and in place of video headers' rates);
            None: theirs.
        tiles: slice frames wider than 2:1 into tiles for the network (:mod:`aeb_app.model.tiling`).
    """

    model: str = "ssd_mobilenet_v1"
    mode: str | None = None
    device: str | None = None
    engines_dir: str | None = None
    threads: int | None = None
    score_threshold: float = 0.4
    ego_speed_mps: float | None = None
    warning: WarningConfig = field(default_factory=WarningConfig)
    zone: ZoneConfig = field(default_factory=ZoneConfig)
    progress: bool = False
    batch: int = 1
    sequential: bool = False
    fps: float | None = None
    tiles: bool = True

    def result_settings(self) -> dict[str, Any]:
        """The options that change the events (not where caches live nor how progress shows)."""
        return {
            "model": self.model, "mode": self.mode, "score_threshold": self.score_threshold,
            "ego_speed_mps": self.ego_speed_mps, "warning": dataclasses.asdict(self.warning),
            "zone": dataclasses.asdict(self.zone), **({"fps": self.fps} if self.fps is not None else {}),
            **({} if self.tiles else {"tiles": False}),
        }


def settings_hash(options: ReplayOptions, calibration_sha256: str | None) -> str:
    """16 hex digits over the result settings, the calibration file's content and the app version."""
    payload = {"settings": options.result_settings(), "calibration": calibration_sha256, "app": __version__}
    return hashlib.sha256(json.dumps(payload, sort_keys=True, default=str).encode()).hexdigest()[:16]


@dataclass
class RecordingResult:
    """What replaying one recording did; saved as ``DIR/<recording-id>/summary.json``.

    Attributes:
        recording_id: as in the spec.
        path: the video file.
        status: ``ok`` or ``failed``.
        reason: why it failed ("" when ok).
        size_bytes: input size the result was made from, bytes.
        mtime_ns: input modification time the result was made from, nanoseconds.
        settings_hash: the spec's settings hash.
        frames: frames processed.
        failed_frames: frames that could not be decoded or inferred.
        video_fps: the video's frame rate, frames per second.
        duration_s: recording length, ``frames / video_fps`` seconds.
        processing_s: wall time of the frame loop, seconds.
        levels: frames per warning level name.
        unavailable_reasons: UNAVAILABLE frames per short reason (e.g. "the calibration does not fit this video").
        events: warning onsets per level name (CAUTION, BRAKE, UNAVAILABLE).
        warnings_by_class: CAUTION/BRAKE onsets per ``"<level>/<class>"`` (class of the critical object).
        files: output files relative to the recording's folder (``events``, and ``tracks`` when written).
        detector: the mode that ran, e.g. ``fp32_ort on cpu``.
        worker: ``host:pid`` of the process that ran it.
        detector_reused: the detector came from this process's cache (no model load for this recording).
        skipped: this run found the recording already finished and did not replay it (not saved).
    """

    recording_id: str
    path: str
    status: str = "ok"
    reason: str = ""
    size_bytes: int = 0
    mtime_ns: int = 0
    settings_hash: str = ""
    frames: int = 0
    failed_frames: int = 0
    video_fps: float = 0.0
    duration_s: float = 0.0
    processing_s: float = 0.0
    levels: dict[str, int] = field(default_factory=dict)
    unavailable_reasons: dict[str, int] = field(default_factory=dict)
    events: dict[str, int] = field(default_factory=dict)
    warnings_by_class: dict[str, int] = field(default_factory=dict)
    files: dict[str, str] = field(default_factory=dict)
    detector: str = ""
    worker: str = ""
    detector_reused: bool = False
    skipped: bool = False

    @property
    def ok(self) -> bool:
        return self.status == "ok"

    @property
    def warnings(self) -> int:
        """CAUTION + BRAKE onsets."""
        return self.events.get("CAUTION", 0) + self.events.get("BRAKE", 0)

    @classmethod
    def failed(cls, spec: RecordingSpec, reason: str) -> "RecordingResult":
        """A failed result for ``spec`` with a one-line ``reason``."""
        return cls(spec.recording_id, spec.path, "failed", " ".join(reason.split()), spec.size_bytes,
                   spec.mtime_ns, spec.settings_hash)

    def to_json(self) -> dict[str, Any]:
        """JSON-ready dict (``skipped`` is a property of one run, not of the result, so it is left out)."""
        data = dataclasses.asdict(self)
        data.pop("skipped")
        return data

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> "RecordingResult":
        """Inverse of :meth:`to_json`; unknown keys are ignored (summaries of a newer version)."""
        names = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in names})

    @classmethod
    def load(cls, path: str | Path) -> "RecordingResult | None":
        """The summary at ``path``, or None when it is missing or unreadable."""
        try:
            return cls.from_json(json.loads(Path(path).read_text(encoding="utf-8")))
        except (OSError, ValueError, TypeError):
            return None

    def finishes(self, spec: RecordingSpec) -> bool:
        """True when this saved result is a finished replay of ``spec`` as it is now (same input, same settings)."""
        return (self.ok and self.recording_id == spec.recording_id and self.size_bytes == spec.size_bytes
                and self.mtime_ns == spec.mtime_ns and self.settings_hash == spec.settings_hash)
