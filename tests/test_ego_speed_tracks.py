"""Ego speed from a CSV file, the tracks CSV, and both through ``aeb-app run`` on the real sample video."""

from __future__ import annotations

import csv
import math
from pathlib import Path

import numpy as np
import pytest

from aeb_app.cli import main
from aeb_app.errors import InputError
from aeb_app.pipeline import PipelineSettings
from aeb_app.safety import AebLogic
from aeb_app.safety.ego_speed import load_ego_speed_csv
from aeb_app.scenarios import PinholeCamera, synthetic_calibration, vehicle_box_px
from aeb_app.tracks import TRACK_COLUMNS, TracksCsvWriter, _num, track_rows
from aeb_app.types import Detections


def _write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "speed.csv"
    path.write_text(text, encoding="utf-8")
    return path


def test_speed_is_interpolated_per_frame_and_unknown_outside(tmp_path: Path) -> None:
    profile = load_ego_speed_csv(_write(tmp_path, "time_s,speed_mps,gps_fix\n0.0,10.0,1\n0.5,12.0,1\n1.0,12.0,1\n"))
    assert profile.at(0.25) == pytest.approx(11.0)
    assert profile.at(1.0) == 12.0
    assert profile.at(1.01) is None and profile.at(-0.1) is None
    settings = PipelineSettings(ego_speed_mps=30.0, ego_speed_profile=profile)
    assert settings.ego_speed_at(0.25) == pytest.approx(11.0)  # the file wins over a fixed speed
    assert PipelineSettings(ego_speed_mps=30.0).ego_speed_at(0.25) == 30.0


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("time_s,speed_mps\n0,1\n0.1,nan\n", "row 2: speed_mps is nan"),
        ("time_s,speed_mps\n0,1\n0.1,1\n0.1,2\n", "row 3: time_s 0.1 does not increase"),
        ("time_s,speed_mps\n0,1\n0.5,1\n3.0,1\n", "row 3: gap of 2.500 s"),
        ("time_s,speed_mps\n0,1\n0.1,fast\n", "row 2: speed_mps is not a number"),
        ("time_s,speed_mps\n0,-1\n", "row 1: speed_mps must be >= 0"),
        ("time,speed\n0,1\n", "missing column(s) time_s, speed_mps"),
        ("time_s,speed_mps\n", "no data rows"),
    ],
)
def test_bad_speed_file_one_line_error_naming_the_row(tmp_path: Path, text: str, message: str) -> None:
    path = _write(tmp_path, text)
    with pytest.raises(InputError) as info:
        load_ego_speed_csv(path)
    assert message in str(info.value) and str(path) in str(info.value) and "\n" not in str(info.value)


def test_tracks_rows_follow_the_documented_columns(tmp_path: Path) -> None:
    cam = PinholeCamera()
    logic = AebLogic(synthetic_calibration(cam))
    out = tmp_path / "t.csv"
    with TracksCsvWriter(out) as writer:
        for k in range(3):
            box = vehicle_box_px(cam, lateral_m=0.0, ahead_cam_m=21.5 - k * 0.8)
            writer.write(logic.update(k, k / 25, Detections(box[None], [0.8], [3]), ego_speed_mps=20.0))
            assert len(out.read_text().splitlines()) == k + 2  # flushed frame by frame
        writer.write(None)  # an unavailable frame without state writes nothing
    rows = list(csv.DictReader(out.open()))
    assert tuple(rows[0]) == TRACK_COLUMNS
    assert [r["frame"] for r in rows] == ["0", "1", "2"] and {r["track_id"] for r in rows} == {"1"}
    last = rows[-1]
    assert last["class"] == "car" and last["ground_valid"] == "1" and last["in_zone"] == "1"
    assert float(last["measured_m"]) == pytest.approx(18.4, abs=0.1)  # this frame's fused measurement
    assert float(last["range_m"]) == pytest.approx(18.4, abs=1.0) and float(last["range_sigma_m"]) > 0  # filtered
    assert last["ttc_s"] == "inf" or float(last["ttc_s"]) > 0
    assert last["frame_level"] in ("NONE", "CAUTION", "BRAKE") and last["level"] == "NONE"
    assert track_rows(None) == []


def test_run_writes_tracks_and_takes_the_speed_file(sample_video: Path, tmp_path: Path, capsys) -> None:
    speed = _write(tmp_path, "time_s,speed_mps\n" + "".join(f"{t / 10:.1f},27.0\n" for t in range(0, 21)))
    tracks, events = tmp_path / "tracks.csv", tmp_path / "events.csv"
    code = main(["run", str(sample_video), "--mode", "fp32", "--max-frames", "20", "--no-render", "--no-progress",
                 "--tracks", str(tracks), "--ego-speed", str(speed), "--events", str(events)])
    assert code == 0
    rows = list(csv.DictReader(tracks.open()))
    assert rows and tuple(rows[0]) == TRACK_COLUMNS
    assert {r["class"] for r in rows} <= {"car", "truck", "person", "bicycle", "motorcycle", "bus", "train"}
    assert all(math.isfinite(float(r["range_m"])) and float(r["range_m"]) > 0 for r in rows)
    assert max(int(r["frame"]) for r in rows) >= 15
    assert list(csv.DictReader(events.open())) == []  # no warning on the sample with the defaults
    assert "warnings 0" in capsys.readouterr().out


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--ego-speed", "{tmp}/bad.csv"], "bad.csv: row 2: time_s 0.0 does not increase"),
        (["--ego-speed", "{tmp}/bad.csv", "--speed-kmh", "50"], "cannot be combined"),
        (["--tracks", "{tmp}/tracks.txt"], "extension must be one of .csv"),
        (["--tracks", "{tmp}/same.csv", "--events", "{tmp}/same.csv"], "same file"),
    ],
)
def test_run_bad_speed_or_tracks_option_fails_before_work(sample_video: Path, tmp_path: Path, capsys,
                                                          extra: list[str], message: str) -> None:
    (tmp_path / "bad.csv").write_text("time_s,speed_mps\n0.0,1\n0.0,2\n")
    argv = ["run", str(sample_video), "--mode", "fp32", "--no-progress", "--no-render"]
    assert main(argv + [a.format(tmp=tmp_path) for a in extra]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err[-1].startswith("aeb-app") and "error:" in err[-1] and message in err[-1]  # argparse or ours
    assert not (tmp_path / "tracks.txt").exists() and not (tmp_path / "same.csv").exists()


def _num_as_before(value: float) -> str:
    """The tracks CSV's number text as it was first written (the reference of the faster :func:`_num`)."""
    value = float(value)
    if math.isnan(value):
        return ""
    if math.isinf(value):
        return "inf" if value > 0 else "-inf"
    return f"{value:.4f}".rstrip("0").rstrip(".") if value != int(value) else str(int(value))


def test_track_numbers_are_written_as_before() -> None:
    """Whole numbers, 4 decimals with trailing zeros cut, tiny values rounding to 0 or -0, NaN, infinities, huge
    values, numpy scalars and ints: the same text as the first formulation."""
    rng = np.random.default_rng(0)
    values = [0.0, -0.0, 2.5, 3.0, -8.7582, 1e-5, -1e-5, 4.9999e-5, 5e-5, 0.99999, -0.99999, 2.0**53, 1e20, -1e300,
              math.nan, math.inf, -math.inf, np.float32(1.1), np.float64(48.754), np.int64(7), 3, True]
    values += rng.uniform(-1e3, 1e3, 20000).tolist()
    values += [round(v, int(d)) for v, d in zip(rng.uniform(-100, 100, 20000), rng.integers(0, 7, 20000))]
    assert [_num(v) for v in values] == [_num_as_before(v) for v in values]
    assert [_num(v) for v in (2.5, 3.0, math.nan, math.inf, 1e-5)] == ["2.5", "3", "", "inf", "0"]
