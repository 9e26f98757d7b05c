"""An ordered pipeline of stage functions on their own threads, joined by bounded queues.

``aeb-app run`` uses it to overlap decoding, inference, AEB logic + drawing and encoding::

    stages = [Stage("inference", infer), Stage("logic", decide), Stage("encode", encode)]
    for item in run_stages(source_iterable, stages, capacity=4):
        ...  # the caller consumes results in source order

- One thread reads ``source`` (so iterating it, e.g. decoding video, overlaps the stages), one
  thread per stage; each stage handles items in arrival order, so results come out in source order.
- Every queue holds at most ``capacity`` items: a slow stage blocks the ones before it
  (back-pressure), so memory stays bounded (:func:`max_in_flight` items at most) and nothing is
  dropped (offline runs; live playback that must drop frames does so before the source).
- A stage that raises stops everything: the other threads end, and the generator re-raises that
  exception (the original object, its stage named in a note and the log) in the caller.
- A consumer that stops early (``break``, an exception, ``close()``) stops the threads too; the
  generator's ``finally`` joins them. No thread is left blocked on a full or empty queue: every
  put/get waits in short slices and checks the shared stop flag.

Stage functions run in worker threads: they must not touch Qt widgets. Pure Python work holds the
GIL; the overlap comes from the C++ work that releases it (OpenCV, ONNX Runtime, PyTorch, codecs).
"""

from __future__ import annotations

import logging
import queue
import threading
from dataclasses import dataclass
from typing import Any, Callable, Iterable, Iterator, Sequence

__all__ = ["Stage", "run_stages", "max_in_flight", "StageThreadsLeft"]

log = logging.getLogger(__name__)

#: Seconds a blocked put/get waits before re-checking the stop flag.
_POLL_S = 0.05
#: Seconds the shutdown waits for each thread to end.
_JOIN_S = 10.0


class _End:
    """The end-of-stream marker that travels behind the last item."""


_END = _End()


class StageThreadsLeft(RuntimeError):
    """A stage thread did not end within the shutdown timeout (a stage function is stuck)."""


@dataclass(frozen=True)
class Stage:
    """One step: ``fn(item) -> item`` on its own thread.

    Attributes:
        name: for thread names, logs and error notes.
        fn: the work; its return value goes to the next stage (or the caller).
    """

    name: str
    fn: Callable[[Any], Any]


def max_in_flight(num_stages: int, capacity: int | Sequence[int]) -> int:
    """The most items that exist at once between the source and the caller.

    ``num_stages + 1`` queues of ``capacity`` items (or the given sizes), one item held by each stage thread, one by the
    source thread (read but not yet queued) and one by the caller (yielded, not yet done).
    """
    queued = (num_stages + 1) * capacity if isinstance(capacity, int) else sum(capacity)
    return queued + num_stages + 2


class _Shared:
    """State every thread of one run sees: the stop flag and the first failure."""

    def __init__(self) -> None:
        self.stop = threading.Event()
        self.error: BaseException | None = None
        self.stage = ""
        self._lock = threading.Lock()

    def fail(self, stage: str, exc: BaseException) -> None:
        with self._lock:
            if self.error is None:
                self.error, self.stage = exc, stage
        self.stop.set()

    def put(self, q: queue.Queue, item: object) -> bool:
        """Put, waiting while the queue is full; False when the run was stopped meanwhile."""
        while not self.stop.is_set():
            try:
                q.put(item, timeout=_POLL_S)
                return True
            except queue.Full:
                continue
        return False

    def get(self, q: queue.Queue) -> object:
        """Get, waiting while the queue is empty; :data:`_END` when the run was stopped meanwhile."""
        while not self.stop.is_set():
            try:
                return q.get(timeout=_POLL_S)
            except queue.Empty:
                continue
        return _END


def _read_source(source: Iterable[Any], out: queue.Queue, shared: _Shared) -> None:
    iterator = iter(source)
    try:
        for item in iterator:
            if not shared.put(out, item):
                return
        shared.put(out, _END)
    except BaseException as exc:  # noqa: BLE001 - surfaced in the caller's thread
        shared.fail("source", exc)
    finally:
        close = getattr(iterator, "close", None)
        if close is not None:  # a generator source: run its finally blocks in this thread
            close()


def _run_stage(stage: Stage, inbox: queue.Queue, out: queue.Queue, shared: _Shared) -> None:
    try:
        while True:
            item = shared.get(inbox)
            if item is _END:
                shared.put(out, _END)
                return
            if not shared.put(out, stage.fn(item)):
                return
    except BaseException as exc:  # noqa: BLE001 - surfaced in the caller's thread
        shared.fail(stage.name, exc)


def run_stages(source: Iterable[Any], stages: Sequence[Stage], *,
               capacity: int | Sequence[int] = 4) -> Iterator[Any]:
    """Feed ``source`` through ``stages`` on worker threads; yield the results in source order.

    Args:
        source: items (iterated on its own thread; a generator is closed there at the end).
        stages: applied in order to every item.
        capacity: items each queue holds (>= 1), or one value per queue (``len(stages) + 1`` of them,
            the first between the source and the first stage); see :func:`max_in_flight`.

    Yields:
        ``stages[-1].fn(... stages[0].fn(item))`` for every item, in order.

    Raises:
        ValueError: a capacity < 1, or not one per queue.
        BaseException: whatever the source or a stage raised (the first failure), after all
            threads have ended.
        StageThreadsLeft: a thread did not end within the shutdown timeout.
    """
    sizes = [capacity] * (len(stages) + 1) if isinstance(capacity, int) else list(capacity)
    if len(sizes) != len(stages) + 1 or min(sizes) < 1:
        raise ValueError(f"capacity must be >= 1, one value or one per queue ({len(stages) + 1}), got {capacity}")
    return _generate(source, tuple(stages), sizes)


def _generate(source: Iterable[Any], stages: tuple[Stage, ...], sizes: list[int]) -> Iterator[Any]:
    shared = _Shared()
    queues = [queue.Queue(maxsize=size) for size in sizes]
    threads = [threading.Thread(target=_read_source, args=(source, queues[0], shared),
                                name="stage-source", daemon=True)]
    threads += [threading.Thread(target=_run_stage, args=(s, queues[i], queues[i + 1], shared),
                                 name=f"stage-{s.name}", daemon=True) for i, s in enumerate(stages)]
    for thread in threads:
        thread.start()
    try:
        while True:
            item = shared.get(queues[-1])
            if item is _END:
                break
            yield item
    finally:
        shared.stop.set()
        _join(threads)
    if shared.error is not None:
        _raise(shared)


def _join(threads: list[threading.Thread]) -> None:
    left = []
    for thread in threads:
        thread.join(_JOIN_S)
        if thread.is_alive():
            left.append(thread.name)
    if left:
        raise StageThreadsLeft(f"stage threads still running after {_JOIN_S:.0f} s: {', '.join(left)}")


def _raise(shared: _Shared) -> None:
    exc = shared.error
    log.debug("stage %r failed: %s", shared.stage, exc)
    if hasattr(exc, "add_note"):
        exc.add_note(f"(in pipeline stage {shared.stage!r})")
    raise exc
