"""Wide frames through the network as tiles + the whole frame (aeb_app.model.tiling): the layout, the merge rules on
hand-made boxes, and on the real detector: 16:9 frames unchanged, wide real COCO bands scored better, the engine's
maximum batch respected."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from aeb_app.bench.coco_eval import evaluate_detector
from aeb_app.bench.wide_frames import make_wide_coco
from aeb_app.inference import registry
from aeb_app.model.postprocess import EVAL_POSTPROCESS, PostprocessConfig
from aeb_app.model.registry import load_model
from aeb_app.model.tiling import NO_TILING, TileConfig, TilePlan, merge_tiles, plan_tiles
from aeb_app.types import Detections
from tests._inference_helpers import real_frames, shared_engines

CAR, BUS = 3, 6


@pytest.mark.parametrize("hw", [(540, 960), (1080, 1920), (1024, 2048), (480, 640), (960, 540)])
def test_frames_up_to_2_to_1_go_whole(hw: tuple[int, int]) -> None:
    assert plan_tiles(hw, TileConfig()).windows == ()


@pytest.mark.parametrize("hw", [(375, 1242), (512, 1392), (270, 1280), (100, 1000), (200, 5000)])
def test_wide_frames_are_covered_edge_to_edge_by_overlapping_windows(hw: tuple[int, int]) -> None:
    config = TileConfig()
    windows = plan_tiles(hw, config).windows
    h, w = hw
    assert 2 <= len(windows) <= config.max_tiles
    assert windows[0][0] == 0 and windows[-1][1] == w
    widths = {x1 - x0 for x0, x1 in windows}
    assert len(widths) == 1 and (widths.pop() >= round(config.tile_aspect * h) or len(windows) < config.max_tiles)
    for (a0, a1), (b0, b1) in zip(windows, windows[1:]):
        assert a0 < b0 and a1 - b0 >= config.overlap * (a1 - a0) - 1  # each neighbour shares a quarter
    assert plan_tiles(hw, NO_TILING).windows == ()


def _dets(*boxes: tuple[float, float, float, float, float, int]) -> Detections:
    if not boxes:
        return Detections.empty()
    arr = np.array(boxes, np.float32).reshape(-1, 6)
    return Detections(arr[:, :4], arr[:, 4], arr[:, 5].astype(np.int64))


PLAN = TilePlan((375, 1242), ((0, 500), (371, 871), (742, 1242)))


def _merge(tiles: list[Detections], whole: Detections) -> Detections:
    return merge_tiles(PLAN, tiles, whole, config=TileConfig(), iou_threshold=0.5, class_agnostic=False,
                       max_detections=100)


def test_a_car_inside_a_tile_keeps_the_tiles_finer_box() -> None:
    tile = _dets((100, 150, 160, 200, 0.8, CAR))  # in tile 1's pixels: frame x 471-531
    whole = _dets((466, 145, 540, 205, 0.6, CAR))  # the squeezed view of the same car, coarser
    got = _merge([_dets(), tile, _dets()], whole)
    assert got.xyxy_px.tolist() == [[471, 150, 531, 200]] and got.scores.tolist() == pytest.approx([0.8])


def test_a_box_cut_by_a_tile_edge_gives_way_to_the_neighbours_whole_view() -> None:
    cut = _dets((440, 150, 499, 210, 0.9, CAR))  # touches tile 0's right edge (x 500)
    full = _dets((69, 150, 159, 210, 0.7, CAR))  # tile 1 sees it whole: frame x 440-530
    got = _merge([cut, full, _dets()], _dets())
    assert got.xyxy_px.tolist() == [[440, 150, 530, 210]]


def test_a_cut_box_that_nothing_else_sees_is_kept_and_other_classes_are_not_merged() -> None:
    cut = _dets((440, 150, 499, 210, 0.9, CAR))
    person = _dets((69, 150, 159, 210, 0.7, 1))  # a person where the car was: not the same object
    got = _merge([cut, person, _dets()], _dets())
    assert sorted(got.category_ids.tolist()) == [1, CAR] and len(got) == 2


def test_an_object_wider_than_a_tile_comes_from_the_whole_frame() -> None:
    bus = _dets((300, 60, 1000, 370, 0.7, BUS))  # wider than any window (500 px)
    pieces = [_dets((300, 60, 499, 370, 0.6, BUS)), _dets((0, 60, 499, 370, 0.6, BUS)),
              _dets((0, 60, 258, 370, 0.5, BUS))]  # every piece is cut by an inner edge
    got = _merge(pieces, bus)
    assert got.xyxy_px.tolist() == [[300, 60, 1000, 370]]


def test_merge_needs_one_result_per_window() -> None:
    with pytest.raises(ValueError, match="2 tile results for 3 windows"):
        _merge([_dets(), _dets()], _dets())


@pytest.fixture(scope="module")
def detector(tmp_path_factory):
    det = registry.create(load_model("ssd_mobilenet_v1"), "fp32_ort", device="cpu",
                          engines_dir=shared_engines(tmp_path_factory))
    with det:
        yield det


def _same(a: Detections, b: Detections) -> bool:
    return (np.array_equal(a.xyxy_px, b.xyxy_px) and np.array_equal(a.scores, b.scores)
            and np.array_equal(a.category_ids, b.category_ids))


def test_frames_that_are_not_wide_detect_exactly_as_without_tiling(detector, data_dir: Path, coco_dir: Path) -> None:
    frames = real_frames(data_dir, coco_dir)
    config = PostprocessConfig(score_threshold=0.3)
    tiled, plain = detector.infer(frames, config), detector.infer(frames, replace(config, tiling=NO_TILING))
    assert all(_same(a, b) for a, b in zip(tiled, plain)) and sum(len(d) for d in tiled) > 5


def test_wide_real_images_are_scored_better_with_tiles(detector, coco_dir: Path, tmp_path: Path) -> None:
    """Bands of KITTI's aspect (1242:375) cut from 60 COCO val images, with their clipped ground truth."""
    folder, boxes = make_wide_coco(coco_dir, tmp_path, 1242 / 375)
    assert boxes > 200
    squeezed = evaluate_detector(detector, folder, config=replace(EVAL_POSTPROCESS, tiling=NO_TILING), limit=60)
    tiled = evaluate_detector(detector, folder, config=EVAL_POSTPROCESS, limit=60)
    assert tiled["map50"] > squeezed["map50"] + 0.03 and tiled["ar100"] > squeezed["ar100"] + 0.03


def test_tiles_respect_the_engines_maximum_batch(detector, coco_dir: Path, tmp_path: Path) -> None:
    import cv2

    folder, _ = make_wide_coco(coco_dir, tmp_path, 3.0)
    frames = [cv2.imread(str(p)) for p in sorted(folder.glob("*.png"))[:3]]
    free = detector.infer(frames)
    detector.info.max_batch = 2  # each wide frame is 4 network inputs: run in chunks of 2
    try:
        chunked = detector.infer(frames)
    finally:
        detector.info.max_batch = None
    assert all(_same(a, b) for a, b in zip(free, chunked)) and sum(len(d) for d in free) > 0


def test_opening_a_wide_source_says_it_is_tiled(caplog) -> None:
    import logging

    from aeb_app.stream import _log_tiles

    with caplog.at_level(logging.INFO, logger="aeb_app.stream"):
        _log_tiles((1242, 375), TileConfig())
        _log_tiles((960, 540), TileConfig())
        _log_tiles((1242, 375), NO_TILING)
    assert [r.getMessage() for r in caplog.records] == [
        "1242x375 frames are wider than 2:1: each goes through the network as 3 tiles + the whole frame "
        "(--no-tiles squeezes it whole)"]
