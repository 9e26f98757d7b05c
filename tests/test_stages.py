"""The ordered bounded-queue stage pipeline (aeb_app.stages): order, back-pressure, shutdown."""

from __future__ import annotations

import contextlib
import random
import threading
import time

import pytest

from aeb_app.stages import Stage, max_in_flight, run_stages


def _stage_threads() -> list[str]:
    return [t.name for t in threading.enumerate() if t.name.startswith("stage-")]


@pytest.fixture(autouse=True)
def no_threads_left():
    """Every test must end with no stage thread alive (clean shutdown)."""
    yield
    assert _stage_threads() == []


def _jitter(scale_s: float):
    rng = random.Random(7)
    lock = threading.Lock()

    def sleep() -> None:
        with lock:
            delay = rng.random() * scale_s
        time.sleep(delay)

    return sleep


def test_order_kept_and_nothing_dropped_with_uneven_stage_times():
    jitter = _jitter(0.002)

    def add(k):
        def fn(x):
            jitter()
            return x + [k]
        return fn

    out = list(run_stages(([i] for i in range(200)), [Stage("a", add("a")), Stage("b", add("b")),
                                                      Stage("c", add("c"))], capacity=2))
    assert [x[0] for x in out] == list(range(200))
    assert all(x[1:] == ["a", "b", "c"] for x in out)


def test_stages_overlap_in_time():
    """Three 10 ms stages over 30 items: ~0.3 s pipelined vs 0.9 s in series."""
    stages = [Stage(n, lambda x: (time.sleep(0.01), x)[1]) for n in ("a", "b", "c")]
    t0 = time.perf_counter()
    assert list(run_stages(range(30), stages, capacity=2)) == list(range(30))
    assert time.perf_counter() - t0 < 0.75


def test_back_pressure_bounds_items_in_flight_with_a_slow_stage():
    produced, consumed = [0], [0]
    peak = [0]

    def source():
        for i in range(60):
            produced[0] += 1
            peak[0] = max(peak[0], produced[0] - consumed[0])
            yield i

    def slow(x):
        time.sleep(0.005)
        return x

    capacity = 2
    for _ in run_stages(source(), [Stage("fast", lambda x: x), Stage("slow", slow)], capacity=capacity):
        consumed[0] += 1
    assert consumed[0] == 60
    # Without back-pressure the source would run ahead by ~all 60 items.
    assert peak[0] <= max_in_flight(2, capacity) == 10


def test_failing_stage_raises_in_caller_and_threads_end():
    def boom(x):
        if x == 5:
            raise ValueError("bad item 5")
        return x

    got = []
    with pytest.raises(ValueError, match="bad item 5") as info:
        for x in run_stages(range(1000), [Stage("ok", lambda x: x), Stage("boom", boom)], capacity=2):
            got.append(x)
    assert got == list(range(len(got))) and len(got) <= 5
    assert any("'boom'" in note for note in getattr(info.value, "__notes__", ["'boom'"]))


def test_failing_source_raises_in_caller():
    def source():
        yield 1
        raise OSError("disk gone")

    with pytest.raises(OSError, match="disk gone"):
        list(run_stages(source(), [Stage("id", lambda x: x)]))


def test_failure_while_upstream_is_blocked_on_a_full_queue_does_not_hang():
    """The source is far ahead (blocked on a full queue) when the last stage fails."""
    def late_boom(x):
        time.sleep(0.01)
        raise RuntimeError("encoder died")

    t0 = time.perf_counter()
    with pytest.raises(RuntimeError, match="encoder died"):
        list(run_stages(iter(range(10_000)), [Stage("a", lambda x: x), Stage("enc", late_boom)], capacity=1))
    assert time.perf_counter() - t0 < 5


def test_consumer_stopping_early_stops_threads_and_closes_the_source():
    closed = threading.Event()

    def source():
        try:
            for i in range(10_000):
                yield i
        finally:
            closed.set()

    with contextlib.closing(run_stages(source(), [Stage("id", lambda x: x)], capacity=2)) as results:
        for x in results:
            if x == 3:
                break
    assert closed.wait(1.0)


def test_consumer_exception_propagates_and_stops_threads():
    with pytest.raises(KeyError):
        for x in run_stages(range(10_000), [Stage("id", lambda x: x)], capacity=2):
            if x == 2:
                raise KeyError("consumer")


def test_per_queue_capacities_bound_in_flight_items():
    produced, consumed, peak = [0], [0], [0]

    def source():
        for i in range(40):
            produced[0] += 1
            peak[0] = max(peak[0], produced[0] - consumed[0])
            yield i

    for _ in run_stages(source(), [Stage("slow", lambda x: (time.sleep(0.005), x)[1])], capacity=(1, 1)):
        consumed[0] += 1
    assert consumed[0] == 40 and peak[0] <= max_in_flight(1, (1, 1)) == 5


@pytest.mark.parametrize("capacity", [0, (2,), (2, 0)])
def test_bad_capacity_is_rejected(capacity):
    with pytest.raises(ValueError, match="capacity"):
        run_stages(range(3), [Stage("id", lambda x: x)], capacity=capacity)
