"""Per-frame AEB logic: detections -> ground points -> metres -> zone -> tracks -> TTC -> warning.

This is the one entry point the GUI, the headless runner and the scenario validator call::

    logic = AebLogic(calibration, ZoneConfig(), WarningConfig())
    for result in frames:                       # FrameResult from the pipeline
        state = logic.update(result.frame_index, result.timestamp_s,
                             result.detections if result.ok else None, ego_speed_mps=None)
        draw(state.zone_polygon_px, state.in_zone, state.level)

No clock is read here: ``timestamp_s`` (seconds, monotonic within a video) drives the filters and
the stale-frame check; hysteresis counts frames.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from aeb_app.geometry.calibration import Calibration
from aeb_app.safety.kinematics import RangeFilterConfig, ttc_s
from aeb_app.safety.tracker import IouTracker
from aeb_app.safety.warning import WarningConfig, WarningStateMachine
from aeb_app.safety.zone import ZoneConfig, in_zone, zone_length_m, zone_polygon_m
from aeb_app.types import Detections, WarningLevel

__all__ = ["AebLogic", "AebFrameState", "ObjectState"]

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ObjectState:
    """One considered (road-user) detection in one frame.

    Attributes:
        detection_index: index into the frame's ``Detections``.
        track_id: stable tracker id.
        category_id: COCO id.
        ground_px: (x, y) bottom centre of the box, image pixels.
        bev_px: (x, y) ground point in the bird's-eye view, pixels.
        lateral_m: offset right of the ego centre line, metres (this frame's measurement).
        distance_m: distance ahead of the ego bumper, metres (this frame's measurement).
        range_m: filtered range of the track, metres.
        range_rate_mps: filtered range rate, m/s (negative = closing).
        ttc_s: time to collision, seconds (``inf`` when not closing or the track is too young).
        in_zone: ground point inside the braking zone.
        level: the warning level this object asks for (before hysteresis).
    """

    detection_index: int
    track_id: int
    category_id: int
    ground_px: tuple[float, float]
    bev_px: tuple[float, float]
    lateral_m: float
    distance_m: float
    range_m: float
    range_rate_mps: float
    ttc_s: float
    in_zone: bool
    level: WarningLevel


@dataclass(frozen=True)
class AebFrameState:
    """Everything the AEB layer decided for one frame.

    Attributes:
        frame_index: as passed in.
        timestamp_s: as passed in.
        level: debounced overall warning level (UNAVAILABLE for a missing, failed or stale frame).
        requested_level: the undebounced level of this frame (highest object level).
        reason: why the level is UNAVAILABLE, else "".
        objects: the considered detections (road users with a valid ground point).
        in_zone: (n,) bool aligned with the frame's detections (False for ignored classes); for red/green.
        zone_length_m: braking-zone length used, metres.
        zone_polygon_m: (4, 2) zone corners ``(lateral_m, ahead_m)``.
        zone_polygon_px: (4, 2) the same corners in image pixels (via the inverse homography).
    """

    frame_index: int
    timestamp_s: float
    level: WarningLevel
    requested_level: WarningLevel
    reason: str
    objects: tuple[ObjectState, ...]
    in_zone: npt.NDArray[np.bool_]
    zone_length_m: float
    zone_polygon_m: npt.NDArray[np.float64]
    zone_polygon_px: npt.NDArray[np.float64]

    @property
    def min_ttc_s(self) -> float:
        """Smallest TTC of any in-zone object, seconds (``inf`` if none)."""
        return min((o.ttc_s for o in self.objects if o.in_zone), default=math.inf)


class AebLogic:
    """Stateful per-frame AEB decision. One instance per video/camera stream.

    Args:
        calibration: road calibration of the camera.
        zone_config: braking-zone settings (defaults if None).
        warning_config: warning settings (defaults if None).
        filter_config: range filter settings (defaults if None).
    """

    def __init__(self, calibration: Calibration, zone_config: ZoneConfig | None = None,
                 warning_config: WarningConfig | None = None,
                 filter_config: RangeFilterConfig | None = None) -> None:
        self.calibration = calibration
        self.zone_config = zone_config or ZoneConfig()
        self.warning_config = warning_config or WarningConfig()
        self.tracker = IouTracker(filter_config=filter_config)
        self.state_machine = WarningStateMachine(self.warning_config)
        self._last_timestamp_s: float | None = None

    def update(self, frame_index: int, timestamp_s: float, detections: Detections | None, *,
               ego_speed_mps: float | None = None) -> AebFrameState:
        """Process one frame.

        Args:
            frame_index: index of the frame in its stream.
            timestamp_s: frame time in seconds (must increase).
            detections: the frame's detections, or None when the frame or inference failed.
            ego_speed_mps: ego speed (m/s) for the zone length; None uses the fixed length.

        Returns:
            The frame's state. ``level`` is UNAVAILABLE when ``detections`` is None, the timestamp
            does not increase, or it jumps by more than ``max_frame_gap_s`` (tracks are then reset).
        """
        length_m = zone_length_m(ego_speed_mps, self.zone_config)
        reason = self._staleness(timestamp_s, detections)
        if reason or detections is None:
            return self._unavailable(frame_index, timestamp_s, length_m, reason or "no detections",
                                     len(detections or ()))
        dt_s = timestamp_s - self._last_timestamp_s if self._last_timestamp_s is not None else 0.0
        self._last_timestamp_s = timestamp_s
        objects, mask = self._objects(detections, dt_s=dt_s, length_m=length_m)
        requested = max((o.level for o in objects), default=WarningLevel.NONE)
        level = self.state_machine.update(requested)
        return self._state(frame_index, timestamp_s, level, requested, "", tuple(objects), mask, length_m)

    def _staleness(self, timestamp_s: float, detections: Detections | None) -> str:
        if detections is None:
            return "no detections for this frame (frame or inference failed)"
        if not math.isfinite(timestamp_s):
            return f"invalid timestamp {timestamp_s}"
        last = self._last_timestamp_s
        if last is not None and timestamp_s <= last:
            return f"timestamp {timestamp_s:.3f} s does not follow {last:.3f} s"
        if last is not None and timestamp_s - last > self.warning_config.max_frame_gap_s:
            self.tracker.reset()
            self._last_timestamp_s = timestamp_s
            return f"stale: {timestamp_s - last:.3f} s since the previous frame"
        return ""

    def _unavailable(self, frame_index: int, timestamp_s: float, length_m: float, reason: str,
                     n: int) -> AebFrameState:
        log.debug("frame %d unavailable: %s", frame_index, reason)
        level = self.state_machine.update(WarningLevel.UNAVAILABLE)
        return self._state(frame_index, timestamp_s, level, WarningLevel.UNAVAILABLE, reason, (),
                           np.zeros(n, bool), length_m)

    def _objects(self, detections: Detections, *, dt_s: float,
                 length_m: float) -> tuple[list[ObjectState], npt.NDArray[np.bool_]]:
        mask = np.zeros(len(detections), bool)
        keep = np.flatnonzero(np.isin(detections.category_ids, self.warning_config.category_ids))
        ground = detections.ground_points_px[keep].astype(np.float64)
        bev = self.calibration.view.to_bev(ground)
        metric = self.calibration.bev_to_metric(bev)
        valid = np.isfinite(metric).all(axis=1) & (metric[:, 1] > 0)  # at/above the horizon: no ground point
        keep, ground, bev, metric = keep[valid], ground[valid], bev[valid], metric[valid]
        inside = in_zone(metric, half_width_m=self.zone_config.lane_width_m / 2, length_m=length_m)
        for track in self.tracker.tracks:
            track.range_filter.predict(dt_s)
        tracks = self.tracker.update(detections.xyxy_px[keep], detections.category_ids[keep])
        objects = []
        for i, track in enumerate(tracks):
            f = track.range_filter
            f.update(float(metric[i, 1]))
            ttc = ttc_s(f.range_m, f.range_rate_mps, f.range_accel_mps2,
                        min_closing_mps=self.warning_config.min_closing_mps)
            if track.hits < self.warning_config.min_track_hits:
                ttc = math.inf  # the filter has not settled: no rate yet
            mask[keep[i]] = inside[i]
            objects.append(ObjectState(
                int(keep[i]), track.track_id, track.category_id, (float(ground[i, 0]), float(ground[i, 1])),
                (float(bev[i, 0]), float(bev[i, 1])), float(metric[i, 0]), float(metric[i, 1]),
                f.range_m, f.range_rate_mps, ttc, bool(inside[i]),
                self.warning_config.level_for(in_zone=bool(inside[i]), ttc_s=ttc),
            ))
        return objects, mask

    def _state(self, frame_index: int, timestamp_s: float, level: WarningLevel, requested: WarningLevel,
               reason: str, objects: tuple[ObjectState, ...], mask: npt.NDArray[np.bool_],
               length_m: float) -> AebFrameState:
        poly_m = zone_polygon_m(length_m, self.zone_config)
        return AebFrameState(frame_index, timestamp_s, level, requested, reason, objects, mask, length_m,
                             poly_m, self.calibration.metric_to_image(poly_m))
