"""Stateless drawing: colours where the overlays promise them, input frames left untouched."""

from __future__ import annotations

import math
from types import SimpleNamespace

import numpy as np

from aeb_app import render
from aeb_app.render.overlay import BANNER_COLORS
from aeb_app.types import Detections, WarningLevel


def _frame() -> np.ndarray:
    return np.full((540, 960, 3), 60, np.uint8)


def _state() -> SimpleNamespace:
    obj = lambda x, y, inside, d: SimpleNamespace(ground_px=(x, y), in_zone=inside, distance_m=d,  # noqa: E731
                                                   ttc_s=2.5 if inside else math.inf)
    return SimpleNamespace(
        zone_polygon_px=np.array([[380.0, 530.0], [580.0, 530.0], [520.0, 350.0], [440.0, 350.0]]),
        objects=(obj(480, 400, True, 20.0), obj(100, 300, False, 45.0)),
    )


def test_render_frame_draws_zone_points_boxes_and_keeps_input() -> None:
    frame = _frame()
    before = frame.copy()
    dets = Detections(np.array([[440, 350, 520, 400], [60, 250, 140, 300]], np.float32),
                      np.array([0.9, 0.6], np.float32), np.array([3, 3]), ("car", "car"))
    out = render.render_frame(frame, dets, _state(), level=WarningLevel.NONE)
    assert np.array_equal(frame, before)
    assert tuple(out[400, 480]) == render.RED  # in-zone ground point
    assert tuple(out[300, 100]) == render.GREEN  # outside
    b, g, r = out[480, 480].astype(int)  # inside the zone: tinted yellow (more red+green than blue)
    assert g > b + 30 and r > b + 30
    assert tuple(out[540 // 2, 900]) == (60, 60, 60)  # far from everything: untouched
    assert (out[250, 60:141] != 60).any()  # box edge drawn


def test_banner_per_level_and_none_draws_nothing() -> None:
    for level, color in BANNER_COLORS.items():
        out = render.draw_banner(_frame(), level)
        assert tuple(out[5, 5]) == color
    assert np.array_equal(render.draw_banner(_frame(), WarningLevel.NONE), _frame())


def test_bev_panel_places_objects_by_metres() -> None:
    layout = render.BevLayout(width_px=240, height_px=540, px_per_m=8.0, bottom_margin_px=40)
    panel = render.render_bev(objects_m=[[0.0, 20.0], [8.0, 40.0]], in_zone=[True, False],
                              zone_polygon_m=[[-1.85, 0], [1.85, 0], [1.85, 30], [-1.85, 30]], layout=layout)
    assert panel.shape == (540, 240, 3)
    assert tuple(panel[500 - 160, 120]) == render.RED  # 20 m ahead, centred
    assert tuple(panel[500 - 320, 120 + 64]) == render.GREEN  # 40 m ahead, 8 m right
    b, g, r = panel[500 - 200, 125].astype(int)  # 25 m ahead, inside the zone
    assert g > b + 30 and r > b + 30
    assert render.format_ttc(math.inf) == "TTC -" and render.format_ttc(2.04) == "TTC 2.0 s"


def test_side_by_side_pads_the_panel() -> None:
    out = render.side_by_side(_frame(), np.ones((100, 240, 3), np.uint8))
    assert out.shape == (540, 1200, 3) and out[99, 1000, 0] == 1 and out[200, 1000, 0] == 0


def test_bev_lanes_from_the_cache_match_direct_drawing() -> None:
    from aeb_app.render import bev

    layout = render.BevLayout()
    panel = render.render_bev(objects_m=np.zeros((0, 2)), in_zone=[], zone_polygon_m=None, lane_width_m=3.5,
                              layout=layout)
    direct = np.full_like(panel, 45)
    bev._draw_lanes(direct, layout, 3.5)
    scale = np.full_like(panel, 45)
    bev._draw_scale(scale, layout)  # drawn over the lanes: compare elsewhere
    lanes = bev._lane_layer(layout, 3.5)[1].astype(bool) & (scale == 45).all(axis=2)
    assert lanes.sum() > 1000 and np.array_equal(panel[lanes], direct[lanes])
    assert bev._lane_layer(layout, 3.5) is bev._lane_layer(layout, 3.5)  # drawn once
    assert not bev._lane_layer(layout, 3.5)[0].flags.writeable  # the cache cannot be painted over


def test_labels_only_for_near_or_in_zone_objects() -> None:
    obj = lambda x, y, d: SimpleNamespace(ground_px=(x, y), in_zone=False, distance_m=d, ttc_s=math.inf)  # noqa: E731
    state = SimpleNamespace(zone_polygon_px=np.zeros((0, 2)), objects=(obj(100, 300, 20.0), obj(600, 300, 80.0)))
    out = render.render_frame(_frame(), None, state, level=WarningLevel.NONE)
    label_area = lambda x: out[300:318, x + 8:x + 60]  # noqa: E731 - right of and below the dot
    assert (label_area(100) != 60).any()  # 20 m: "20.0 m | TTC -"
    assert (label_area(600) == 60).all()  # 80 m and outside the zone: a dot only
    assert tuple(out[300, 600]) == render.GREEN


def _dets(boxes, scores, ids, names) -> Detections:
    return Detections(np.array(boxes, np.float32), np.array(scores, np.float32), np.array(ids), tuple(names))


def test_each_class_has_its_own_stable_colour() -> None:
    from aeb_app.render.labels import PALETTE, class_color

    road_users = [1, 2, 3, 4, 6, 8]  # person, bicycle, car, motorcycle, bus, truck
    assert len({class_color(c) for c in road_users}) == len(road_users)
    assert class_color(3) == class_color(3) == PALETTE[3 % len(PALETTE)]
    # The overlay's meanings stay unambiguous: no box is zone-yellow or ground-point red/green.
    assert not {render.RED, render.GREEN, render.YELLOW} & set(PALETTE)
    dets = _dets([[100, 100, 200, 200], [400, 100, 500, 200]], [0.9, 0.8], [1, 3], ["person", "car"])
    out = render.draw_detections(_frame(), dets)
    assert tuple(out[150, 100]) == class_color(1) and tuple(out[150, 400]) == class_color(3)


def test_cross_class_duplicate_is_drawn_once_with_the_higher_score() -> None:
    from aeb_app.render.labels import merge_cross_class_duplicates

    cup_bowl = _dets([[100, 100, 200, 200], [102, 101, 201, 199], [300, 300, 400, 400], [305, 300, 400, 400]],
                     [0.56, 0.69, 0.7, 0.6], [51, 47, 3, 3], ["bowl", "cup", "car", "car"])
    kept = merge_cross_class_duplicates(cup_bowl)
    assert kept.names == ("car", "cup", "car")  # bowl 0.56 merged into cup 0.69; same-class pairs untouched
    apart = _dets([[100, 100, 200, 200], [150, 100, 250, 200]], [0.6, 0.5], [51, 47], ["bowl", "cup"])
    assert len(merge_cross_class_duplicates(apart)) == 2  # IoU 0.33: two objects
    out = render.draw_detections(_frame(), cup_bowl[np.array([0, 1])])
    from aeb_app.render.labels import class_color

    assert tuple(out[150, 102]) == class_color(47) and (out == class_color(51)).all(axis=2).sum() == 0


def test_labels_do_not_cover_each_other() -> None:
    from aeb_app.render.labels import place_labels

    boxes = [[100 + 4 * k, 100 + (k % 3), 220, 300] for k in range(8)]  # eight boxes, nearly the same corner
    corners = place_labels(boxes, [(90, 16)] * 8, (540, 960))
    rects = [(x, y, x + 90, y + 16) for x, y in corners]
    for i in range(8):
        for j in range(i):
            a, b = rects[i], rects[j]
            assert not (a[0] < b[2] and b[0] < a[2] and a[1] < b[3] and b[1] < a[3]), (a, b)
    assert corners[0] == (100, 84)  # the first label sits right above its box
    top = place_labels([[10, 2, 60, 50]], [(40, 16)], (540, 960))
    assert top == [(10, 2)]  # no room above: inside the box's top edge


def _pairwise_apart(rects) -> None:
    for i in range(len(rects)):
        for j in range(i):
            a, b = rects[i], rects[j]
            assert not (a[0] < b[2] and b[0] < a[2] and a[1] < b[3] and b[1] < a[3]), (a, b)


def test_range_labels_of_adjacent_cars_avoid_each_other_and_the_box_labels() -> None:
    # Two cars side by side in the next lanes: ground points 6 px apart in height, 30 px across, and
    # their boxes' class labels right where the range labels would go.
    img = _frame()
    cars = _dets([[80, 240, 180, 300], [115, 236, 215, 306]], [0.9, 0.8], [3, 3], ["car", "car"])
    labels: list = []
    render.draw_detections(img, cars, occupied=labels)
    assert len(labels) == 2
    render.draw_object_labels(img, [[130, 300], [160, 306]], [12.3, 12.9], [math.inf, 4.2], occupied=labels)
    assert len(labels) == 4
    _pairwise_apart(labels)
    first = labels[2]
    assert first[0] == 130 + render.overlay.POINT_RADIUS_PX + 2  # the nearer label keeps its place beside its dot
    assert (img[first[1]:first[3], first[0]:first[2]] == 0).mean() > 0.5  # drawn: black background, white text
    assert (img[first[1]:first[3], first[0]:first[2]] == 255).any()


def test_range_labels_skip_unknown_distances_and_keep_inside_the_image() -> None:
    labels: list = []
    img = render.draw_object_labels(_frame(), [[950, 535], [np.nan, 10], [20, 30]], [5.0, 7.0, math.nan],
                                    [1.0, 1.0, 1.0], occupied=labels)
    assert len(labels) == 1  # NaN point, NaN distance: no label
    x1, y1, x2, y2 = labels[0]
    assert 0 <= x1 and x2 <= img.shape[1] and 0 <= y1 and y2 <= img.shape[0]


def test_an_object_boxed_twice_gets_one_range_label() -> None:
    # A car detected as "car" and "truck" (IoU 0.9): two tracks, one object; the nearer one is labelled.
    obj = lambda x, box, d: SimpleNamespace(ground_px=(x, 300), in_zone=False, distance_m=d,  # noqa: E731
                                            ttc_s=math.inf, xyxy_px=box)
    twice = (obj(150, (100, 250, 200, 300), 22.7), obj(151, (101, 251, 201, 300), 22.4),
             obj(400, (350, 250, 450, 300), 30.0))
    state = SimpleNamespace(zone_polygon_px=np.zeros((0, 2)), objects=twice)
    out = render.render_frame(_frame(), None, state, level=WarningLevel.NONE)
    from aeb_app.render.labels import drop_repeated_boxes

    assert drop_repeated_boxes([o.xyxy_px for o in twice]) == [0, 2]
    assert drop_repeated_boxes([(np.nan,) * 4, (np.nan,) * 4]) == [0, 1]  # unknown boxes repeat nothing
    dark_rows = [y for y in range(250, 340) if (out[y, 160:230] == 0).all(axis=1).mean() > 0.3]
    label_height = len(dark_rows)
    assert 10 <= label_height <= 22  # one label's band of black background beside the dot, not two stacked


def _whole_image_zone(img: np.ndarray, poly: np.ndarray, alpha: float, line_type: int) -> np.ndarray:
    """The zone as drawn before the blend was cut to the polygon's bounding rectangle: a whole-image layer."""
    import cv2

    out, layer = img.copy(), img.copy()
    cv2.fillPoly(layer, [poly], render.YELLOW)
    cv2.addWeighted(layer, alpha, out, 1 - alpha, 0, dst=out)
    cv2.polylines(out, [poly], True, render.YELLOW, 2, line_type)
    return out


def test_zone_blended_in_its_rectangle_matches_a_whole_image_blend() -> None:
    import cv2

    rng = np.random.default_rng(7)
    for k in range(40):
        img = rng.integers(0, 256, (120, 160, 3), dtype=np.uint8)  # every value: p*a + p*(1-a) must round to p
        poly = rng.uniform(-40, 200, (4, 2)).round().astype(np.int32)  # partly off the image too
        alpha, line_type = (0.3, cv2.LINE_AA) if k % 2 else (0.35, cv2.LINE_8)
        drawn = render.draw_zone(img.copy(), poly.astype(np.float64), alpha=alpha, line_type=line_type)
        assert np.array_equal(drawn, _whole_image_zone(img, poly, alpha, line_type)), k


def test_bev_zone_and_scale_match_the_direct_drawing() -> None:
    import cv2

    from aeb_app.render import bev

    layout = render.BevLayout()
    rng = np.random.default_rng(3)
    zone_m = np.array([[-1.85, 0.0], [1.85, 0.0], [1.85, 30.0], [-1.85, 30.0]])
    background = rng.integers(0, 256, (layout.height_px, layout.width_px, 3), dtype=np.uint8)
    img = background.copy()
    bev._draw_zone(img, layout, zone_m)
    poly = np.round(layout.to_panel(zone_m)).astype(np.int32)
    assert np.array_equal(img, _whole_image_zone(background, poly, 0.35, cv2.LINE_8))
    ticks = bev._scale_ticks(layout, 10.0)
    assert len(ticks) == int(layout.max_ahead_m // 10) + 1 and ticks[0] == (layout.height_px - layout.bottom_margin_px,
                                                                            "0 m")
    assert [y for y, _ in ticks] == [int(layout.to_panel([[0.0, 10.0 * i]])[0, 1]) for i in range(len(ticks))]
