"""Playing a file like a camera (aeb_app.video.pacing; ``aeb-app run --realtime``, the GUI's live playback)."""

from __future__ import annotations

import re
import time
from pathlib import Path

import pytest

from aeb_app.cli import main
from aeb_app.video.pacing import MAX_SKIPS_IN_ROW, PlaybackClock, paced
from aeb_app.video.reader import VideoFrame


class ManualTime:
    """A clock that moves only when slept on or advanced (the processing time of a frame)."""

    def __init__(self) -> None:
        self.t = 100.0
        self.slept: list[float] = []

    def now(self) -> float:
        return self.t

    def sleep(self, seconds: float) -> None:
        self.slept.append(seconds)
        self.t += seconds


def _frames(n: int, fps: float) -> list[VideoFrame]:
    return [VideoFrame(i, i / fps, None) for i in range(n)]


def test_frames_are_held_back_until_due_when_processing_keeps_up() -> None:
    t = ManualTime()
    clock = PlaybackClock(25.0, now=t.now, sleep=t.sleep)
    handed = []
    for frame in paced(_frames(10, 25.0), clock):
        handed.append((frame.index, t.t))
        t.t += 0.010  # 10 ms of processing per 40 ms frame
    assert [i for i, _ in handed] == list(range(10)) and clock.skipped == 0
    assert [round(at - 100.0, 6) for _, at in handed] == [round(i / 25.0, 6) for i in range(10)]  # each at its time
    assert all(s == pytest.approx(0.030) for s in t.slept)


def _handed(n: int, fps: float, work_s: float) -> tuple[list[int], PlaybackClock]:
    """The frames ``paced`` hands over when each takes ``work_s`` to process, and the clock."""
    t = ManualTime()
    clock = PlaybackClock(fps, now=t.now, sleep=t.sleep)
    handed = []
    for frame in paced(_frames(n, fps), clock):
        handed.append(frame.index)
        t.t += work_s
    return handed, clock


def test_a_frame_a_whole_period_overdue_is_skipped_and_counted() -> None:
    handed, clock = _handed(20, 25.0, 0.100)  # 100 ms per 40 ms frame: 2.5 periods
    assert clock.skipped == 20 - len(handed) and clock.skipped > 0
    assert handed[0] == 0 and handed == sorted(handed)
    # 100 ms of work per frame: the next frame that is less than one period overdue is every 2nd or 3rd
    assert all(2 <= b - a <= 3 for a, b in zip(handed, handed[1:])), handed


def test_never_more_than_the_limit_skipped_in_a_row_and_a_restart_resets_the_clock() -> None:
    handed, clock = _handed(60, 100.0, 1.0)  # a second per 10 ms frame
    assert all(b - a == MAX_SKIPS_IN_ROW + 1 for a, b in zip(handed, handed[1:])), handed
    clock.restart()
    assert clock.admit(0.5) is True  # after a restart (seek, pause) the next frame starts the clock again
    with pytest.raises(ValueError, match="positive frame rate"):
        PlaybackClock(0.0)


def _run_summary(capsys, *args: str) -> tuple[str, int, int]:
    assert main(["run", *args, "--mode", "fp32", "--no-render", "--no-progress"]) == 0
    out = capsys.readouterr().out
    match = re.search(r"frames (\d+) \(failed 0(?:, skipped (\d+) to keep real time)?\)", out)
    assert match, out
    return out, int(match[1]), int(match[2] or 0)


def test_realtime_run_takes_the_files_own_time(sample_video: Path, tmp_path: Path, capsys) -> None:
    """30 frames of a 25 fps file cannot be played in real time in less than 29 frame periods."""
    t0 = time.perf_counter()
    out, frames, skipped = _run_summary(capsys, str(sample_video), "--realtime", "--max-frames", "30",
                                        "--events", str(tmp_path / "e.csv"))
    assert time.perf_counter() - t0 >= 29 / 25.0, out
    assert frames + skipped == 30 and frames >= 3, out
    assert "latency p50" in out


def test_realtime_run_faster_than_it_can_go_skips_frames_and_counts_them(sample_video: Path, tmp_path: Path,
                                                                        capsys) -> None:
    """At 240 frames/s (a 4 ms period) no CPU network keeps up: frames are skipped, counted, never more than
    the limit in a row, and the events file stays valid."""
    events = tmp_path / "e.csv"
    out, frames, skipped = _run_summary(capsys, str(sample_video), "--fps", "240", "--realtime", "--max-frames",
                                        "40", "--events", str(events))
    assert skipped > 0 and frames + skipped == 40, out
    assert frames >= 40 // (MAX_SKIPS_IN_ROW + 1), out
    assert events.read_text().startswith("timestamp_s,frame_index,level")


@pytest.mark.parametrize(("extra", "message"), [
    (["--batch", "4"], "--batch 4 with --realtime: live frames cannot wait for a batch"),
    (["--camera"], "--realtime: camera 0 is live already"),
])
def test_realtime_refuses_what_cannot_be_live(sample_video: Path, capsys, extra: list[str], message: str) -> None:
    source = "0" if extra == ["--camera"] else str(sample_video)
    args = [a for a in extra if a != "--camera"]
    assert main(["run", source, "--realtime", *args, "--no-progress"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and message in err[0], err


def test_the_next_frame_is_decoded_at_its_time_not_while_the_current_one_is_processed() -> None:
    """paced() pulls frame k from the decoder only when it is due (k / fps after the first), so a staged run's
    decoder does not compete with the processing of frame k-1; late, it pulls at once."""
    t = ManualTime()
    clock = PlaybackClock(25.0, now=t.now, sleep=t.sleep)
    pulled = []

    def decoder():
        for frame in _frames(6, 25.0):
            pulled.append(round(t.t - 100.0, 6))
            yield frame

    for frame in paced(decoder(), clock):
        t.t += 0.050 if frame.index == 3 else 0.005  # frame 3 overruns its period
    assert pulled[:4] == [round(k / 25.0, 6) for k in range(4)]
    assert pulled[4] == pytest.approx(0.12 + 0.05)  # frame 3 handed over at 0.12 s took 50 ms: pulled at once
    clock.restart()
    before = len(t.slept)
    clock.wait_for_next()
    assert len(t.slept) == before  # after a restart nothing is waited for
