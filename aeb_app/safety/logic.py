"""Per-frame AEB logic: detections -> ground points -> metres -> zone -> tracks -> TTC -> warning.

This is the one entry point the GUI, the headless runner and the scenario validator call::

    logic = AebLogic(calibration, ZoneConfig(), WarningConfig())
    for result in frames:                       # FrameResult from the pipeline
        state = logic.update(result.frame_index, result.timestamp_s,
                             result.detections if result.ok else None, ego_speed_mps=None)
        draw(state.zone_polygon_px, state.in_zone, state.level)

No clock is read here: ``timestamp_s`` (seconds, monotonic within a video) drives the filters, the
stale-frame check and the hysteresis; every time constant is in seconds, so the decisions do not
depend on the frame rate. Per track: range from two cues (:mod:`~aeb_app.safety.cues`) through a gated
range filter, TTC from range and from scale change (:mod:`~aeb_app.safety.threat`); a warning needs the
available cues to agree.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from aeb_app.geometry.calibration import Calibration
from aeb_app.safety.calibration_fit import CalibrationFitMonitor
from aeb_app.safety.cue_rows import CueRow, frame_cues
from aeb_app.safety.cues import CueConfig, lateral_of, occlusion_pairs
from aeb_app.safety.expansion import ExpansionConfig, ExpansionEstimate, RangeTrend
from aeb_app.safety.kinematics import RangeFilter, RangeFilterConfig, predict_all
from aeb_app.safety.road import RoadGeometry
from aeb_app.safety.slopes import estimate_all
from aeb_app.safety.threat import ThreatAssessment, assess_threat
from aeb_app.safety.tracker import IouTracker, Track
from aeb_app.safety.warning import WarningConfig, WarningStateMachine
from aeb_app.safety.zone import ZoneConfig, point_in_zone, zone_length_m, zone_polygon_m
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
        bev_px: (x, y) that point in the bird's-eye view, pixels (NaN at/above the horizon).
        lateral_m: offset right of the ego centre line, metres.
        distance_m: this frame's fused range measurement, metres (the filtered range when no cue was valid).
        range_m: filtered range of the track, metres.
        range_rate_mps: filtered range rate, m/s (negative = closing).
        ttc_s: fused time to collision, seconds (``inf`` when not closing or the track is too young).
        in_zone: inside the braking zone.
        level: the warning level this object asks for (before hysteresis).
        score: detection confidence.
        xyxy_px: (x1, y1, x2, y2) box, pixels.
        ground_valid: the ground-contact cue was used this frame.
        width_valid: the box-width cue was used this frame.
        range_sigma_m: standard deviation of ``range_m``, metres.
        ttc_range_s: TTC from range and range rate alone, seconds.
        ttc_scale_s: TTC from the box's expansion alone, seconds (NaN while too few widths are seen).
        cues: the TTC cues that confirmed a threat this frame, e.g. ``("range", "scale")``.
        no_ground_reason: why the ground cue was not used ("border", "occlusion", "horizon", or "").
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
    score: float = math.nan
    xyxy_px: tuple[float, float, float, float] = (math.nan,) * 4
    ground_valid: bool = False
    width_valid: bool = False
    range_sigma_m: float = math.nan
    ttc_range_s: float = math.inf
    ttc_scale_s: float = math.nan
    cues: tuple[str, ...] = ()
    no_ground_reason: str = ""

    @property
    def cues_text(self) -> str:
        """``"range+scale"``, ``"range"``, ``"scale"`` or ``""``."""
        return "+".join(self.cues)


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


@dataclass(frozen=True)
class _RoadUsers:
    """The detections of one frame that the logic considers (warning classes), computed once per frame.

    Attributes:
        keep: their indices into the frame's detections.
        boxes: (n, 4) their boxes, float64 pixels.
        category_ids: (n,) their COCO ids.
        scores: (n,) their detection scores.
        pairs: (n, n) :func:`~aeb_app.safety.cues.occlusion_pairs` of those boxes.
    """

    keep: npt.NDArray[np.intp]
    boxes: npt.NDArray[np.float64]
    category_ids: npt.NDArray[np.int_]
    scores: npt.NDArray[np.floating]
    pairs: npt.NDArray[np.bool_]


@dataclass(frozen=True)
class _IdTable:
    """Membership of integer ids by a lookup table: ``np.isin(ids, members)``, at a third of its cost per frame.

    Attributes:
        members: the ids, as given.
        low: the id at ``table[0]``.
        table: ``table[id - low]`` is True for a member; None when the ids span too far for a table (np.isin).
    """

    members: npt.NDArray[np.int64]
    low: int
    table: npt.NDArray[np.bool_] | None

    @classmethod
    def of(cls, members: tuple[int, ...]) -> "_IdTable":
        ids = np.asarray(members, np.int64).reshape(-1)
        low, high = int(ids.min(initial=0)), int(ids.max(initial=0))
        if high - low > 1 << 16:
            return cls(ids, low, None)
        table = np.zeros(high - low + 1, bool)
        table[ids - low] = True
        return cls(ids, low, table)

    def contains(self, ids: npt.NDArray[np.int64]) -> npt.NDArray[np.bool_]:
        """(n,) which of ``ids`` are members."""
        if self.table is None:
            return np.isin(ids, self.members)
        at = ids - self.low
        known = (at >= 0) & (at < len(self.table))
        return known & self.table[np.where(known, at, 0)]


class AebLogic:
    """Stateful per-frame AEB decision. One instance per video/camera stream.

    An object whose box bottom was an occlusion edge within ``WarningConfig.occlusion_hold_s`` seconds does not
    warn (the nearer object in front of it does; the hold covers frames in which the nearer one is missed).

    Args:
        calibration: road calibration of the camera.
        zone_config: braking-zone settings (defaults if None).
        warning_config: warning settings (defaults if None).
        filter_config: range filter settings (defaults if None).
        cue_config: range-cue settings and class priors (defaults if None).
        expansion_config: scale-change TTC settings (defaults if None).

    Raises:
        CalibrationError: the calibration's horizon is outside the image.
    """

    def __init__(self, calibration: Calibration, zone_config: ZoneConfig | None = None,
                 warning_config: WarningConfig | None = None,
                 filter_config: RangeFilterConfig | None = None, *,
                 cue_config: CueConfig | None = None, expansion_config: ExpansionConfig | None = None) -> None:
        self.calibration = calibration
        self.road = RoadGeometry.from_calibration(calibration)
        self.zone_config = zone_config or ZoneConfig()
        self.warning_config = warning_config or WarningConfig()
        self.cue_config = cue_config or CueConfig()
        self.tracker = IouTracker(filter_config=filter_config, expansion_config=expansion_config)
        self.state_machine = WarningStateMachine(self.warning_config)
        self._last_timestamp_s: float | None = None
        self._zone_cache: tuple[float, npt.NDArray[np.float64], npt.NDArray[np.float64]] | None = None
        self._users: tuple[Detections, _RoadUsers] | None = None
        self._user_ids = _IdTable.of(self.warning_config.category_ids)
        self.fit = CalibrationFitMonitor(self.road.horizon_row_px, window_s=self.warning_config.fit_window_s,
                                         max_share_above=self.warning_config.fit_max_share_above)

    def update(self, frame_index: int, timestamp_s: float, detections: Detections | None, *,
               ego_speed_mps: float | None = None) -> AebFrameState:
        """Process one frame.

        Args:
            frame_index: index of the frame in its stream.
            timestamp_s: frame time in seconds (must increase).
            detections: the frame's detections, or None when the frame or inference failed.
            ego_speed_mps: ego speed (m/s) for the zone length and the closing-speed bound; None: unknown.

        Returns:
            The frame's state. ``level`` is UNAVAILABLE when ``detections`` is None, the timestamp
            does not increase, it jumps by more than ``max_frame_gap_s`` (tracks are then reset), or the
            calibration does not fit the video (:mod:`aeb_app.safety.calibration_fit`; tracks reset too).
        """
        length_m = zone_length_m(ego_speed_mps, self.zone_config)
        reason = self._staleness(timestamp_s, detections) or self._misfit(timestamp_s, detections)
        if reason or detections is None:
            return self._unavailable(frame_index, timestamp_s, length_m, reason or "no detections",
                                     len(detections or ()))
        dt_s = timestamp_s - self._last_timestamp_s if self._last_timestamp_s is not None else 0.0
        self._last_timestamp_s = timestamp_s
        objects, mask = self._objects(detections, timestamp_s, dt_s=dt_s, length_m=length_m,
                                      ego_speed_mps=ego_speed_mps)
        requested = max((o.level for o in objects), default=WarningLevel.NONE)
        requested = max(requested, self._coasting_level(timestamp_s, length_m, ego_speed_mps))
        level = self.state_machine.update(requested, timestamp_s)
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

    def _misfit(self, timestamp_s: float, detections: Detections) -> str:
        """Why the calibration does not fit this video ("" while it fits or the check is off). While it does not,
        nothing is tracked: the frame counts as seen, and tracking starts afresh once the evidence clears."""
        if not self.warning_config.check_calibration_fit:
            return ""
        users = self._road_users(detections)
        ground = ~np.logical_or.reduce(users.pairs, axis=1)  # a roof line seen over (by any box) is no ground contact
        reason = self.fit.update(timestamp_s, users.boxes[ground, 3], users.scores[ground])
        if reason:
            self._last_timestamp_s = timestamp_s
            self.tracker.reset()
        return reason

    def _unavailable(self, frame_index: int, timestamp_s: float, length_m: float, reason: str,
                     n: int) -> AebFrameState:
        log.debug("frame %d unavailable: %s", frame_index, reason)
        level = self.state_machine.update(WarningLevel.UNAVAILABLE, timestamp_s)
        return self._state(frame_index, timestamp_s, level, WarningLevel.UNAVAILABLE, reason, (),
                           np.zeros(n, bool), length_m)

    def _objects(self, detections: Detections, timestamp_s: float, *, dt_s: float, length_m: float,
                 ego_speed_mps: float | None) -> tuple[list[ObjectState], npt.NDArray[np.bool_]]:
        mask = np.zeros(len(detections), bool)
        users = self._road_users(detections)
        tracks, cues, fused = self._track(detections, users, timestamp_s, dt_s)
        boxes, keep = users.boxes.tolist(), users.keep.tolist()
        ranged = [i for i, t in enumerate(tracks) if t.range_filter.initialized]  # never ranged: nothing to say
        ranged_boxes = users.boxes[ranged]
        laterals = self._laterals([tracks[i] for i in ranged], ranged_boxes)
        bevs = self._bev_points(ranged_boxes)
        scores = users.scores[ranged].tolist()
        expansions = estimate_all([tracks[i].expansion for i in ranged], timestamp_s)  # the fits' first passes at once
        objects = []
        for k, i in enumerate(ranged):
            obj = self._object(keep[i], tracks[i], boxes[i], cues[i], fused[i], timestamp_s, length_m=length_m,
                               ego_speed_mps=ego_speed_mps, score=scores[k], lateral=laterals[k], bev=bevs[k],
                               expansion=expansions[k])
            mask[keep[i]] = obj.in_zone
            objects.append(obj)
        return objects, mask

    def _track(self, detections: Detections, users: _RoadUsers, timestamp_s: float,
               dt_s: float) -> tuple[list[Track], list[CueRow], list[float]]:
        """Match the road users to tracks and feed each its cues: the tracks, each one's cues and fused range."""
        boxes = users.boxes
        predict_all([track.range_filter for track in self.tracker.tracks], dt_s)
        tracks = self.tracker.update(boxes, users.category_ids, timestamp_s, users.scores)
        ids = [t.category_id for t in tracks]  # the tracks' voted classes, not this frame's
        # Only objects seen for a while occlude others: a one-frame false positive must not hide the lead.
        solid = [t.hits > 1 for t in tracks]
        cues = frame_cues(self.road, boxes, ids, self.cue_config, widths=[self._track_width(t) for t in tracks],
                          can_occlude=solid, pairs=users.pairs)
        for track, cue, box, fused_m, sigma_m in zip(tracks, cues.rows, boxes.tolist(), cues.fused_m,
                                                     cues.fused_sigma_m):
            self._update_track(track, cue, box, timestamp_s, fused_m, sigma_m)
        return tracks, cues.rows, cues.fused_m

    def _road_users(self, detections: Detections) -> _RoadUsers:
        """The frame's detections of the warning classes (computed once per frame: the fit check and the
        tracking both ask)."""
        if self._users is None or self._users[0] is not detections:
            keep = np.nonzero(self._user_ids.contains(detections.category_ids))[0]  # np.flatnonzero, cheaper
            boxes = detections.xyxy_px[keep].astype(np.float64)
            self._users = (detections, _RoadUsers(keep, boxes, detections.category_ids[keep], detections.scores[keep],
                                                  occlusion_pairs(boxes, self.cue_config)))
        return self._users[1]

    def _track_width(self, track: Track) -> tuple[float, float]:
        prior = self.cue_config.priors.get(track.category_id)
        return track.width_m(prior.width_m, prior.width_sigma_m) if prior else (math.nan, math.nan)

    def _update_track(self, track: Track, cue: CueRow, box: list[float], timestamp_s: float, fused_m: float,
                      fused_sigma_m: float) -> None:
        """Feed this frame's cues (``fused_m`` +- ``fused_sigma_m``: both fused) to the track's filter,
        expansion history and learned width.

        The filter gets each cue with its frame-to-frame (pixel) sigma; the gate also allows for the
        cue's constant part (tyre offset, width), which does not average out over frames.
        """
        if track.ranged_as != track.category_id:
            if track.ranged_as is not None:  # the class vote changed its leader: ranged with another prior so far
                track.restart_ranging(timestamp_s)
            track.ranged_as = track.category_id
        f = track.range_filter
        if cue.why_no_ground == "occlusion":
            track.last_occluded_s = timestamp_s
        if cue.width_valid:
            track.expansion.add(timestamp_s, box[2] - box[0])
        if track.trend is None:
            track.trend = RangeTrend(self.warning_config.closing_span_s)
        track.trend.add(timestamp_s, fused_m)
        if f.needs_start:
            # (Re)start from both cues fused, not from whichever comes first (one may be an outlier).
            if f.update(fused_m, fused_sigma_m) and cue.ground_valid:
                track.last_ground_s = timestamp_s
            return
        if cue.ground_valid and self._feed(f, cue.ground_range_m, cue.ground_noise_m, cue.ground_sigma_m):
            track.last_ground_s = timestamp_s
        if cue.width_valid:
            self._feed(f, cue.width_range_m, cue.width_noise_m, cue.width_sigma_m)
        prior = self.cue_config.priors.get(track.category_id)
        if prior and cue.ground_valid and cue.width_valid and abs(cue.lateral_m) < prior.width_m / 2:
            # The side is not in view: the box width is the object's width at the ground cue's range.
            depth = cue.ground_range_m + self.road.setback_m
            width = (box[2] - box[0]) * self.road.lateral_scale_m_per_px(cue.ground_range_m)
            rel = math.hypot(cue.ground_noise_m / depth, cue.width_noise_m / depth)
            track.learn_width(width, max(rel * width, 1e-3))

    def _feed(self, f: RangeFilter, range_m: float, noise_m: float, sigma_m: float) -> bool:
        """Fuse one cue into a running filter, its sigmas taken at the *predicted* range.

        Both cues' errors grow with the square of the camera depth (1 px of row or width is ``Z^2 / (f h)``
        or ``Z^2 / (f W)`` metres). Taken at the measured range, a measurement that errs short would get
        a smaller sigma, hence more weight, than one that errs long by as much, and the filter would be
        pulled short (and its closing speed low) at long range; at the prediction both weigh the same.
        The gate compares in inverse depth, the space the pixels live in (see :meth:`RangeFilter.update`).
        """
        scale = ((f.range_m + self.road.setback_m) / max(float(range_m) + self.road.setback_m, 1e-3)) ** 2
        return f.update(float(range_m), float(noise_m) * scale, gate_sigma_m=float(sigma_m) * scale,
                        inverse_depth_setback_m=self.road.setback_m)

    def _object(self, index: int, track: Track, box: list[float], cue: CueRow, measured_m: float,
                timestamp_s: float, *, length_m: float, ego_speed_mps: float | None,
                score: float, lateral: float, bev: tuple[float, float],
                expansion: ExpansionEstimate | None) -> ObjectState:
        f = track.range_filter
        x1, y1, x2, y2 = box
        # Zone membership under uncertainty: an object that may be (one sigma) inside the zone is in it.
        inside = self._in_zone(lateral, f, length_m)
        threat = self._threat_with(track, timestamp_s, ego_speed_mps, expansion)
        agrees = self._agrees(track, threat, timestamp_s)
        level = self.warning_config.level_for(in_zone=inside, ttc_s=threat.ttc_s) if agrees else WarningLevel.NONE
        track.agreed, track.zone_lateral_m, track.braking = agrees, lateral, threat.braking
        return ObjectState(
            index, track.track_id, track.category_id, ((x1 + x2) / 2.0, y2), bev, lateral,
            measured_m if math.isfinite(measured_m) else f.range_m, f.range_m, f.range_rate_mps, threat.ttc_s,
            inside, level, score, (x1, y1, x2, y2), cue.ground_valid, cue.width_valid, f.range_sigma_m,
            threat.ttc_range_s, threat.ttc_scale_s, threat.confirmed if agrees else (), cue.why_no_ground)

    def _in_zone(self, lateral_m: float, f: RangeFilter, length_m: float) -> bool:
        """The object may be (one sigma nearer) inside the zone."""
        near = max(f.range_m - f.range_sigma_m, 0.0)
        return point_in_zone(lateral_m, near, half_width_m=self.zone_config.lane_width_m / 2, length_m=length_m)

    def _bev_points(self, boxes: npt.NDArray[np.float64]) -> list[tuple[float, float]]:
        """Bird's-eye-view pixels of the boxes' bottom centres (NaN for a point off the road plane)."""
        ground = np.empty((len(boxes), 2))  # the columns filled in place: as np.stack, cheaper
        ground[:, 0] = (boxes[:, 0] + boxes[:, 2]) / 2.0
        ground[:, 1] = boxes[:, 3]
        try:
            return [(x, y) for x, y in self.calibration.view.to_bev(ground).tolist()]
        except ValueError:  # one of them is not on the road plane: find which, one at a time
            return [self._bev_point(g) for g in ground]

    def _bev_point(self, ground: npt.NDArray[np.float64]) -> tuple[float, float]:
        try:
            x, y = self.calibration.view.to_bev(ground[None])[0].tolist()
            return x, y
        except ValueError:
            return math.nan, math.nan

    def _threat(self, track: Track, timestamp_s: float, ego_speed_mps: float | None) -> ThreatAssessment:
        """The track's TTC cues now; a track missed in this frame keeps the braking decision of the frame it was
        last seen in (no new measurement, no new evidence: only the prediction's uncertainty grew)."""
        return self._threat_with(track, timestamp_s, ego_speed_mps, track.expansion.estimate(timestamp_s))

    def _threat_with(self, track: Track, timestamp_s: float, ego_speed_mps: float | None,
                     expansion: ExpansionEstimate | None) -> ThreatAssessment:
        """:meth:`_threat` given the track's scale-change estimate now (``expansion``)."""
        f = track.range_filter
        coasting = track.last_seen_s < timestamp_s
        return assess_threat(f, expansion, track_age_s=track.age_s(timestamp_s),
                             ego_speed_mps=ego_speed_mps, setback_m=self.road.setback_m, config=self.warning_config,
                             range_independent=timestamp_s - track.last_ground_s <= f.config.reacquire_after_s,
                             braking=track.braking if coasting else None)

    def _agrees(self, track: Track, threat: ThreatAssessment, timestamp_s: float) -> bool:
        """The cues allow a warning, the track is settled, its gap has been shrinking over ``closing_span_s``,
        and nothing nearer stands in front of it.

        A track missed in this frame (coasting) keeps the closing trend's decision of the frame it was last seen in:
        without a new measurement the window would only lose its oldest sample, which is no evidence either way
        (:meth:`_coasting_level` asks only tracks that agreed, closing trend included, when last seen).
        """
        if not threat.confirmed:  # no cue confirms a threat (most objects): nothing else to ask
            return False
        # Frame times are floats (74/10 - 71/10 > 0.3): a hold of exactly its length must still hold.
        occluded = timestamp_s - track.last_occluded_s <= self.warning_config.occlusion_hold_s + 1e-6
        settled = track.age_s(timestamp_s) >= self.warning_config.min_track_age_s - 1e-6
        if not (threat.agrees(self.warning_config.require_agreement) and not occluded and settled):
            return False  # the closing trend (a robust line fit) only where it can still decide
        if track.last_seen_s < timestamp_s:
            return track.agreed  # coasting: the trend's decision when last seen (it agreed then, or it is not asked)
        return not self.warning_config.require_closing_trend or bool(
            track.trend is not None and track.trend.closing(timestamp_s, self.warning_config.closing_sigmas))

    def _coasting_level(self, timestamp_s: float, length_m: float, ego_speed_mps: float | None) -> WarningLevel:
        """The highest level asked for by tracks not detected in this frame but still coasting.

        A missed detection is no evidence that a threat went away: a track whose cues agreed when it was
        last seen keeps asking for the level of its motion model's prediction (range filter predicted to
        now, expansion brought forward) while it coasts, i.e. until its filter would restart
        (``reacquire_after_s``) or the tracker drops it. Without this one missed frame restarts the
        warning's rising debounce. The decisions that only a measurement can change (the relative acceleration
        significant, the closing trend) are those of the frame it was last seen in: the predicted acceleration's
        sigma grows by the jerk noise in a missed frame, and the trend's window only loses its oldest sample.
        """
        level = WarningLevel.NONE
        for track in self.tracker.tracks:
            f = track.range_filter
            if track.last_seen_s >= timestamp_s or not (track.agreed and f.initialized):
                continue
            threat = self._threat(track, timestamp_s, ego_speed_mps)
            if not self._agrees(track, threat, timestamp_s):
                continue
            inside = self._in_zone(track.zone_lateral_m, f, length_m)
            level = max(level, self.warning_config.level_for(in_zone=inside, ttc_s=threat.ttc_s))
        return level

    def _laterals(self, tracks: list[Track], boxes: npt.NDArray[np.float64]) -> list[float]:
        """Each object's lateral offset (:func:`~aeb_app.safety.cues.object_lateral_m` of its box at its filtered
        range); while its box is cut at a side, no nearer to the centre line than when it was last seen whole (a cut
        box only bounds it)."""
        margin = self.cue_config.border_margin_px
        right = self.calibration.image_size_wh[0] - margin
        out = []
        for track, (x1, _, x2, _) in zip(tracks, boxes.tolist()):  # object_lateral_m box by box, on plain floats
            centre, scale = self.road.centre_line_one(track.range_filter.range_m)
            lateral = lateral_of(x1, x2, centre, scale, self._track_width(track)[0], margin, right)
            if not (x1 <= margin or x2 >= right):
                track.lateral_m = lateral
            elif (math.isfinite(track.lateral_m) and track.lateral_m * lateral > 0
                  and abs(track.lateral_m) > abs(lateral)):
                lateral = track.lateral_m
            out.append(lateral)
        return out

    def _state(self, frame_index: int, timestamp_s: float, level: WarningLevel, requested: WarningLevel,
               reason: str, objects: tuple[ObjectState, ...], mask: npt.NDArray[np.bool_],
               length_m: float) -> AebFrameState:
        poly_m, poly_px = self._zone_polygons(length_m)
        return AebFrameState(frame_index, timestamp_s, level, requested, reason, objects, mask, length_m,
                             poly_m, poly_px)

    def _zone_polygons(self, length_m: float) -> tuple[npt.NDArray[np.float64], npt.NDArray[np.float64]]:
        """The zone's corners in metres and in image pixels (read-only, computed once per zone length: with a
        fixed length or a steady speed, once per stream)."""
        if self._zone_cache is None or self._zone_cache[0] != length_m:
            poly_m = zone_polygon_m(length_m, self.zone_config)
            poly_px = self.calibration.metric_to_image(poly_m)
            poly_m.setflags(write=False)
            poly_px.setflags(write=False)
            self._zone_cache = (length_m, poly_m, poly_px)
        return self._zone_cache[1], self._zone_cache[2]
