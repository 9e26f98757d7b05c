"""Video and camera input: the only place ``cv2.VideoCapture`` lives.

:class:`VideoSource` opens a file or a camera index, validates it up front (a missing,
empty, unreadable or undecodable file raises :class:`~aeb_app.errors.InputError` with one line
naming the file and the problem), and reads frames as :class:`VideoFrame` values. A frame
that fails to decode mid-stream is not a crash: it comes back with ``image=None`` and an
``error`` text, so the pipeline reports "system unavailable" for it.

A file's frames are numbered by their presentation time (``CAP_PROP_POS_MSEC``), not by the count of
reads: FFmpeg skips the packets of a corrupt stretch and resumes after it, so without this the frames
after the damage would get the indices (and timestamps) of the lost ones. The lost frames come back as
failed frames at their own indices, and the frames of the next :data:`AFTER_LOSS_S` are invalid too
(predicted from the lost ones until a key frame). So do the slots of a file that has no frame for a time
(a recording gap, or a variable frame rate running below its average), without that window. A read that
fails is retried (up to :data:`MAX_RESYNC_READS`, fast at the real end of the data) before the stream
ends, so the rest of a file after a damaged stretch is still read. A file that ends before its announced
frame count gives one failed frame that says so, then the stream ends. A camera ends after
:data:`MAX_CONSECUTIVE_FAILURES` failed reads in a row.

A file whose frame rate is not a camera's (:data:`PLAUSIBLE_FPS`: missing, 0, 1000 fps) has unknown
frame times: every frame gets an ``error`` saying so (UNAVAILABLE, never "no warning"); the frames
still decode and show, at :data:`DEFAULT_FPS`.

A folder of frames (KITTI raw and other datasets) is a source too: see :mod:`aeb_app.video.sequence`.

A frame that decodes but is implausible (frozen, blank or torn, see :mod:`aeb_app.video.validity`)
keeps its ``image`` (for display) and gets an ``error`` naming the reason; ``VideoFrame.valid`` is
False and the pipeline makes it UNAVAILABLE, not "no warning".

The frame read to probe a file is kept and returned by the first :meth:`VideoSource.read` (no
rewind), so a one-frame video works.
"""

from __future__ import annotations

import collections
import logging
import math
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import cv2
import numpy as np
import numpy.typing as npt

from aeb_app.errors import InputError
from aeb_app.video.sequence import SequenceCapture
from aeb_app.video.validity import FrameCheck

__all__ = ["VideoFrame", "VideoInfo", "VideoSource", "MAX_CONSECUTIVE_FAILURES", "MAX_RESYNC_READS", "PLAUSIBLE_FPS",
           "AFTER_LOSS_S", "parse_source"]

log = logging.getLogger(__name__)

#: Failed reads in a row after which a camera is considered lost and the stream ends.
MAX_CONSECUTIVE_FAILURES = 3
#: Failed reads of a file retried before it is taken to end there. FFmpeg needs about one failed read per
#: two lost frames to get past a corrupt stretch (measured: 15 reads for 29 frames of 200 kB of random
#: bytes in the sample clip); a read past the real end of the data fails in about 0.03 ms.
MAX_RESYNC_READS = 10_000
#: Frame rate assumed when a container or camera reports none.
DEFAULT_FPS = 25.0
#: Seconds after lost frames during which decoded frames are still invalid: they are predicted from the
#: lost ones until the next key frame, which the reader cannot see. Measured on the sample clip (a key frame
#: every 30 frames) with zeroed chunks: the frames after a loss differ from the intact file's by 2-4 grey
#: levels on average up to the next key frame (up to 25 frames, 1.0 s), without looking torn or blank.
#: 2 s covers key-frame intervals up to 2 s.
AFTER_LOSS_S = 2.0
#: Frame rates (Hz) a camera records at; outside, a file's frame times are unknown (the scenarios' range). The
#: range --fps accepts too.
PLAUSIBLE_FPS = (1.0, 240.0)


@dataclass(frozen=True)
class VideoInfo:
    """What a source is.

    Attributes:
        name: the file path or ``camera N``.
        width: frame width, pixels.
        height: frame height, pixels.
        fps: frames per second (the container's value; :data:`DEFAULT_FPS` when it is missing or, for a
            file, outside :data:`PLAUSIBLE_FPS`).
        frame_count: frames announced by the container; ``None`` for cameras/unknown.
        is_camera: True for a live camera.
    """

    name: str
    width: int
    height: int
    fps: float
    frame_count: int | None
    is_camera: bool

    @property
    def size_wh(self) -> tuple[int, int]:
        return self.width, self.height


@dataclass(frozen=True)
class VideoFrame:
    """One decoded (or failed) frame.

    Attributes:
        index: 0-based frame index in the source.
        timestamp_s: presentation time, seconds (``index / fps`` for files).
        image: (h, w, 3) uint8 BGR, or ``None`` when decoding failed.
        decode_ms: time spent reading/decoding (and checking) this frame, milliseconds.
        error: why ``image`` is ``None``, or why a decoded ``image`` is implausible (frozen/blank/torn).
    """

    index: int
    timestamp_s: float
    image: npt.NDArray[np.uint8] | None
    decode_ms: float = 0.0
    error: str | None = None

    @property
    def ok(self) -> bool:
        """The frame decoded (it may still be implausible: see :attr:`valid`)."""
        return self.image is not None

    @property
    def valid(self) -> bool:
        """Decoded and plausible: the only frames whose detections may count."""
        return self.image is not None and self.error is None


def parse_source(value: str | int | os.PathLike[str]) -> str | int:
    """A CLI/GUI source value -> a camera index (``int``) or a file path (``str``)."""
    if isinstance(value, int):
        return value
    text = str(value)
    return int(text) if text.isdigit() else text


class VideoSource:
    """A video file or camera, as a context manager and a frame iterator.

    Args:
        source: file path, a folder of frames (:mod:`aeb_app.video.sequence`), or a camera index (``int``).
        fps: frame rate: a folder of frames without a ``timestamps.txt`` needs it; for a video file it replaces
            the container's rate (a file whose header is wrong); None: the container's (or the timestamps').
        loop: when the end of a file is reached, start again at frame 0.
        check_frames: mark frozen/blank/torn frames invalid (:class:`~aeb_app.video.validity.FrameCheck`).

    Raises:
        InputError: on :meth:`open` for a missing/empty/unreadable file, an undecodable first frame,
            or a camera that does not open.
    """

    def __init__(self, source: str | os.PathLike[str] | int, *, fps: float | None = None, loop: bool = False,
                 check_frames: bool = True) -> None:
        self.source = parse_source(source)
        if fps is not None and not (math.isfinite(fps) and PLAUSIBLE_FPS[0] <= fps <= PLAUSIBLE_FPS[1]):
            raise InputError(f"--fps must be in [{PLAUSIBLE_FPS[0]:g}, {PLAUSIBLE_FPS[1]:g}] (a camera's frame rate), "
                             f"got {fps!r}")
        self.fps = float(fps) if fps is not None else None
        self.loop = loop
        self._check = FrameCheck() if check_frames else None
        self._invalid_run = 0
        self._cap: cv2.VideoCapture | None = None
        self._info: VideoInfo | None = None
        self._next_index = 0
        self._failures = 0
        self._pending: npt.NDArray[np.uint8] | None = None
        self._queue: collections.deque[VideoFrame] = collections.deque()  # lost frames, then the frame after
        self._ended = False  # a file ended early: its one failed frame was given
        self._timing_error: str | None = None  # a file's frame rate is implausible: every frame says so
        self._origin_ms = 0.0  # presentation time of the first frame, ms
        self._suspect_until = -1  # frames up to this index follow lost frames (may be decoded from garbage)
        self._camera_t0: float | None = None  # perf_counter() of the first camera read

    # -- lifecycle -------------------------------------------------------------------------
    def __enter__(self) -> "VideoSource":
        self.open()
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @property
    def info(self) -> VideoInfo:
        if self._info is None:
            raise InputError(f"{self.name}: source not opened")
        return self._info

    @property
    def name(self) -> str:
        return f"camera {self.source}" if isinstance(self.source, int) else str(self.source)

    @property
    def position(self) -> int:
        """Index of the frame the next :meth:`read` returns."""
        return self._next_index

    def open(self) -> VideoInfo:
        """Open and validate the source; returns its :class:`VideoInfo`."""
        if self._cap is not None:
            return self.info
        if isinstance(self.source, int):
            cap = self._open_camera(self.source)
        else:
            cap = self._open_file(Path(self.source))
        self._cap = cap
        self._info = self._probe(cap)
        self._next_index = 0
        log.info("opened %s: %dx%d @ %.2f fps, %s frames", self.name, self._info.width, self._info.height,
                 self._info.fps, self._info.frame_count if self._info.frame_count is not None else "?")
        return self._info

    def close(self) -> None:
        if self._cap is not None:
            self._cap.release()
            self._cap = None

    def _open_camera(self, index: int) -> cv2.VideoCapture:
        cap = cv2.VideoCapture(index)
        if not cap.isOpened():
            cap.release()
            raise InputError(f"camera {index}: cannot open (no such device, or it is busy)")
        return cap

    def _open_file(self, path: Path) -> cv2.VideoCapture | SequenceCapture:
        if not path.exists():
            raise InputError(f"{path}: no such file")
        if path.is_dir():
            return SequenceCapture(path, self.fps)
        if not path.is_file():
            raise InputError(f"{path}: not a file")
        if path.stat().st_size == 0:
            raise InputError(f"{path}: empty file")
        try:
            with path.open("rb"):
                pass
        except OSError as exc:
            raise InputError(f"{path}: cannot read ({exc.strerror or exc})") from exc
        cap = cv2.VideoCapture(str(path))
        if not cap.isOpened():
            cap.release()
            raise InputError(f"{path}: not a readable video (unknown or corrupt container)")
        return cap

    def _probe(self, cap: cv2.VideoCapture) -> VideoInfo:
        """Read the first frame to learn the size and prove the stream decodes, then rewind."""
        ok, frame = cap.read()
        if not ok or frame is None:
            cap.release()
            self._cap = None
            raise InputError(f"{self.name}: no decodable frame (corrupt or truncated video)")
        fps = self.fps or float(cap.get(cv2.CAP_PROP_FPS) or 0.0)
        count = int(cap.get(cv2.CAP_PROP_FRAME_COUNT) or 0)
        is_camera = isinstance(self.source, int)
        # Keep the probed frame for the first read instead of rewinding: cameras cannot rewind, and
        # some one-frame files fail to decode again after a seek to 0.
        self._pending = frame
        origin_ms = float(cap.get(cv2.CAP_PROP_POS_MSEC) or 0.0)  # a first frame's time need not be 0
        self._origin_ms = origin_ms if math.isfinite(origin_ms) else 0.0
        h, w = frame.shape[:2]
        plausible = self.fps is not None or PLAUSIBLE_FPS[0] <= fps <= PLAUSIBLE_FPS[1]  # False for NaN
        if not plausible and not is_camera and not getattr(cap, "independent_frames", False):
            self._timing_error = (f"frame times unknown (the file's frame rate, {fps:g} fps, is not a camera's: "
                                  f"expected {PLAUSIBLE_FPS[0]:g} to {PLAUSIBLE_FPS[1]:g}; give the rate with --fps)")
            log.warning("%s: %s; every frame is reported as unavailable", self.name, self._timing_error)
        return VideoInfo(self.name, w, h, fps if plausible or (is_camera and 0 < fps < 1000) else DEFAULT_FPS,
                         count if count > 0 and not is_camera else None, is_camera)

    # -- reading ---------------------------------------------------------------------------
    def _require(self) -> cv2.VideoCapture:
        if self._cap is None:
            raise InputError(f"{self.name}: source not opened")
        return self._cap

    def seek(self, frame_index: int) -> None:
        """Position the source so the next :meth:`read` returns ``frame_index`` (files only).

        Raises:
            InputError: on a camera, or an index outside the file.
        """
        cap = self._require()
        if self.info.is_camera:
            raise InputError(f"{self.name}: cannot seek a live camera")
        count = self.info.frame_count
        if frame_index < 0 or (count is not None and frame_index >= count):
            raise InputError(f"{self.name}: seek to frame {frame_index} outside 0..{(count or 1) - 1}")
        cap.set(cv2.CAP_PROP_POS_FRAMES, frame_index)
        self._pending = None
        self._queue.clear()
        self._ended = False
        self._suspect_until = -1
        self._next_index = frame_index
        self._failures = 0
        if self._check is not None:
            self._check.reset()

    def read(self) -> VideoFrame | None:
        """The next frame; ``None`` at the end of the stream (or after too many failures).

        A frame that fails to decode before the announced end comes back with ``image=None``.
        """
        cap = self._require()
        if self._queue:
            return self._queue.popleft()
        index = self._next_index
        t0 = time.perf_counter()
        failed = False
        if self._pending is not None:
            ok, frame, self._pending = True, self._pending, None
        else:
            ok, frame = cap.read()
            failed = not ok
            if failed and self._stream_file and not self._ended:
                ok, frame = self._resync(cap, index)
        if ok and frame is not None:
            return self._decoded(cap, frame, t0, after_failure=failed)
        return self._failed_read(index, self._timestamp_s(index, t0), (time.perf_counter() - t0) * 1e3)

    @property
    def _stream_file(self) -> bool:
        """A video file decoded as one stream: its frames are numbered by their time, a failed read is retried,
        and lost frames taint the next :data:`AFTER_LOSS_S`. Not a camera, nor a capture of independent images
        (one that sets ``independent_frames = True``, e.g. a folder of frames): there a failed read is one failed
        frame, as for a camera."""
        return not self.info.is_camera and not getattr(self._cap, "independent_frames", False)

    def _resync(self, cap: cv2.VideoCapture, index: int) -> tuple[bool, npt.NDArray[np.uint8] | None]:
        """Retry a file's failed read: FFmpeg gets past a corrupt stretch after a few failed reads."""
        count = self.info.frame_count
        if count is not None and index >= count:
            return False, None
        for _ in range(MAX_RESYNC_READS if count is None else min(MAX_RESYNC_READS, count - index)):
            ok, frame = cap.read()
            if ok and frame is not None:
                return True, frame
        return False, None

    def _decoded(self, cap: cv2.VideoCapture, frame: npt.NDArray[np.uint8], t0: float, *,
                 after_failure: bool = False) -> VideoFrame:
        """The decoded ``frame``, after a failed frame for each frame slot skipped before it (queued).

        ``after_failure``: reads failed before this one, so the skipped frames were lost to damage (and the
        next :data:`AFTER_LOSS_S` are predicted from them); without, the file has no frame for those times
        (a recording gap, or a variable frame rate).
        """
        index = self._file_index(cap)
        gap = range(self._next_index, index)
        cause = "cannot be decoded (corrupt data skipped by the decoder)" if after_failure else (
            "no frame for its time in the file (a recording gap or a variable frame rate)")
        if gap:
            log.warning("%s: frames %d-%d: %s (reported as unavailable)", self.name, gap[0], gap[-1], cause)
            if after_failure:
                self._suspect_until = index + max(1, round(AFTER_LOSS_S * self.info.fps)) - 1
        missing = [VideoFrame(i, self._timestamp_s(i, t0), None, 0.0, f"{self.name}: frame {i}: {cause}") for i in gap]
        self._failures = 0
        self._next_index = index + 1
        error = self._implausible(index, frame)
        if error is None and index <= self._suspect_until:
            error = f"{self.name}: frame {index}: follows lost frames (may be decoded from the damaged data)"
        good = VideoFrame(index, self._timestamp_s(index, t0), frame, (time.perf_counter() - t0) * 1e3, error)
        if not missing:
            return good
        self._queue.extend([*missing[1:], good])
        return missing[0]

    def _file_index(self, cap: cv2.VideoCapture) -> int:
        """The index of the frame just decoded: from its presentation time when the file has one (never
        behind the next expected index), else the next expected index. With ``fps`` given the file's times are
        not used (its header's rate, which they follow, was wrong): frame k is at k / fps."""
        if not self._stream_file or self._timing_error is not None or self.fps is not None:
            return self._next_index
        position_ms = float(cap.get(cv2.CAP_PROP_POS_MSEC) or 0.0)
        if not math.isfinite(position_ms) or position_ms <= 0:
            return self._next_index
        return max(self._next_index, round((position_ms - self._origin_ms) * self.info.fps / 1000.0))

    def _implausible(self, index: int, frame: npt.NDArray[np.uint8]) -> str | None:
        """The error text of a frozen/blank/torn frame (logged once per run of such frames), or None."""
        reason = self._check.check(frame) if self._check is not None else None
        if reason is None and self._timing_error is not None:
            return f"{self.name}: frame {index}: {self._timing_error}"
        if reason is None:
            self._invalid_run = 0
            return None
        message = f"{self.name}: frame {index}: {reason}"
        if self._invalid_run == 0:
            log.warning("%s (reported as unavailable)", message)
        self._invalid_run += 1
        return message

    def _timestamp_s(self, index: int, read_start: float) -> float:
        """``index / fps`` for files; for a camera, wall-clock seconds since it was opened.

        A live camera's frame index says nothing about time: a camera that stalls for 2 s and then
        delivers a frame must look 2 s late to the stale-frame check, not one frame period late.
        """
        if not self.info.is_camera:
            if isinstance(self._cap, SequenceCapture):  # a folder of frames knows each frame's time
                return self._cap.time_s(index)
            return index / self.info.fps
        if self._camera_t0 is None:
            self._camera_t0 = read_start
        return read_start - self._camera_t0

    def _failed_read(self, index: int, timestamp_s: float, decode_ms: float) -> VideoFrame | None:
        count = self.info.frame_count
        if count is not None and index >= count:
            return self._end_or_loop()
        if self._stream_file:
            return self._file_ended_early(index, timestamp_s, decode_ms)
        self._failures += 1
        if self._failures > MAX_CONSECUTIVE_FAILURES:
            log.warning("%s: stream ended at frame %d (%d failed reads in a row)", self.name, index,
                        MAX_CONSECUTIVE_FAILURES)
            return None
        self._next_index += 1
        what = "camera stalled or lost" if self.info.is_camera else (
            getattr(self._cap, "last_error", "") or "unreadable frame")
        message = f"{self.name}: frame {index}: cannot be read ({what})"
        log.warning(message)
        return VideoFrame(index, timestamp_s, None, decode_ms, message)

    def _file_ended_early(self, index: int, timestamp_s: float, decode_ms: float) -> VideoFrame | None:
        """No frame decodes from ``index`` on: one failed frame that says so (when the file announced more
        frames), then the end of the stream (or the loop's start)."""
        count = self.info.frame_count
        if self._ended or count is None:  # stays ended until a seek
            self._ended = True
            if count is None:
                log.debug("%s: end of stream at frame %d", self.name, index)
            return self._end_or_loop() if self.loop and index > 0 else None
        self._ended = True
        self._next_index += 1
        message = (f"{self.name}: frame {index}: cannot be decoded (the data ends here, {count - index} frames "
                   f"before the announced {count}: corrupt or truncated video)")
        log.warning(message)
        return VideoFrame(index, timestamp_s, None, decode_ms, message)

    def _end_or_loop(self) -> VideoFrame | None:
        if not self.loop or self.info.is_camera:
            return None
        self.seek(0)
        return self.read()

    def frames(self, *, max_frames: int | None = None) -> Iterator[VideoFrame]:
        """Iterate frames from the current position until the end (or ``max_frames``)."""
        produced = 0
        while max_frames is None or produced < max_frames:
            frame = self.read()
            if frame is None:
                return
            produced += 1
            yield frame
