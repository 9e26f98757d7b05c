"""AEB safety logic (pure): braking zone, tracking, range filtering, TTC and warnings.

Entry point: :class:`AebLogic` (see :mod:`aeb_app.safety.logic`).
"""

from __future__ import annotations

from aeb_app.safety.kinematics import RangeFilter, RangeFilterConfig, ttc_s
from aeb_app.safety.logic import AebFrameState, AebLogic, ObjectState
from aeb_app.safety.tracker import IouTracker, Track, iou_matrix
from aeb_app.safety.warning import ROAD_USER_IDS, WarningConfig, WarningStateMachine
from aeb_app.safety.zone import ZoneConfig, in_zone, zone_length_m, zone_polygon_m

__all__ = [
    "AebFrameState", "AebLogic", "ObjectState",
    "RangeFilter", "RangeFilterConfig", "ttc_s",
    "IouTracker", "Track", "iou_matrix",
    "ROAD_USER_IDS", "WarningConfig", "WarningStateMachine",
    "ZoneConfig", "in_zone", "zone_length_m", "zone_polygon_m",
]
