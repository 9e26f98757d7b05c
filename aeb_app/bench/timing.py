"""Timing a reviewer can trust: warm-up, device synchronisation, enough repeats, robust statistics.

On CUDA every repetition is bracketed by CUDA events recorded on the current stream (device
time of the work queued in between, no host-side launch jitter); on the CPU by
``time.perf_counter``. Reported: median (p50), p99, mean, and the number of repetitions.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Callable

import numpy as np


@dataclass(frozen=True)
class TimingStats:
    """Per-call latency statistics in milliseconds."""

    p50_ms: float
    p99_ms: float
    mean_ms: float
    min_ms: float
    iters: int
    clock: str  # "cuda-events" or "perf_counter"

    @classmethod
    def from_samples(cls, samples_ms: list[float], clock: str) -> "TimingStats":
        arr = np.asarray(samples_ms, dtype=np.float64)
        if arr.size == 0:
            raise ValueError("no timing samples")
        return cls(float(np.median(arr)), float(np.percentile(arr, 99)), float(arr.mean()),
                   float(arr.min()), int(arr.size), clock)


def measure(
    fn: Callable[[], object],
    *,
    cuda: bool,
    warmup_iters: int = 10,
    min_iters: int = 20,
    max_iters: int = 1000,
    min_time_s: float = 1.0,
    should_stop: Callable[[], bool] | None = None,
) -> TimingStats:
    """Time ``fn`` after warm-up until both ``min_iters`` and ``min_time_s`` are reached.

    Args:
        fn: the work to time; on CUDA it may return before the GPU finishes (events catch it).
        cuda: time with CUDA events and synchronise (else host clock).
        warmup_iters: untimed calls first (cuDNN autotuning, allocator, lazy init).
        min_iters / max_iters: bounds on timed repetitions.
        min_time_s: keep repeating at least this long, for a stable median.
        should_stop: polled between repetitions; True cancels (returns what was measured).
    """
    for _ in range(warmup_iters):
        fn()
    if cuda:
        return _measure_cuda(fn, min_iters, max_iters, min_time_s, should_stop)
    samples: list[float] = []
    start = time.perf_counter()
    while len(samples) < max_iters:
        t0 = time.perf_counter()
        fn()
        samples.append((time.perf_counter() - t0) * 1e3)
        if _done(samples, start, min_iters, min_time_s, should_stop):
            break
    return TimingStats.from_samples(samples, "perf_counter")


def _done(samples: list[float], start: float, min_iters: int, min_time_s: float,
          should_stop: Callable[[], bool] | None) -> bool:
    if should_stop is not None and should_stop():
        return True
    return len(samples) >= min_iters and time.perf_counter() - start >= min_time_s


def _measure_cuda(fn, min_iters, max_iters, min_time_s, should_stop) -> TimingStats:
    import torch

    torch.cuda.synchronize()
    samples: list[float] = []
    start = time.perf_counter()
    while len(samples) < max_iters:
        # Record a chunk of event pairs, then synchronise once: no host sync between calls.
        chunk = min(max(min_iters, 10), max_iters - len(samples))
        events = [(torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True))
                  for _ in range(chunk)]
        for begin, end in events:
            begin.record()
            fn()
            end.record()
        torch.cuda.synchronize()
        samples.extend(begin.elapsed_time(end) for begin, end in events)
        if _done(samples, start, min_iters, min_time_s, should_stop):
            break
    return TimingStats.from_samples(samples, "cuda-events")
