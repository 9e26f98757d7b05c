"""Fleet replay on a local Dask cluster of 2 CPU worker processes: the same events as in-process, byte for
byte; one model load per worker; a recording whose worker is killed is run again and completes."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import cloudpickle
import pytest

from aeb_app.cli import main
from aeb_app.replay.executor import ClusterChoice, open_client, run_on_dask
from aeb_app.replay.inputs import CalibrationChoice, plan_recordings
from aeb_app.replay.task import replay_recording
from aeb_app.replay.types import RecordingResult, RecordingSpec, ReplayOptions
from tests._replay_helpers import (  # noqa: F401 - fixtures
    CALIBRATION, SENSITIVE, clips, cli_overrides, reference, sensitive_options,
)

# The crashing task below lives in this test module: ship it to the workers by value.
cloudpickle.register_pickle_by_value(sys.modules[__name__])

VICTIM = "clip_c"


def _files(out: Path, recording_id: str) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted((out / recording_id).iterdir()) if p.suffix == ".csv"}


def test_two_dask_workers_give_the_in_process_events_byte_for_byte(reference, clips, sensitive_options,
                                                                  tmp_path, capsys) -> None:
    ref_out, ref_run = reference
    out = tmp_path / "dask"
    argv = ["replay", str(clips), "--out", str(out), "--workers", "2", "--mode", "fp32_ort",
            "--engines-dir", sensitive_options.engines_dir, "--no-progress", *cli_overrides(SENSITIVE)]
    assert main(argv) == 0
    assert "local Dask cluster, 2 CPU worker(s)" in capsys.readouterr().out
    report = json.loads((out / "report.json").read_text())
    results = [RecordingResult.from_json(r) for r in report["recordings"]]
    assert [r.recording_id for r in results] == [r.recording_id for r in ref_run.results]
    for mine, theirs in zip(results, ref_run.results):
        assert mine.ok and mine.frames == theirs.frames and mine.events == theirs.events
        assert _files(out, mine.recording_id) == _files(ref_out, theirs.recording_id)  # byte for byte
        assert mine.worker != theirs.worker  # it really ran in another process
    workers = {r.worker for r in results}
    assert len(workers) == 2  # both workers took recordings
    # Each worker loaded its model once, in the warm-up before the first task (not per task, not in a task).
    assert all(r.detector_reused for r in results) and report["warmup_s"] > 0
    expected: dict[str, int] = {}  # the in-process run's onsets, level by level
    for r in ref_run.results:
        for level, n in r.events.items():
            expected[level] = expected.get(level, 0) + n
    assert report["totals"]["events"] == expected and expected


def crash_once(spec: RecordingSpec, out_dir: str, options: ReplayOptions) -> RecordingResult:
    """Kill this worker process the first time it runs the victim recording (a marker file remembers)."""
    marker = Path(out_dir).parent / "crashed-once"
    if spec.recording_id == VICTIM and not marker.exists():
        marker.write_text(str(os.getpid()))
        os._exit(1)  # no clean-up, no exception: as an OOM kill or a lost node looks to the scheduler
    return replay_recording(spec, out_dir, options)


def test_a_killed_workers_recording_is_retried_and_completes(reference, clips, sensitive_options,
                                                             tmp_path) -> None:
    ref_out, ref_run = reference
    out = tmp_path / "out"
    out.mkdir()
    specs = plan_recordings([str(clips)], CalibrationChoice.single(CALIBRATION), sensitive_options)
    with open_client(ClusterChoice(workers=2, retries=2)) as (client, where):
        run = run_on_dask(client, specs, out, sensitive_options, where=where, retries=2, task=crash_once)
    crashed_pid = (tmp_path / "crashed-once").read_text()
    assert crashed_pid  # the victim's first worker really died
    assert all(r.ok for r in run.results), [r.reason for r in run.results]
    victim = next(r for r in run.results if r.recording_id == VICTIM)
    assert not victim.worker.endswith(f":{crashed_pid}")  # finished by another (or a restarted) process
    for mine, theirs in zip(run.results, ref_run.results):
        assert _files(out, mine.recording_id) == _files(ref_out, theirs.recording_id)
        assert (out / mine.recording_id / "summary.json").is_file()
    assert not [p for p in out.rglob(".*")]  # no temp file left behind


def test_cluster_options_exclude_each_other() -> None:
    with pytest.raises(Exception, match="exclude each other"):
        ClusterChoice(address="tcp://127.0.0.1:8786", workers=2)
