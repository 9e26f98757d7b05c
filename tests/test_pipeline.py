"""The pipeline on the real sample footage through the real ssd_mobilenet_v1 (PyTorch fp32, CPU)."""

from __future__ import annotations

import csv
import json
from pathlib import Path
from types import SimpleNamespace

import cv2
import numpy as np
import pytest
import torch

from aeb_app import render
from aeb_app.errors import CalibrationError
from aeb_app.geometry import load_calibration
from aeb_app.inference.registry import create
from aeb_app.model.registry import load_model
from aeb_app.pipeline import EventRecorder, Pipeline, PipelineSettings, check_calibration, level_of, write_events
from aeb_app.safety import WarningConfig, ZoneConfig
from aeb_app.types import Detections, FrameResult, WarningLevel
from aeb_app.video import VideoFrame, VideoSource

REPO = Path(__file__).resolve().parents[1]
CALIBRATION = REPO / "calibration" / "solidWhiteRight.yaml"
#: A deliberately sensitive warning setup so the real footage (steady traffic) raises a warning:
#: at 120 km/h the zone reaches ~120 m and covers the lead traffic 60+ m ahead in the ego lane.
SENSITIVE = WarningConfig(caution_ttc_s=100.0, brake_ttc_s=1.0, min_closing_mps=0.01, min_track_age_s=0.04,
                          on_s=0.0, require_agreement=False, agree_ttc_s=1000.0, closing_sigmas=0.0,
                          require_closing_trend=False)


@pytest.fixture(scope="module")
def detector():
    with create(load_model("ssd_mobilenet_v1"), "fp32") as det:
        yield det


@pytest.fixture(scope="module")
def results(detector, sample_video: Path):
    # The cars in these frames are in the left lane (the range cues place them 2-4 m left): a wide zone
    # lets the sensitive setup warn on them.
    pipeline = Pipeline(detector, load_calibration(CALIBRATION), warning_config=SENSITIVE,
                        zone_config=ZoneConfig(lane_width_m=8.0), settings=PipelineSettings(ego_speed_mps=120 / 3.6))
    # PyTorch's CPU thread count changes the float summation order, so detections differ in the last bits
    # and this deliberately marginal setup warns at frame ~19 with 2 threads, ~58 with 1; an earlier test
    # may have changed the count (the app tunes it), so pin it for a result independent of test order.
    threads = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        with VideoSource(sample_video) as src:
            return list(pipeline.run(src.frames(max_frames=60)))
    finally:
        torch.set_num_threads(threads)


def test_cars_detected_and_times_measured(results) -> None:
    assert len(results) == 60 and all(r.ok for r in results)
    cars = [r for r in results if (r.detections.category_ids == 3).any()]
    assert len(cars) >= 26
    for r in results:
        t = r.times
        assert t.inference_ms > 0 and t.render_ms > 0 and t.geometry_ms > 0 and t.decode_ms > 0
        assert t.total_ms == pytest.approx(t.decode_ms + t.preprocess_ms + t.inference_ms + t.postprocess_ms
                                           + t.geometry_ms + t.render_ms)


def test_zone_is_drawn_in_the_image_and_bev(results) -> None:
    r = results[0]
    poly = r.state.zone_polygon_px
    assert poly.shape == (4, 2)
    assert poly[0, 1] > 540 and poly[1, 1] > 540  # the bumper (0 m) is below the bottom of the image
    assert 300 < poly[2, 1] < 400 and 300 < poly[3, 1] < 400 and 400 < poly[2:, 0].mean() < 560  # far edge
    b, g, red = r.annotated[525, 480].astype(int)  # zone interior near the bumper: yellow tint
    raw_b, raw_g, raw_r = _raw_frame(0)[525, 480].astype(int)
    assert g - b > raw_g - raw_b + 30 and red - b > raw_r - raw_b + 30
    assert r.bev.shape == (540, 320, 3)


def _raw_frame(index: int) -> np.ndarray:
    with VideoSource(REPO.parent / "shared" / "data" / "videos" / "udacity" / "solidWhiteRight.mp4") as src:
        src.seek(index)
        return src.read().image


def test_red_and_green_ground_points_and_labels(results) -> None:
    colours = {True: [], False: []}
    for r in results:
        img = r.annotated
        for obj in r.state.objects:
            x, y = (int(round(v)) for v in obj.ground_px)
            colours[obj.in_zone].append(tuple(img[y, x]))
    assert colours[True] and colours[False]
    assert colours[True].count(render.RED) >= len(colours[True]) // 2
    assert colours[False].count(render.GREEN) >= len(colours[False]) // 2


def test_warning_raised_and_events_exported(results, tmp_path: Path) -> None:
    levels = [level_of(r) for r in results]
    assert levels[0] == WarningLevel.NONE and WarningLevel.CAUTION in levels
    recorder = EventRecorder()
    for r in results:
        recorder.update(r)
    assert recorder.warning_count >= 1
    first = recorder.events[0]
    assert first.level == "CAUTION" and first.object and 30 < first.distance_m < 130
    write_events(tmp_path / "e.csv", recorder.events)
    write_events(tmp_path / "e.json", recorder.events)
    rows = list(csv.DictReader((tmp_path / "e.csv").open()))
    assert rows[0]["level"] == "CAUTION" and int(rows[0]["frame_index"]) == first.frame_index
    assert json.loads((tmp_path / "e.json").read_text())[0]["object"] == first.object
    with pytest.raises(ValueError, match="csv or .json"):
        write_events(tmp_path / "e.txt", recorder.events)


def test_corrupt_frames_give_unavailable_not_a_crash(detector, sample_video: Path, tmp_path: Path) -> None:
    broken = tmp_path / "truncated.mp4"
    broken.write_bytes(sample_video.read_bytes()[: sample_video.stat().st_size // 2])
    pipeline = Pipeline(detector, load_calibration(CALIBRATION))
    recorder = EventRecorder()
    with VideoSource(broken) as src:
        src.seek(100)
        out = [r for r in pipeline.run(src.frames()) if recorder.update(r) or True]
    failed = [r for r in out if not r.ok]
    assert failed and out[0].ok
    assert all(level_of(r) == WarningLevel.UNAVAILABLE and r.error for r in failed)
    assert tuple(failed[0].annotated[5, 5]) == render.overlay.BANNER_COLORS[WarningLevel.UNAVAILABLE]
    assert any(e.level == "UNAVAILABLE" and e.reason for e in recorder.events)


def test_without_calibration_detections_only_and_unavailable(detector, sample_video: Path) -> None:
    pipeline = Pipeline(detector, None)
    with VideoSource(sample_video) as src:
        r = pipeline.process(src.read())
    assert r.ok and len(r.detections) > 0
    assert level_of(r) == WarningLevel.UNAVAILABLE and "no calibration" in r.reason
    with pytest.raises(CalibrationError, match="960x540 images, the video is 1280x720"):
        check_calibration(load_calibration(CALIBRATION), (1280, 720))


def test_seek_backwards_resets_the_logic(detector, sample_video: Path) -> None:
    pipeline = Pipeline(detector, load_calibration(CALIBRATION), settings=PipelineSettings(render=False))
    with VideoSource(sample_video) as src:
        src.seek(50)
        first = [pipeline.process(f) for f in src.frames(max_frames=2)]
        src.seek(5)
        back = pipeline.process(src.read())
    assert [level_of(r) for r in first + [back]] == [WarningLevel.NONE] * 3
    assert back.annotated is None and back.bev is None


def _result(index: int, level: WarningLevel) -> FrameResult:
    return FrameResult(index, index / 25, None, level=level, reason="r" if level == 3 else "")


def test_event_onsets_include_a_warning_right_after_unavailable() -> None:
    levels = [WarningLevel.NONE, WarningLevel.CAUTION, WarningLevel.CAUTION, WarningLevel.UNAVAILABLE,
              WarningLevel.CAUTION, WarningLevel.BRAKE, WarningLevel.CAUTION, WarningLevel.NONE,
              WarningLevel.UNAVAILABLE, WarningLevel.UNAVAILABLE, WarningLevel.BRAKE]
    recorder = EventRecorder()
    returned = [recorder.update(_result(i, lv)) for i, lv in enumerate(levels)]
    assert [(e.frame_index, e.level) for e in recorder.events] == [
        (1, "CAUTION"), (3, "UNAVAILABLE"), (4, "CAUTION"), (5, "BRAKE"), (8, "UNAVAILABLE"), (10, "BRAKE")]
    assert [e for e in returned if e is not None] == recorder.events
    assert recorder.events[1].reason == "r" and recorder.events[0].reason == ""
    assert recorder.warning_count == 4


class _FlakyDetector:
    """Empty detections, except that inference fails on the listed calls (a backend hiccup)."""

    def __init__(self, fail_calls: set[int]) -> None:
        self.calls, self.fail_calls = 0, fail_calls
        self.last_times = SimpleNamespace(preprocess_ms=0.1, inference_ms=0.2, postprocess_ms=0.3)

    def infer(self, images, postprocess=None):
        self.calls += 1
        if self.calls in self.fail_calls:
            raise RuntimeError("device lost")
        return [Detections(np.zeros((0, 4), np.float32), np.zeros(0, np.float32), np.zeros(0, np.int64))
                for _ in images]


def test_failed_inference_and_decode_are_unavailable_with_the_dimmed_last_frame(sample_video: Path) -> None:
    pipeline = Pipeline(_FlakyDetector({3}), load_calibration(CALIBRATION))
    with VideoSource(sample_video) as src:
        frames = list(src.frames(max_frames=4))
    failed = VideoFrame(4, 0.16, None, error="frame 4: cannot be decoded")
    out = [pipeline.process(f) for f in frames + [failed, VideoFrame(5, 0.2, None, error="frame 5: again")]]
    none, unavailable = WarningLevel.NONE, WarningLevel.UNAVAILABLE
    assert [level_of(r) for r in out] == [none, none, unavailable, none, unavailable, unavailable]
    assert "inference failed (device lost)" in out[2].error and out[2].reason == out[2].error
    assert out[4].reason == "frame 4: cannot be decoded" and out[4].frame is None
    expected = cv2.convertScaleAbs(frames[3].image, alpha=0.4)  # the last good frame, dimmed
    assert np.array_equal(out[4].annotated[60:300, :300], expected[60:300, :300])  # off the zone
    assert pipeline._dimmed_last_image() is pipeline._dimmed_last_image()  # computed once, not per frame
    assert tuple(out[5].annotated[5, 5]) == render.overlay.BANNER_COLORS[WarningLevel.UNAVAILABLE]


def test_an_error_is_never_all_clear_whatever_the_logic_says() -> None:
    state = SimpleNamespace(level=WarningLevel.NONE, reason="")
    assert Pipeline._level(state, "frame 7: inference failed") == (WarningLevel.UNAVAILABLE,
                                                                   "frame 7: inference failed")
    assert Pipeline._level(state, None) == (WarningLevel.NONE, "")
    assert level_of(FrameResult(0, 0.0, None)) == WarningLevel.UNAVAILABLE  # no level at all
