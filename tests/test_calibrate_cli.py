"""``aeb-app calibrate``: intrinsics and reference points -> the same YAML as the GUI; bad input refused."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest

from aeb_app.cli import main
from aeb_app.geometry import load_calibration
from aeb_app.safety import RoadGeometry
from aeb_app.scenarios import PinholeCamera

REPO = Path(__file__).resolve().parents[1]


def test_from_intrinsics_ranges_like_the_camera(tmp_path: Path, capsys) -> None:
    cam = PinholeCamera()
    out = tmp_path / "cam.yaml"
    assert main(["calibrate", "--size", "960x540", "--focal-px", "1000", "--height-m", "1.3", "--pitch-deg", "1",
                 "--setback-m", "1.5", "--out", str(out)]) == 0
    cal = load_calibration(out)
    for gap in (5.0, 20.0, 50.0):
        lat, ahead = cal.image_to_metric([cam.ground_px(1.0, gap + cam.setback_m)])[0]
        assert (lat, ahead) == pytest.approx((1.0, gap), rel=0.01)
    road = RoadGeometry.from_calibration(cal)
    assert road.focal_px == pytest.approx(1000.0, rel=0.01) and road.setback_m == pytest.approx(1.5, abs=0.05)
    assert "horizon at row 252.5" in capsys.readouterr().out


def test_from_points_reproduces_the_shipped_calibration_scale(tmp_path: Path) -> None:
    out = tmp_path / "road.yaml"
    assert main(["calibrate", "--size", "960x540", "--quad", "422.4,345,546.1,345,828.4,520,185.7,520",
                 "--points", "193.9,514,818.7,514,389.4,369.4", "--distances", "3.7,12.19",
                 "--origin-ahead-m", "3.4", "--out", str(out)]) == 0
    mine, shipped = load_calibration(out), load_calibration(REPO / "calibration" / "solidWhiteRight.yaml")
    assert mine.k_x_m_per_px == pytest.approx(shipped.k_x_m_per_px, rel=0.02)
    assert mine.k_y_m_per_px == pytest.approx(shipped.k_y_m_per_px, rel=0.03)
    np.testing.assert_allclose(mine.view.matrix, shipped.view.matrix, rtol=1e-6)
    assert set(out.read_text().split("\n")[0:1]) == {"schema_version: 1"}


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--size", "1242x375", "--focal-px", "721.5", "--height-m", "1.65", "--pitch-deg", "-20"], "horizon is at row"),
        (["--size", "1242x375", "--focal-px", "721.5"], "need both --focal-px and --height-m"),
        (["--size", "12x", "--focal-px", "721.5", "--height-m", "1.65"], "--size: expected WxH"),
        (["--size", "960x540", "--quad", "1,2,3", "--points", "1,2,3,4,5,6", "--distances", "3.7,12"],
         "--quad: expected 8"),
        (["--size", "960x540"], "give either"),
        (["--focal-px", "700", "--height-m", "1.5"], "--size WxH or --image"),
    ],
)
def test_bad_input_one_line_error_and_nothing_written(tmp_path: Path, capsys, args: list[str], message: str) -> None:
    out = tmp_path / "x.yaml"
    assert main(["calibrate", *args, "--out", str(out)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err[-1].startswith("aeb-app: error:") and message in err[-1]
    assert not out.exists()


def test_refuses_to_overwrite_the_input_or_an_existing_file(tmp_path: Path, capsys) -> None:
    image = tmp_path / "frame.yaml"
    cv2.imwrite(str(tmp_path / "frame.png"), np.zeros((375, 1242, 3), np.uint8))
    image.write_text("keep me")
    common = ["--focal-px", "721.5", "--height-m", "1.65"]
    assert main(["calibrate", "--image", str(image), *common, "--out", str(image)]) == 2
    assert "refusing to overwrite the input" in capsys.readouterr().err and image.read_text() == "keep me"
    out = tmp_path / "k.yaml"
    assert main(["calibrate", "--image", str(tmp_path / "frame.png"), *common, "--out", str(out)]) == 0
    assert load_calibration(out).image_size_wh == (1242, 375)
    assert main(["calibrate", "--image", str(tmp_path / "frame.png"), *common, "--out", str(out)]) == 2
    assert "use --force" in capsys.readouterr().err
    assert main(["calibrate", "--image", str(tmp_path / "frame.png"), *common, "--out", str(out), "--force"]) == 0
