"""Test scenarios (NHTSA FCW confirmation tests, Euro NCAP CCR variants, no-threat cases) and their runner.

Each scenario is simulated frame by frame; the lead vehicle's ground-truth box (optionally with pixel
noise and missed detections, seeded) becomes a :class:`~aeb_app.types.Detections` and goes through
the same :class:`~aeb_app.safety.AebLogic` the application uses, with a calibration made from the
synthetic camera through the normal 4-point + reference-point path.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from aeb_app.safety import AebLogic, WarningConfig, ZoneConfig
from aeb_app.scenarios.synthetic import LeadMotion, PinholeCamera, synthetic_calibration, vehicle_box_px
from aeb_app.types import Detections, WarningLevel

__all__ = ["Scenario", "ScenarioResult", "SCENARIOS", "run_scenario", "run_all"]

KMH = 1 / 3.6
G_MPS2 = 9.81
RANGE_ERROR_WINDOW_M = (10.0, 60.0)


@dataclass(frozen=True)
class Scenario:
    """One test case.

    Attributes:
        name: short id.
        source: "NHTSA", "Euro NCAP" or "no-threat".
        motion: ego and lead kinematics.
        lead_lateral_m: lead centre offset right of the ego centre line.
        required_ttc_s: a warning must come at true TTC >= this; None for no-threat cases.
        duration_s: simulated time (stops earlier at collision / when the lead is passed).
        note: how the criterion was chosen.
    """

    name: str
    source: str
    motion: LeadMotion
    lead_lateral_m: float = 0.0
    required_ttc_s: float | None = None
    duration_s: float = 12.0
    note: str = ""


def _approach(name: str, source: str, ego_kmh: float, lead_kmh: float, required: float | None,
              lateral_m: float = 0.0, note: str = "") -> Scenario:
    closing = (ego_kmh - lead_kmh) * KMH
    gap = max(30.0, 7.0 * closing) if closing > 0 else 25.0  # start ~7 s away
    return Scenario(name, source, LeadMotion(ego_kmh * KMH, lead_kmh * KMH, gap), lateral_m, required,
                    duration_s=min(12.0, gap / closing + 1.0) if closing > 0 else 8.0, note=note)


def _braking(name: str, source: str, kmh: float, gap_m: float, decel_mps2: float, required: float,
             note: str = "") -> Scenario:
    motion = LeadMotion(kmh * KMH, kmh * KMH, gap_m, decel_mps2, brake_start_s=3.0)
    return Scenario(name, source, motion, 0.0, required, duration_s=12.0, note=note)


_NCAP_NOTE = "Euro NCAP scores AEB by speed reduction; FCW criterion here is the project's own"
SCENARIOS: tuple[Scenario, ...] = (
    _approach("NHTSA LVS stopped 72.4", "NHTSA", 72.4, 0.0, 2.1, note="FCW test 1: TTC >= 2.1 s"),
    _approach("NHTSA LVM slower 72.4/32.2", "NHTSA", 72.4, 32.2, 2.0, note="FCW test 2: TTC >= 2.0 s"),
    _braking("NHTSA LVD decel 72.4 30m 0.3g", "NHTSA", 72.4, 30.0, 0.3 * G_MPS2, 2.4, note="FCW test 3: TTC >= 2.4 s"),
    _approach("CCRs 50", "Euro NCAP", 50.0, 0.0, 2.1, note=_NCAP_NOTE),
    _approach("CCRs 80", "Euro NCAP", 80.0, 0.0, 2.1, note=_NCAP_NOTE),
    _approach("CCRm 50/20", "Euro NCAP", 50.0, 20.0, 2.0, note=_NCAP_NOTE),
    _approach("CCRm 80/20", "Euro NCAP", 80.0, 20.0, 2.0, note=_NCAP_NOTE),
    _braking("CCRb 50 12m -2", "Euro NCAP", 50.0, 12.0, 2.0, 1.2, note=_NCAP_NOTE),
    _braking("CCRb 50 12m -6", "Euro NCAP", 50.0, 12.0, 6.0, 1.2, note=_NCAP_NOTE),
    _braking("CCRb 50 40m -2", "Euro NCAP", 50.0, 40.0, 2.0, 1.2, note=_NCAP_NOTE),
    _braking("CCRb 50 40m -6", "Euro NCAP", 50.0, 40.0, 6.0, 1.2, note=_NCAP_NOTE),
    _approach("adjacent lane stopped", "no-threat", 72.4, 0.0, None, lateral_m=3.7),
    _approach("adjacent lane slower", "no-threat", 72.4, 32.2, None, lateral_m=-3.7),
    _approach("lead pulling away", "no-threat", 72.4, 90.0, None),
    _approach("parked beside road", "no-threat", 72.4, 0.0, None, lateral_m=3.4),
)


@dataclass
class ScenarioResult:
    """Outcome of one scenario run (JSON-ready through :meth:`to_json`)."""

    name: str
    source: str
    required_ttc_s: float | None
    warning_ttc_s: float | None
    brake_ttc_s: float | None
    false_warnings: int
    frames: int
    unavailable_frames: int
    range_errors_m: list[float] = field(default_factory=list, repr=False)

    @property
    def passed(self) -> bool:
        if self.false_warnings or self.unavailable_frames:
            return False
        if self.required_ttc_s is None:
            return self.warning_ttc_s is None
        return self.warning_ttc_s is not None and self.warning_ttc_s >= self.required_ttc_s

    def range_stats(self) -> dict[str, float | int | None]:
        """Range error (measured - true, m) over frames with a true gap in 10-60 m."""
        err = np.asarray(self.range_errors_m)
        if not len(err):
            return {"range_n": 0, "range_bias_m": None, "range_rms_m": None, "range_max_abs_m": None}
        return {"range_n": int(len(err)), "range_bias_m": round(float(err.mean()), 3),
                "range_rms_m": round(float(np.sqrt((err**2).mean())), 3),
                "range_max_abs_m": round(float(np.abs(err).max()), 3)}

    def to_json(self) -> dict:
        rnd = lambda v: None if v is None else round(v, 3)  # noqa: E731
        return {"name": self.name, "source": self.source, "required_ttc_s": self.required_ttc_s,
                "warning_ttc_s": rnd(self.warning_ttc_s), "brake_ttc_s": rnd(self.brake_ttc_s),
                "false_warnings": self.false_warnings, "passed": self.passed, "frames": self.frames,
                "unavailable_frames": self.unavailable_frames, **self.range_stats()}


def _detections(box: np.ndarray | None, rng: np.random.Generator, *, noise_px: float,
                miss_prob: float, camera: PinholeCamera) -> Detections:
    if box is None or rng.random() < miss_prob:
        return Detections.empty()
    noisy = box + rng.normal(0.0, noise_px, 4) if noise_px > 0 else box.copy()
    noisy[[0, 2]] = np.clip(np.sort(noisy[[0, 2]]), 0, camera.width_px)
    noisy[[1, 3]] = np.clip(np.sort(noisy[[1, 3]]), 0, camera.height_px)
    return Detections(noisy[None].astype(np.float32), np.array([0.9], np.float32), np.array([3]), ("car",))


def run_scenario(scenario: Scenario, *, noise_px: float = 0.0, miss_prob: float = 0.0, seed: int = 0,
                 fps: float = 25.0, camera: PinholeCamera | None = None,
                 zone_config: ZoneConfig | None = None, warning_config: WarningConfig | None = None
                 ) -> ScenarioResult:
    """Simulate one scenario through :class:`AebLogic` and score it.

    A warning onset (level rising to CAUTION or above) while the true gap is not closing, or at any
    time in a no-threat case, counts as a false warning. ``warning_ttc_s`` is the true time to
    collision (from the simulated trajectories, ego not braking) at the first genuine onset.
    """
    camera = camera or PinholeCamera()
    logic = AebLogic(synthetic_calibration(camera), zone_config, warning_config)
    rng = np.random.default_rng(seed)
    threat = scenario.required_ttc_s is not None
    t_collision = scenario.motion.collision_time_s() if threat else math.inf
    result = ScenarioResult(scenario.name, scenario.source, scenario.required_ttc_s, None, None, 0, 0, 0)
    previous = WarningLevel.NONE
    for k in range(int(scenario.duration_s * fps)):
        t = k / fps
        gap = float(scenario.motion.gap_m(t))
        if gap <= 0.5:
            break
        box = vehicle_box_px(camera, lateral_m=scenario.lead_lateral_m, ahead_cam_m=gap + camera.setback_m)
        state = logic.update(k, t, _detections(box, rng, noise_px=noise_px, miss_prob=miss_prob, camera=camera),
                             ego_speed_mps=scenario.motion.ego_speed_mps)
        result.frames += 1
        result.unavailable_frames += state.level == WarningLevel.UNAVAILABLE
        if state.objects and RANGE_ERROR_WINDOW_M[0] <= gap <= RANGE_ERROR_WINDOW_M[1]:
            result.range_errors_m.append(state.objects[0].distance_m - gap)
        tti = t_collision - t
        if state.level >= WarningLevel.CAUTION and previous < WarningLevel.CAUTION:
            if not threat or scenario.motion.closing_speed_mps(t) <= 0:
                result.false_warnings += 1
            elif result.warning_ttc_s is None:
                result.warning_ttc_s = tti
        if state.level == WarningLevel.BRAKE and result.brake_ttc_s is None and threat:
            result.brake_ttc_s = tti
        previous = state.level
    return result


def run_all(*, noise_px: float = 0.0, miss_prob: float = 0.0, seed: int = 0,
            scenarios: tuple[Scenario, ...] = SCENARIOS) -> list[ScenarioResult]:
    """Run every scenario with the same noise settings (scenario i uses seed ``seed + i``)."""
    return [run_scenario(s, noise_px=noise_px, miss_prob=miss_prob, seed=seed + i) for i, s in enumerate(scenarios)]
