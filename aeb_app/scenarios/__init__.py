"""Synthetic validation scenarios (pure): pinhole camera, lead-vehicle kinematics, detector artefacts,
NHTSA/Euro NCAP and no-threat cases, and a sweep over seeds and frame rates."""

from __future__ import annotations

from aeb_app.scenarios.artefacts import Artefacts, detector_view
from aeb_app.scenarios.runner import SCENARIOS, Scenario, ScenarioResult, run_all, run_scenario
from aeb_app.scenarios.synthetic import (
    LeadMotion, PinholeCamera, VehicleShape, synthetic_calibration, vehicle_box_px,
)

__all__ = ["SCENARIOS", "Scenario", "ScenarioResult", "run_all", "run_scenario", "Artefacts", "detector_view",
           "LeadMotion", "PinholeCamera", "VehicleShape", "synthetic_calibration", "vehicle_box_px"]
