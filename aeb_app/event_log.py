"""Warning events written as they happen, so a failed or killed run keeps what it saw.

- ``.csv`` is the streamed format: the file is created when processing starts (header line), and
  each event is appended as one row and flushed to the OS at once. A run killed at frame 150 leaves
  a valid CSV with every event up to frame 150.
- ``.json`` (one array) cannot be appended to and stay valid, so it is written atomically when the
  run ends, also when it ends with an error, Ctrl-C or SIGTERM (with the events seen so far); only
  ``kill -9`` leaves the previous file as it was. Use ``.csv`` to keep events of any killed run.
"""

from __future__ import annotations

import csv
import dataclasses
import json
import math
import os
from pathlib import Path
from types import TracebackType
from typing import IO, Any, Iterable

from aeb_app.atomic import write_text
from aeb_app.errors import ConfigError

__all__ = ["EventLog", "event_row"]

SUFFIXES = (".csv", ".json")


def event_row(event: Any) -> dict[str, Any]:
    """A warning-event dataclass as a flat row: NaN -> None, infinities -> "inf", times rounded to 1 ms."""
    row = dataclasses.asdict(event)
    for key, value in row.items():
        if isinstance(value, float):
            row[key] = None if math.isnan(value) else (round(value, 3) if math.isfinite(value) else "inf")
    return row


class EventLog:
    """Context manager that records warning events to ``path`` (``.csv`` streamed, ``.json`` at the end).

    Args:
        path: the events file; its extension picks the format.
        fields: column names (the event dataclass's fields), for the CSV header.

    Raises:
        ConfigError: another extension, or the file cannot be created.
    """

    def __init__(self, path: str | os.PathLike[str], fields: Iterable[str]) -> None:
        self.path = Path(path)
        self.format = self.path.suffix.lower()
        if self.format not in SUFFIXES:
            raise ConfigError(f"{self.path}: events file must end in .csv or .json")
        self.fields = list(fields)
        self.rows: list[dict[str, Any]] = []
        self._fh: IO[str] | None = None
        self._csv: Any = None

    def __enter__(self) -> "EventLog":
        if self.format == ".csv":
            try:
                self.path.parent.mkdir(parents=True, exist_ok=True)
                self._fh = self.path.open("w", encoding="utf-8", newline="")
            except OSError as exc:
                raise ConfigError(f"{self.path}: cannot write events ({exc.strerror or exc})") from None
            self._csv = csv.DictWriter(self._fh, fieldnames=self.fields)
            self._csv.writeheader()
            self._fh.flush()
        return self

    def append(self, event: Any) -> None:
        """Record one event (a row written and flushed at once for CSV)."""
        row = event_row(event)
        self.rows.append(row)
        if self._csv is not None and self._fh is not None:
            self._csv.writerow({k: ("" if v is None else v) for k, v in row.items()})
            self._fh.flush()

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        if self._fh is not None:
            self._fh.close()
            self._fh = None
        elif self.format == ".json":
            write_text(self.path, json.dumps(self.rows, indent=2) + "\n")
