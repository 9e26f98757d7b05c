"""The AEB logic's cheaper arithmetic (issue #12, logic under 1 ms per frame) against the routines it replaced:
closed-form line fits vs ``np.polyfit``, the robust slope vs its polyfit form, the all-pairs occlusion test vs
the per-pair loop, the range filter's scalar update vs the matrix form, the road maps vs the homographies,
the scalar zone test vs :func:`in_zone`, and the per-frame (all objects at once) laterals and BEV points vs
one object at a time, on the sample clip's real detections."""

from __future__ import annotations

import copy
import math
from pathlib import Path

import numpy as np
import pytest

from aeb_app.geometry.calibration import load_calibration, shipped_calibration
from aeb_app.safety import AebLogic, CueConfig, RangeFilter, RangeFilterConfig, RoadGeometry, in_zone
from aeb_app.safety.cues import fuse, measure_cues, object_lateral_m, occluded_bottoms
from aeb_app.safety.expansion import _median, _t_over_z, _theil_sen, fit_line, robust_slope
from aeb_app.safety.floats import columns, divide, maximum, minimum, nan_to_num
from aeb_app.safety.tracker import box_iou, iou_matrix
from aeb_app.safety.zone import point_in_zone
from aeb_app.scenarios import PinholeCamera, synthetic_calibration

RNG_SEEDS = range(4)


def _close(a: float, b: float, rel: float = 1e-9, abs_: float = 1e-12) -> bool:
    return (math.isnan(a) and math.isnan(b)) or a == b or math.isclose(a, b, rel_tol=rel, abs_tol=abs_)


@pytest.mark.parametrize("seed", RNG_SEEDS)
def test_fit_line_equals_polyfit_with_and_without_weights(seed: int) -> None:
    rng = np.random.default_rng(seed)
    for n in (2, 3, 6, 15, 25, 60):
        x = rng.uniform(0, 1, n) + rng.choice([0.0, 100.0, 1000.0])  # frame times far from zero too
        y = rng.normal(0, 1, n) * 10.0 ** rng.uniform(-3, 2) + rng.normal() * x
        w = rng.uniform(0.1, 10.0, n)
        for weights, ref_w in ((None, None), (w, np.sqrt(w))):  # polyfit's w multiplies the residuals
            fit = fit_line(x, y, weights)
            slope, intercept = np.polyfit(x, y, 1, w=ref_w)
            scale = np.abs(y).max() + abs(slope) * np.abs(x).max()
            assert fit.slope == pytest.approx(slope, rel=1e-7, abs=1e-9 * scale / np.ptp(x))
            assert fit.intercept == pytest.approx(intercept, rel=1e-7, abs=1e-9 * scale)
            assert fit.x_mean == pytest.approx(np.average(x, weights=weights), rel=1e-12)
            assert fit.spread == pytest.approx(np.sum((weights if weights is not None else 1.0)
                                                      * (x - np.average(x, weights=weights)) ** 2), rel=1e-9)


def test_fit_line_degenerate_inputs() -> None:
    flat = fit_line([2.0, 2.0, 2.0], [1.0, 2.0, 6.0])
    assert (flat.slope, flat.intercept, flat.x_mean, flat.spread) == (0.0, 3.0, 2.0, 0.0)
    one = fit_line([5.0], [7.0], [2.0])
    assert (one.slope, one.intercept) == (0.0, 7.0)
    weighted_flat = fit_line([1.0, 1.0], [0.0, 3.0], [2.0, 1.0])
    assert weighted_flat.slope == 0.0 and weighted_flat.intercept == pytest.approx(1.0)
    exact = fit_line([0.0, 1.0, 2.0], [1.0, 3.0, 5.0])
    assert (exact.slope, exact.intercept) == (2.0, 1.0)
    assert fit_line([0.0, 1.0, 2.0], [1.0, 3.0, 5.0], [1.0, 0.0, 1.0]).slope == 2.0  # a zero weight drops a point
    for bad in (([], []), ([1.0, 2.0], [1.0]), ([1.0, 2.0], [1.0, 2.0], [1.0]), ([1.0, 2.0], [1.0, 2.0], [0.0, 0.0]),
                ([1.0, 2.0], [1.0, 2.0], [1.0, -1.0])):
        with pytest.raises(ValueError, match="fit_line"):
            fit_line(*bad)


def _robust_slope_polyfit(t, y, *, outlier_sigmas, min_sigma, min_samples):
    """The robust slope as it was written with ``np.polyfit`` (the reference of the closed-form one)."""
    t, y = np.asarray(t, np.float64), np.asarray(y, np.float64)
    keep = np.ones(len(t), bool)
    slope, intercept = _theil_sen(t.tolist(), y.tolist())
    for _ in range(2):
        res = y - (slope * t + intercept)
        sigma = max(1.4826 * float(np.median(np.abs(res[keep]))), min_sigma)
        new_keep = np.abs(res) <= outlier_sigmas * sigma
        if new_keep.sum() < min_samples or (new_keep == keep).all():
            break
        keep = new_keep
        slope, intercept = np.polyfit(t[keep], y[keep], 1)
    tk = t[keep]
    slope, intercept = np.polyfit(tk, y[keep], 1)
    dof = max(int(keep.sum()) - 2, 1)
    resid = y[keep] - (slope * tk + intercept)
    sd = max(math.sqrt(float(resid @ resid) / dof), min_sigma)
    spread = float(((tk - tk.mean()) ** 2).sum())
    return float(slope), (_t_over_z(dof) * sd / math.sqrt(spread) if spread > 0 else math.inf), float(tk.mean())


@pytest.mark.parametrize("seed", RNG_SEEDS)
def test_robust_slope_equals_its_polyfit_form_with_outliers(seed: int) -> None:
    """Widths and ranges as the fits see them (10-25 fps windows, jumped samples): same slope, sigma and mean
    time to 1e-9, so the same samples were dropped."""
    rng = np.random.default_rng(seed)
    for _ in range(300):
        n = int(rng.integers(4, 30))
        t = 50.0 + np.sort(rng.choice(np.arange(200), n, replace=False)) / rng.choice([10.0, 25.0])
        y = rng.uniform(-5, 30) + rng.normal(0, 2) * t + rng.normal(0, 10.0 ** rng.uniform(-3, 0), n)
        jumped = rng.random(n) < 0.15
        y[jumped] += rng.choice([-1, 1], jumped.sum()) * rng.uniform(0.5, 7.0, jumped.sum())
        kw = dict(outlier_sigmas=float(rng.choice([2.0, 3.0])), min_sigma=float(rng.choice([1e-6, 0.005, 0.01])),
                  min_samples=4)
        got, want = robust_slope(t, y, **kw), _robust_slope_polyfit(t, y, **kw)
        assert all(_close(g, w, abs_=1e-12 * (1 + abs(w))) for g, w in zip(got, want)), (got, want)
        assert robust_slope(t.tolist(), y.tolist(), **kw) == got  # lists and arrays alike


def _robust_slope_keep_list(t, y, *, outlier_sigmas, min_sigma, min_samples):
    """The closed-form robust slope as it was written before its first pass skipped the selection (a keep list of
    all True, compared as a list): the reference of the bit-for-bit test below."""
    from aeb_app.safety.expansion import _fit

    ts, ys = list(t), list(y)
    slope, intercept = _theil_sen(ts, ys)
    keep = [True] * len(ts)
    kt, ky, fit = ts, ys, None
    for _ in range(2):
        res = [abs(b - (slope * a + intercept)) for a, b in zip(ts, ys)]
        sigma = max(1.4826 * _median([r for r, k in zip(res, keep) if k]), min_sigma)
        new_keep = [r <= outlier_sigmas * sigma for r in res]
        if sum(new_keep) < min_samples or new_keep == keep:
            break
        keep = new_keep
        kt, ky = [a for a, k in zip(ts, keep) if k], [b for b, k in zip(ys, keep) if k]
        fit = _fit(kt, ky)
        slope, intercept = fit[0], fit[1]
    slope, intercept, t_mean, spread = fit or _fit(kt, ky)
    dof = max(len(kt) - 2, 1)
    sd = max(math.sqrt(sum([(b - (slope * a + intercept)) ** 2 for a, b in zip(kt, ky)]) / dof), min_sigma)
    return slope, (_t_over_z(dof) * sd / math.sqrt(spread) if spread > 0 else math.inf), t_mean


@pytest.mark.parametrize("seed", RNG_SEEDS)
def test_robust_slope_equals_its_keep_list_form_bit_for_bit(seed: int) -> None:
    """Series with and without jumped samples, constant ones, NaN and too few samples to refit: the same three
    floats, bit for bit (or both NaN), as the form with an explicit all-True keep list."""
    rng = np.random.default_rng(100 + seed)
    for k in range(400):
        n = int(rng.integers(2, 30))
        t = 50.0 + np.sort(rng.choice(np.arange(200), n, replace=False)) / rng.choice([10.0, 25.0])
        y = rng.normal(0, 2) * t + rng.normal(0, 10.0 ** rng.uniform(-4, 0), n) * (k % 9 != 0)  # 1 in 9: a line
        jumped = rng.random(n) < rng.choice([0.0, 0.1, 0.3])
        y[jumped] += rng.uniform(0.5, 7.0, jumped.sum())
        if k % 31 == 0:
            y[rng.integers(n)] = np.nan
        kw = dict(outlier_sigmas=float(rng.choice([2.0, 3.0])), min_sigma=float(rng.choice([1e-6, 0.005])),
                  min_samples=int(rng.choice([1, 4, n])))
        got, want = robust_slope(t, y, **kw), _robust_slope_keep_list(t.tolist(), y.tolist(), **kw)
        assert [float(v).hex() for v in got] == [float(v).hex() for v in want], (k, got, want)


def test_median_of_lists_and_arrays_equals_numpy() -> None:
    rng = np.random.default_rng(7)
    for n in range(1, 40):
        values = rng.normal(size=n) * 10.0 ** rng.uniform(-3, 3)
        assert _median(values.tolist()) == _median(values) == float(np.median(values))
    assert math.isnan(_median([1.0, math.nan, 2.0])) and math.isnan(_median([]))


def _theil_sen_reference(t: list[float], y: list[float]) -> tuple[float, float]:
    """Theil-Sen as written first: ``np.median`` of the slopes of every pair with a later time, then of the intercepts."""
    slopes = [(y[j] - y[i]) / (t[j] - t[i]) for i in range(len(t)) for j in range(i + 1, len(t)) if t[j] - t[i] > 0]
    slope = float(np.median(slopes)) if slopes else 0.0
    return slope, float(np.median([b - slope * a for a, b in zip(t, y)]))


def test_theil_sen_equals_the_median_of_pairwise_slopes_bit_for_bit() -> None:
    """Increasing times (the pairs need no dt > 0 filter), repeated and unordered times, a NaN: the same bits."""
    rng = np.random.default_rng(11)
    for k in range(1500):
        n = int(rng.integers(2, 30))
        t = np.sort(rng.choice(np.arange(300), n, replace=k % 4 == 1)) / rng.choice([10.0, 25.0])  # 1: repeated times
        if k % 4 == 2:
            t = rng.permutation(t)  # unordered
        y = rng.normal(0, 2) * t + rng.normal(0, 10.0 ** rng.uniform(-3, 0), n)
        if k % 50 == 3:
            (t if k % 100 == 3 else y)[int(rng.integers(n))] = math.nan
        got, want = _theil_sen(t.tolist(), y.tolist()), _theil_sen_reference(t.tolist(), y.tolist())
        assert np.array_equal(got, want, equal_nan=True), (k, got, want)


def _box_iou_reference(a, b):
    """Pairwise IoU as first written (``np.clip`` and ``prod``)."""
    inter = np.clip(np.minimum(a[..., 2:], b[..., 2:]) - np.maximum(a[..., :2], b[..., :2]), 0, None).prod(axis=-1)
    union = (a[..., 2:] - a[..., :2]).prod(axis=-1) + (b[..., 2:] - b[..., :2]).prod(axis=-1) - inter
    return np.where(union > 0, inter / np.maximum(union, 1e-12), 0.0)


def test_box_iou_equals_its_clip_and_prod_form_bit_for_bit() -> None:
    """Pairs and all-against-all, with equal, touching, inverted, -0.0, NaN and inf boxes."""
    rng = np.random.default_rng(5)
    for k in range(2000):
        n = int(rng.integers(0, 20))
        a, b = rng.uniform(-50, 1000, (2, n, 4))
        a[:, 2:], b[:, 2:] = a[:, :2] + rng.uniform(-5, 200, (n, 2)), b[:, :2] + rng.uniform(-5, 200, (n, 2))
        if n and k % 3 == 0:
            a[rng.integers(n)] = b[rng.integers(n)]
        if n and k % 5 == 0:
            a[:, 2] = b[:, 0] = np.round(b[:, 0])  # touching: zero overlap
        if n and k % 7 == 0:
            a[rng.integers(n), rng.integers(4)] = rng.choice([np.nan, -0.0, np.inf])
        with np.errstate(all="ignore"):
            for x, y in ((a, b), (a[:, None], b[None])):
                assert box_iou(x, y).tobytes() == _box_iou_reference(x, y).tobytes(), k
    signed = np.array([[0.0, 0.0, -0.0, 5.0]]), np.array([[0.0, 0.0, 10.0, 10.0]])  # overlap width -0.0
    assert box_iou(*signed).tobytes() == _box_iou_reference(*signed).tobytes()


def _occluded_bottom_loop(boxes, config, can_occlude):
    """The occlusion test as it was written, one pair at a time."""
    out = np.zeros(len(boxes), bool)
    m = config.occlusion_margin_px
    duplicate = iou_matrix(boxes, boxes) >= config.duplicate_iou
    for i, (x1, _, x2, y2) in enumerate(boxes):
        width = max(x2 - x1, 1e-6)
        for j, (bx1, by1, bx2, by2) in enumerate(boxes):
            if i == j or not can_occlude[j] or duplicate[i, j]:
                continue
            if by2 > y2 + m and by1 - m <= y2 and min(x2, bx2) - max(x1, bx1) >= config.occlusion_min_overlap * width:
                out[i] = True
                break
    return out


@pytest.mark.parametrize("seed", RNG_SEEDS)
def test_all_pairs_occlusion_equals_the_pair_loop(seed: int) -> None:
    rng = np.random.default_rng(seed)
    occluded = 0
    for _ in range(500):
        n = int(rng.integers(0, 15))
        corner = rng.uniform(0, 300, (n, 2))
        boxes = np.round(np.hstack([corner, corner + rng.uniform(1, 80, (n, 2))]))  # whole pixels: ties at margins
        solid = rng.random(n) < 0.8
        config = CueConfig(duplicate_iou=float(rng.choice([0.3, 0.5, 0.99])))
        want = _occluded_bottom_loop(boxes, config, solid)
        assert occluded_bottoms(boxes, config, solid).tolist() == want.tolist()
        occluded += int(want.sum())
    assert occluded > 100  # the cases exercise the rule


def test_range_filter_update_equals_the_matrix_form_bit_for_bit() -> None:
    rng = np.random.default_rng(11)
    for _ in range(100):
        f = RangeFilter(RangeFilterConfig())
        f.update(float(rng.uniform(5, 80)), 0.5)
        for _ in range(40):
            f.predict(float(rng.choice([0.04, 0.1])))
            x, p = f.x.copy(), f.p.copy()
            z, sigma = float(x[0] + rng.normal(0, 1.0)), float(rng.uniform(0.1, 3.0))
            h = np.array([1.0, 0.0, 0.0])
            gain = p @ h / (float(h @ p @ h) + sigma**2)
            if f.update(z, sigma):
                assert f.x.tolist() == (x + gain * (z - x[0])).tolist()
                assert f.p.tolist() == ((np.eye(3) - np.outer(gain, h)) @ p).tolist()


def test_range_filter_predict_equals_a_fresh_transition() -> None:
    f = RangeFilter(RangeFilterConfig())
    f.update(30.0, 0.5)
    for dt in (0.04, 0.1, 0.04, 0.0333):
        x, p = f.x.copy(), f.p.copy()
        tf = np.array([[1.0, dt, 0.5 * dt**2], [0.0, 1.0, dt], [0.0, 0.0, 1.0]])
        q = f.config.jerk_psd * np.array([[dt**5 / 20, dt**4 / 8, dt**3 / 6], [dt**4 / 8, dt**3 / 3, dt**2 / 2],
                                          [dt**3 / 6, dt**2 / 2, dt]])
        f.predict(dt)
        assert f.x.tolist() == (tf @ x).tolist() and f.p.tolist() == (tf @ p @ tf.T + q).tolist()


def _random_filters(rng: np.random.Generator, n: int, config: RangeFilterConfig) -> list[RangeFilter]:
    """Filters as tracks leave them: started or not, updated a few times with noisy ranges."""
    filters = []
    for _ in range(n):
        f = RangeFilter(config)
        for _ in range(int(rng.integers(0, 5))):
            f.predict(float(rng.choice([0.04, 0.1])))
            f.update(float(rng.uniform(5, 80)), float(rng.uniform(0.1, 3.0)))
        filters.append(f)
    return filters


def test_predict_all_equals_predict_one_at_a_time_bit_for_bit() -> None:
    """Stacked predictions (every track of a frame) vs one filter at a time: started and unstarted filters, one
    filter, several intervals, a zero interval, and mixed configurations (the one-at-a-time fallback)."""
    from aeb_app.safety.kinematics import predict_all

    rng = np.random.default_rng(13)
    configs = [RangeFilterConfig(), RangeFilterConfig(jerk_psd=5.0)]
    for k in range(300):
        n = int(rng.integers(1, 25))
        mixed = k % 10 == 0
        filters = _random_filters(rng, n, configs[0]) + (_random_filters(rng, 2, configs[1]) if mixed else [])
        one = copy.deepcopy(filters)
        for dt in (float(rng.choice([0.04, 0.1, 1 / 30])), 0.0, 0.04):
            predict_all(filters, dt)
            for f in one:
                f.predict(dt)
            for a, b in zip(filters, one):
                assert (a.x.tobytes(), a.p.tobytes(), a.since_accept_s) == (b.x.tobytes(), b.p.tobytes(),
                                                                            b.since_accept_s), (k, dt)


@pytest.mark.parametrize("calibration", ["shipped", "synthetic"])
def test_road_maps_equal_the_homographies(calibration: str) -> None:
    cal = (load_calibration(shipped_calibration()) if calibration == "shipped"
           else synthetic_calibration(PinholeCamera()))
    road = RoadGeometry.from_calibration(cal)
    w, h = cal.image_size_wh
    rng = np.random.default_rng(5)
    pts = np.column_stack([rng.uniform(0, w, 2000), rng.uniform(road.horizon_row_px + 3, h, 2000)])
    want = RoadGeometry._project(road.matrix, pts[:, 0], pts[:, 1])
    got = road.ground_metric(pts)
    np.testing.assert_allclose(got[:, 1], want[:, 1], rtol=1e-12)
    np.testing.assert_allclose(got[:, 0], want[:, 0], rtol=1e-12, atol=1e-11)
    assert np.isnan(road.ground_metric([[w / 2, road.horizon_row_px - 1]])).all()
    above = np.column_stack([pts[:50, 0], road.horizon_row_px - pts[:50, 1] % 50])
    both = np.concatenate([pts, above])
    assert np.array_equal(road.ground_ahead_m(both[:, 0], both[:, 1]), road.ground_metric(both)[:, 1], equal_nan=True)
    rows = pts[:, 1]
    cx = w / 2.0
    step = np.abs(RoadGeometry._ahead(road.matrix, cx, rows) - RoadGeometry._ahead(road.matrix, cx, rows + 1.0))
    np.testing.assert_allclose(road.range_per_px(rows), step, rtol=1e-11)
    assert road.range_per_px([road.horizon_row_px]).tolist() == [math.inf]
    ahead = np.concatenate([rng.uniform(0.5, 120, 500), [np.nan, np.inf, -road.setback_m - 1]])
    x = rng.uniform(0, w, len(ahead))
    (got_lat,) = road.laterals_at((x,), ahead)
    ok = ahead[:500]
    centre = cal.metric_to_image(np.column_stack([np.zeros(len(ok)), ok]))[:, 0]
    want_lat = (x[:500] - centre) * road.lateral_scale_m_per_px(ok)
    np.testing.assert_allclose(got_lat[:500], want_lat, rtol=1e-9, atol=1e-9)
    assert np.isnan(got_lat[500:]).all()


_EDGE_FLOATS = [0.0, -0.0, 1.0, -2.5, 1e-310, -1e-310, 1e308, -1e308, math.inf, -math.inf, math.nan, -math.nan]


def _bits(values) -> list[str]:
    return [float(v).hex() if not math.isnan(v) else ("-" if math.copysign(1.0, v) < 0 else "+") + "nan"
            for v in np.asarray(values, np.float64).reshape(-1).tolist()]


def test_float_helpers_equal_numpy_bit_for_bit() -> None:
    """divide, maximum, minimum and nan_to_num against NumPy on every pair of edge values (signed zeros, subnormals,
    infinities, NaNs of either sign) and random ones: the same bits, NaN signs included. Which of two equal values
    (0.0 and -0.0) or of two NaNs ``np.maximum`` returns depends on the CPU's SIMD loop, so those pairs need only
    compare equal (or both be NaN): no decision depends on them."""
    rng = np.random.default_rng(9)
    values = _EDGE_FLOATS + rng.normal(0, 10, 40).tolist() + [3.0, 3.0]
    a, b = (np.array(v, np.float64) for v in zip(*[(x, y) for x in values for y in values]))
    undecided = (a == b) | (np.isnan(a) & np.isnan(b))
    with np.errstate(all="ignore"):
        assert _bits([divide(x, y) for x, y in zip(a.tolist(), b.tolist())]) == _bits(np.divide(a, b))
        for mine, theirs in ((maximum, np.maximum), (minimum, np.minimum)):
            got, want = np.array([mine(x, y) for x, y in zip(a.tolist(), b.tolist())]), theirs(a, b)
            assert _bits(got[~undecided]) == _bits(want[~undecided]), mine.__name__
            assert np.array_equal(got[undecided], want[undecided], equal_nan=True), mine.__name__
    assert _bits([nan_to_num(x) for x in values]) == _bits(np.nan_to_num(np.array(values)))
    assert columns([1.0, 2.0], 3.0) == [[1.0, 2.0], [3.0, 3.0]]


def _object_lateral_arrays(road, boxes, rng, width, border_margin_px=5.0):
    """:func:`object_lateral_m` as it was written with array operations (the reference of the loop form)."""
    with np.errstate(all="ignore"):
        half = np.nan_to_num(np.asarray(width, np.float64) / 2.0)
        b, c, h, i = road._coefficients.centre_line
        ok = np.isfinite(rng) & (rng > -road.setback_m)
        centre = (b * rng + c) / (h * rng + i)
        scale = np.where(ok, road.k0_m_per_px + road.k1_per_px * rng, np.nan)
        left, right = (boxes[:, 0] - centre) * scale, (boxes[:, 2] - centre) * scale
        right_border = road.calibration.image_size_wh[0] - border_margin_px
        cut_l, cut_r = boxes[:, 0] <= border_margin_px, boxes[:, 2] >= right_border
        from_left, from_right = left + half, right - half
        spanning = np.where(cut_l & ~cut_r, from_right, np.where(cut_r & ~cut_l, from_left, (left + right) / 2.0))
        return np.where(left > 0, np.maximum(from_left, from_right),
                        np.where(right < 0, np.minimum(from_left, from_right), spanning))


def test_object_lateral_loop_equals_its_array_form_bit_for_bit() -> None:
    """Boxes left of, right of and across the centre line, cut at either side or both, at ranges from behind the
    camera to far ahead, NaN and inf, with NaN/inf widths: the same bits as the array operations it replaced; and
    :meth:`RoadGeometry.laterals_at` as ``(x - centre) * scale`` of the same arrays."""
    road = RoadGeometry.from_calibration(load_calibration(shipped_calibration()))
    w = road.calibration.image_size_wh[0]
    rng = np.random.default_rng(11)
    n = 3000
    x1 = rng.choice([0.0, 3.0, 5.0, 6.0], n) * (rng.random(n) < 0.2) + rng.uniform(0, w, n) * (rng.random(n) >= 0.2)
    x2 = np.where(rng.random(n) < 0.2, w - rng.choice([0.0, 5.0, 6.0], n), x1 + rng.uniform(-5, 400, n))
    boxes = np.column_stack([x1, rng.uniform(0, 500, n), x2, rng.uniform(0, 540, n)])
    ranges = rng.uniform(-road.setback_m - 3, 150, n)
    ranges[rng.integers(0, n, 60)] = rng.choice([np.nan, np.inf, -np.inf, -road.setback_m], 60)
    widths = rng.uniform(0.3, 3.0, n)
    widths[rng.integers(0, n, 30)] = rng.choice([np.nan, np.inf], 30)
    got = object_lateral_m(road, boxes, ranges, widths)
    assert _bits(got) == _bits(_object_lateral_arrays(road, boxes, ranges, widths))
    assert object_lateral_m(road, boxes[:0], [], []).shape == (0,)
    b, c, h, i = road._coefficients.centre_line
    with np.errstate(all="ignore"):
        scale = np.where(np.isfinite(ranges) & (ranges > -road.setback_m), road.k0_m_per_px + road.k1_per_px * ranges,
                         np.nan)
        want = (x1 - (b * ranges + c) / (h * ranges + i)) * scale
    assert _bits(road.laterals_at((x1,), ranges)[0]) == _bits(want)


def test_row_maps_loop_equals_their_array_form_bit_for_bit() -> None:
    """``ground_ahead_m`` and ``range_per_px`` (loops over floats) against the array operations they replaced, on rows
    above, at and below the horizon, on the image border, NaN and inf: the same bits."""
    road = RoadGeometry.from_calibration(load_calibration(shipped_calibration()))
    w, h = road.calibration.image_size_wh
    rng = np.random.default_rng(12)
    rows = np.concatenate([rng.uniform(-50, h + 50, 3000), road.horizon_row_px + np.array([-1.0, 0.0, 1.0, 1.5]),
                           [np.nan, np.inf, -np.inf, 0.0, -0.0, float(h)]])
    cols = np.concatenate([rng.uniform(-100, w + 100, 3000), [w / 2.0] * 4, [np.nan, 3.0, w / 2.0, 0.0, -0.0, w]])
    c = road._coefficients
    e, f, hh, i = c.centre_column
    with np.errstate(all="ignore"):
        ahead = (c.ahead[0] * cols + c.ahead[1] * rows + c.ahead[2]) / (c.w[0] * cols + c.w[1] * rows + c.w[2])
        want_ahead = np.where(rows <= road.horizon_row_px, np.nan, ahead)
        step = np.abs((e * rows + f) / (hh * rows + i) - (e * (rows + 1.0) + f) / (hh * (rows + 1.0) + i))
        want_step = np.where(rows > road.horizon_row_px + 1.0, step, np.inf)
    assert _bits(road.ground_ahead_m(cols, rows)) == _bits(want_ahead)
    assert _bits(road.range_per_px(rows)) == _bits(want_step)


def test_ground_cue_reasons_equal_their_array_form() -> None:
    """The ground cue's per-box reasons (border, occlusion, horizon, "") against the array expressions they replaced,
    on boxes touching each border, hidden or not, near and above the horizon, far (too uncertain) and near."""
    from aeb_app.safety.cues import _ground_cue

    road = RoadGeometry.from_calibration(load_calibration(shipped_calibration()))
    config = CueConfig()
    w, h = road.calibration.image_size_wh
    rng = np.random.default_rng(13)
    n = 4000
    x1 = np.where(rng.random(n) < 0.1, rng.uniform(0, 8, n), rng.uniform(0, w - 50, n))
    x2 = np.where(rng.random(n) < 0.1, w - rng.uniform(0, 8, n), x1 + rng.uniform(5, 300, n))
    y2 = np.where(rng.random(n) < 0.1, h - rng.uniform(0, 8, n), rng.uniform(road.horizon_row_px - 20, h, n))
    mrg = config.border_margin_px
    x1[:40], x2[40:80], y2[80:120] = mrg, w - mrg, h - mrg  # exactly on the border margins
    y2[120:160] = road.horizon_row_px + config.horizon_band_px  # exactly on the horizon band
    boxes = np.column_stack([x1, y2 - rng.uniform(5, 200, n), x2, y2])
    prior = np.tile([1.8, 0.1, 0.9, 0.2, 4.5, 10.0], (n, 1))
    prior[rng.random(n) < 0.1, 2:4] = (np.nan, np.nan)
    edge = np.hypot(config.edge_sigma_px, config.edge_sigma_frac * (boxes[:, 3] - boxes[:, 1]))
    occluded = rng.random(n) < 0.2
    g_range, g_sigma, _, why = _ground_cue(road, boxes, prior, edge, occluded, config)
    cut = (boxes[:, 3] >= h - mrg) | (boxes[:, 0] <= mrg) | (boxes[:, 2] >= w - mrg)
    with np.errstate(invalid="ignore"):
        too_uncertain = ~(g_sigma <= config.max_ground_rel_sigma * np.abs(g_range))
    no_range = (boxes[:, 3] < road.horizon_row_px + config.horizon_band_px) | too_uncertain | ~np.isfinite(g_range)
    want = np.where(cut, "border", np.where(occluded, "occlusion", np.where(no_range, "horizon", "")))
    assert list(why) == want.tolist()
    assert {"border", "occlusion", "horizon", ""} <= set(why)


def test_point_in_zone_equals_in_zone() -> None:
    rng = np.random.default_rng(2)
    values = np.concatenate([rng.uniform(-5, 60, 400), [0.0, 1.85, -1.85, 40.0, np.nan, np.inf, -np.inf]])
    for lateral in values[::3]:
        for ahead in values[1::4]:
            want = bool(in_zone([[lateral, ahead]], half_width_m=1.85, length_m=40.0)[0])
            assert point_in_zone(float(lateral), float(ahead), half_width_m=1.85, length_m=40.0) is want


def test_fuse_skips_nan_inf_and_bad_sigmas_as_before() -> None:
    vals = np.array([10.0, np.nan, np.inf, 12.0, 5.0])
    sig = np.array([1.0, 1.0, 1.0, np.inf, 0.0])
    value, sigma = fuse(vals, sig, np.array([12.0, 12.0, 12.0, np.nan, np.nan]), np.full(5, 2.0))
    assert value[0] == pytest.approx((10.0 + 12.0 / 4) / 1.25) and sigma[0] == pytest.approx(1 / math.sqrt(1.25))
    assert value[1:3].tolist() == [12.0, 12.0] and np.isnan(value[3:]).all() and np.isnan(sigma[3:]).all()


@pytest.fixture(scope="module")
def clip_frames(sample_video: Path) -> tuple[AebLogic, list]:
    """The sample clip's first 60 frames through the detector (score 0.4), and a logic for its calibration."""
    from aeb_app.model.postprocess import PostprocessConfig
    from aeb_app.pipeline import PipelineSettings
    from aeb_app.stream import StreamConfig, open_stream

    settings = PipelineSettings(postprocess=PostprocessConfig(score_threshold=0.4), render=False, hud=True)
    frames = []
    with open_stream(StreamConfig(str(sample_video), mode="fp32", threads=1, settings=settings)) as stream:
        for result in stream.pipeline.run(stream.source.frames()):
            frames.append((result.frame_index, result.timestamp_s, result.detections))
            if len(frames) == 60:
                break
    logic = AebLogic(load_calibration(shipped_calibration()))
    return logic, frames


def test_laterals_and_bev_points_of_all_objects_equal_one_at_a_time(clip_frames) -> None:
    """On real boxes: the per-frame laterals (with the cut-box memory) and BEV points, computed for all objects
    at once, equal the per-object computation they replaced; the cues' laterals likewise."""
    logic, frames = clip_frames
    logic = copy.deepcopy(logic)
    compared = 0
    for index, timestamp_s, dets in frames:
        logic.update(index, timestamp_s, dets)
        tracks = [t for t in logic.tracker.tracks if t.last_seen_s == timestamp_s and t.range_filter.initialized]
        boxes = np.array([t.xyxy_px for t in tracks], np.float64).reshape(-1, 4)
        reference = copy.deepcopy(tracks)
        got = logic._laterals(copy.deepcopy(tracks), boxes)
        want = [_lateral_one(logic, t, b) for t, b in zip(reference, boxes)]
        assert all(_close(g, w, abs_=1e-9) for g, w in zip(got, want)), (got, want)
        bev = logic._bev_points(boxes)
        for b, (x, y) in zip(boxes, bev):
            want_x, want_y = logic.calibration.view.to_bev([((b[0] + b[2]) / 2.0, b[3])])[0]
            assert _close(x, want_x, abs_=1e-9) and _close(y, want_y, abs_=1e-9)
        compared += len(tracks)
    assert compared > 300  # the clip has ~14 boxes a frame


def _lateral_one(logic: AebLogic, track, box: np.ndarray) -> float:
    """One object's lateral as :class:`AebLogic` computed it before (its own projection, the cut-box memory)."""
    margin = logic.cue_config.border_margin_px
    cut = box[0] <= margin or box[2] >= logic.calibration.image_size_wh[0] - margin
    lateral = float(object_lateral_m(logic.road, box, [track.range_filter.range_m], [logic._track_width(track)[0]],
                                     border_margin_px=margin)[0])
    if cut and math.isfinite(track.lateral_m) and track.lateral_m * lateral > 0 and abs(track.lateral_m) > abs(lateral):
        return track.lateral_m
    return lateral


def test_cues_of_all_boxes_equal_one_box_at_a_time(clip_frames) -> None:
    """On real boxes: each box's cues from the whole frame equal those of the box measured with the same context
    (the frame's boxes as possible occluders), and its lateral equals :func:`object_lateral_m` of that box alone."""
    logic, frames = clip_frames
    for _, _, dets in frames[::6]:
        boxes = dets.xyxy_px.astype(np.float64)
        ids = dets.category_ids
        frame = measure_cues(logic.road, boxes, ids, logic.cue_config)
        fused, _ = frame.fused()
        for i in range(len(boxes)):
            one = measure_cues(logic.road, boxes[i:i + 1], ids[i:i + 1], logic.cue_config, context_xyxy_px=boxes)
            assert one.why_no_ground[0] == frame.why_no_ground[i]
            for name in ("ground_range_m", "ground_sigma_m", "width_range_m", "width_sigma_m", "lateral_m"):
                assert _close(float(getattr(one, name)[0]), float(getattr(frame, name)[i]), abs_=1e-9), name
            prior = logic.cue_config.priors.get(int(ids[i]))
            alone = object_lateral_m(logic.road, boxes[i], [fused[i]], [prior.width_m if prior else math.nan])[0]
            assert _close(float(alone), float(frame.lateral_m[i]), abs_=1e-9)


def test_id_table_equals_isin() -> None:
    """Members by lookup table (the frame's road users) vs np.isin: ids inside, below and above the table, negative
    and huge member ids (the np.isin fallback), none."""
    from aeb_app.safety.logic import _IdTable

    rng = np.random.default_rng(9)
    for members in ((1, 2, 3, 4, 6, 7, 8), (3,), (), (-5, 0, 7), (2, 1 << 20), (90, 1)):
        table = _IdTable.of(members)
        assert (table.table is None) == (len(members) > 0 and max(members) - min(members, default=0) > 1 << 16)
        for n in (0, 1, 16, 200):
            ids = rng.integers(-10, 100, n).astype(np.int64)
            if n:
                ids[0] = members[0] if members else 5
            got, want = table.contains(ids), np.isin(ids, np.asarray(members, np.int64))
            assert got.dtype == bool and got.tolist() == want.tolist(), (members, ids)
