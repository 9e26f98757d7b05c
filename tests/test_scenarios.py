"""Scenario validation: NHTSA FCW criteria, Euro NCAP variants, no-threat cases, artefacts, the CLI."""

from __future__ import annotations

import dataclasses
import json
import math
from pathlib import Path

import numpy as np
import pytest

from aeb_app.cli import main
from aeb_app.scenarios import (
    SCENARIOS, Artefacts, LeadMotion, PinholeCamera, VehicleShape, detector_view, run_all, run_scenario,
    synthetic_calibration, vehicle_box_px,
)
from aeb_app.scenarios.matrix import matrix_stream, range_error_stats, run_matrix
from aeb_app.scenarios.runner import ScenarioResult

NHTSA = [s for s in SCENARIOS if s.source == "NHTSA"]
THREAT = [s for s in SCENARIOS if s.required_ttc_s is not None]
NO_THREAT = [s for s in SCENARIOS if s.required_ttc_s is None]
BY_NAME = {s.name: s for s in SCENARIOS}


def test_nhtsa_criteria_as_published() -> None:
    assert {s.name: s.required_ttc_s for s in NHTSA} == {
        "NHTSA LVS stopped 72.4": 2.1, "NHTSA LVM slower 72.4/32.2": 2.0, "NHTSA LVD decel 72.4 30m 0.3g": 2.4}
    assert {"queue creep, stops 2 m behind", "queue standing, cars behind lead", "lead accelerating away",
            "next lane, close range"} <= {s.name for s in NO_THREAT}


def test_a_warning_exactly_at_the_criterion_meets_it() -> None:
    """LVS at 10 fps collides at 7.0 s; the frame at k = 49 is 2.1 s before it, but 7.0 - 49 / 10 is
    2.0999999999999996 in floating point. A warning there meets TTC >= 2.1 s; a frame earlier or later decides."""
    lvs = BY_NAME["NHTSA LVS stopped 72.4"]
    assert lvs.motion.collision_time_s() == pytest.approx(7.0)
    exact = lvs.motion.collision_time_s() - 49 / 10
    assert exact < 2.1  # the rounding the scorer must not count as late

    def at(ttc: float) -> ScenarioResult:
        return ScenarioResult(lvs.name, lvs.source, 2.1, ttc, None, 0, 70, 0, fps=10.0)
    assert at(exact).passed and at(exact + 0.1).passed and not at(exact - 0.1).passed
    assert not at(2.1 - 1e-6).passed


def test_kinematics_braking_lead_accelerating_lead_and_braking_ego() -> None:
    motion = LeadMotion(72.4 / 3.6, 72.4 / 3.6, 30.0, 0.3 * 9.81, brake_start_s=0.0)
    assert motion.collision_time_s() == pytest.approx(math.sqrt(30.0 / (0.5 * 0.3 * 9.81)), abs=2e-3)
    assert LeadMotion(20.0, 25.0, 10.0).collision_time_s() == math.inf
    away = LeadMotion(5.0, 5.0, 8.0, lead_decel_mps2=-2.0, brake_start_s=1.0)
    assert float(away.gap_m(3.0)) == pytest.approx(8.0 + 0.5 * 2.0 * 4.0)
    creep = BY_NAME["queue creep, stops 2 m behind"].motion
    assert float(creep.gap_m(30.0)) == pytest.approx(2.0, abs=1e-6) and creep.ego_speed_at(30.0) == 0.0


def test_synthetic_calibration_recovers_ground_truth() -> None:
    cam = PinholeCamera()
    cal = synthetic_calibration(cam)
    for gap in (10.0, 30.0, 60.0):
        lat, ahead = cal.image_to_metric([cam.ground_px(1.0, gap + cam.setback_m)])[0]
        assert (lat, ahead) == pytest.approx((1.0, gap), abs=0.01)


def test_box_bottom_is_the_tyre_contact_and_a_side_shows_beside_the_lane() -> None:
    cam = PinholeCamera()
    box = vehicle_box_px(cam, lateral_m=0.0, ahead_cam_m=10.0, shape=VehicleShape(rear_overhang_m=0.9))
    assert box[3] == pytest.approx(cam.ground_px(0.0, 10.9)[1], abs=0.01)  # rear tyres, not the rear face
    beside = vehicle_box_px(cam, lateral_m=3.7, ahead_cam_m=8.0)
    face_left = cam.project([[3.7 - 0.9, 0.0, 8.0]])[0, 0]
    assert beside[0] < face_left - 50  # the inner side widens the box towards the image centre
    near = vehicle_box_px(cam, lateral_m=0.0, ahead_cam_m=2.0)
    assert near[3] == cam.height_px  # cut by the image bottom


def test_van_behind_the_lead_is_cut_at_the_leads_roof() -> None:
    cam, rng = PinholeCamera(), np.random.default_rng(0)
    scenario = BY_NAME["queue standing, cars behind lead"]
    dets, lead_index = detector_view(cam, scenario, 4.0, VehicleShape(), Artefacts(), rng)
    assert len(dets) == 2 and lead_index == 0
    lead, van = dets.xyxy_px
    assert van[3] == pytest.approx(lead[1]) and van[1] < lead[1]


@pytest.mark.parametrize("scenario", NHTSA, ids=lambda s: s.name)
def test_nhtsa_scenarios_pass(scenario) -> None:
    result = run_scenario(scenario, noise_px=1.0, seed=7)
    assert result.warning_ttc_s is not None and result.warning_ttc_s >= scenario.required_ttc_s
    assert result.false_warnings == 0 and result.passed


@pytest.mark.parametrize("scenario", NO_THREAT, ids=lambda s: s.name)
def test_no_threat_gives_no_warning(scenario) -> None:
    result = run_scenario(scenario, seed=3, artefacts=Artefacts.realistic(2.0, 0.1))
    assert result.warning_ttc_s is None and result.false_warnings == 0 and result.passed
    assert result.frames > 50


def test_all_pass_without_noise_and_range_is_close() -> None:
    results = run_all()
    assert [r.name for r in results if not r.passed] == []
    for r in results:
        stats = r.range_stats()
        assert stats["range_n"] == 0 or stats["range_rms_m"] < 0.25, (r.name, stats)


@pytest.mark.parametrize("scenario", [BY_NAME[n] for n in (
    "NHTSA LVS stopped 72.4", "NHTSA LVD decel 72.4 30m 0.3g", "CCRb 50 12m -6", "queue creep, stops 2 m behind",
    "next lane, close range")], ids=lambda s: s.name)
def test_same_decisions_at_10_15_25_30_fps(scenario) -> None:
    """Every time constant is in seconds: the frame rate changes a warning's time by at most a frame or two."""
    results = [run_scenario(scenario, fps=fps) for fps in (10, 15, 25, 30)]
    assert len({r.passed for r in results}) == 1 and results[0].passed
    warned = [r.warning_ttc_s for r in results]
    if scenario.required_ttc_s is None:
        assert warned == [None] * 4
    else:
        assert max(warned) - min(warned) <= 0.25, warned


def test_reduced_sweep_with_realistic_artefacts() -> None:
    """CI's short version of `aeb-app scenarios --seeds 20 --noise-px 2 --miss 0.1 --fps 10,25` (the full run and
    its table are in docs/scenarios.md). Bounds are what the full sweep supports, not the issue's targets: the
    lead-braking cases (NHTSA LVD, CCRb 12 m -6) do not meet 20/20 yet (see docs/scenarios.md, "Not met")."""
    rows = run_matrix(seeds=1, fps_list=(10, 25), artefacts=Artefacts.realistic(2.0, 0.1), seed=100)
    threat = [r for r in rows if r.required_ttc_s is not None]
    assert sum(r.passed for r in threat) >= 0.85 * len(threat), [(r.name, r.fps, r.warning_ttc_s) for r in threat]
    assert all(r.passed == r.runs for r in rows if r.name in ("NHTSA LVS stopped 72.4", "NHTSA LVM slower 72.4/32.2"))
    assert sum(r.false_warnings for r in rows if r.required_ttc_s is None) <= 1
    stats = range_error_stats([res for r in rows for res in r.results])
    assert stats.n > 500 and stats.median <= 0.05 and stats.p95 <= 0.12


def test_occlusion_hold_of_exactly_its_length_in_frame_times() -> None:
    """Held-out seed 35 of the sweep (queue standing, 10 fps): the van behind the lead was last seen occluded at
    7.1 s, the lead was missed at 7.3 and 7.4 s, and 74/10 - 71/10 = 0.3000000000000007 > 0.3 s ended the hold
    a frame early: the van, ranged by its width alone, warned."""
    index = next(i for i, s in enumerate(SCENARIOS) if s.name == "queue standing, cars behind lead")
    result = run_scenario(SCENARIOS[index], seed=matrix_stream(35, index, 10.0), fps=10.0,
                          artefacts=Artefacts.realistic(2.0, 0.1))
    assert result.frames == 80 and result.false_warnings == 0 and result.passed



def test_a_missed_frame_keeps_the_braking_and_closing_decisions() -> None:
    """Held-out seed 30 of the sweep (CCRb 12 m -6, 10 fps): the braking lead asked for CAUTION at 3.5 s and was
    missed at 3.6 s, where its predicted acceleration (-1.7 m/s^2) fell below 0.5 of its grown sigma (3.7 m/s^2):
    the TTC jumped to 7.6 s, the rising debounce drained, and the warning came at true TTC 1.0 s (1.2 s needed).
    A missed frame is no evidence: the track keeps the braking and closing-trend decisions it was last seen with."""
    index = next(i for i, s in enumerate(SCENARIOS) if s.name == "CCRb 50 12m -6")
    result = run_scenario(SCENARIOS[index], seed=matrix_stream(30, index, 10.0), fps=10.0,
                          artefacts=Artefacts.realistic(2.0, 0.1))
    assert result.false_warnings == 0 and result.warning_ttc_s is not None and result.warning_ttc_s >= 1.2

def test_missed_detections_do_not_make_it_unavailable() -> None:
    result = run_scenario(NHTSA[0], noise_px=0.5, miss_prob=0.1, seed=2)
    assert result.unavailable_frames == 0 and result.passed


def test_cli_writes_json_and_exit_code(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "sub" / "scenarios.json"
    assert main(["scenarios", "--noise-px", "0", "--fps", "25", "--json", str(out)]) == 0
    data = json.loads(out.read_text(encoding="utf-8"))
    rows = data["rows"]
    assert len(rows) == len(SCENARIOS) and data["settings"]["fps"] == [25.0]
    for row in rows:
        assert {"name", "fps", "runs", "passed", "false_warnings", "required_ttc_s", "min_warning_ttc_s"} <= set(row)
    assert rows[0]["required_ttc_s"] == 2.1 and rows[-1]["required_ttc_s"] is None
    assert {"median", "p95", "n"} <= set(data["range_error"])
    printed = capsys.readouterr().out
    assert "NHTSA LVS stopped 72.4" in printed and "fused range error at 5-40 m" in printed
    assert list(out.parent.iterdir()) == [out]


def test_cli_fails_when_a_scenario_fails(monkeypatch: pytest.MonkeyPatch) -> None:
    import aeb_app.scenarios.matrix as matrix
    import aeb_app.scenarios.runner as runner

    impossible = runner.Scenario("impossible", "NHTSA", LeadMotion(20.0, 0.0, 30.0), 0.0, 99.0, 3.0)
    original = matrix.run_matrix
    monkeypatch.setattr(matrix, "run_matrix", lambda **kw: original(**{**kw, "scenarios": (impossible,)}))
    assert main(["scenarios"]) == 1
    assert main(["scenarios", "--noise-px", "-1"]) == 2
    assert main(["scenarios", "--fps", "ten"]) == 2


def test_scenario_seed_reproducible() -> None:
    a = run_scenario(NHTSA[1], seed=5, artefacts=Artefacts.realistic())
    b = run_scenario(NHTSA[1], seed=5, artefacts=Artefacts.realistic())
    assert a.warning_ttc_s == b.warning_ttc_s and np.array_equal(a.range_errors_m, b.range_errors_m)


def test_class_flips_come_from_their_own_stream_and_do_not_change_a_result() -> None:
    """The realistic set reports a car as a truck or a person in 10 % of its detections (as a COCO detector
    does with far cars); the flips are drawn apart, so every box is the same with flips on or off, and the
    tracks' class vote makes the run's result the same too (NHTSA LVS at 10 fps)."""
    scenario, camera = NHTSA[0], PinholeCamera()
    lead = VehicleShape()
    on = Artefacts.realistic(2.0, 0.1)
    off = dataclasses.replace(on, class_flip_prob=0.0)
    rng_on, rng_off = np.random.default_rng(7), np.random.default_rng(7)
    labels = np.random.default_rng(8)
    flipped = 0
    for k in range(200):
        dets_on, _ = detector_view(camera, scenario, 30.0 - 0.1 * k, lead, on, rng_on, labels)
        dets_off, _ = detector_view(camera, scenario, 30.0 - 0.1 * k, lead, off, rng_off)
        np.testing.assert_array_equal(dets_on.xyxy_px, dets_off.xyxy_px)
        assert set(dets_off.names) <= {"car"} and set(dets_on.names) <= {"car", "truck", "person"}
        flipped += sum(name != "car" for name in dets_on.names)
    assert 8 <= flipped <= 40  # about 10 % of ~180 detections
    with pytest.raises(ValueError, match="needs labels_rng"):
        detector_view(camera, scenario, 30.0, lead, on, np.random.default_rng(7))
    index = SCENARIOS.index(scenario)
    with_flips = run_scenario(scenario, seed=matrix_stream(3, index, 10.0), fps=10.0, artefacts=on)
    without = run_scenario(scenario, seed=matrix_stream(3, index, 10.0), fps=10.0, artefacts=off)
    assert with_flips.passed and with_flips.warning_ttc_s == without.warning_ttc_s
