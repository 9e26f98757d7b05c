"""Range cues, gating, scale-change TTC and cue agreement: one test per cause of the issue's false warnings."""

from __future__ import annotations

import math

import numpy as np
import pytest

from aeb_app.errors import CalibrationError, ConfigError
from aeb_app.geometry import calibration_from_intrinsics
from aeb_app.safety import (
    AebLogic, ClassPrior, CueConfig, ExpansionConfig, ExpansionTracker, RangeFilter, RangeFilterConfig,
    RoadGeometry, WarningConfig, measure_cues,
)
from aeb_app.scenarios import PinholeCamera, VehicleShape, synthetic_calibration, vehicle_box_px
from aeb_app.types import Detections, WarningLevel

CAM = PinholeCamera()
CAL = synthetic_calibration(CAM)
ROAD = RoadGeometry.from_calibration(CAL)
CFG = CueConfig()


def _box(gap_m: float, lateral_m: float = 0.0, shape: VehicleShape | None = None) -> np.ndarray:
    return vehicle_box_px(CAM, lateral_m=lateral_m, ahead_cam_m=gap_m + CAM.setback_m, shape=shape)


def test_road_geometry_from_the_calibration() -> None:
    assert ROAD.focal_px == pytest.approx(CAM.focal_px, rel=0.01)
    assert ROAD.setback_m == pytest.approx(CAM.setback_m, abs=0.05)
    assert ROAD.horizon_row_px == pytest.approx(CAM.height_px / 2 - CAM.focal_px * math.tan(CAM.pitch_rad), abs=0.5)
    # width cue: a 1.8 m wide face 20 m ahead of the bumper spans f * 1.8 / 21.5 px
    assert ROAD.range_from_width(CAM.focal_px * 1.8 / 21.5, 1.8) == pytest.approx(20.0, abs=0.1)


@pytest.mark.parametrize("gap_m", [5.0, 15.0, 35.0])
def test_both_cues_give_the_range_of_the_rear_face(gap_m: float) -> None:
    cues = measure_cues(ROAD, [_box(gap_m)], [3], CFG)
    assert cues.ground_valid[0] and cues.width_valid[0]
    assert cues.ground_range_m[0] == pytest.approx(gap_m, abs=0.05)  # tyre offset taken off
    assert cues.width_range_m[0] == pytest.approx(gap_m, rel=0.02)
    assert cues.ground_sigma_m[0] > cues.ground_noise_m[0] > 0
    fused, sigma = cues.fused()
    assert fused[0] == pytest.approx(gap_m, rel=0.02) and sigma[0] < min(cues.ground_sigma_m[0], cues.width_sigma_m[0])


def test_border_cut_box_has_no_ground_cue_and_side_cut_no_width_cue() -> None:
    bottom_cut = _box(2.0)
    assert bottom_cut[3] == CAM.height_px
    side_cut = _box(3.0, lateral_m=3.0)
    assert side_cut[2] == CAM.width_px
    cues = measure_cues(ROAD, [bottom_cut, side_cut], [3, 3], CFG)
    assert cues.why_no_ground == ("border", "border")
    assert not cues.ground_valid.any() and np.isnan(cues.ground_range_m).all()
    assert cues.width_valid.tolist() == [True, False]
    assert cues.width_range_m[0] == pytest.approx(2.0, rel=0.03)  # the width still ranges the near car


def test_a_box_without_its_classs_shape_has_no_width_cue() -> None:
    """A far car labelled "person" (wider than tall) is not 0.5 m wide: no width cue; a person-shaped box, and a
    car box of the same size as the first, keep theirs."""
    car = _box(40.0)
    person_shaped = np.array([car[0], car[3] - 3.0 * (car[2] - car[0]) / 1.8 * 0.5, car[0] + (car[2] - car[0]) / 3.6,
                              car[3]])
    cues = measure_cues(ROAD, [car, person_shaped, car], [1, 1, 3], CFG)
    assert (car[2] - car[0]) > 0.8 * (car[3] - car[1])
    assert cues.width_valid.tolist() == [False, True, True] and cues.ground_valid.all()
    assert cues.fused()[0][0] == pytest.approx(cues.ground_range_m[0])  # ranged by its ground contact alone
    with pytest.raises(ConfigError, match=r"cues\.priors\.person\.max_width_over_height"):
        CueConfig.from_dict({"priors": {"person": {"max_width_over_height": 0}}})


def test_occlusion_edge_is_not_a_ground_contact() -> None:
    lead = _box(8.0)
    van = _box(8.0 + 7.5, shape=VehicleShape(width_m=2.0, height_m=2.5))
    van[3] = lead[1]  # seen over the lead's roof only
    cues = measure_cues(ROAD, [lead, van], [3, 3], CFG)
    assert cues.why_no_ground == ("", "occlusion")
    assert cues.ground_valid.tolist() == [True, False] and cues.width_valid.tolist() == [True, True]
    # What the ground cue would have said: far too far (the 36-38 m instead of 14.5 m).
    wrong = ROAD.ground_metric([[(van[0] + van[2]) / 2, van[3]]])[0, 1]
    assert math.isnan(wrong) or wrong > 30
    assert cues.width_range_m[1] == pytest.approx(15.5, rel=0.15)


def test_ground_point_in_the_horizon_band_is_not_used() -> None:
    row = ROAD.horizon_row_px + CFG.horizon_band_px / 2
    box = np.array([470.0, row - 10, 490.0, row])
    cues = measure_cues(ROAD, [box], [3], CFG)
    assert cues.why_no_ground == ("horizon",) and not cues.ground_valid[0]
    far = measure_cues(ROAD, [np.array([470.0, row, 490.0, ROAD.horizon_row_px + 30])], [3], CFG)
    assert far.ground_valid[0]  # 30 px below the horizon (~43 m) is still usable


def test_gated_jump_is_rejected_and_the_filter_reacquires() -> None:
    f = RangeFilter(RangeFilterConfig(max_rel_accel_mps2=12.0, reacquire_after_s=0.6))
    f.update(14.5, 0.3)
    for _ in range(10):
        f.predict(0.1)
        assert f.update(14.5, 0.3)
    f.predict(0.1)
    assert not f.update(37.0, 0.3)  # 22.5 m in 0.1 s: no relative acceleration reaches that
    assert f.rejected == 1 and f.range_m == pytest.approx(14.5, abs=0.05)
    assert f.update(14.6, 0.3)
    for _ in range(7):  # the object really is somewhere else: after 0.6 s the filter restarts there
        f.predict(0.1)
        f.update(30.0, 0.3)
    assert f.range_m == pytest.approx(30.0, abs=0.5)


def test_gate_grows_with_the_time_since_the_last_accepted_measurement() -> None:
    f = RangeFilter(RangeFilterConfig())
    f.update(20.0, 0.2)
    short = f.gate_m(0.2)
    f.predict(0.5)
    assert f.gate_m(0.2) > short + 0.5 * 12.0 * 0.25 - 1e-9


def test_expansion_ttc_from_box_growth_at_any_frame_rate() -> None:
    for fps in (10, 15, 25, 30):
        tracker = ExpansionTracker(ExpansionConfig())
        closing, z0 = 10.0, 40.0
        for k in range(int(1.5 * fps)):
            t = k / fps
            tracker.add(t, 1000.0 * 1.8 / (z0 - closing * t))
        est = tracker.estimate(t)
        true_ttc = (z0 - closing * t) / closing
        assert est.ttc_s == pytest.approx(true_ttc, rel=0.03), fps
    still = ExpansionTracker(ExpansionConfig())
    for k in range(20):
        still.add(k / 10, 200.0)
    assert still.estimate(1.9).ttc_s == math.inf


def _logic(**warning) -> AebLogic:
    return AebLogic(CAL, warning_config=WarningConfig(**warning))


@pytest.mark.parametrize("ego_speed_mps", [0.0, None])
def test_stationary_scene_never_warns_whatever_the_range_noise(ego_speed_mps) -> None:
    """A standing lead 6 m ahead, its box bottom jumping like a real detector's; the box width steady."""
    rng = np.random.default_rng(1)
    logic = _logic()
    box = _box(6.0)
    levels = []
    for k in range(100):
        noisy = box.copy()
        noisy[3] += rng.choice([0.0, 0.0, 25.0, -25.0]) + rng.normal(0, 3)  # 20-40 px bottom jumps
        noisy[[0, 2]] += rng.normal(0, 1.0, 2)
        noisy[3] = min(noisy[3], CAM.height_px - 2)
        state = logic.update(k, k / 10, Detections(noisy[None], [0.9], [3]), ego_speed_mps=ego_speed_mps)
        levels.append(state.level)
    assert WarningLevel.CAUTION not in levels and WarningLevel.BRAKE not in levels


def test_warning_says_which_cues_agreed() -> None:
    logic = _logic()
    states = [logic.update(k, k / 25, Detections(_box(60.0 - 20.0 * k / 25)[None], [0.9], [3]), ego_speed_mps=20.0)
              for k in range(70)]
    warned = [o for s in states for o in s.objects if o.level >= WarningLevel.CAUTION]
    assert warned and set(warned[0].cues) == {"range", "scale"} and warned[0].cues_text == "range+scale"
    assert math.isfinite(warned[0].ttc_scale_s) and math.isfinite(warned[0].ttc_range_s)


def test_bad_priors_refused_with_the_key_named() -> None:
    with pytest.raises(ConfigError, match=r"cues\.priors\.car\.width_m"):
        CueConfig.from_dict({"priors": {"car": {"width_m": 0.0}}})
    with pytest.raises(ConfigError, match=r"cues\.priors\.truck\.tyre_offset_m"):
        CueConfig.from_dict({"priors": {"truck": {"tyre_offset_m": -1.0}}})
    with pytest.raises(ConfigError, match=r"cues\.priors\.bus\.width_sigma_m"):
        CueConfig.from_dict({"priors": {"bus": {"width_sigma_m": float("nan")}}})
    with pytest.raises(ConfigError, match=r"cues\.priors\.car\.length_m"):
        CueConfig(priors={3: ClassPrior(1.8, 0.1, 0.9, 0.2, -4.5)})
    with pytest.raises(ConfigError, match=r"cues\.priors\.lorry"):
        CueConfig.from_dict({"priors": {"lorry": {"width_m": 2.5}}})
    assert CueConfig.from_dict({"priors": {"car": {"width_m": 1.75}}}).priors[3].width_m == 1.75


def test_horizon_outside_the_image_is_refused() -> None:
    cal = calibration_from_intrinsics(image_size_wh=(1242, 375), focal_px=721.5, cx=609.6, cy=172.9, height_m=1.65,
                                      pitch_deg=0.0)
    assert RoadGeometry.from_calibration(cal).horizon_row_px == pytest.approx(172.9, abs=0.1)
    with pytest.raises(CalibrationError, match="horizon"):
        calibration_from_intrinsics(image_size_wh=(1242, 375), focal_px=721.5, cx=609.6, cy=172.9, height_m=1.65,
                                    pitch_deg=-20.0)


def test_fast_median_and_t_factor_equal_numpy_and_scipy_bit_for_bit() -> None:
    """The scale/trend fits run per track per frame: their median and Student-t factor are cheap
    re-implementations, which must give exactly numpy's and scipy's values (decisions unchanged)."""
    from scipy.stats import t as student_t

    from aeb_app.safety.expansion import _Z975, _median, _t_over_z

    rng = np.random.default_rng(3)
    for n in range(1, 60):
        for _ in range(20):
            values = rng.normal(size=n) * 10.0 ** rng.uniform(-3, 3)
            assert _median(values) == float(np.median(values))
    assert np.isnan(_median(np.array([1.0, np.nan, 2.0]))) and np.isnan(_median(np.zeros(0)))
    for dof in range(1, 40):
        assert _t_over_z(dof) == float(student_t.ppf(0.975, dof)) / _Z975
