"""Ego speed over time from a CSV file (CAN or GPS logs): ``time_s,speed_mps``, interpolated per frame.

The file is checked completely when it is loaded, so a bad file stops a run before any work starts,
with one line naming the file, the row (1 = the first data row after the header) and the problem:
a missing column, a value that is not a number, NaN or infinite, a negative speed, a time that does
not increase, or a gap between rows longer than ``max_gap_s``. Between rows the speed is linear; before
the first and after the last row it is unknown (None), never extrapolated.
"""

from __future__ import annotations

import csv
import math
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import numpy.typing as npt

from aeb_app.errors import InputError

__all__ = ["EgoSpeedProfile", "load_ego_speed_csv", "EGO_SPEED_COLUMNS"]

EGO_SPEED_COLUMNS = ("time_s", "speed_mps")
#: Default largest gap between two rows, seconds (a CAN log has rows every 10-100 ms; GPS every 1 s).
DEFAULT_MAX_GAP_S = 1.0


@dataclass(frozen=True)
class EgoSpeedProfile:
    """Ego speed samples.

    Attributes:
        time_s: (n,) strictly increasing times, seconds (the video's clock).
        speed_mps: (n,) speeds >= 0, m/s.
        source: where the samples came from (for messages).
    """

    time_s: npt.NDArray[np.float64]
    speed_mps: npt.NDArray[np.float64]
    source: str = ""

    def at(self, t_s: float) -> float | None:
        """Speed at ``t_s`` (m/s), linear between samples; None outside the samples' time span."""
        if not math.isfinite(t_s) or t_s < self.time_s[0] or t_s > self.time_s[-1]:
            return None
        return float(np.interp(t_s, self.time_s, self.speed_mps))


def _number(text: str, where: str, column: str) -> float:
    try:
        value = float(text)
    except (TypeError, ValueError):
        raise InputError(f"{where}: {column} is not a number: {text!r}") from None
    if not math.isfinite(value):
        raise InputError(f"{where}: {column} is {text.strip()} (NaN/infinite values are not allowed)")
    return value


def load_ego_speed_csv(path: str | os.PathLike[str], *, max_gap_s: float = DEFAULT_MAX_GAP_S) -> EgoSpeedProfile:
    """Read and check a ``time_s,speed_mps`` CSV file (extra columns are ignored).

    Raises:
        InputError: unreadable file or any bad row; the message names the file and the row.
    """
    path = Path(path)
    try:
        with path.open(newline="", encoding="utf-8") as fh:
            reader = csv.DictReader(fh)
            missing = [c for c in EGO_SPEED_COLUMNS if c not in (reader.fieldnames or [])]
            if missing:
                raise InputError(f"{path}: missing column(s) {', '.join(missing)} (header: {reader.fieldnames})")
            times, speeds = [], []
            for row_number, row in enumerate(reader, start=1):
                where = f"{path}: row {row_number}"
                t = _number(row["time_s"], where, "time_s")
                v = _number(row["speed_mps"], where, "speed_mps")
                if v < 0:
                    raise InputError(f"{where}: speed_mps must be >= 0, got {v}")
                if times and t <= times[-1]:
                    raise InputError(f"{where}: time_s {t} does not increase (previous row {times[-1]})")
                if times and t - times[-1] > max_gap_s:
                    raise InputError(f"{where}: gap of {t - times[-1]:.3f} s after the previous row "
                                     f"(more than {max_gap_s} s)")
                times.append(t)
                speeds.append(v)
    except OSError as exc:
        raise InputError(f"{path}: cannot read ego-speed file ({exc.strerror or exc})") from exc
    except csv.Error as exc:
        raise InputError(f"{path}: not a CSV file ({exc})") from exc
    if not times:
        raise InputError(f"{path}: no data rows")
    return EgoSpeedProfile(np.asarray(times), np.asarray(speeds), str(path))
