"""Playing a file at its own frame rate, as a camera would deliver it.

A camera hands over a frame every ``1/fps`` seconds whether or not the previous one has been processed;
a file can be read as fast as the decoder goes. :class:`PlaybackClock` makes a file behave like the
camera: a frame is held back until its presentation time (measured from the first frame played) and,
when processing has fallen a whole frame period behind, it is skipped (decoded, not processed) and
counted, so the system's latency is measured instead of a queue's. It never skips more than
:data:`MAX_SKIPS_IN_ROW` frames in a row, so a view keeps moving however slow the processing.

Used by the GUI's live playback and by ``aeb-app run --realtime``. No Qt, no GPU.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Callable, Iterable, Iterator

if TYPE_CHECKING:
    from aeb_app.video.reader import VideoFrame

__all__ = ["MAX_SKIPS_IN_ROW", "PlaybackClock", "paced"]

#: The most consecutive frames skipped; the next one is processed however late it is.
MAX_SKIPS_IN_ROW = 9


@dataclass
class PlaybackClock:
    """When to hand over each frame of a file played in real time.

    Attributes:
        fps: the file's frame rate (frame period ``1/fps``: how late a frame may be before it is skipped).
        skipped: frames skipped so far.
        now: the clock, seconds (``time.perf_counter``).
        sleep: how to wait, seconds (``time.sleep``).
    """

    fps: float
    skipped: int = 0
    now: Callable[[], float] = time.perf_counter
    sleep: Callable[[float], None] = time.sleep
    _origin: tuple[float, float] | None = field(default=None, repr=False)  # (wall time, frame time) at (re)start
    _in_row: int = field(default=0, repr=False)
    _last: float | None = field(default=None, repr=False)  # file time of the last frame admitted or skipped

    def __post_init__(self) -> None:
        if not self.fps > 0:
            raise ValueError(f"playback needs a positive frame rate, got {self.fps!r}")

    def restart(self) -> None:
        """The next frame starts the clock again (after a pause or a seek)."""
        self._origin = None

    def admit(self, timestamp_s: float) -> bool:
        """Wait until the frame at ``timestamp_s`` (the file's time, seconds) is due and return True, or
        return False at once (the frame skipped, counted) when it is a frame period or more overdue."""
        if self._origin is None or timestamp_s < self._origin[1]:
            self._origin = (self.now(), timestamp_s)
        self._last = timestamp_s
        lag_s = self.now() - self._origin[0] - (timestamp_s - self._origin[1])
        if lag_s >= 1.0 / self.fps and self._in_row < MAX_SKIPS_IN_ROW:
            self.skipped += 1
            self._in_row += 1
            return False
        self._in_row = 0
        if lag_s < -1e-6:  # early (not a rounding error after wait_for_next): hold it back
            self.sleep(-lag_s)
        return True


    def wait_for_next(self) -> None:
        """Wait until the frame after the last one (one period later) is due, before it is decoded: a camera's
        next frame does not exist before its time, and decoding it early would compete with the processing of
        the current one (a staged run's threads share one interpreter). No wait after a (re)start."""
        if self._origin is None or self._last is None:
            return
        wait_s = self._origin[0] + (self._last + 1.0 / self.fps - self._origin[1]) - self.now()
        if wait_s > 0:
            self.sleep(wait_s)


def paced(frames: Iterable["VideoFrame"], clock: PlaybackClock) -> Iterator["VideoFrame"]:
    """``frames`` as a camera would deliver them: each decoded and handed over at its time, overdue ones
    skipped (``clock.skipped``)."""
    frames = iter(frames)
    while True:
        clock.wait_for_next()
        frame = next(frames, None)
        if frame is None:
            return
        if clock.admit(frame.timestamp_s):
            yield frame
