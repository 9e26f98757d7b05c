"""A calibration that does not fit the video (vehicles standing above its horizon) makes the system unavailable,
with the reason, instead of a green "no warning" over wrong geometry."""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import pytest

from aeb_app.cli import main
from aeb_app.errors import ConfigError
from aeb_app.safety import AebLogic, WarningConfig
from aeb_app.safety.calibration_fit import MIN_BOXES, CalibrationFitMonitor
from aeb_app.scenarios import PinholeCamera, synthetic_calibration
from aeb_app.types import Detections, WarningLevel


def _monitor() -> CalibrationFitMonitor:
    return CalibrationFitMonitor(300.0, window_s=3.0, max_share_above=0.5)


def test_most_bottoms_above_the_horizon_over_the_window_do_not_fit() -> None:
    fit = _monitor()
    for k in range(MIN_BOXES // 2 - 1):  # 2 boxes a frame, 1 above the horizon, not yet enough to judge
        assert fit.update(k * 0.1, [250.0, 350.0], [0.9, 0.9]) == ""
    assert fit.update(1.0, [250.0, 260.0, 290.0], [0.9, 0.9, 0.3]) != ""  # 11 of 20 above (the 0.3 box: no vote)
    reason = fit.update(1.1, [250.0], [0.9])
    assert reason.startswith("the calibration does not fit this video: 12 of 21 vehicle box bottoms") \
        and "row 300" in reason
    for k in range(12):  # hysteresis: 12 of 33 above is under the limit but over half of it: still unfit
        fit.update(1.2 + k * 0.01, [350.0], [0.9])
    assert fit.unfit
    for k in range(40):  # the window (3 s) moves on: only bottoms below the horizon
        last = fit.update(1.4 + k * 0.1, [350.0, 360.0], [0.9, 0.9])
    assert last == "" and not fit.unfit


def test_bottoms_just_above_the_horizon_are_within_the_slack() -> None:
    fit = _monitor()
    assert all(fit.update(k * 0.1, [298.0] * 3, [0.9] * 3) == "" for k in range(30))  # 2 px above: pitch slack


def _frames(logic: AebLogic, bottom: float, n: int = 20) -> list:
    states = []
    for k in range(n):
        boxes = np.array([[400.0, bottom - 40, 460.0, bottom], [600.0, bottom - 30, 640.0, bottom]], np.float32)
        dets = Detections(boxes, np.full(2, 0.9, np.float32), np.array([3, 3]), ("car", "car"))
        states.append(logic.update(k, k * 0.1, dets, ego_speed_mps=20.0))
    return states


def test_the_logic_is_unavailable_while_the_calibration_does_not_fit() -> None:
    calibration = synthetic_calibration(PinholeCamera())
    horizon = AebLogic(calibration).road.horizon_row_px
    above = _frames(AebLogic(calibration), horizon - 20)
    assert above[-1].level == WarningLevel.UNAVAILABLE and "does not fit this video" in above[-1].reason
    assert not above[-1].objects
    below = _frames(AebLogic(calibration), horizon + 60)
    assert all("does not fit" not in s.reason for s in below) and below[-1].level == WarningLevel.NONE
    off = _frames(AebLogic(calibration, warning_config=WarningConfig(check_calibration_fit=False)), horizon - 20)
    assert off[-1].level != WarningLevel.UNAVAILABLE
    with pytest.raises(ConfigError, match="warning.fit_max_share_above"):
        WarningConfig(fit_max_share_above=1.5)


def test_a_calibration_for_another_pitch_makes_the_real_clip_unavailable(sample_video: Path, tmp_path: Path,
                                                                          capsys) -> None:
    """The shared clip with a calibration pitched 6 deg up (horizon 55 px below the real one): the cars ahead stand
    above it, and the run says so; with the shipped calibration nothing is unavailable."""
    bad = tmp_path / "pitched.yaml"
    assert main(["calibrate", "--out", str(bad), "--size", "960x540", "--focal-px", "1000", "--height-m", "1.3",
                 "--pitch-deg=-6"]) == 0
    events = tmp_path / "events.csv"
    assert main(["run", str(sample_video), "--mode", "fp32", "--calibration", str(bad), "--max-frames", "60",
                 "--events", str(events), "--no-progress"]) == 0
    summary = capsys.readouterr().out
    rows = list(csv.DictReader(events.open()))
    assert rows and rows[0]["level"] == "UNAVAILABLE" and "does not fit this video" in rows[0]["reason"]
    assert "(the calibration does not fit this video: " in summary  # the summary says why, with its frame count
    good = tmp_path / "good.csv"
    assert main(["run", str(sample_video), "--mode", "fp32", "--max-frames", "60", "--events", str(good),
                 "--no-progress"]) == 0
    assert "UNAVAILABLE" not in capsys.readouterr().out.split("levels:")[1].split(";")[0]


def test_zone_corners_beyond_the_horizon_are_not_drawn(tmp_path: Path) -> None:
    """The pitched calibration puts the zone's corners at the bumper on the other side of its horizon from its own
    points: projected, they wrapped into the sky (a yellow zone over the sky); they are NaN instead, so nothing is
    drawn. The shipped calibration keeps every corner of even a 200 m zone."""
    from aeb_app.geometry.calibration import load_calibration

    bad = tmp_path / "pitched.yaml"
    assert main(["calibrate", "--out", str(bad), "--size", "960x540", "--focal-px", "1000", "--height-m", "1.3",
                 "--pitch-deg=-6"]) == 0
    corners = load_calibration(bad).metric_to_image([[-1.85, 0.0], [1.85, 0.0], [1.85, 40.0], [-1.85, 40.0]])
    assert np.isnan(corners[:2]).all() and np.isfinite(corners[2:]).all()
    shipped = load_calibration(Path(__file__).resolve().parents[1] / "calibration" / "solidWhiteRight.yaml")
    far = shipped.metric_to_image([[-1.85, 0.0], [1.85, 0.0], [1.85, 200.0], [-1.85, 200.0]])
    assert np.isfinite(far).all() and (far[2:, 1] < far[:2, 1]).all()  # far corners higher in the image
    np.testing.assert_allclose(far, shipped.view.to_image(shipped.metric_to_bev(
        [[-1.85, 0.0], [1.85, 0.0], [1.85, 200.0], [-1.85, 200.0]])))


def _wide_10fps_copy(video: Path, folder: Path) -> tuple[Path, Path]:
    """The shared clip as a KITTI-like recording: rows 200-500 cropped, rescaled to 1242x375, every second frame
    (10 fps); and the shipped calibration carried over to it (its road quad and origin moved by the same crop
    and scale)."""
    import cv2
    import yaml

    from aeb_app.geometry.calibration import load_calibration

    clip = folder / "wide10.mp4"
    cap, writer = cv2.VideoCapture(str(video)), cv2.VideoWriter(str(clip), cv2.VideoWriter_fourcc(*"mp4v"), 12.5,
                                                                  (1242, 375))
    k = 0
    while True:
        ok, frame = cap.read()
        if not ok:
            break
        if k % 2 == 0:
            writer.write(cv2.resize(frame[200:500], (1242, 375), interpolation=cv2.INTER_AREA))
        k += 1
    writer.release()
    shipped_path = Path(__file__).resolve().parents[1] / "calibration" / "solidWhiteRight.yaml"
    shipped, data = load_calibration(shipped_path), yaml.safe_load(shipped_path.read_text())
    bev = [[113.0, 900.0], [187.0, 900.0], [187.0, 1150.0], [113.0, 1150.0]]  # a quad inside the crop
    sx, sy = 1242 / 960, 375 / 300
    origin = shipped.view.to_bev([[480.0, 540.0], [480.0, 499.9]])
    data.update(image_size=[1242, 375], bev_points_px=bev, origin_px=[621.0, 374.9],
                source_points_px=[[float(x) * sx, (float(y) - 200) * sy] for x, y in shipped.view.to_image(bev)],
                origin_ahead_m=float(data["origin_ahead_m"] + (origin[0][1] - origin[1][1]) * shipped.k_y_m_per_px))
    calibration = folder / "wide10.yaml"
    calibration.write_text(yaml.safe_dump(data, sort_keys=False))
    return clip, calibration


def test_a_wide_10fps_recording_of_steady_traffic_fits_its_calibration_and_never_warns(sample_video: Path,
                                                                                      tmp_path: Path, capsys) -> None:
    """Another frame rate and aspect ratio of the same steady traffic (no warning is right): with the calibration
    carried over, every frame is judged and nothing warns, at any ego speed; with KITTI's intrinsics (another
    camera) the system says the calibration does not fit, instead of judging with it."""
    clip, calibration = _wide_10fps_copy(sample_video, tmp_path)
    for speed in ([], ["--speed-kmh", "100"]):
        assert main(["run", str(clip), "--mode", "fp32", "--calibration", str(calibration), "--no-progress",
                     *speed]) == 0
        summary = capsys.readouterr().out
        assert "frames 111 (failed 0)" in summary and "warnings 0; levels: NONE 111;" in summary, summary
    kitti = tmp_path / "kitti.yaml"
    assert main(["calibrate", "--out", str(kitti), "--size", "1242x375", "--focal-px", "721.5", "--cx", "609.6",
                 "--cy", "172.9", "--height-m", "1.65"]) == 0
    assert main(["run", str(clip), "--mode", "fp32", "--calibration", str(kitti), "--no-progress"]) == 0
    assert "the calibration does not fit this video: " in capsys.readouterr().out
