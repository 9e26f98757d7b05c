"""Is the warning system monitoring right now? The rule behind what the GUI banner may say.

Availability is a state of the monitor, not a warning level (openpilot keeps the two apart). The
banner may only say "no warning" (green) while the monitor is ACTIVE: a session is playing, and
the newest frame result arrived less than ``stale_after_s`` of wall-clock time ago. Everything
else is a grey, non-green state that says why nothing is being monitored:

=============  ==========================================================================
state          when
=============  ==========================================================================
STARTING       a source is opening or the model is loading/warming up
ACTIVE         playing and fresh: the frame's own level shows (NONE, CAUTION, BRAKE or
               UNAVAILABLE with the pipeline's reason)
STALE          playing, but no new result for ``stale_after_s`` (a stalled camera, decoder
               or worker): "system unavailable"
FAILED         the session died (worker exception, source failed to open, model failed):
               "system unavailable" with the error, until a new session starts
PAUSED         the user paused (or is stepping): not monitoring
STOPPED        end of the video, the session finished, or nothing opened yet
=============  ==========================================================================

No clock is read here: every call takes ``now_s`` (e.g. ``time.monotonic()``), so tests are exact.
"""

from __future__ import annotations

import enum
import math
from dataclasses import dataclass

from aeb_app.types import WarningLevel

__all__ = ["MonitorState", "MonitorView", "SystemMonitor"]


class MonitorState(enum.Enum):
    """What the monitor is doing (see the module docstring)."""

    STARTING = "starting"
    ACTIVE = "active"
    STALE = "stale"
    FAILED = "failed"
    PAUSED = "paused"
    STOPPED = "stopped"


@dataclass(frozen=True)
class MonitorView:
    """What to show.

    Attributes:
        state: the monitor state.
        level: the warning level to display; UNAVAILABLE unless ACTIVE (PAUSED/STOPPED/STARTING
            show as UNAVAILABLE-coloured, never as NONE).
        text: the banner's detail text (why unavailable, what stopped, or the frame's reason).
    """

    state: MonitorState
    level: WarningLevel
    text: str

    @property
    def all_clear(self) -> bool:
        """True only for the green banner: active, fresh, and the frame's level is NONE."""
        return self.state is MonitorState.ACTIVE and self.level == WarningLevel.NONE


class SystemMonitor:
    """Tracks the session's lifecycle and the age of the newest frame result.

    Args:
        stale_after_s: wall-clock seconds without a new frame result, while playing, after which
            the system is unavailable. Must be positive and finite.
    """

    def __init__(self, *, stale_after_s: float = 1.0) -> None:
        if not (math.isfinite(stale_after_s) and stale_after_s > 0):
            raise ValueError(f"stale_after_s must be a positive number of seconds, got {stale_after_s!r}")
        self.stale_after_s = stale_after_s
        self._state = MonitorState.STOPPED
        self._text = "no video open"
        self._level, self._reason = WarningLevel.UNAVAILABLE, "waiting for the first frame"
        self._playing = False
        self._last_frame_s = -math.inf
        self._active_since_s = -math.inf

    # -- events ------------------------------------------------------------------------------
    def starting(self, what: str, now_s: float, *, playing: bool) -> None:  # noqa: ARG002
        """A new session is opening ``what``; forgets the previous session, failure included."""
        self._set(MonitorState.STARTING, f"starting: {what}")
        self._playing = playing
        self._level, self._reason = WarningLevel.UNAVAILABLE, "waiting for the first frame"
        self._last_frame_s = -math.inf

    def started(self, now_s: float) -> None:
        """The session is ready (source open, model warm): monitoring begins if playing."""
        if self._state is MonitorState.STARTING:
            self._resume(now_s) if self._playing else self._set(MonitorState.PAUSED, "paused: not monitoring")

    def frame(self, level: WarningLevel, reason: str, now_s: float) -> None:
        """A frame result arrived (its debounced level and, when UNAVAILABLE, the reason)."""
        if self._state in (MonitorState.FAILED, MonitorState.STARTING):
            return  # a late result from a dead or replaced session says nothing about now
        self._level, self._reason, self._last_frame_s = WarningLevel(level), reason, now_s
        if self._state is MonitorState.STALE:
            self._state = MonitorState.ACTIVE

    def set_playing(self, playing: bool, now_s: float) -> None:
        """The user pressed play or pause (stepping counts as paused)."""
        self._playing = playing
        if self._state in (MonitorState.FAILED, MonitorState.STARTING):
            return
        if playing:
            self._resume(now_s)
        else:
            self._set(MonitorState.PAUSED, "paused: not monitoring")

    def failed(self, message: str, now_s: float) -> None:  # noqa: ARG002 - same signature as the others
        """The session died or could not start (sticky until :meth:`starting`)."""
        self._set(MonitorState.FAILED, message or "processing stopped")

    def ended(self, message: str, now_s: float) -> None:  # noqa: ARG002
        """The stream ended or the session finished normally (a failure stays a failure)."""
        if self._state is not MonitorState.FAILED:
            self._set(MonitorState.STOPPED, message)

    # -- what to show ------------------------------------------------------------------------
    def view(self, now_s: float) -> MonitorView:
        """The banner's content at ``now_s`` (also turns ACTIVE into STALE when frames stop)."""
        if self._state is MonitorState.ACTIVE and self._age_s(now_s) > self.stale_after_s:
            self._state = MonitorState.STALE
        if self._state is MonitorState.ACTIVE:
            return MonitorView(self._state, self._level, self._reason)
        if self._state is MonitorState.STALE:
            return MonitorView(self._state, WarningLevel.UNAVAILABLE, f"no new frame for {self._age_s(now_s):.1f} s")
        return MonitorView(self._state, WarningLevel.UNAVAILABLE, self._text)

    @property
    def state(self) -> MonitorState:
        return self._state

    def _resume(self, now_s: float) -> None:
        """Playing again: the previous frame's level no longer applies until a new frame arrives."""
        self._active_since_s = now_s
        self._level, self._reason = WarningLevel.UNAVAILABLE, "waiting for a frame"
        self._set(MonitorState.ACTIVE, "")

    def _age_s(self, now_s: float) -> float:
        """Seconds since the newest frame, or since monitoring (re)started if none came since."""
        return now_s - max(self._last_frame_s, self._active_since_s)

    def _set(self, state: MonitorState, text: str) -> None:
        self._state, self._text = state, text
