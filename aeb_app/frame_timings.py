"""Per-frame times of a run (``aeb-app run --timings CSV``): where a slow frame's latency went.

The run summary gives means and the latency's p50 / p99; a p99 is made of a few slow frames, and what made
them slow (the network, the logic, a garbage collection of the interpreter) is only visible per frame.
:class:`GcPauses` records the interpreter's collections (``gc.callbacks``) so each frame can be charged the
collection time that fell between its decoding and its decision.

Columns (milliseconds unless named otherwise), one row per processed frame in order:
``frame`` (index in the video), ``time_s`` (its timestamp), ``decode_ms``, ``preprocess_ms``, ``inference_ms``,
``postprocess_ms``, ``geometry_ms`` (ground points, tracking, cues and the warning decision), ``render_ms``,
``encode_ms``, ``latency_ms`` (frame decoded -> warning decided), ``gc_ms`` (collections inside that interval),
``ok`` (1, or 0 for a failed frame).
"""

from __future__ import annotations

import gc
import time
from bisect import bisect_left
from dataclasses import astuple, dataclass, fields
from pathlib import Path

__all__ = ["FrameTiming", "GcPauses", "TimingLog", "write_timings_csv", "TIMING_COLUMNS"]


@dataclass(frozen=True)
class FrameTiming:
    """One frame's row of the timings CSV (see the module)."""

    frame: int
    time_s: float
    decode_ms: float
    preprocess_ms: float
    inference_ms: float
    postprocess_ms: float
    geometry_ms: float
    render_ms: float
    encode_ms: float
    latency_ms: float
    gc_ms: float
    ok: int


TIMING_COLUMNS = tuple(f.name for f in fields(FrameTiming))


class GcPauses:
    """The interpreter's garbage collections while the block runs, as ``perf_counter`` intervals.

    Use as ``with GcPauses() as pauses: ...; pauses.within(t0, t1)``.
    """

    def __init__(self) -> None:
        self.starts: list[float] = []
        self.ends: list[float] = []
        self._started = 0.0

    def _callback(self, phase: str, info: dict) -> None:
        now = time.perf_counter()
        if phase == "start":
            self._started = now
        else:
            self.starts.append(self._started)
            self.ends.append(now)

    def __enter__(self) -> "GcPauses":
        gc.callbacks.append(self._callback)
        return self

    def __exit__(self, *exc: object) -> None:
        gc.callbacks.remove(self._callback)

    def within(self, t0: float, t1: float) -> float:
        """Milliseconds of collection inside ``[t0, t1]`` (``perf_counter`` seconds)."""
        total = 0.0
        for i in range(bisect_left(self.ends, t0), len(self.starts)):
            if self.starts[i] >= t1:
                break
            total += min(self.ends[i], t1) - max(self.starts[i], t0)
        return total * 1e3


class TimingLog:
    """Collects a :class:`FrameTiming` per frame of a run, with the collections charged to each frame.

    Use as ``with TimingLog() as log: ...; log.add(work)`` for each :class:`~aeb_app.frame_loop.FrameWork`.
    """

    def __init__(self) -> None:
        self.rows: list[FrameTiming] = []
        self.pauses = GcPauses()

    def __enter__(self) -> "TimingLog":
        self.pauses.__enter__()
        return self

    def __exit__(self, *exc: object) -> None:
        self.pauses.__exit__(*exc)

    def add(self, work) -> None:
        """The row of one finished frame (``work``: a ``FrameWork`` with its result)."""
        t = work.result.times
        self.rows.append(FrameTiming(
            work.frame.index, float(work.frame.timestamp_s), t.decode_ms, t.preprocess_ms, t.inference_ms,
            t.postprocess_ms, t.geometry_ms, t.render_ms, work.encode_ms, work.latency_ms,
            self.pauses.within(work.decoded_at, work.decided_at), int(work.result.ok)))


def write_timings_csv(path: Path, rows: list[FrameTiming]) -> None:
    """The rows as CSV, written atomically (3 decimals for times)."""
    from aeb_app.atomic import write_text

    def cell(value) -> str:
        return f"{value:.3f}" if isinstance(value, float) else str(value)

    lines = [",".join(TIMING_COLUMNS)] + [",".join(cell(v) for v in astuple(row)) for row in rows]
    write_text(path, "\n".join(lines) + "\n")
