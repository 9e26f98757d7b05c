"""A folder of frames as a video source: how driving datasets ship their camera streams.

KITTI raw (``image_02/data/0000000000.png`` with ``image_02/timestamps.txt``), exports of nuScenes-style logs and a
camera's burst mode store one image per frame. A folder given as the source of ``aeb-app run`` or ``replay`` is
read as one recording:

* its frames are the image files in it (or in its ``data`` subfolder: give KITTI's ``image_02`` or its ``data``) (``.png .jpg .jpeg .bmp .tif .tiff .ppm .pgm .webp``), in the natural order
  of their names (``frame_2`` before ``frame_10``); files of other kinds are ignored;
* each frame's time comes from a ``timestamps.txt`` in the folder or beside it (the KITTI layout), one line per
  image: seconds (``12.345``) or a date and time (``2011-09-26 13:02:25.964389700``); the times are made
  relative to the first. Irregular intervals and dropped frames are kept as they are, so the warning logic sees
  the real time between frames (a gap beyond its limit is a stale frame, i.e. "system unavailable");
* without that file the frame rate must be given (``--fps``): guessing one would scale every TTC.

A bad timestamps file (unparsable or non-increasing time, a count that does not match the images) is refused with
one line naming the file and the line. A frame that cannot be read, or whose size differs from the first, is a
failed frame (:class:`~aeb_app.video.reader.VideoSource` reports it as unavailable), not a crash.
"""

from __future__ import annotations

import logging
import math
import re
from datetime import datetime
from decimal import Decimal, InvalidOperation
from pathlib import Path

import cv2
import numpy as np
import numpy.typing as npt

from aeb_app.errors import InputError

__all__ = ["IMAGE_EXTENSIONS", "TIMESTAMPS_NAME", "SequenceCapture", "frames_folder", "has_timestamps", "is_image_sequence", "list_frames",
           "first_time", "read_timestamps", "sequence_fingerprint"]

log = logging.getLogger(__name__)

IMAGE_EXTENSIONS = frozenset({".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".ppm", ".pgm", ".webp"})
#: The frame-time file of a sequence (KITTI raw's name), looked for in the folder and beside it.
TIMESTAMPS_NAME = "timestamps.txt"
#: The nominal rate of a one-frame sequence with a timestamps file (KITTI's camera rate; only a writer uses it).
DEFAULT_SEQUENCE_FPS = 10.0
_DATE_TIME = re.compile(r"^(\d{4}-\d{2}-\d{2})[ T](\d{2}):(\d{2}):(\d{2}(?:\.\d+)?)$")


def _natural_key(path: Path) -> list:
    return [int(part) if part.isdigit() else part.lower() for part in re.split(r"(\d+)", path.name)]


def list_frames(folder: Path) -> list[Path]:
    """The image files directly in ``folder``, in natural name order."""
    return sorted((p for p in folder.iterdir() if p.suffix.lower() in IMAGE_EXTENSIONS and p.is_file()),
                  key=_natural_key)


def frames_folder(folder: Path) -> Path:
    """The folder that holds the frames: ``folder``, or its ``data`` subfolder when only that has images (KITTI
    raw's ``image_02/`` holds ``data/`` and ``timestamps.txt``)."""
    if not list_frames(folder) and (folder / "data").is_dir():
        return folder / "data"
    return folder


def is_image_sequence(path: Path) -> bool:
    """A folder whose frames (see :func:`frames_folder`) include at least one image file."""
    return path.is_dir() and bool(list_frames(frames_folder(path)))


def has_timestamps(folder: Path) -> bool:
    """Whether a folder of frames has its ``timestamps.txt`` (in it or beside it)."""
    return _timestamps_file(frames_folder(folder)) is not None


def sequence_fingerprint(folder: Path) -> tuple[int, int]:
    """(total bytes, newest modification time in ns) of a sequence's frames and timestamps file: what a replay
    compares to tell that a finished recording has not changed since."""
    folder = frames_folder(folder)
    stamps = _timestamps_file(folder)
    stats = [p.stat() for p in [*list_frames(folder), *([stamps] if stamps else [])]]
    return sum(st.st_size for st in stats), max((st.st_mtime_ns for st in stats), default=0)


def _timestamps_file(folder: Path) -> Path | None:
    for candidate in (folder / TIMESTAMPS_NAME, folder.parent / TIMESTAMPS_NAME):
        if candidate.is_file():
            return candidate
    return None


def _parse_time(text: str) -> Decimal:
    """Seconds from ``12.5`` or ``2011-09-26 13:02:25.964389700``, exact (a date's seconds since year 1 need
    more digits than a float has for the nanoseconds).

    Raises:
        ValueError: anything else (NaN and infinities included).
    """
    match = _DATE_TIME.match(text)
    try:
        if match is None:
            value = Decimal(text)
        else:
            day = datetime.strptime(match.group(1), "%Y-%m-%d").toordinal()
            value = Decimal(day * 86400 + int(match.group(2)) * 3600 + int(match.group(3)) * 60) + Decimal(match.group(4))
    except InvalidOperation:
        raise ValueError(text) from None
    if not value.is_finite():
        raise ValueError(text)
    return value


def read_timestamps(path: Path, expected: int | None = None, *, origin: Decimal | None = None) -> list[float]:
    """Times from ``path`` relative to its first line (or to ``origin``, e.g. another sensor's first time: see
    :func:`first_time`), seconds.

    Raises:
        InputError: unreadable file, a line that is not a time, a time not after the previous one, or a count
            other than ``expected`` (the number of images; None: any); the file and line are named.
    """
    try:
        lines = [line.strip() for line in path.read_text(encoding="utf-8").splitlines()]
    except (OSError, UnicodeDecodeError) as exc:
        raise InputError(f"{path}: cannot read ({exc})") from None
    times: list[Decimal] = []
    for number, line in enumerate(lines, start=1):
        if not line:
            continue
        try:
            value = _parse_time(line)
        except ValueError:
            raise InputError(f"{path}:{number}: {line[:40]!r} is not a time (seconds, or 'YYYY-MM-DD HH:MM:SS.f')"
                             ) from None
        if times and not value > times[-1]:
            raise InputError(f"{path}:{number}: time {line!r} is not after the previous line's")
        times.append(value)
    if expected is not None and len(times) != expected:
        raise InputError(f"{path}: {len(times)} times for {expected} images in {path.parent} (one line per image)")
    if not times:
        raise InputError(f"{path}: no times in the file")
    base = times[0] if origin is None else origin
    relative = [float(t - base) for t in times]
    if not all(map(math.isfinite, relative)):
        raise InputError(f"{path}: times span more than a float can hold (is a line in other units?)")
    return relative


def first_time(path: Path) -> Decimal:
    """The first time in a timestamps file, exact (the origin of a recording's clock)."""
    try:
        with path.open(encoding="utf-8") as fh:
            line = next((ln.strip() for ln in fh if ln.strip()), "")
        return _parse_time(line)
    except (OSError, UnicodeDecodeError, ValueError) as exc:
        raise InputError(f"{path}: no first time ({exc})") from None


class SequenceCapture:
    """The subset of ``cv2.VideoCapture`` that :class:`~aeb_app.video.reader.VideoSource` uses, over a folder.

    Args:
        folder: the folder of frames.
        fps: frame rate to use when the folder has no ``timestamps.txt`` (None: that file is required).

    Raises:
        InputError: no image in the folder, no frame times, or a bad timestamps file.
    """

    #: Each frame is its own file: a failed one is one failed frame (see ``VideoSource._stream_file``).
    independent_frames = True
    #: Why the last read failed (the file and the problem), "" after a good one.
    last_error = ""

    def __init__(self, folder: Path, fps: float | None = None) -> None:
        folder = frames_folder(folder)
        self.folder = folder
        self.frames = list_frames(folder)
        if not self.frames:
            exts = " ".join(sorted(IMAGE_EXTENSIONS))
            raise InputError(f"{folder}: folder holds no video frames (looked for {exts})")
        stamps = _timestamps_file(folder)
        if stamps is not None:
            self.times_s = read_timestamps(stamps, len(self.frames))
            log.info("%s: %d frames, times from %s", folder, len(self.frames), stamps)
        elif fps is not None:
            fps = float(fps)
            self.times_s = [i / fps for i in range(len(self.frames))]
        else:
            raise InputError(f"{folder}: an image sequence needs its frame times: a {TIMESTAMPS_NAME} in or beside "
                             "the folder (one time per image), or the frame rate (--fps)")
        self._fps = fps
        self._next = 0
        self._size: tuple[int, int] | None = None

    @property
    def fps(self) -> float:
        """The median frame rate (what a writer of the annotated video uses)."""
        if len(self.times_s) < 2:
            return self._fps or DEFAULT_SEQUENCE_FPS
        return float(1.0 / np.median(np.diff(self.times_s)))

    def time_s(self, index: int) -> float:
        """The time of frame ``index`` relative to the first, seconds (past the end: one interval per frame)."""
        if index < len(self.times_s):
            return self.times_s[index]
        return self.times_s[-1] + (index - len(self.times_s) + 1) / self.fps

    def isOpened(self) -> bool:  # noqa: N802 - cv2.VideoCapture's name
        return True

    def get(self, prop: int) -> float:
        if prop == cv2.CAP_PROP_FPS:
            return self.fps
        if prop == cv2.CAP_PROP_FRAME_COUNT:
            return float(len(self.frames))
        return 0.0

    def set(self, prop: int, value: float) -> bool:
        if prop != cv2.CAP_PROP_POS_FRAMES:
            return False
        self._next = int(value)
        return True

    def release(self) -> None:
        self._next = len(self.frames)

    def read(self) -> tuple[bool, npt.NDArray[np.uint8] | None]:
        """The next frame as 8-bit BGR (grey, 16-bit and alpha images converted), or ``(False, None)``."""
        if self._next >= len(self.frames):
            return False, None
        path = self.frames[self._next]
        self._next += 1
        image = cv2.imread(str(path), cv2.IMREAD_COLOR)
        size = None if image is None else (image.shape[1], image.shape[0])
        if self._size is None and size is not None:
            self._size = size
        if image is None:
            self.last_error = f"{path.name} cannot be decoded"
        elif size != self._size:
            self.last_error = f"{path.name} is {size[0]}x{size[1]}, not the sequence's {self._size[0]}x{self._size[1]}"
        else:
            self.last_error = ""
            return True, image
        return False, None
