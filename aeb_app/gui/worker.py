"""Run a generator in a QThread and hand its items to the GUI thread by signals.

Shaped like superqt's ``GeneratorWorker``: the generator is built and iterated in the thread;
each item is emitted (``yielded``), an exception is emitted (``errored``), and ``finished`` (the
QThread signal) follows either way. Stopping is cooperative: :meth:`GeneratorWorker.stop` calls
``requestInterruption`` (checked between items) plus an optional stop hook, then waits with a
timeout, like labelme's download widget.

:class:`FrameWorker` adds a bounded display queue: frame results go into a
:class:`DropQueue` and the GUI is poked with ``frame_ready``; when the GUI falls behind the oldest
queued result is dropped (and counted) instead of letting latency grow.
"""

from __future__ import annotations

import collections
import logging
import threading
from typing import Any, Callable, Iterator

from PyQt5.QtCore import QThread, pyqtSignal

from aeb_app.gui.session import LiveFrame, Progress
from aeb_app.pipeline import WarningEvent

__all__ = ["GeneratorWorker", "FrameWorker", "DropQueue"]

log = logging.getLogger(__name__)


class DropQueue:
    """A thread-safe FIFO of at most ``maxsize`` items that drops the oldest when full."""

    def __init__(self, maxsize: int = 2) -> None:
        if maxsize < 1:
            raise ValueError(f"maxsize must be >= 1, got {maxsize}")
        self._items: collections.deque = collections.deque(maxlen=maxsize)
        self._lock = threading.Lock()
        self.dropped = 0

    def put(self, item: Any) -> bool:
        """Add ``item``; returns True when the queue was empty before (the consumer needs a poke)."""
        with self._lock:
            was_empty = not self._items
            if len(self._items) == self._items.maxlen:
                self.dropped += 1
            self._items.append(item)
            return was_empty

    def take_latest(self) -> Any | None:
        """The newest item (older ones are dropped and counted), or None when empty."""
        with self._lock:
            if not self._items:
                return None
            self.dropped += len(self._items) - 1
            item = self._items[-1]
            self._items.clear()
            return item

    def __len__(self) -> int:
        with self._lock:
            return len(self._items)


class GeneratorWorker(QThread):
    """Iterate ``func(*args, **kwargs)`` (a generator function) in a thread.

    Signals:
        yielded(object): each item.
        errored(object): the exception that ended the generator.
        finished(): (QThread's) the thread is done, after a normal end, an error or a stop.
    """

    yielded = pyqtSignal(object)
    errored = pyqtSignal(object)

    def __init__(self, func: Callable[..., Iterator[Any]], *args: Any, on_stop: Callable[[], None] | None = None,
                 **kwargs: Any) -> None:
        super().__init__()
        self._func, self._args, self._kwargs = func, args, kwargs
        self._on_stop = on_stop

    def run(self) -> None:  # runs in the worker thread
        generator = None
        try:
            generator = self._func(*self._args, **self._kwargs)
            for item in generator:
                if self.isInterruptionRequested():
                    break
                self.handle(item)
        except Exception as exc:  # noqa: BLE001 - every failure goes to the GUI, none kills the app
            log.warning("worker stopped by %s: %s", type(exc).__name__, exc)
            self.errored.emit(exc)
        finally:
            if generator is not None:
                self._close(generator)

    def _close(self, generator: Iterator[Any]) -> None:
        """Run the generator's cleanup (release video, detector) in this thread.

        A failing cleanup is emitted like any other error: an exception escaping ``run`` would reach
        PyQt's excepthook, which aborts the whole application.
        """
        close = getattr(generator, "close", None)  # plain iterators have no cleanup
        try:
            if close is not None:
                close()
        except Exception as exc:  # noqa: BLE001 - see the docstring
            log.warning("worker cleanup failed with %s: %s", type(exc).__name__, exc)
            self.errored.emit(exc)

    def handle(self, item: Any) -> None:
        """Route one item to a signal (subclasses specialise)."""
        self.yielded.emit(item)

    def stop(self, timeout_ms: int = 5000) -> bool:
        """Ask the thread to stop and wait up to ``timeout_ms``; True if it finished."""
        self.requestInterruption()
        if self._on_stop is not None:
            self._on_stop()
        finished = self.wait(timeout_ms)
        if not finished:
            log.error("worker did not stop within %d ms", timeout_ms)
        return finished


class FrameWorker(GeneratorWorker):
    """A :class:`GeneratorWorker` for :func:`~aeb_app.gui.session.live_session`.

    Signals:
        progress(str, float): loading steps.
        frame_ready(): a result is waiting in :attr:`queue` (take it with ``queue.take_latest()``).
        event(object): a :class:`~aeb_app.pipeline.WarningEvent` (never dropped).
        yielded(object): anything else (``Started``, ``Notice``, ``EndOfStream``).
    """

    progress = pyqtSignal(str, float)
    frame_ready = pyqtSignal()
    event = pyqtSignal(object)

    def __init__(self, func: Callable[..., Iterator[Any]], *args: Any, queue_size: int = 2, **kwargs: Any) -> None:
        super().__init__(func, *args, **kwargs)
        self.queue = DropQueue(queue_size)

    def handle(self, item: Any) -> None:
        if isinstance(item, LiveFrame):
            if self.queue.put(item):
                self.frame_ready.emit()
        elif isinstance(item, WarningEvent):
            self.event.emit(item)
        elif isinstance(item, Progress):
            self.progress.emit(item.text, item.fraction)
        else:
            self.yielded.emit(item)
