"""Before/after view of two replays of the same recordings: which warnings a change added or removed.

Events are matched per recording and level: an event of the new replay matches an unmatched event of the
old one with the same level whose time is within ``tolerance_s`` (nearest first). What stays unmatched in
the new replay is *added*, in the old one *removed*. This is the regression check for a change in the
warning logic (thresholds, zone, tracker, model or mode).
"""

from __future__ import annotations

import csv
from dataclasses import asdict, dataclass, field
from pathlib import Path

from aeb_app.errors import InputError
from aeb_app.replay.types import EVENTS_NAME, SUMMARY_NAME, RecordingResult

__all__ = ["EventRow", "RecordingDiff", "Comparison", "read_events", "match_events", "compare_replays",
           "check_replay_dir"]

#: Default time tolerance for matching events, seconds.
DEFAULT_TOLERANCE_S = 0.5


@dataclass(frozen=True)
class EventRow:
    """One warning onset read back from an events CSV.

    Attributes:
        timestamp_s: frame time, seconds.
        frame_index: frame index.
        level: level name (CAUTION, BRAKE, UNAVAILABLE).
        object: ``"<class> #<track id>"`` or "".
    """

    timestamp_s: float
    frame_index: int
    level: str
    object: str = ""


@dataclass
class RecordingDiff:
    """Added and removed events of one recording."""

    recording_id: str
    added: list[EventRow] = field(default_factory=list)
    removed: list[EventRow] = field(default_factory=list)
    matched: int = 0


@dataclass
class Comparison:
    """The before/after view.

    Attributes:
        old_dir: the earlier replay's folder.
        tolerance_s: time tolerance used for matching, seconds.
        recordings: one diff per recording finished in both replays, in the new replay's order.
        not_compared: recording ids finished in only one of the two replays.
    """

    old_dir: str
    tolerance_s: float
    recordings: list[RecordingDiff] = field(default_factory=list)
    not_compared: list[str] = field(default_factory=list)

    @property
    def added(self) -> int:
        return sum(len(r.added) for r in self.recordings)

    @property
    def removed(self) -> int:
        return sum(len(r.removed) for r in self.recordings)

    def to_json(self) -> dict:
        return {**asdict(self), "added": self.added, "removed": self.removed}


def read_events(path: str | Path) -> list[EventRow]:
    """The events of an events CSV written by :func:`aeb_app.pipeline.write_events`."""
    with Path(path).open(newline="", encoding="utf-8") as fh:
        return [EventRow(float(row["timestamp_s"]), int(row["frame_index"]), row["level"], row.get("object") or "")
                for row in csv.DictReader(fh)]


def match_events(old: list[EventRow], new: list[EventRow],
                 tolerance_s: float) -> tuple[list[EventRow], list[EventRow], int]:
    """``(added, removed, matched)``: one-to-one matching by level and time within ``tolerance_s`` seconds.

    Pairs are taken closest in time first, so a warning that moved slightly still matches its old self
    even when another event lies near it.
    """
    pairs = sorted((abs(o.timestamp_s - n.timestamp_s), i, j) for i, o in enumerate(old) for j, n in enumerate(new)
                   if o.level == n.level and abs(o.timestamp_s - n.timestamp_s) <= tolerance_s)
    used_old: set[int] = set()
    used_new: set[int] = set()
    for _, i, j in pairs:
        if i not in used_old and j not in used_new:
            used_old.add(i)
            used_new.add(j)
    by_time = lambda events: sorted(events, key=lambda e: e.timestamp_s)  # noqa: E731
    return (by_time(n for j, n in enumerate(new) if j not in used_new),
            by_time(o for i, o in enumerate(old) if i not in used_old), len(used_new))


def _finished(folder: Path) -> dict[str, RecordingResult]:
    """Recording id -> summary, for the finished (ok) recordings under a replay folder."""
    found = {}
    for summary_path in sorted(folder.glob(f"*/{SUMMARY_NAME}")):
        summary = RecordingResult.load(summary_path)
        if summary is not None and summary.ok and (summary_path.parent / EVENTS_NAME).is_file():
            found[summary_path.parent.name] = summary
    return found


def check_replay_dir(folder: str | Path) -> None:
    """Raise :class:`InputError` unless ``folder`` holds a replay (at least one recording summary)."""
    folder = Path(folder)
    if not folder.is_dir():
        raise InputError(f"--compare {folder}: no such folder")
    if not any(folder.glob(f"*/{SUMMARY_NAME}")):
        raise InputError(f"--compare {folder}: not a replay folder (no */{SUMMARY_NAME})")


def compare_replays(old_dir: str | Path, new_dir: str | Path, recording_ids: list[str], *,
                    tolerance_s: float = DEFAULT_TOLERANCE_S) -> Comparison:
    """Compare the events of ``recording_ids`` (the new replay's, in order) between two replay folders."""
    old, new = _finished(Path(old_dir)), _finished(Path(new_dir))
    comparison = Comparison(str(old_dir), tolerance_s)
    for recording_id in recording_ids:
        if recording_id not in old or recording_id not in new:
            comparison.not_compared.append(recording_id)
            continue
        added, removed, matched = match_events(read_events(Path(old_dir) / recording_id / EVENTS_NAME),
                                               read_events(Path(new_dir) / recording_id / EVENTS_NAME),
                                               tolerance_s)
        comparison.recordings.append(RecordingDiff(recording_id, added, removed, matched))
    comparison.not_compared += sorted(set(old) - set(recording_ids))
    return comparison
