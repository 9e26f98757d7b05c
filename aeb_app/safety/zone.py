"""Braking zone in road metres: the ego lane from the bumper to the stopping distance.

Like supervision's ``PolygonZone.trigger``, :func:`in_zone` returns one boolean per object; drawing
is someone else's job (the zone polygon is given in metres and in image pixels by the AEB state).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from aeb_app.errors import ConfigError

__all__ = ["ZoneConfig", "zone_length_m", "zone_polygon_m", "in_zone", "point_in_zone"]


@dataclass(frozen=True)
class ZoneConfig:
    """Braking-zone settings.

    Attributes:
        lane_width_m: zone width (the ego lane), metres.
        reaction_time_s: driver reaction time t_r, seconds (1.5 s: about the 85th percentile of brake
            reaction to an unexpected obstacle, Green 2000, "How long does it take to stop?").
        decel_mps2: braking deceleration a (positive), m/s^2.
        fixed_length_m: zone length when ego speed is unknown, metres.
        min_length_m: lower bound of the length (slow speeds), metres.
        max_length_m: upper bound of the length, metres.
    """

    lane_width_m: float = 3.7
    reaction_time_s: float = 1.5
    decel_mps2: float = 6.0
    fixed_length_m: float = 40.0
    min_length_m: float = 5.0
    max_length_m: float = 120.0

    def __post_init__(self) -> None:
        for name in ("lane_width_m", "decel_mps2", "fixed_length_m", "min_length_m", "max_length_m"):
            value = getattr(self, name)
            if not (math.isfinite(value) and value > 0):
                raise ConfigError(f"zone.{name}: must be a positive number, got {value!r}")
        if not (math.isfinite(self.reaction_time_s) and self.reaction_time_s >= 0):
            raise ConfigError(f"zone.reaction_time_s: must be >= 0, got {self.reaction_time_s!r}")
        if self.min_length_m > self.max_length_m:
            raise ConfigError(f"zone.min_length_m {self.min_length_m} exceeds max_length_m {self.max_length_m}")


def zone_length_m(speed_mps: float | None, config: ZoneConfig) -> float:
    """Stopping distance ``v * t_r + v^2 / (2 a)``, clamped; ``fixed_length_m`` when speed is unknown.

    Args:
        speed_mps: ego speed in m/s, or None / NaN when unknown.
        config: zone settings.

    Raises:
        ValueError: negative speed.
    """
    if speed_mps is None or not math.isfinite(speed_mps):
        return config.fixed_length_m
    if speed_mps < 0:
        raise ValueError(f"speed_mps must be >= 0, got {speed_mps}")
    length = speed_mps * config.reaction_time_s + speed_mps**2 / (2.0 * config.decel_mps2)
    return float(min(max(length, config.min_length_m), config.max_length_m))


def zone_polygon_m(length_m: float, config: ZoneConfig) -> npt.NDArray[np.float64]:
    """(4, 2) zone corners ``(lateral_m, ahead_m)``: near-left, near-right, far-right, far-left."""
    half = config.lane_width_m / 2.0
    return np.array([[-half, 0.0], [half, 0.0], [half, length_m], [-half, length_m]])


def in_zone(metric_m: npt.ArrayLike, *, half_width_m: float, length_m: float) -> npt.NDArray[np.bool_]:
    """Which ground points lie in the zone ``|lateral| <= half_width, 0 <= ahead <= length``.

    Args:
        metric_m: (n, 2) ``(lateral_m, ahead_m)``; NaN rows are outside.
        half_width_m: half the zone width, metres.
        length_m: zone length, metres.

    Returns:
        (n,) bool.
    """
    pts = np.asarray(metric_m, dtype=np.float64).reshape(-1, 2)
    with np.errstate(invalid="ignore"):
        inside = (np.abs(pts[:, 0]) <= half_width_m) & (pts[:, 1] >= 0.0) & (pts[:, 1] <= length_m)
    return inside & np.isfinite(pts).all(axis=1)


def point_in_zone(lateral_m: float, ahead_m: float, *, half_width_m: float, length_m: float) -> bool:
    """:func:`in_zone` of one point, on plain floats (the per-object test of every frame; NaN is outside)."""
    return (abs(lateral_m) <= half_width_m and 0.0 <= ahead_m <= length_m
            and math.isfinite(lateral_m) and math.isfinite(ahead_m))
