"""Does the road calibration fit the video? Vehicles stand on the road, below its horizon.

A calibration made for another camera or mounting (or a video cropped or rescaled after it was made) puts
the horizon where the road is not: every range, zone and warning then rests on wrong geometry, and a green
"no warning" would be a false all clear. The evidence is in the detections: on a road that is roughly flat,
a road user's box bottom (its ground contact) lies below the horizon. When, over the last few seconds, most
confident road-user boxes have their bottom above the calibrated horizon, the calibration does not fit this
video and the logic reports the system unavailable, with the reason, until the evidence clears (hysteresis:
until at most half that share lies above, so a share hovering at the limit does not flicker between the two).

A crest or a car on an overpass puts a few bottoms above the horizon: only a majority over seconds counts. A box
whose bottom is an occlusion edge (a van seen over the lead's roof) is no ground contact and is left out by the
caller (:func:`aeb_app.safety.cues.occluded_bottoms`).
"""

from __future__ import annotations

from collections import deque

import numpy as np
import numpy.typing as npt

__all__ = ["CalibrationFitMonitor", "MIN_BOXES", "MIN_SCORE", "MARGIN_PX"]

#: Confident road-user boxes the window must hold before the fit is judged.
MIN_BOXES = 20
#: Detection score from which a box counts as evidence.
MIN_SCORE = 0.5
#: A bottom this many pixels above the horizon (or more) counts as above it (pitch and rounding slack).
MARGIN_PX = 3.0


class CalibrationFitMonitor:
    """Share of confident road-user box bottoms above the horizon over the last ``window_s`` seconds.

    Args:
        horizon_row_px: the calibration's horizon row, pixels.
        window_s: evidence window, seconds.
        max_share_above: the calibration does not fit when more than this share lies above the horizon.
    """

    def __init__(self, horizon_row_px: float, *, window_s: float, max_share_above: float) -> None:
        self.horizon_row_px = horizon_row_px
        self.window_s = window_s
        self.max_share_above = max_share_above
        self._frames: deque[tuple[float, int, int]] = deque()  # (time, above, total)
        self._above = self._total = 0
        self.unfit = False

    def update(self, timestamp_s: float, bottoms_px: npt.ArrayLike, scores: npt.ArrayLike) -> str:
        """Add one frame's road-user box bottoms (rows, pixels) and scores; returns why the calibration does
        not fit this video, or "" while it fits (or the evidence is too thin to say)."""
        bottoms = np.asarray(bottoms_px, np.float64).reshape(-1)[np.asarray(scores).reshape(-1) >= MIN_SCORE]
        above = int(np.count_nonzero(bottoms <= self.horizon_row_px - MARGIN_PX))
        self._frames.append((timestamp_s, above, len(bottoms)))
        self._above += above
        self._total += len(bottoms)
        while self._frames and self._frames[0][0] < timestamp_s - self.window_s - 1e-9:
            _, old_above, old_total = self._frames.popleft()
            self._above -= old_above
            self._total -= old_total
        limit = self.max_share_above / 2 if self.unfit else self.max_share_above
        self.unfit = self._total >= MIN_BOXES and self._above > limit * self._total
        if not self.unfit:
            return ""
        return (f"the calibration does not fit this video: {self._above} of {self._total} vehicle box bottoms in the "
                f"last {self.window_s:g} s lie above its horizon (row {self.horizon_row_px:.0f}); recalibrate")
