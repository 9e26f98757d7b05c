"""Scenario validation: NHTSA FCW criteria, Euro NCAP variants, no-threat cases, the CLI."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest

from aeb_app.cli import main
from aeb_app.scenarios import SCENARIOS, LeadMotion, PinholeCamera, run_all, run_scenario, synthetic_calibration

NHTSA = [s for s in SCENARIOS if s.source == "NHTSA"]
NO_THREAT = [s for s in SCENARIOS if s.required_ttc_s is None]


def test_nhtsa_criteria_as_published() -> None:
    assert {s.name: s.required_ttc_s for s in NHTSA} == {
        "NHTSA LVS stopped 72.4": 2.1, "NHTSA LVM slower 72.4/32.2": 2.0, "NHTSA LVD decel 72.4 30m 0.3g": 2.4}
    assert len(NO_THREAT) >= 3


def test_decelerating_lead_kinematics() -> None:
    motion = LeadMotion(72.4 / 3.6, 72.4 / 3.6, 30.0, 0.3 * 9.81, brake_start_s=0.0)
    assert motion.collision_time_s() == pytest.approx(math.sqrt(30.0 / (0.5 * 0.3 * 9.81)), abs=2e-3)
    assert LeadMotion(20.0, 25.0, 10.0).collision_time_s() == math.inf


def test_synthetic_calibration_recovers_ground_truth() -> None:
    cam = PinholeCamera()
    cal = synthetic_calibration(cam)
    for gap in (10.0, 30.0, 60.0):
        lat, ahead = cal.image_to_metric([cam.ground_px(1.0, gap + cam.setback_m)])[0]
        assert (lat, ahead) == pytest.approx((1.0, gap), abs=0.01)


@pytest.mark.parametrize("noise_px", [0.0, 1.0])
@pytest.mark.parametrize("scenario", NHTSA, ids=lambda s: s.name)
def test_nhtsa_scenarios_pass(scenario, noise_px: float) -> None:
    result = run_scenario(scenario, noise_px=noise_px, seed=7)
    assert result.warning_ttc_s is not None and result.warning_ttc_s >= scenario.required_ttc_s
    assert result.false_warnings == 0
    assert result.passed


@pytest.mark.parametrize("noise_px", [0.0, 1.0])
@pytest.mark.parametrize("scenario", NO_THREAT, ids=lambda s: s.name)
def test_no_threat_gives_no_warning(scenario, noise_px: float) -> None:
    result = run_scenario(scenario, noise_px=noise_px, seed=3)
    assert result.warning_ttc_s is None and result.false_warnings == 0 and result.passed
    assert result.frames > 50


def test_all_pass_without_noise_and_range_is_exact() -> None:
    results = run_all()
    assert [r.name for r in results if not r.passed] == []
    for r in results:
        stats = r.range_stats()
        assert stats["range_n"] > 20 and stats["range_max_abs_m"] < 0.05


def test_noise_degrades_range_within_bounds() -> None:
    result = run_scenario(NHTSA[0], noise_px=1.0, seed=1)
    stats = result.range_stats()
    assert 0.1 < stats["range_rms_m"] < 3.0  # 1 px at 60 m is ~2.8 m for this camera


def test_missed_detections_do_not_make_it_unavailable() -> None:
    result = run_scenario(NHTSA[0], noise_px=0.5, miss_prob=0.1, seed=2)
    assert result.unavailable_frames == 0 and result.passed


def test_cli_writes_json_and_exit_code(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "sub" / "scenarios.json"
    assert main(["scenarios", "--noise-px", "0", "--json", str(out)]) == 0
    rows = json.loads(out.read_text(encoding="utf-8"))
    assert len(rows) == len(SCENARIOS)
    for row in rows:
        assert {"name", "warning_ttc_s", "required_ttc_s", "false_warnings", "passed", "range_rms_m"} <= set(row)
    assert rows[0]["required_ttc_s"] == 2.1 and rows[-1]["required_ttc_s"] is None
    assert "NHTSA LVS stopped 72.4" in capsys.readouterr().out
    assert list(out.parent.iterdir()) == [out]


def test_cli_fails_when_a_scenario_fails(monkeypatch: pytest.MonkeyPatch) -> None:
    import aeb_app.scenarios.runner as runner

    impossible = runner.Scenario("impossible", "test", LeadMotion(20.0, 0.0, 30.0), 0.0, 99.0, 3.0)
    monkeypatch.setattr(runner, "SCENARIOS", (impossible,))
    monkeypatch.setattr("aeb_app.scenarios.run_all",
                        lambda **kw: runner.run_all(scenarios=(impossible,), **kw))
    assert main(["scenarios"]) == 1
    assert main(["scenarios", "--noise-px", "-1"]) == 2


def test_scenario_seed_reproducible() -> None:
    a = run_scenario(NHTSA[1], noise_px=1.0, seed=5)
    b = run_scenario(NHTSA[1], noise_px=1.0, seed=5)
    assert a.warning_ttc_s == b.warning_ttc_s and np.array_equal(a.range_errors_m, b.range_errors_m)
