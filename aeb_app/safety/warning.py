"""Warning levels with hysteresis measured in seconds (no clock inside: timestamps are passed in).

Like openpilot's alert manager: levels are an IntEnum and the highest wins. A level is raised only
after it has been asked for during ``on_s`` seconds of frame time (a frame without the request drains
``on_drain`` times its duration from that, so one dropout delays a warning instead of restarting it), and
lowered only after less has been asked for continuously during ``off_s``, so one noisy frame neither fires
nor clears a warning and the behaviour does not depend on the frame rate. UNAVAILABLE bypasses the debounce
in both directions: a missing result is reported at once, and the next good frame starts again from NONE (it
must earn a warning through the debounce).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from aeb_app.errors import ConfigError
from aeb_app.model.coco import ROAD_USER_IDS
from aeb_app.types import WarningLevel

__all__ = ["WarningConfig", "WarningStateMachine", "ROAD_USER_IDS"]

#: Durations compare with this tolerance (frame times are floats: 3 frames at 30 fps are 0.0999.. s).
_EPS_S = 1e-6


@dataclass(frozen=True)
class WarningConfig:
    """Warning settings (every time constant in seconds).

    Attributes:
        caution_ttc_s: an in-zone object with TTC below this gives CAUTION (the forward-collision warning).
        brake_ttc_s: an in-zone object with TTC below this gives BRAKE.
        on_s: a level must be asked for this long before it is raised, seconds.
        on_drain: while a higher level is being earned, each second in which it is not asked for takes this many
            seconds of the time already asked for away (a leaky integrator); the streak ends when nothing is left.
            The first frame of a streak adds nothing, so an isolated request, or requests alternating with
            frames without, never fire; a large value restarts the debounce at every frame without the request.
        off_s: a lower level must be asked for this long before the level drops, seconds.
        max_frame_gap_s: a larger gap between frame timestamps makes that frame UNAVAILABLE (stale).
        min_closing_mps: closing speed below which TTC is infinite.
        min_track_age_s: a track must be this old before it may warn (filter settling), seconds.
        require_agreement: a warning needs every available TTC cue (range, scale) to confirm it.
        agree_ttc_s: a cue confirms a threat when it sees an approach and its TTC at ``agree_sigmas``
            of optimism is below this, seconds.
        agree_sigmas: how optimistic, in standard deviations of the cue's closing / expansion rate.
        max_lead_reverse_mps: with a known ego speed, closing speed is capped at ego speed plus this
            (a lead vehicle does not reverse faster), m/s; a standing ego therefore never warns.
        accel_sigmas: the filtered relative acceleration shortens the TTC only when it is this many
            standard deviations below zero (noise in the acceleration alone must not warn).
        closing_sigmas: the fused closing speed must be this many of its standard deviations above zero
            for a finite TTC.
        closing_span_s: a track warns only when its measured range has been shrinking over this long: the
            slope of a robust line through its measurements over the span must be ``closing_sigmas`` below
            zero, seconds (a few noisy frames at a constant gap are not an approach).
        require_closing_trend: apply the ``closing_span_s`` rule (off only for demonstrations).
        occlusion_hold_s: an object whose box bottom was an occlusion edge (a nearer box's roof line) this recently
            does not warn, seconds: the nearer object may be missed for a few frames while it still stands there.
        category_ids: COCO ids considered (default road users).
        check_calibration_fit: report the system unavailable while most confident road-user boxes stand above
            the calibrated horizon (:mod:`aeb_app.safety.calibration_fit`).
        fit_window_s: seconds of detections that check looks at.
        fit_max_share_above: share of box bottoms above the horizon from which the calibration does not fit.
    """

    caution_ttc_s: float = 3.0
    brake_ttc_s: float = 1.6
    on_s: float = 0.1
    on_drain: float = 0.5
    off_s: float = 0.3
    max_frame_gap_s: float = 0.5
    min_closing_mps: float = 0.5
    min_track_age_s: float = 0.5
    require_agreement: bool = True
    agree_ttc_s: float = 8.0
    agree_sigmas: float = 2.0
    max_lead_reverse_mps: float = 0.5
    accel_sigmas: float = 0.5
    closing_sigmas: float = 2.0
    closing_span_s: float = 1.0
    require_closing_trend: bool = True
    occlusion_hold_s: float = 0.3
    category_ids: tuple[int, ...] = ROAD_USER_IDS
    check_calibration_fit: bool = True
    fit_window_s: float = 3.0
    fit_max_share_above: float = 0.5

    def __post_init__(self) -> None:
        if not 0 < self.brake_ttc_s <= self.caution_ttc_s:
            raise ConfigError(
                f"warning.brake_ttc_s ({self.brake_ttc_s}) must be > 0 and <= caution_ttc_s ({self.caution_ttc_s})"
            )
        for name in ("on_s", "on_drain", "off_s", "min_track_age_s", "min_closing_mps", "agree_sigmas",
                     "max_lead_reverse_mps", "accel_sigmas", "closing_sigmas", "occlusion_hold_s"):
            value = getattr(self, name)
            if not (isinstance(value, (int, float)) and math.isfinite(value) and value >= 0):
                raise ConfigError(f"warning.{name}: must be a number >= 0 (seconds or SI units), got {value!r}")
        if not 0 < self.fit_max_share_above < 1:
            raise ConfigError(f"warning.fit_max_share_above: must be between 0 and 1, got {self.fit_max_share_above!r}")
        for name in ("max_frame_gap_s", "agree_ttc_s", "closing_span_s", "fit_window_s"):
            if not getattr(self, name) > 0:
                raise ConfigError(f"warning.{name}: must be > 0, got {getattr(self, name)!r}")

    def level_for(self, *, in_zone: bool, ttc_s: float) -> WarningLevel:
        """The level one object asks for."""
        if not in_zone:
            return WarningLevel.NONE
        if ttc_s < self.brake_ttc_s:
            return WarningLevel.BRAKE
        if ttc_s < self.caution_ttc_s:
            return WarningLevel.CAUTION
        return WarningLevel.NONE


class WarningStateMachine:
    """Debounced warning level. Feed it one requested level per frame with the frame's time.

    Rising: the seconds a higher level has been asked for accumulate (from the streak's first frame) and drain at
    ``on_drain`` while it is not; the level rises at ``on_s`` to the lowest level the streak asked for. Falling:
    a lower level must be asked for continuously for ``off_s``; the level drops to the highest one asked for.
    """

    def __init__(self, config: WarningConfig) -> None:
        self.config = config
        self.level = WarningLevel.UNAVAILABLE  # nothing seen yet: never start as "all clear"
        self._rise: _Streak | None = None
        self._fall: _Streak | None = None

    def update(self, requested: WarningLevel, timestamp_s: float) -> WarningLevel:
        """Advance to the frame at ``timestamp_s`` (seconds) and return the current level."""
        if requested == WarningLevel.UNAVAILABLE:
            self.level, self._rise, self._fall = WarningLevel.UNAVAILABLE, None, None
            return self.level
        if self.level == WarningLevel.UNAVAILABLE:
            self.level = WarningLevel.NONE  # the next good frame starts from "nothing", not from a warning
        if requested > self.level:
            self._fall = None
            self._rise = self._raise(requested, timestamp_s)
        else:
            self._rise = self._drain(timestamp_s)
            self._fall = self._lower(requested, timestamp_s) if requested < self.level else None
        return self.level

    def _raise(self, requested: WarningLevel, timestamp_s: float) -> "_Streak | None":
        streak = self._rise
        if streak is None:
            streak = _Streak(timestamp_s, requested)
        else:
            streak.held_s += timestamp_s - streak.last_s
            streak.last_s, streak.bound = timestamp_s, min(streak.bound, requested)
        if streak.held_s >= self.config.on_s - _EPS_S:
            self.level = WarningLevel(streak.bound)  # the lowest level the streak asked for
            return None
        return streak

    def _drain(self, timestamp_s: float) -> "_Streak | None":
        streak = self._rise
        if streak is None:
            return None
        streak.held_s -= self.config.on_drain * (timestamp_s - streak.last_s)
        streak.last_s = timestamp_s
        return streak if streak.held_s >= -_EPS_S else None

    def _lower(self, requested: WarningLevel, timestamp_s: float) -> "_Streak | None":
        streak = self._fall or _Streak(timestamp_s, requested)
        streak.bound = max(streak.bound, requested)
        if timestamp_s - streak.start_s >= self.config.off_s - _EPS_S:
            self.level = WarningLevel(streak.bound)  # the highest level asked for while falling
            return None
        return streak


@dataclass
class _Streak:
    """A debounce in progress: when it started, the frame last counted, seconds held, the level it is bound to."""

    start_s: float
    bound: WarningLevel
    last_s: float = math.nan
    held_s: float = 0.0

    def __post_init__(self) -> None:
        self.last_s = self.start_s
