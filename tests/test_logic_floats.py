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
    if n > 3:  # wide boxes across the centre line, cut (or nearly) at one side: the lateral's cut-side branch
        boxes[2, [0, 2]] = rng.choice([4.0, 6.0, 7.5, 9.0]), w / 2 + rng.uniform(10, 200)
        boxes[3, [0, 2]] = w / 2 - rng.uniform(10, 200), w - rng.choice([4.0, 6.0, 7.5, 9.0])
    if n > 1 and rng.random() < 0.5:  # a box right behind another (its bottom hidden) and a near-duplicate
        boxes[1] = boxes[0] + [10.0, -40.0, -10.0, -30.0]
        boxes[-1] = boxes[0] + rng.normal(0, 1, 4)
    if n and rng.random() < 0.1:
        boxes[rng.integers(n), rng.integers(4)] = rng.choice([np.nan, np.inf, -np.inf])
    ids = rng.choice([1, 2, 3, 3, 3, 4, 6, 8, 9], n).tolist()
    widths = [(float(rng.uniform(0.4, 3.0)), float(rng.uniform(0.01, 0.3))) if rng.random() < 0.3 else (math.nan,) * 2
              for _ in range(n)]
    return boxes, ids, widths, (rng.random(n) < 0.8).tolist()


_CONFIGS = [CueConfig(), CueConfig(border_margin_px=8.0, edge_sigma_frac=0.05, horizon_band_px=10.0,
                                    max_ground_rel_sigma=0.15, edge_sigma_px=3)]  # an int setting, as YAML gives it


@pytest.mark.parametrize("config", _CONFIGS, ids=["default", "other"])
@pytest.mark.parametrize("road", _roads(), ids=["shipped", "synthetic"])
def test_cue_rows_equal_measure_cues_bit_for_bit(road: RoadGeometry, config: CueConfig) -> None:
    """Frames of 0 to 45 boxes, with the default settings and others: every cue, its validity, the reason without a
    ground cue, the lateral offset and the fused range and sigma of the float path equal those of the array path, bit
    for bit (beyond ``FLOAT_CUES_MAX`` boxes :func:`frame_cues` takes the array path)."""
    rng = np.random.default_rng(23)
    seen: set[str] = set()
    for k in range(600):
        n = [0, 1, 2, FLOAT_CUES_MAX][k] if k < 4 else int(rng.integers(1, 46))
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


def _windows(rng: np.random.Generator, k: int) -> list[tuple[list[float], list[float]]]:
    """k windows of (times, log widths) as tracks give them at 10-30 fps: approaching, receding and steady boxes with
    jitter, some with an outlier sample, a flat one, rounded (tied) values; and a few the arrays must leave alone:
    times that do not increase, NaN or inf, values whose squared residuals overflow, one or two samples."""
    rows = []
    for _ in range(k):
        n = int(rng.integers(1, 18))
        t = (rng.choice([0.0, 1.0, 100.0, 1000.0]) + rng.uniform(0, 1) + np.arange(n) / rng.choice([10.0, 25.0, 30.0]))
        y = np.log(40 + rng.uniform(-1, 3) * np.arange(n)) + rng.normal(0, 10 ** rng.uniform(-4, -1), n)
        kind = rng.integers(0, 9)
        if kind == 1 and n:
            y[rng.integers(0, n)] += rng.choice([-1, 1]) * 0.5  # one jumped box edge
        elif kind == 2:
            y = np.full(n, 3.0)
        elif kind == 3 and n > 1:
            t[1] = t[0]
        elif kind == 4 and n:
            y[rng.integers(0, n)] = rng.choice([np.nan, np.inf, -np.inf])
        elif kind == 5:
            y = np.round(y, 2)
        elif kind == 6:
            y = y * 1e160
        rows.append((t.tolist(), y.tolist()))
    return rows


def _result(fn) -> list[str] | str:
    """The bits of a fit, or the exception it raised (a Python float's ``** 2`` raises on overflow)."""
    try:
        return _bits(fn())
    except (OverflowError, ValueError) as exc:
        return repr(exc)


def test_first_passes_equal_robust_slope_bit_for_bit() -> None:
    """Frames of 1 to 24 windows: each first pass's Theil-Sen line is ``_theil_sen``'s, and ``robust_slope`` given it
    returns the same bits (or raises the same) as without it; windows the arrays cannot reproduce get none."""
    from aeb_app.safety.expansion import _theil_sen, robust_slope
    from aeb_app.safety.slopes import first_passes

    kw = dict(outlier_sigmas=3.0, min_sigma=0.005, min_samples=4)
    rng = np.random.default_rng(24)
    verdicts = {"whole": 0, "refit": 0, "none": 0}
    for _ in range(800):
        rows = _windows(rng, int(rng.integers(1, 25)))
        for (t, y), first in zip(rows, first_passes(rows, **kw)):
            if first is None:
                verdicts["none"] += 1
                continue
            verdicts["whole" if first.whole else "refit"] += 1
            assert _bits((first.slope, first.intercept)) == _bits(_theil_sen(t, y)), (t, y)
            assert _result(lambda: robust_slope(t, y, first=first, **kw)) == _result(lambda: robust_slope(t, y, **kw))
    assert min(verdicts.values()) > 500, verdicts  # every path was compared


def test_estimate_all_equals_estimate_one_by_one() -> None:
    """A frame's trackers (with too few samples, too short a span, jumped widths) estimated at once equal their own
    ``estimate`` (the same bits), with fewer and more than ``BATCH_MIN_ROWS`` trackers and with mixed settings."""
    import copy

    from aeb_app.safety import ExpansionConfig, ExpansionTracker
    from aeb_app.safety.slopes import BATCH_MIN_ROWS, estimate_all

    rng = np.random.default_rng(25)
    configs = [ExpansionConfig(), ExpansionConfig(window_s=1.0, min_samples=6)]
    for k in (0, 1, BATCH_MIN_ROWS - 1, BATCH_MIN_ROWS, 20):
        for mixed in (False, True):
            trackers = [ExpansionTracker(configs[mixed and i % 2]) for i in range(k)]
            now = 0.0
            for frame in range(30):
                now = frame / 25
                for i, tracker in enumerate(trackers):
                    if rng.random() < 0.8 and frame > i:  # tracks start one after another and miss some widths
                        width = (40 + 2 * frame + (i - 5) * frame / 4) * math.exp(rng.normal(0, 0.01))
                        tracker.add(now, width * (1.3 if rng.random() < 0.05 else 1.0))
                want = [t.estimate(now) for t in copy.deepcopy(trackers)]
                got = estimate_all(trackers, now)
                assert [(e is None) for e in got] == [(e is None) for e in want]
                assert _bits([v for e in got if e for v in (e.rate_per_s, e.rate_sigma_per_s, e.ttc_s, e.lag_s)]) == \
                    _bits([v for e in want if e for v in (e.rate_per_s, e.rate_sigma_per_s, e.ttc_s, e.lag_s)])
