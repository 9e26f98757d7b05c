"""The AEB logic's per-box float paths (issue #12, the decision path under 5 ms on the GPU host) against the array
forms they stand in for, bit for bit: ``hypot`` vs ``np.hypot``, the road maps of one point vs their array forms, and
a frame's cues box by box (:func:`~aeb_app.safety.cue_rows.cue_rows`) vs :func:`~aeb_app.safety.cues.measure_cues`,
on random frames with boxes on the borders, above the horizon, inverted, NaN and inf, of unknown classes, hidden,
with learned widths; frames of 0, 1, 2 and many boxes."""

from __future__ import annotations

import math

import numpy as np
import pytest

from aeb_app.geometry.calibration import load_calibration, shipped_calibration
from aeb_app.safety import CueConfig, RoadGeometry
from aeb_app.safety.cue_rows import FLOAT_CUES_MAX, CueRow, cue_rows, frame_cues
from aeb_app.safety.cues import measure_cues, occlusion_pairs
from aeb_app.safety.floats import hypot
from aeb_app.scenarios import PinholeCamera, synthetic_calibration

EDGE_FLOATS = [0.0, -0.0, 1.0, -2.5, 1e-310, -1e-310, 1e308, -1e308, 1.5e308, math.inf, -math.inf, math.nan, -math.nan]


def _bits(values) -> list[str]:
    """Each value's exact bits (``float.hex``; NaN with its sign)."""
    return [float(v).hex() if not math.isnan(v) else ("-" if math.copysign(1.0, v) < 0 else "+") + "nan"
            for v in np.asarray(values, np.float64).reshape(-1).tolist()]


def _roads() -> list[RoadGeometry]:
    return [RoadGeometry.from_calibration(load_calibration(shipped_calibration())),
            RoadGeometry.from_calibration(synthetic_calibration(PinholeCamera()))]


def test_hypot_equals_numpy_bit_for_bit() -> None:
    """Edge values (signed zeros, subnormals, overflow, infinities, NaNs) pairwise, and random values over the whole
    exponent range and over the cues' range: the same bits as ``np.hypot`` (``math.hypot`` is not)."""
    rng = np.random.default_rng(21)
    a = np.concatenate([np.repeat(EDGE_FLOATS, len(EDGE_FLOATS)), rng.normal(size=200_000) * 10.0 ** rng.integers(
        -300, 300, 200_000), rng.uniform(0, 50, 200_000)])
    b = np.concatenate([np.tile(EDGE_FLOATS, len(EDGE_FLOATS)), rng.normal(size=200_000) * 10.0 ** rng.integers(
        -300, 300, 200_000), rng.uniform(0, 5, 200_000)])
    with np.errstate(all="ignore"):
        want = np.hypot(a, b)
    got = [hypot(x, y) for x, y in zip(a.tolist(), b.tolist())]
    assert _bits(got) == _bits(want)
    assert sum(math.hypot(x, y) != w for x, y, w in zip(a.tolist(), b.tolist(), want.tolist())) > 0  # why not math's


@pytest.mark.parametrize("road", _roads(), ids=["shipped", "synthetic"])
def test_road_maps_of_one_point_equal_the_array_forms(road: RoadGeometry) -> None:
    """``ground_ahead_at``, ``range_per_px_at`` and ``centre_line_one`` against ``ground_ahead_m``, ``range_per_px`` and
    ``centre_line_at``: rows above, at and below the horizon, ranges behind the camera, NaN and inf."""
    w, h = road.calibration.image_size_wh
    rng = np.random.default_rng(22)
    rows = np.concatenate([rng.uniform(-50, h + 50, 2000), road.horizon_row_px + np.array([-1.0, 0.0, 1.0, 1.5]),
                           [np.nan, np.inf, -np.inf, 0.0, -0.0, float(h)]])
    cols = np.concatenate([rng.uniform(-100, w + 100, 2000), [w / 2.0] * 4, [np.nan, 3.0, w / 2.0, 0.0, -0.0, w]])
    assert _bits([road.ground_ahead_at(x, y) for x, y in zip(cols.tolist(), rows.tolist())]) == _bits(
        road.ground_ahead_m(cols, rows))
    assert _bits([road.range_per_px_at(y) for y in rows.tolist()]) == _bits(road.range_per_px(rows))
    ranges = np.concatenate([rng.uniform(-road.setback_m - 3, 150, 2000), [-road.setback_m, np.nan, np.inf, -np.inf]])
    centres, scales = road.centre_line_at(ranges.tolist())
    one = [road.centre_line_one(a) for a in ranges.tolist()]
    assert _bits([c for c, _ in one]) == _bits(centres) and _bits([s for _, s in one]) == _bits(scales)


def _frame(rng: np.random.Generator, road: RoadGeometry, n: int) -> tuple[np.ndarray, list[int], list, list[bool]]:
    """n boxes of a frame: cars, trucks, people, bicycles and a class without a prior; some on the image borders,
    above the horizon, tiny, inverted, wider than their class, overlapping (hidden) or NaN/inf; learned widths on
    some; some boxes not solid enough to occlude."""
    w, h = road.calibration.image_size_wh
    x1 = rng.uniform(-5, w - 20, n)
    y2 = rng.uniform(road.horizon_row_px - 30, h + 5, n)
    boxes = np.column_stack([x1, y2 - rng.uniform(2, 250, n), x1 + rng.uniform(-3, 300, n), y2])
    pick = rng.random(n)
    boxes[pick < 0.08, 0] = rng.choice([0.0, 5.0, 6.0])  # on the left border margin
    boxes[(pick >= 0.08) & (pick < 0.16), 2] = w - rng.choice([0.0, 5.0, 6.0])
    boxes[(pick >= 0.16) & (pick < 0.22), 3] = h - rng.choice([0.0, 5.0, 6.0])
    if n > 1 and rng.random() < 0.5:  # a box right behind another (its bottom hidden) and a near-duplicate
        boxes[1] = boxes[0] + [10.0, -40.0, -10.0, -30.0]
        boxes[-1] = boxes[0] + rng.normal(0, 1, 4)
    if n and rng.random() < 0.1:
        boxes[rng.integers(n), rng.integers(4)] = rng.choice([np.nan, np.inf, -np.inf])
    ids = rng.choice([1, 2, 3, 3, 3, 4, 6, 8, 9], n).tolist()
    widths = [(float(rng.uniform(0.4, 3.0)), float(rng.uniform(0.01, 0.3))) if rng.random() < 0.3 else (math.nan,) * 2
              for _ in range(n)]
    return boxes, ids, widths, (rng.random(n) < 0.8).tolist()


@pytest.mark.parametrize("road", _roads(), ids=["shipped", "synthetic"])
def test_cue_rows_equal_measure_cues_bit_for_bit(road: RoadGeometry) -> None:
    """Frames of 0 to 30 boxes: every cue, its validity, the reason without a ground cue, the lateral offset and the
    fused range and sigma of the float path equal those of the array path, bit for bit (beyond ``FLOAT_CUES_MAX``
    boxes :func:`frame_cues` takes the array path)."""
    config = CueConfig()
    rng = np.random.default_rng(23)
    seen: set[str] = set()
    for k in range(600):
        n = [0, 1, 2, FLOAT_CUES_MAX][k] if k < 4 else int(rng.integers(1, 31))
        boxes, ids, widths, solid = _frame(rng, road, n)
        with np.errstate(all="ignore"):
            pairs = occlusion_pairs(boxes, config)
            known = np.array(widths, np.float64).reshape(-1, 2)
            cues = measure_cues(road, boxes, np.array(ids, np.int64), config, width_m=known[:, 0],
                                width_sigma_m=known[:, 1], can_occlude=solid, pairs=pairs)
            got = frame_cues(road, boxes, ids, config, widths=widths, can_occlude=solid, pairs=pairs)
        fused, sigma = cues.fused()
        want_rows = CueRow.rows(cues)
        assert [r.why_no_ground for r in got.rows] == [r.why_no_ground for r in want_rows], k
        assert [(r.ground_valid, r.width_valid) for r in got.rows] == [(r.ground_valid, r.width_valid)
                                                                       for r in want_rows], k
        floats = [[v for v in row if isinstance(v, float)] for row in (got.rows, want_rows)]
        assert _bits(floats[0]) == _bits(floats[1]), k
        assert _bits(got.fused_m) == _bits(fused) and _bits(got.fused_sigma_m) == _bits(sigma), k
        seen.update(r.why_no_ground for r in got.rows)
        seen.update("width" for r in got.rows if r.width_valid)
    assert {"border", "occlusion", "horizon", "", "width"} <= seen  # every branch was compared


def test_cue_rows_of_one_box_need_no_arrays() -> None:
    """The float path straight from Python lists: one car ahead on the shipped calibration has both cues, its fused
    range lies between them, nearer the surer one, and it has the same values as the array path."""
    road = _roads()[0]
    config = CueConfig()
    box = [430.0, 330.0, 530.0, 410.0]
    cues = cue_rows(road, [box], [3], config, widths=[(math.nan, math.nan)], occluded=[False])
    row = cues.rows[0]
    assert row.ground_valid and row.width_valid and row.why_no_ground == ""
    low, high = sorted((row.ground_range_m, row.width_range_m))
    assert low < cues.fused_m[0] < high and cues.fused_sigma_m[0] < min(row.ground_sigma_m, row.width_sigma_m)
    surer = row.ground_range_m if row.ground_sigma_m < row.width_sigma_m else row.width_range_m
    assert abs(cues.fused_m[0] - surer) < (high - low) / 2
    want = measure_cues(road, np.array([box]), np.array([3]), config)
    assert _bits(cues.fused_m) == _bits(want.fused()[0]) and _bits([row.lateral_m]) == _bits(want.lateral_m)
