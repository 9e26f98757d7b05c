"""The per-object tracks CSV of ``aeb-app run --tracks``: how recordings with radar or lidar ground
truth get scored.

One row per frame per considered (road-user, ranged) object; rows are written and flushed as frames are
processed, so a run that is killed keeps every frame it finished. Columns (stable; new ones are only
ever appended at the end):

=============== ==========================================================================================
frame           frame index in the video
time_s          frame time, seconds
track_id        tracker id (stable while the object is tracked)
class           COCO class name
score           detection confidence
x1,y1,x2,y2     box, pixels
ground_valid    1 when the ground-contact cue was used this frame, else 0
width_valid     1 when the box-width cue was used this frame, else 0
range_m         filtered range from the ego front bumper to the object's rear, metres
range_sigma_m   its standard deviation, metres
lateral_m       object centre right of the ego centre line, metres
range_rate_mps  filtered range rate, m/s (negative: closing)
ttc_s           fused time to collision, seconds ("inf": not closing)
ttc_range_s     TTC from range and range rate alone, seconds
ttc_scale_s     TTC from the box's expansion alone, seconds (empty: not enough widths yet)
in_zone         1 when the object is in the braking zone
level           warning level the object asks for (NONE, CAUTION, BRAKE)
measured_m      this frame's fused range measurement, metres
cues            TTC cues that confirmed a threat, e.g. "range+scale" (empty: none)
no_ground       why the ground cue was not used: border, occlusion, horizon (empty: it was)
frame_level     the frame's debounced warning level
=============== ==========================================================================================

Numbers: up to 4 decimals; NaN is an empty field; infinity is ``inf``.
"""

from __future__ import annotations

import csv
import math
import os
from pathlib import Path
from typing import IO, Any

from aeb_app.model.coco import name_of

__all__ = ["TRACK_COLUMNS", "TracksCsvWriter", "track_rows"]

TRACK_COLUMNS: tuple[str, ...] = (
    "frame", "time_s", "track_id", "class", "score", "x1", "y1", "x2", "y2", "ground_valid", "width_valid",
    "range_m", "range_sigma_m", "lateral_m", "range_rate_mps", "ttc_s", "ttc_range_s", "ttc_scale_s",
    "in_zone", "level", "measured_m", "cues", "no_ground", "frame_level",
)


def _num(value: float) -> str:
    value = float(value)
    if value.is_integer():  # a finite whole number (NaN and infinity are not)
        return str(int(value))
    if value - value == 0.0:  # finite
        return ("%.4f" % value).rstrip("0").rstrip(".")
    return "" if math.isnan(value) else ("inf" if value > 0 else "-inf")


def track_rows(state: Any) -> list[list[str]]:
    """The rows of one :class:`~aeb_app.safety.AebFrameState` (none for None or an empty frame)."""
    if state is None:
        return []
    frame, time_s, frame_level = str(state.frame_index), _num(state.timestamp_s), state.level.name  # once a frame
    return [[
        frame, time_s, str(o.track_id), name_of(o.category_id), _num(o.score), *map(_num, o.xyxy_px),
        str(int(o.ground_valid)), str(int(o.width_valid)), _num(o.range_m), _num(o.range_sigma_m), _num(o.lateral_m),
        _num(o.range_rate_mps), _num(o.ttc_s), _num(o.ttc_range_s), _num(o.ttc_scale_s), str(int(o.in_zone)),
        o.level.name, _num(o.distance_m), o.cues_text, o.no_ground_reason, frame_level,
    ] for o in state.objects]


class TracksCsvWriter:
    """Writes the tracks CSV as frames come (header first, one flush per frame).

    Use as a context manager; :meth:`write` takes the AEB frame state of each frame.

    Args:
        path: the CSV file (its folder is created; an existing file is replaced).
    """

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path)
        self._fh: IO[str] | None = None
        self._writer: Any = None
        self.rows = 0

    def __enter__(self) -> "TracksCsvWriter":
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._fh = self.path.open("w", newline="", encoding="utf-8")
        self._writer = csv.writer(self._fh)
        self._writer.writerow(TRACK_COLUMNS)
        self._fh.flush()
        return self

    def write(self, state: Any) -> None:
        """Append the rows of one frame's state and flush them to the file."""
        if self._fh is None:
            raise RuntimeError("TracksCsvWriter.write outside its with block")
        rows = track_rows(state)
        self._writer.writerows(rows)
        self._fh.flush()
        self.rows += len(rows)

    def __exit__(self, *exc: object) -> None:
        if self._fh is not None:
            self._fh.close()
            self._fh = None
