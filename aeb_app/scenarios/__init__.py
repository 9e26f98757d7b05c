"""Synthetic validation scenarios (pure): pinhole camera, lead-vehicle kinematics, NHTSA/Euro NCAP cases."""

from __future__ import annotations

from aeb_app.scenarios.runner import SCENARIOS, Scenario, ScenarioResult, run_all, run_scenario
from aeb_app.scenarios.synthetic import LeadMotion, PinholeCamera, synthetic_calibration, vehicle_box_px

__all__ = ["SCENARIOS", "Scenario", "ScenarioResult", "run_all", "run_scenario",
           "LeadMotion", "PinholeCamera", "synthetic_calibration", "vehicle_box_px"]
