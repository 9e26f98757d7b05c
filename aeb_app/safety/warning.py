"""Warning levels with frame-counted hysteresis (no clock inside).

Like openpilot's alert manager: levels are an IntEnum and the highest wins. A level is raised only
after ``on_frames`` consecutive frames ask for it (or more), and lowered only after ``off_frames``
consecutive frames ask for less, so one noisy frame neither fires nor clears a warning.
UNAVAILABLE bypasses the debounce in both directions: a missing result is reported at once, and
the next good frame starts again from NONE (it must earn a warning through the debounce).
"""

from __future__ import annotations

from dataclasses import dataclass

from aeb_app.errors import ConfigError
from aeb_app.model.coco import ROAD_USER_IDS
from aeb_app.types import WarningLevel

__all__ = ["WarningConfig", "WarningStateMachine", "ROAD_USER_IDS"]



@dataclass(frozen=True)
class WarningConfig:
    """Warning settings.

    Attributes:
        caution_ttc_s: an in-zone object with TTC below this gives CAUTION (the forward-collision warning).
        brake_ttc_s: an in-zone object with TTC below this gives BRAKE.
        on_frames: consecutive frames needed to raise the level.
        off_frames: consecutive frames needed to lower it.
        max_frame_gap_s: a larger gap between frame timestamps makes that frame UNAVAILABLE (stale).
        min_closing_mps: closing speed below which TTC is infinite.
        min_track_hits: frames a track must have been seen before it may warn (filter settling).
        category_ids: COCO ids considered (default road users).
    """

    caution_ttc_s: float = 3.0
    brake_ttc_s: float = 1.6
    on_frames: int = 2
    off_frames: int = 8
    max_frame_gap_s: float = 0.5
    min_closing_mps: float = 0.5
    min_track_hits: int = 5
    category_ids: tuple[int, ...] = ROAD_USER_IDS

    def __post_init__(self) -> None:
        if not 0 < self.brake_ttc_s <= self.caution_ttc_s:
            raise ConfigError(
                f"warning.brake_ttc_s ({self.brake_ttc_s}) must be > 0 and <= caution_ttc_s ({self.caution_ttc_s})"
            )
        for name in ("on_frames", "off_frames", "min_track_hits"):
            if int(getattr(self, name)) < 1:
                raise ConfigError(f"warning.{name}: must be >= 1, got {getattr(self, name)!r}")
        if not self.max_frame_gap_s > 0:
            raise ConfigError(f"warning.max_frame_gap_s: must be > 0, got {self.max_frame_gap_s!r}")

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
    """Debounced warning level. Feed it one requested level per frame."""

    def __init__(self, config: WarningConfig) -> None:
        self.config = config
        self.level = WarningLevel.UNAVAILABLE  # nothing seen yet: never start as "all clear"
        self._streak = 0
        self._streak_bound = WarningLevel.NONE

    def update(self, requested: WarningLevel) -> WarningLevel:
        """Advance one frame and return the current level."""
        if requested == WarningLevel.UNAVAILABLE:
            self.level, self._streak = WarningLevel.UNAVAILABLE, 0
            return self.level
        if self.level == WarningLevel.UNAVAILABLE:
            self.level, self._streak = WarningLevel.NONE, 0
        if requested == self.level:
            self._streak = 0
            return self.level
        rising = requested > self.level
        if self._streak and (self._streak_bound > self.level) != rising:
            self._streak = 0  # direction changed: start counting again
        if self._streak == 0:
            self._streak_bound = requested
        # While rising, go to the lowest level the streak asked for; while falling, to the highest.
        self._streak_bound = min(self._streak_bound, requested) if rising else max(self._streak_bound, requested)
        self._streak += 1
        if self._streak >= (self.config.on_frames if rising else self.config.off_frames):
            self.level, self._streak = WarningLevel(self._streak_bound), 0
        return self.level
