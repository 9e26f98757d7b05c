"""The generator worker, its bounded display queue, and the live session generator on the real video."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import pytest

from aeb_app.gui.session import LiveFrame, PlaybackControl, SessionConfig, Started, _apply_commands, live_session
from aeb_app.gui.worker import DropQueue, FrameWorker, GeneratorWorker
from aeb_app.types import FrameResult
from aeb_app.video import VideoInfo, VideoSource

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
    results: list[LiveFrame] = []
    worker.progress.connect(lambda text, frac: progress.append((text, frac)))
    worker.yielded.connect(lambda item: isinstance(item, Started) and started.append(item))
    worker.frame_ready.connect(lambda: results.append(worker.queue.take_latest()))
    worker.start()
    qtbot.waitUntil(lambda: len(results) >= 5 or not worker.isRunning(), timeout=60000)
    assert worker.stop(5000)
    assert [f for _, f in progress] == sorted(f for _, f in progress) and "loading ssd_mobilenet_v1" in progress[1][0]
    assert started and started[0].calibrated and started[0].video.frame_count == 221
    assert all(r.result.ok and r.result.annotated is not None and r.result.bev is not None
               for r in results if r is not None)
    indices = [r.result.frame_index for r in results if r is not None]
    assert indices == sorted(indices) and len(indices) >= 5



def _cleanup_fails():
    try:
        yield from _forever(0.01)
    finally:  # runs on close(), after a stop
        raise OSError("release failed for clip.mp4")


def test_failing_cleanup_after_a_stop_is_emitted_not_fatal(qtbot) -> None:
    worker = GeneratorWorker(_cleanup_fails)
    errors: list[Exception] = []
    worker.errored.connect(errors.append)
    with qtbot.waitSignal(worker.yielded, timeout=5000):
        worker.start()
    assert worker.stop(2000) is True
    qtbot.waitUntil(lambda: bool(errors), timeout=5000)
    assert isinstance(errors[0], OSError) and "clip.mp4" in str(errors[0])


def test_plain_iterators_need_no_cleanup(qtbot) -> None:
    worker = GeneratorWorker(lambda: iter(["a", "b"]))
    seen: list[str] = []
    errors: list[Exception] = []
    worker.yielded.connect(seen.append)
    worker.errored.connect(errors.append)
    with qtbot.waitSignal(worker.finished, timeout=5000):
        worker.start()
    assert seen == ["a", "b"] and errors == []


def test_drop_queue_under_a_concurrent_producer() -> None:
    queue, n, taken = DropQueue(2), 20000, []
    lengths: list[int] = []

    def produce() -> None:
        for i in range(n):
            queue.put(i)

    producer = threading.Thread(target=produce)
    producer.start()
    while producer.is_alive() or len(queue):
        lengths.append(len(queue))
        item = queue.take_latest()
        if item is not None:
            taken.append(item)
    producer.join()
    assert taken == sorted(set(taken)) and taken[-1] == n - 1  # in order, no duplicates, the newest last
    assert len(taken) + queue.dropped == n and max(lengths) <= 2  # every item shown or counted, bounded


def test_frame_worker_pokes_once_per_empty_queue() -> None:
    worker = FrameWorker(_count, 0, queue_size=2)
    pokes: list[int] = []
    worker.frame_ready.connect(lambda: pokes.append(len(worker.queue)))  # direct: same thread here
    results = [LiveFrame(FrameResult(i, i / 25, None), 0) for i in range(4)]
    for r in results:
        worker.handle(r)
    assert pokes == [1] and worker.queue.dropped == 2 and worker.queue.take_latest() is results[3]
    worker.handle(results[0])
    assert pokes == [1, 1]


class _FakeCamera:
    info = VideoInfo("camera 0", 640, 480, 30.0, None, True)

    def seek(self, index: int) -> None:
        raise AssertionError("a camera must not be seeked")


def test_seek_commands_are_clamped_and_ignored_on_cameras(sample_video: Path) -> None:
    control = PlaybackControl(paused=True)
    control.seek(10_000)
    with VideoSource(sample_video) as src:
        assert _apply_commands(src, None, control) == (True, False)
        assert src.position == 220 and src.read().index == 220
        control.seek(-5)
        assert _apply_commands(src, None, control) == (True, False) and src.position == 0
        assert _apply_commands(src, None, control) == (False, False)  # commands are taken once
    control.seek(3)
    control.step()
    assert _apply_commands(_FakeCamera(), None, control) == (False, True)
