"""Per-recording output files: each sink sees every frame result and writes one file of the recording.

:class:`EventsSink` keeps the warning onsets (:class:`~aeb_app.pipeline.EventRecorder`) and writes them with
:func:`~aeb_app.pipeline.write_events`. :class:`CsvRowsSink` streams per-frame rows (e.g. per-object tracks)
into a temp file beside its target and renames it over the target when the recording is done, so memory
stays flat on hour-long recordings and a killed process leaves no partial file under the final name.
"""

from __future__ import annotations

import contextlib
import csv
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any, Callable, Protocol, Sequence

from aeb_app.atomic import atomic_path
from aeb_app.pipeline import EventRecorder, write_events
from aeb_app.replay.types import EVENTS_NAME
from aeb_app.types import FrameResult

__all__ = ["Sink", "EventsSink", "CsvRowsSink"]


class Sink(Protocol):
    """Watches every frame result of a recording and writes one file into the recording's folder."""

    name: str

    def update(self, result: FrameResult) -> None: ...

    def write(self, folder: Path) -> str:
        """Write (or finish) the file; return its name relative to ``folder``."""


@dataclass
class EventsSink:
    """The warning onsets, as ``events.csv``."""

    name: str = "events"
    recorder: EventRecorder = field(default_factory=EventRecorder)

    def update(self, result: FrameResult) -> None:
        self.recorder.update(result)

    def write(self, folder: Path) -> str:
        write_events(folder / EVENTS_NAME, self.recorder.events)
        return EVENTS_NAME


class CsvRowsSink:
    """Rows per frame, streamed to ``folder/file_name`` through a temp file renamed at :meth:`write`.

    Args:
        folder: the recording's folder.
        name: key of the file in the summary's ``files``.
        file_name: the CSV's name.
        columns: the header.
        rows_of: the rows (lists of cells) of one frame result, possibly none.
    """

    def __init__(self, folder: Path, name: str, file_name: str, columns: Sequence[str],
                 rows_of: Callable[[FrameResult], list[list[Any]]]) -> None:
        self.name, self.file_name, self.rows_of = name, file_name, rows_of
        self.rows = 0
        self._stack = contextlib.ExitStack()
        tmp = self._stack.enter_context(atomic_path(folder / file_name))  # renamed over the target on close
        self._fh: IO[str] = self._stack.enter_context(tmp.open("w", newline="", encoding="utf-8"))
        self._writer = csv.writer(self._fh)
        self._writer.writerow(columns)

    def update(self, result: FrameResult) -> None:
        rows = self.rows_of(result)
        self._writer.writerows(rows)
        self.rows += len(rows)

    def write(self, folder: Path) -> str:
        self._fh.flush()
        os.fsync(self._fh.fileno())
        self._stack.close()  # closes the file, then renames the temp file over the target
        return self.file_name
