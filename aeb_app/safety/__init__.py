"""AEB safety logic (pure): braking zone, range cues, tracking, range filtering, TTC and warnings.

Entry point: :class:`AebLogic` (see :mod:`aeb_app.safety.logic`).
"""

from __future__ import annotations

from aeb_app.safety.cues import DEFAULT_PRIORS, ClassPrior, CueConfig, RangeCues, fuse, measure_cues
from aeb_app.safety.expansion import ExpansionConfig, ExpansionEstimate, ExpansionTracker
from aeb_app.safety.kinematics import RangeFilter, RangeFilterConfig, ttc_s
from aeb_app.safety.logic import AebFrameState, AebLogic, ObjectState
from aeb_app.safety.road import RoadGeometry
from aeb_app.safety.threat import ThreatAssessment, assess_threat
from aeb_app.safety.tracker import IouTracker, Track, iou_matrix
from aeb_app.safety.warning import ROAD_USER_IDS, WarningConfig, WarningStateMachine
from aeb_app.safety.zone import ZoneConfig, in_zone, zone_length_m, zone_polygon_m

__all__ = [
    "AebFrameState", "AebLogic", "ObjectState",
    "DEFAULT_PRIORS", "ClassPrior", "CueConfig", "RangeCues", "fuse", "measure_cues",
    "ExpansionConfig", "ExpansionEstimate", "ExpansionTracker",
    "RangeFilter", "RangeFilterConfig", "ttc_s", "RoadGeometry",
    "ThreatAssessment", "assess_threat",
    "IouTracker", "Track", "iou_matrix",
    "ROAD_USER_IDS", "WarningConfig", "WarningStateMachine",
    "ZoneConfig", "in_zone", "zone_length_m", "zone_polygon_m",
]
