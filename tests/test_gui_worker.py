"""The generator worker, its bounded display queue, and the live session generator on the real video."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from aeb_app.gui.session import PlaybackControl, SessionConfig, Started, live_session
from aeb_app.gui.worker import DropQueue, FrameWorker, GeneratorWorker
from aeb_app.types import FrameResult

CALIBRATION = Path(__file__).resolve().parents[1] / "calibration" / "solidWhiteRight.yaml"


def _count(n: int):
    yield from range(n)


def _fails():
    yield "first"
    raise ValueError("bad value 42")


def _forever(delay_s: float):
    while True:
        time.sleep(delay_s)
        yield "tick"


def test_worker_emits_items_then_finished_in_order(qtbot) -> None:
    worker = GeneratorWorker(_count, 3)
    seen: list[int] = []
    worker.yielded.connect(seen.append)
    with qtbot.waitSignals([worker.yielded, worker.yielded, worker.yielded, worker.finished], order="strict",
                           timeout=5000):
        worker.start()
    assert seen == [0, 1, 2]


def test_worker_emits_error_then_finished(qtbot) -> None:
    worker = GeneratorWorker(_fails)
    errors: list[Exception] = []
    worker.errored.connect(errors.append)
    with qtbot.waitSignals([worker.yielded, worker.errored, worker.finished], order="strict", timeout=5000):
        worker.start()
    assert isinstance(errors[0], ValueError) and "42" in str(errors[0])


def test_worker_stops_cooperatively_within_timeout(qtbot) -> None:
    worker = GeneratorWorker(_forever, 0.01)
    with qtbot.waitSignal(worker.yielded, timeout=5000):
        worker.start()
    t0 = time.perf_counter()
    assert worker.stop(2000) is True
    assert worker.isFinished() and time.perf_counter() - t0 < 1.0


def test_drop_queue_keeps_the_newest_and_counts_drops() -> None:
    queue = DropQueue(2)
    assert queue.put(1) is True and queue.put(2) is False and queue.put(3) is False
    assert queue.dropped == 1 and len(queue) == 2
    assert queue.take_latest() == 3 and queue.dropped == 2 and queue.take_latest() is None
    with pytest.raises(ValueError):
        DropQueue(0)


def test_frame_worker_runs_the_live_session(qtbot, sample_video: Path) -> None:
    control = PlaybackControl()
    config = SessionConfig(str(sample_video), calibration_path=CALIBRATION, realtime=False)
    worker = FrameWorker(live_session, config, control, on_stop=control.stop)
    progress: list[tuple[str, float]] = []
    started: list[Started] = []
    results: list[FrameResult] = []
    worker.progress.connect(lambda text, frac: progress.append((text, frac)))
    worker.yielded.connect(lambda item: isinstance(item, Started) and started.append(item))
    worker.frame_ready.connect(lambda: results.append(worker.queue.take_latest()))
    worker.start()
    qtbot.waitUntil(lambda: len(results) >= 5 or not worker.isRunning(), timeout=60000)
    assert worker.stop(5000)
    assert [f for _, f in progress] == sorted(f for _, f in progress) and "loading ssd_mobilenet_v1" in progress[1][0]
    assert started and started[0].calibrated and started[0].video.frame_count == 221
    assert all(r.ok and "annotated" in r.extras and "bev" in r.extras for r in results if r is not None)
    indices = [r.frame_index for r in results if r is not None]
    assert indices == sorted(indices) and len(indices) >= 5

