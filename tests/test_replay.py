"""Fleet replay in this process: outputs per recording, resume, failures, report, compare, bad input."""

from __future__ import annotations

import csv
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from aeb_app.cli import main
from aeb_app.replay.compare import EventRow, compare_replays, match_events
from aeb_app.replay.executor import run_in_process
from aeb_app.replay.inputs import CalibrationChoice, plan_recordings
from aeb_app.replay.types import RecordingResult
from tests._replay_helpers import (  # noqa: F401 - fixtures
    CALIBRATION, SENSITIVE, clips, cli_overrides, reference, sensitive_options,
)

from aeb_app.pipeline import WarningEvent  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
IDS = ["clip_a", "clip_a_copy", "clip_b", "clip_c", "clip_d", "clip_e"]
EVENT_FIELDS = list(WarningEvent.__dataclass_fields__)  # the same columns as `aeb-app run --events`


def _events(path: Path) -> list[dict[str, str]]:
    with path.open(newline="") as fh:
        reader = csv.DictReader(fh)
        assert reader.fieldnames == EVENT_FIELDS
        return list(reader)


def test_each_recording_gets_events_and_summary(reference) -> None:
    out, run = reference
    assert [r.recording_id for r in run.results] == IDS
    assert all(r.ok and not r.skipped and r.frames == 30 and r.failed_frames == 0 for r in run.results)
    assert sorted(p.name for p in out.iterdir()) == IDS  # nothing else: no temp files, no report (library call)
    for r in run.results:
        assert sorted(p.name for p in (out / r.recording_id).iterdir()) == ["events.csv", "summary.json", "tracks.csv"]
        with (out / r.recording_id / "tracks.csv").open(newline="") as fh:
            tracks = list(csv.DictReader(fh))
        assert tracks and {int(t["frame"]) for t in tracks} <= set(range(30))  # one row per tracked object
        assert RecordingResult.load(out / r.recording_id / "summary.json").to_json() == r.to_json()
        assert r.duration_s == pytest.approx(30 / 25.0) and r.detector == "fp32_ort on cpu"
    # Which cuts warn under the sensitive settings is the warning logic's business (it changes with it);
    # what the replay must get right is that events, counts and classes agree with each other.
    warned = {r.recording_id: _events(out / r.recording_id / "events.csv") for r in run.results if r.warnings}
    assert warned, "the sensitive settings warn on at least one cut"
    for r in run.results:
        rows = warned.get(r.recording_id, [])
        assert r.warnings == sum(e["level"] in ("CAUTION", "BRAKE") for e in rows)
        by_class: dict[str, int] = {}
        for e in rows:
            by_class[f"{e['level']}/{e['object'].split(' #')[0]}"] = by_class.get(f"{e['level']}/{e['object'].split(' #')[0]}", 0) + 1
        assert r.warnings_by_class == by_class
    assert all(e["level"] in ("CAUTION", "BRAKE") and " #" in e["object"] for rows in warned.values() for e in rows)
    # one model load for the whole in-process replay, and the byte copy gives the same events
    assert [r.detector_reused for r in run.results] == [False] + [True] * 5
    assert (out / "clip_a" / "events.csv").read_bytes() == (out / "clip_a_copy" / "events.csv").read_bytes()


def test_rerun_skips_finished_and_replays_changed(reference, clips, sensitive_options, tmp_path) -> None:
    out, _ = reference
    mtimes = {p: p.stat().st_mtime_ns for p in out.rglob("*")}
    specs = plan_recordings([str(clips)], CalibrationChoice.single(CALIBRATION), sensitive_options)
    again = run_in_process(specs, out, sensitive_options)
    assert all(r.skipped and r.ok for r in again.results)
    assert {p: p.stat().st_mtime_ns for p in out.rglob("*")} == mtimes  # nothing rewritten
    # a changed input (new mtime) and an interrupted one (no summary) are replayed; the rest are not
    work = tmp_path / "work"
    run_in_process(specs, work, sensitive_options)
    os.utime(clips / "clip_d.mp4")
    (work / "clip_e" / "summary.json").unlink()
    specs = plan_recordings([str(clips)], CalibrationChoice.single(CALIBRATION), sensitive_options)
    third = run_in_process(specs, work, sensitive_options)
    assert [r.recording_id for r in third.results if not r.skipped] == ["clip_d", "clip_e"]
    assert (work / "clip_e" / "summary.json").is_file()


def test_failures_are_reported_and_the_rest_goes_on(clips, sensitive_options, tmp_path, capsys) -> None:
    inputs = tmp_path / "inputs"
    inputs.mkdir()
    (inputs / "good.mp4").write_bytes((clips / "clip_b.mp4").read_bytes())
    (inputs / "corrupt.mp4").write_bytes(os.urandom(5000))
    (inputs / "nocal.mp4").write_bytes((clips / "clip_a.mp4").read_bytes())
    cal_map = tmp_path / "cals.yaml"
    cal_map.write_text(f"'good*': {CALIBRATION}\n'corrupt*': {CALIBRATION}\n")  # no rule for nocal.mp4
    out = tmp_path / "out"
    argv = ["replay", str(inputs), "--out", str(out), "--calibrations", str(cal_map), "--mode", "fp32_ort",
            "--engines-dir", sensitive_options.engines_dir, "--no-progress", *cli_overrides(SENSITIVE)]
    assert main(argv) == 1  # some recordings failed: non-zero, after the report
    report = json.loads((out / "report.json").read_text())
    reasons = {f["recording_id"]: f["reason"] for f in report["failures"]}
    assert sorted(reasons) == ["corrupt", "nocal"]
    assert "corrupt.mp4" in reasons["corrupt"] and "not a readable video" in reasons["corrupt"]
    assert "no calibration" in reasons["nocal"]
    assert report["totals"]["finished"] == 1
    good_events = _events(out / "good" / "events.csv")  # the events file and the report's totals agree
    by_level: dict[str, int] = {}
    for e in good_events:
        by_level[e["level"]] = by_level.get(e["level"], 0) + 1
    assert report["totals"]["events"] == by_level
    md = (out / "report.md").read_text()
    assert "## Failures" in md and reasons["corrupt"] in md and "[events](good/events.csv)" in md
    assert "Model ssd_mobilenet_v1, mode fp32_ort," in md and "{options" not in md  # the header was not an f-string
    assert "failed 2 of 3 recordings" in capsys.readouterr().out
    assert (out / "warnings_per_hour.png").stat().st_size > 5000 and (out / "top_recordings.png").is_file()


def test_compare_finds_the_added_warnings(reference, clips, sensitive_options, tmp_path, capsys) -> None:
    """Baseline with the default warning settings, then the sensitive settings compared against it."""
    ref_out, ref_run = reference
    base = tmp_path / "baseline"
    common = ["--mode", "fp32_ort", "--engines-dir", sensitive_options.engines_dir, "--no-progress"]
    assert main(["replay", str(clips), "--out", str(base), *common]) == 0
    assert all(not _events(base / i / "events.csv") for i in IDS)  # the default settings never warn here
    assert main(["replay", str(clips), "--out", str(ref_out), "--compare", str(base), *common,
                 *cli_overrides(SENSITIVE)]) == 0  # all skipped (finished earlier), then compared
    assert "compared with" in capsys.readouterr().out
    comparison = json.loads((ref_out / "report.json").read_text())["comparison"]
    added = sorted((d["recording_id"], e["level"]) for d in comparison["recordings"] for e in d["added"])
    expected = sorted((i, e["level"]) for i in IDS for e in _events(ref_out / i / "events.csv"))
    assert added == expected and expected and comparison["removed"] == 0  # the baseline had none
    assert f"**{len(expected)} added, 0 removed**" in (ref_out / "report.md").read_text()
    # the other way round: the change removed them
    back = compare_replays(ref_out, base, IDS)
    assert (back.added, back.removed) == (0, len(expected)) and len(back.recordings) == 6 and not back.not_compared


@pytest.mark.parametrize(
    ("old", "new", "expected"),
    [
        ([], [], ([], [], 0)),
        ([(1.0, "CAUTION")], [(1.3, "CAUTION")], ([], [], 1)),  # within 0.5 s: the same warning
        ([(1.0, "CAUTION")], [(1.6, "CAUTION")], ([(1.6, "CAUTION")], [(1.0, "CAUTION")], 0)),
        ([(1.0, "CAUTION")], [(1.0, "BRAKE")], ([(1.0, "BRAKE")], [(1.0, "CAUTION")], 0)),  # level differs
        ([(1.0, "BRAKE")], [(0.7, "BRAKE"), (1.1, "BRAKE")], ([(0.7, "BRAKE")], [], 1)),  # one-to-one, nearest
    ],
)
def test_match_events(old, new, expected) -> None:
    rows = lambda pairs: [EventRow(t, int(t * 25), level) for t, level in pairs]  # noqa: E731
    added, removed, matched = match_events(rows(old), rows(new), 0.5)
    assert (added, removed, matched) == (rows(expected[0]), rows(expected[1]), expected[2])


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["{tmp}/missing.mp4"], "missing.mp4: no such file or folder"),
        (["{tmp}/empty_dir"], "empty_dir: folder holds no video"),
        (["{tmp}/*.mkv"], "the pattern matches no video"),
        (["{tmp}/notes.txt"], "notes.txt: not a video file"),
        (["{clips}", "--calibrations", "{tmp}/map.yaml"], "names {tmp}/gone.yaml, which does not exist"),
        (["{clips}", "--calibrations", "{tmp}/map_list.yaml"], "'*': expected a calibration file path, got [1, 2]"),
        (["{clips}", "--calibrations", "{tmp}/map_seq.yaml"], "expected a mapping 'pattern: calibration file'"),
        (["{clips}", "--calibration", "{tmp}/gone.yaml"], "gone.yaml: no such file"),
        (["{clips}", "--set", "zone.lane_width_m=inf"], "--set zone.lane_width_m=inf: expected finite float"),
        (["{clips}", "--cluster", "tcp://127.0.0.1:9", "--connect-timeout", "1"],
         "--cluster tcp://127.0.0.1:9: no Dask scheduler answers"),
        (["{clips}", "--set", "warning.nope=1"], "unknown field 'nope'"),
        (["{clips}", "--set", "warning.require_agreement=maybe"], "expected bool"),
        (["{clips}", "--set", "warning.brake_ttc_s=9"], "must be > 0 and <= caution_ttc_s"),
        (["{clips}", "--mode", "warp_drive"], "unknown mode 'warp_drive'"),
        (["{clips}", "--mode", "fp16", "--device", "cpu"], "fp16 needs a CUDA device"),
        (["{clips}", "--compare", "{tmp}"], "not a replay folder"),
        (["{clips}", "--workers", "0"], "--workers: must be >= 1"),
    ],
)
def test_bad_input_is_one_line_and_writes_nothing(clips, tmp_path, capsys, args, message) -> None:
    (tmp_path / "empty_dir").mkdir()
    (tmp_path / "notes.txt").write_text("not a video")
    (tmp_path / "map.yaml").write_text(f"'clip_a*': {CALIBRATION}\n'*': gone.yaml\n")
    (tmp_path / "map_list.yaml").write_text("'*': [1, 2]\n")
    (tmp_path / "map_seq.yaml").write_text("- a\n- b\n")
    argv = ["replay", *[a.format(tmp=tmp_path, clips=clips) for a in args], "--out", str(tmp_path / "out"),
            "--no-progress"]
    assert main(argv) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err[-1].startswith("aeb-app: error:") and message.format(tmp=tmp_path) in err[-1]
    assert not (tmp_path / "out").exists()


def test_in_process_replay_imports_no_dask(clips, sensitive_options, tmp_path) -> None:
    code = ("import sys; from aeb_app.cli import main; "
            f"rc = main(['replay', {str(clips / 'clip_d.mp4')!r}, '--out', {str(tmp_path / 'o')!r}, "
            f"'--mode', 'fp32_ort', '--engines-dir', {sensitive_options.engines_dir!r}, '--no-progress']); "
            "bad = [m for m in sys.modules if m.split('.')[0] in ('dask', 'distributed')]; "
            "print('dask modules:', bad); sys.exit(rc or (3 if bad else 0))")
    proc = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout + proc.stderr[-2000:]
    assert "dask modules: []" in proc.stdout
    assert (tmp_path / "o" / "clip_d" / "events.csv").is_file() and (tmp_path / "o" / "report.md").is_file()


def test_gpus_without_dask_cuda_is_one_clear_line(clips, tmp_path, capsys) -> None:
    try:
        import dask_cuda  # noqa: F401
    except ImportError:
        pass
    else:
        pytest.skip("dask-cuda is installed here (never in CI): --gpus would start a CUDA cluster")
    assert main(["replay", str(clips), "--out", str(tmp_path / "out"), "--gpus", "1", "--no-progress"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err[-1].startswith("aeb-app: error: --gpus needs dask-cuda") and "pip install dask-cuda" in err[-1]
    assert not (tmp_path / "out").exists()


def test_streamed_csv_appears_only_when_the_recording_is_done(tmp_path) -> None:
    from aeb_app.replay.sinks import CsvRowsSink
    from aeb_app.types import FrameResult, WarningLevel

    sink = CsvRowsSink(tmp_path, "levels", "levels.csv", ["frame", "level"],
                       lambda r: [[r.frame_index, r.level.name]] * (r.frame_index % 2))
    for i, level in enumerate([WarningLevel.NONE, WarningLevel.CAUTION, WarningLevel.BRAKE, WarningLevel.NONE]):
        sink.update(FrameResult(i, i / 25, None, level=level))
    assert not (tmp_path / "levels.csv").exists()  # still streaming: only the temp file
    assert [p.name.startswith(".levels.") for p in tmp_path.iterdir()] == [True]
    assert sink.write(tmp_path) == "levels.csv" and sink.rows == 2
    assert (tmp_path / "levels.csv").read_text().splitlines() == ["frame,level", "1,CAUTION", "3,NONE"]
    assert [p.name for p in tmp_path.iterdir()] == ["levels.csv"]


def test_batched_and_sequential_replays_write_the_same_files(reference, clips, sensitive_options, tmp_path) -> None:
    """The frame loop's variants change how frames travel, not what is decided: events and tracks are byte for
    byte those of the default (staged, batch 1) reference."""
    import dataclasses

    from aeb_app.replay.executor import run_in_process
    from aeb_app.replay.inputs import CalibrationChoice, plan_recordings

    ref_out, _ = reference
    for name, options in (("batch4", dataclasses.replace(sensitive_options, batch=4)),
                          ("sequential", dataclasses.replace(sensitive_options, sequential=True))):
        out = tmp_path / name
        specs = plan_recordings([str(clips)], CalibrationChoice.single(CALIBRATION), options)
        run = run_in_process(specs, out, options)
        assert all(r.ok and r.frames == 30 for r in run.results), name
        for rid in IDS:
            for file in ("events.csv", "tracks.csv"):
                assert (out / rid / file).read_bytes() == (ref_out / rid / file).read_bytes(), (name, rid, file)


def test_the_report_says_which_recordings_went_unjudged_and_why(clips, sensitive_options, tmp_path) -> None:
    """A fleet's calibration map that gives a recording another camera's calibration: that recording has no
    warnings because it was never judged, and the report (and its summary) says so, with the reason."""
    inputs = tmp_path / "inputs"
    inputs.mkdir()
    for name in ("right", "wrong"):
        (inputs / f"{name}.mp4").write_bytes((clips / "clip_b.mp4").read_bytes())
    pitched = tmp_path / "pitched.yaml"
    assert main(["calibrate", "--out", str(pitched), "--size", "960x540", "--focal-px", "1000", "--height-m", "1.3",
                 "--pitch-deg=-6"]) == 0
    cal_map = tmp_path / "cals.yaml"
    cal_map.write_text(f"'right*': {CALIBRATION}\n'wrong*': {pitched}\n")
    out = tmp_path / "out"
    assert main(["replay", str(inputs), "--out", str(out), "--calibrations", str(cal_map), "--mode", "fp32_ort",
                 "--engines-dir", sensitive_options.engines_dir, "--no-progress"]) == 0
    wrong = RecordingResult.load(out / "wrong" / "summary.json")
    right = RecordingResult.load(out / "right" / "summary.json")
    assert right.unavailable_reasons == {} and right.levels.get("UNAVAILABLE", 0) == 0
    assert wrong.unavailable_reasons["the calibration does not fit this video"] == wrong.levels["UNAVAILABLE"] > 20
    section = (out / "report.md").read_text().split("## Frames without a judgement (UNAVAILABLE)")[1].split("##")[0]
    assert f"| wrong | {wrong.levels['UNAVAILABLE']} of 30 | the calibration does not fit this video: " in section
    assert "| right |" not in section
