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
        (["run", "{video}", "--calibration", "{tmp}/other.yaml"], "calibration is for 1280x960 images"),
        (["run", "{video}", "--model", "nope"], "invalid choice: 'nope'"),
        (["run", "{video}", "--mode", "warp_drive"], "invalid choice: 'warp_drive'"),
    ],
)
def test_bad_input_gives_one_line_error(sample_video: Path, tmp_path: Path, capsys, args, message) -> None:
    src = Path(__file__).resolve().parents[1] / "calibration" / "solidWhiteRight.yaml"
    text = src.read_text().replace("image_size: [960, 540]", "image_size: [1280, 960]")  # another aspect ratio
    (tmp_path / "other.yaml").write_text(text)
    argv = [a.format(tmp=tmp_path, video=sample_video) for a in args] + ["--no-progress"]
    try:
        code = main(argv)
    except SystemExit as exc:  # argparse's usage errors (checked at the edge) exit 2 themselves
        code = exc.code
    assert code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err[-1].startswith("aeb-app") and "error:" in err[-1] and message in err[-1]
    assert not list(tmp_path.glob("*.mp4"))


def _resized_cut(video: Path, out: Path, size_wh: tuple[int, int], frames: int) -> Path:
    """The first ``frames`` frames of the real footage at another resolution (a stand-in for a camera
    recording at 1280x720 through the same lens)."""
    cap = cv2.VideoCapture(str(video))
    writer = cv2.VideoWriter(str(out), cv2.VideoWriter_fourcc(*"mp4v"), cap.get(cv2.CAP_PROP_FPS), size_wh)
    for _ in range(frames):
        ok, image = cap.read()
        assert ok
        writer.write(cv2.resize(image, size_wh, interpolation=cv2.INTER_AREA))
    writer.release()
    cap.release()
    return out


def test_calibration_of_the_same_aspect_ratio_is_rescaled(sample_video: Path, tmp_path: Path, capsys,
                                                          caplog) -> None:
    clip = _resized_cut(sample_video, tmp_path / "hd.mp4", (1280, 720), 40)
    shipped = Path(__file__).resolve().parents[1] / "calibration" / "solidWhiteRight.yaml"
    events = tmp_path / "events.json"
    caplog.set_level("INFO")
    code = main(["run", str(clip), "--calibration", str(shipped), "--mode", "fp32", "--no-render",
                 "--events", str(events), "--no-progress"])
    assert code == 0
    assert "rescaled to 1280x720" in caplog.text
    assert json.loads(events.read_text()) == []  # the same steady traffic: no warning, never unavailable
    assert "levels: NONE 40" in capsys.readouterr().out


def test_events_and_tracks_only_run_draws_nothing_and_decides_the_same(sample_video: Path, tmp_path: Path,
                                                                       capsys) -> None:
    """Without --out nothing is drawn (render 0.0 ms in the summary); the tracks equal a drawing run's."""
    tracks = {}
    for name, extra in [("drawn", ["--out", str(tmp_path / "a.mp4")]), ("plain", [])]:
        tracks[name] = tmp_path / f"{name}.csv"
        code = main(["run", str(sample_video), "--mode", "fp32", "--max-frames", "12", "--tracks", str(tracks[name]),
                     "--no-progress", *extra])
        assert code == 0
        render_ms = float(re.search(r"render ([0-9.]+)", capsys.readouterr().out).group(1))
        assert (render_ms > 0) == (name == "drawn")
    assert tracks["plain"].read_bytes() == tracks["drawn"].read_bytes() and len(tracks["plain"].read_text()) > 500

def test_without_a_calibration_for_the_size_runs_detections_only(sample_video: Path, tmp_path: Path,
                                                                 capsys) -> None:
    clip = _resized_cut(sample_video, tmp_path / "hd.mp4", (1280, 720), 10)
    events = tmp_path / "events.json"
    code = main(["run", str(clip), "--mode", "fp32", "--no-render", "--events", str(events), "--no-progress"])
    assert code == 0
    rows = json.loads(events.read_text())
    assert [r["level"] for r in rows] == ["UNAVAILABLE"] and "no calibration for 1280x720" in rows[0]["reason"]
    assert "levels: UNAVAILABLE 10" in capsys.readouterr().out


def test_timings_csv_has_one_row_per_frame_with_the_summarys_latency(sample_video: Path, tmp_path: Path,
                                                                     capsys) -> None:
    """--timings: each processed frame's stage times and latency, in order; its latencies give the summary's p50;
    the garbage collector is left as it was (the run freezes the start-up heap for the loop only)."""
    import gc

    import numpy as np

    from aeb_app.frame_timings import TIMING_COLUMNS

    timings = tmp_path / "timings.csv"
    code = main(["run", str(sample_video), "--mode", "fp32_ort", "--max-frames", "15", "--no-render",
                 "--timings", str(timings), "--no-progress", "--sequential"])
    assert code == 0 and gc.get_freeze_count() == 0
    with timings.open() as fh:
        reader = csv.DictReader(fh)
        assert tuple(reader.fieldnames) == TIMING_COLUMNS
        rows = list(reader)
    assert [int(r["frame"]) for r in rows] == list(range(15))
    assert all(r["ok"] == "1" and float(r["inference_ms"]) > 0 and float(r["gc_ms"]) >= 0 for r in rows)
    latency = [float(r["latency_ms"]) for r in rows]
    # sequential: a frame's latency holds its own detection and logic, nothing else
    assert all(lat >= float(r["inference_ms"]) + float(r["geometry_ms"]) - 0.01 for lat, r in zip(latency, rows))
    p50 = float(re.search(r"latency p50 ([\d.]+) ms", capsys.readouterr().out)[1])
    assert abs(np.percentile(latency, 50) - p50) <= 0.051


def test_gc_pauses_are_charged_to_the_frames_they_fall_in() -> None:
    import gc
    import time

    from aeb_app.frame_timings import GcPauses

    with GcPauses() as pauses:
        t0 = time.perf_counter()
        junk = [[i] for i in range(200_000)]
        gc.collect()
        t1 = time.perf_counter()
        del junk
    after = time.perf_counter()
    assert len(pauses.starts) == len(pauses.ends) >= 1
    inside = pauses.within(t0, t1)
    assert 0 < inside <= (t1 - t0) * 1e3
    assert pauses.within(t1, after) == 0.0
    assert pauses.within(t0, (t0 + t1) / 2) <= inside
