"""Turn the command line's INPUTS and calibration choice into :class:`RecordingSpec` values.

Everything here runs before any work starts, so bad input is one clear error and nothing is written:
an input that does not exist, a folder or glob with no video, a file that is not a video, a calibration
map that is malformed or names a missing file, a calibration file that does not load.
"""

from __future__ import annotations

import fnmatch
import glob
import hashlib
import logging
import os
import re
from dataclasses import dataclass
from pathlib import Path

import yaml

from aeb_app.errors import CalibrationError, InputError
from aeb_app.replay.types import RecordingSpec, ReplayOptions, settings_hash
from aeb_app.video.sequence import is_image_sequence, sequence_fingerprint

__all__ = ["VIDEO_EXTENSIONS", "CalibrationChoice", "find_videos", "load_calibration_map", "plan_recordings"]

log = logging.getLogger(__name__)

#: File extensions taken as videos when a folder or a glob is expanded (lower case).
VIDEO_EXTENSIONS = frozenset({".mp4", ".avi", ".mov", ".mkv", ".m4v", ".mpg", ".mpeg", ".webm", ".ts", ".wmv"})


@dataclass(frozen=True)
class CalibrationChoice:
    """Which calibration each recording gets.

    Attributes:
        rules: ``(pattern, calibration path)`` pairs, tried in order; a pattern matches the file name or the
            full path (``fnmatch``). One rule ``("*", path)`` gives every recording the same calibration.
    """

    rules: tuple[tuple[str, Path], ...]

    @classmethod
    def single(cls, path: str | os.PathLike[str]) -> "CalibrationChoice":
        return cls((("*", Path(path).resolve()),))

    def for_video(self, video: Path) -> Path | None:
        """The calibration for ``video``, or None when no rule matches."""
        for pattern, path in self.rules:
            if fnmatch.fnmatch(video.name, pattern) or fnmatch.fnmatch(str(video), pattern):
                return path
        return None


def load_calibration_map(path: str | os.PathLike[str]) -> CalibrationChoice:
    """Read a calibration map: a YAML mapping ``pattern: calibration.yaml`` (paths relative to the map).

    Raises:
        CalibrationError: the map is unreadable, not a mapping, or names a file that does not exist.
    """
    path = Path(path)
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise CalibrationError(f"{path}: cannot read calibration map ({exc.strerror or exc})") from exc
    except yaml.YAMLError as exc:
        raise CalibrationError(f"{path}: malformed YAML ({' '.join(str(exc).split())})") from exc
    if not isinstance(data, dict) or not data:
        raise CalibrationError(f"{path}: expected a mapping 'pattern: calibration file', got {type(data).__name__}")
    rules = []
    for pattern, target in data.items():
        if not isinstance(target, str):
            raise CalibrationError(f"{path}: {pattern!r}: expected a calibration file path, got {target!r}")
        file = (path.parent / target).resolve()
        if not file.is_file():
            raise CalibrationError(f"{path}: {pattern!r} names {file}, which does not exist")
        rules.append((str(pattern), file))
    return CalibrationChoice(tuple(rules))


def _is_video(path: Path) -> bool:
    return path.suffix.lower() in VIDEO_EXTENSIONS


def _is_recording(path: Path) -> bool:
    return (path.is_file() and _is_video(path)) or is_image_sequence(path)


def find_videos(inputs: list[str]) -> list[Path]:
    """Expand files, folders and globs into absolute recording paths, in order, without repeats.

    A recording is a video file or a folder of frames (:mod:`aeb_app.video.sequence`). A folder named (or matched
    by a glob) that holds frames is one recording; any other folder is searched recursively for video files.

    Raises:
        InputError: an input that does not exist, a folder or glob holding no recording, or a named file that
            is not a video (by extension).
    """
    found: dict[Path, None] = {}
    for item in inputs:
        if glob.has_magic(item):
            matches = [Path(p) for p in sorted(glob.glob(item, recursive=True))]
            videos = [p for p in matches if _is_recording(p)]
            if not videos:
                raise InputError(f"{item}: the pattern matches no video or folder of frames ({len(matches)} paths)")
        elif not os.path.exists(item):
            raise InputError(f"{item}: no such file or folder")
        elif os.path.isdir(item):
            videos = sorted(p for p in Path(item).rglob("*") if p.is_file() and _is_video(p))
            if not videos and is_image_sequence(Path(item)):
                videos = [Path(item)]
            if not videos:
                exts = ", ".join(sorted(VIDEO_EXTENSIONS))
                raise InputError(f"{item}: folder holds no video (looked for {exts}) and no frames")
        elif not _is_video(Path(item)):
            raise InputError(f"{item}: not a video file (extension {Path(item).suffix or 'none'!r})")
        else:
            videos = [Path(item)]
        found.update((p.resolve(), None) for p in videos)
    return list(found)


def _recording_name(path: Path) -> str:
    """A video's stem; a folder of frames' last two names (``drive_0001_sync_image_02`` for KITTI's
    ``drive_0001_sync/image_02`` or its ``data``)."""
    if not path.is_dir():
        return path.stem
    if path.name == "data":
        path = path.parent
    return f"{path.parent.name}_{path.name}" if path.parent.name else path.name


def _recording_ids(videos: list[Path]) -> list[str]:
    """Readable ids (see :func:`_recording_name`); a name shared by several recordings gets a hash of the path
    appended."""
    stems = [re.sub(r"[^A-Za-z0-9._-]", "_", _recording_name(v)) or "recording" for v in videos]
    return [s if stems.count(s) == 1 else f"{s}-{hashlib.sha1(str(v).encode()).hexdigest()[:8]}"
            for s, v in zip(stems, videos)]


def _file_sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def plan_recordings(inputs: list[str], calibrations: CalibrationChoice,
                    options: ReplayOptions) -> list[RecordingSpec]:
    """One :class:`RecordingSpec` per recording (video or folder of frames) found; every calibration used is loaded once to validate it.

    A video that no calibration rule matches gets ``calibration=None`` and fails on its own (reported),
    without stopping the others.

    Raises:
        InputError: see :func:`find_videos`.
        CalibrationError: a calibration file that does not load (message names the file and field).
    """
    from aeb_app.geometry import load_calibration

    videos = find_videos(inputs)
    hashes: dict[Path, str] = {}
    specs = []
    for video, recording_id in zip(videos, _recording_ids(videos)):
        calibration = calibrations.for_video(video)
        if calibration is not None and calibration not in hashes:
            load_calibration(calibration)  # raises CalibrationError naming the file
            hashes[calibration] = _file_sha256(calibration)
        size, mtime_ns = sequence_fingerprint(video) if video.is_dir() else (video.stat().st_size,
                                                                             video.stat().st_mtime_ns)
        specs.append(RecordingSpec(
            recording_id, str(video), size, mtime_ns,
            str(calibration) if calibration is not None else None,
            settings_hash(options, hashes.get(calibration) if calibration is not None else None),
        ))
    log.info("planned %d recordings", len(specs))
    return specs
