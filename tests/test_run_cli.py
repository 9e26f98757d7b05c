"""``aeb-app run`` headless on the real sample video: annotated mp4, events file, summary, errors."""

from __future__ import annotations

import csv
import json
import re
from pathlib import Path

import cv2
import pytest

from aeb_app.cli import main


def test_headless_run_writes_video_and_events(sample_video: Path, tmp_path: Path, capsys) -> None:
    out, events = tmp_path / "annotated.mp4", tmp_path / "events.csv"
    code = main(["run", str(sample_video), "--mode", "fp32", "--max-frames", "30", "--out", str(out),
                 "--events", str(events), "--speed-kmh", "100", "--no-progress"])
    assert code == 0
    cap = cv2.VideoCapture(str(out))
    assert int(cap.get(cv2.CAP_PROP_FRAME_COUNT)) == 30
    assert (int(cap.get(cv2.CAP_PROP_FRAME_WIDTH)), int(cap.get(cv2.CAP_PROP_FRAME_HEIGHT))) == (960 + 320, 540)
    ok, frame = cap.read()
    cap.release()
    assert ok and frame[:, 960:].std() > 10  # the bird's-eye panel is drawn beside the camera view
    with events.open() as fh:
        reader = csv.DictReader(fh)
        assert reader.fieldnames == ["timestamp_s", "frame_index", "level", "object", "distance_m", "ttc_s",
                                     "reason", "cues"]
        assert list(reader) == []  # no warning, and no frame was ever unavailable
    summary = capsys.readouterr().out
    assert "frames 30 (failed 0)" in summary and "FPS" in summary and "warnings 0" in summary
    assert sorted(p.name for p in tmp_path.iterdir()) == ["annotated.mp4", "events.csv"]  # no temp files left


def test_headless_run_on_a_truncated_video_reports_unavailable(sample_video: Path, tmp_path: Path, capsys) -> None:
    broken = tmp_path / "cut.mp4"
    broken.write_bytes(sample_video.read_bytes()[: sample_video.stat().st_size // 3])
    events = tmp_path / "events.json"
    code = main(["run", str(broken), "--mode", "fp32", "--no-render", "--events", str(events), "--no-progress",
                 "--score-threshold", "0.6"])
    assert code == 0
    unavailable = [e for e in json.loads(events.read_text()) if e["level"] == "UNAVAILABLE"]
    assert unavailable and all("cannot be decoded" in e["reason"] and "cut.mp4" in e["reason"] for e in unavailable)
    assert re.search(r"failed [1-9]", capsys.readouterr().out)


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["run", "{tmp}/missing.mp4"], "missing.mp4: no such file"),
        (["run", "{video}", "--calibration", "{tmp}/other.yaml"], "calibration is for 1280x720 images"),
        (["run", "{video}", "--model", "nope"], "unknown model 'nope'"),
        (["run", "{video}", "--mode", "warp_drive"], "unknown mode 'warp_drive'"),
    ],
)
def test_bad_input_gives_one_line_error(sample_video: Path, tmp_path: Path, capsys, args, message) -> None:
    src = Path(__file__).resolve().parents[1] / "calibration" / "solidWhiteRight.yaml"
    text = src.read_text().replace("image_size: [960, 540]", "image_size: [1280, 720]")
    (tmp_path / "other.yaml").write_text(text)
    argv = [a.format(tmp=tmp_path, video=sample_video) for a in args] + ["--no-progress"]
    assert main(argv) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err[-1].startswith("aeb-app: error:") and message in err[-1]
    assert not list(tmp_path.glob("*.mp4"))
