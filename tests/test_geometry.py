"""Pure geometry: homography, projection, scale fit, degenerate input."""

from __future__ import annotations

import numpy as np
import pytest

from aeb_app.errors import CalibrationError
from aeb_app.geometry import (
    BirdsEyeView, Calibration, ReferencePair, fit_scale, project_points, scale_from_three_points, validate_quad,
)

SRC = [(422.4, 345.0), (546.1, 345.0), (828.4, 520.0), (185.7, 520.0)]
DST = [(113.0, 900.0), (187.0, 900.0), (187.0, 1340.0), (113.0, 1340.0)]


@pytest.fixture()
def view() -> BirdsEyeView:
    return BirdsEyeView.from_points(image_points_px=SRC, bev_points_px=DST, bev_size_wh=(300, 1400),
                                    image_size_wh=(960, 540))


def test_source_points_map_to_rectangle(view: BirdsEyeView) -> None:
    np.testing.assert_allclose(view.to_bev(SRC), DST, atol=1e-3)
    np.testing.assert_allclose(view.to_image(DST), SRC, atol=1e-3)


def test_forward_inverse_roundtrip(view: BirdsEyeView) -> None:
    pts = np.array([[100.0, 539.0], [480.0, 400.0], [900.0, 360.0]])
    np.testing.assert_allclose(view.to_image(view.to_bev(pts)), pts, atol=1e-6)


@pytest.mark.parametrize("empty", [[], np.zeros((0, 2)), np.zeros((0, 2), np.float32)])
def test_empty_input_gives_empty_output(view: BirdsEyeView, empty) -> None:
    assert view.to_bev(empty).shape == (0, 2)
    assert view.to_image(empty).shape == (0, 2)


def test_project_nan_raises(view: BirdsEyeView) -> None:
    with pytest.raises(ValueError, match="NaN"):
        project_points(view.matrix, [[np.nan, 1.0]])


def test_warp_shape(view: BirdsEyeView) -> None:
    frame = np.full((540, 960, 3), 128, np.uint8)
    bev = view.warp(frame)
    assert bev.shape == (1400, 300, 3)
    assert bev[1200, 150].tolist() == [128, 128, 128]  # inside the road trapezoid


def test_lane_lines_become_vertical(view: BirdsEyeView) -> None:
    # Points along the fitted left lane line x = -1.3521 y + 888.84 land on one BEV column.
    ys = np.array([360.0, 420.0, 500.0])
    left = np.stack([(-1.3521 * ys + 888.84) * 1.0, ys], axis=1)
    bev = view.to_bev(left)
    assert np.ptp(bev[:, 0]) < 2.0


@pytest.mark.parametrize(
    ("points", "match"),
    [
        ([(0, 0), (10, 0), (20, 0), (5, 50)], "collinear"),
        ([(0, 0), (0, 0), (100, 100), (0, 100)], "repeated"),
        ([(0, 0), (100, 0), (0, 100), (100, 100)], "convex"),  # bow-tie order
        ([(0, 0), (100, 0), (100, 100)], "shape"),
        ([(0, 0), (100, np.nan), (100, 100), (0, 100)], "NaN"),
        ([(0, 0), (1000, 0), (1000, 100), (0, 100)], "outside"),
        ([(-5, 0), (100, 0), (100, 100), (0, 100)], "outside"),
        ("abc", "shape|not a list"),
    ],
)
def test_degenerate_quads_raise(points, match: str) -> None:
    with pytest.raises(CalibrationError, match=match):
        validate_quad(points, name="source_points_px", size_wh=(960, 540))


def test_error_names_the_field() -> None:
    with pytest.raises(CalibrationError, match="bev_points_px"):
        BirdsEyeView.from_points(image_points_px=SRC, bev_points_px=[(0, 0)] * 4, bev_size_wh=(10, 10))


def test_three_point_scale_exact() -> None:
    fit = scale_from_three_points((100, 1000), (174, 1000), (100, 766), across_m=3.7, along_m=12.19)
    assert fit.k_x_m_per_px == pytest.approx(0.05)
    assert fit.k_y_m_per_px == pytest.approx(12.19 / 234)
    assert fit.residual_m == pytest.approx(0.0, abs=1e-9)


def test_least_squares_scale_and_residual() -> None:
    rng = np.random.default_rng(0)
    kx, ky = 0.04, 0.06
    pairs = [ReferencePair((0, 0), (100, 0), 4.0), ReferencePair((0, 0), (0, 200), 12.0)]
    for _ in range(20):
        a, b = rng.uniform(0, 500, 2), rng.uniform(0, 500, 2)
        d = float(np.hypot(kx * (b[0] - a[0]), ky * (b[1] - a[1])))
        pairs.append(ReferencePair(tuple(a), tuple(b), d * (1 + rng.normal(0, 0.01))))
    fit = fit_scale(pairs)
    assert fit.k_x_m_per_px == pytest.approx(kx, rel=0.02)
    assert fit.k_y_m_per_px == pytest.approx(ky, rel=0.02)
    assert 0 < fit.residual_m < 0.3


@pytest.mark.parametrize(
    ("pairs", "match"),
    [
        ([ReferencePair((0, 0), (10, 0), 1.0)], "at least 2"),
        ([ReferencePair((0, 0), (10, 0), 0.0), ReferencePair((0, 0), (0, 10), 1.0)], "distance_m"),
        ([ReferencePair((0, 0), (10, 0), -3.7), ReferencePair((0, 0), (0, 10), 1.0)], "distance_m"),
        ([ReferencePair((0, 0), (0, 0), 3.7), ReferencePair((0, 0), (0, 10), 1.0)], "coincide"),
        ([ReferencePair((0, 0), (0, 20), 3.7), ReferencePair((0, 0), (0, 10), 1.0)], "across the road"),
        ([ReferencePair((0, 0), (np.nan, 0), 3.7), ReferencePair((0, 0), (0, 10), 1.0)], "NaN"),
    ],
)
def test_bad_reference_pairs_raise(pairs, match: str) -> None:
    with pytest.raises(CalibrationError, match=match):
        fit_scale(pairs)


def test_calibration_metric_roundtrip() -> None:
    cal = Calibration.from_points(
        image_size_wh=(960, 540), source_points_px=SRC, bev_points_px=DST, bev_size_wh=(300, 1400),
        reference_pairs=[ReferencePair((113, 1340), (187, 1340), 3.7), ReferencePair((113, 1340), (113, 1106), 12.19)],
        origin_ahead_m=2.0,
    )
    assert cal.image_to_metric([(480, 540)])[0] == pytest.approx([0.0, 2.0], abs=1e-9)
    metric = np.array([[-1.85, 10.0], [0.0, 30.0], [3.7, 55.0]])
    np.testing.assert_allclose(cal.image_to_metric(cal.metric_to_image(metric)), metric, atol=1e-6)
    assert cal.image_to_metric([]).shape == (0, 2)
    far, near = cal.image_to_metric([(480, 340), (480, 500)])
    assert far[1] > near[1] > 2.0


def test_origin_outside_image_raises() -> None:
    with pytest.raises(CalibrationError, match="origin_px"):
        Calibration.from_points(
            image_size_wh=(960, 540), source_points_px=SRC, bev_points_px=DST, bev_size_wh=(300, 1400),
            reference_pairs=[ReferencePair((0, 0), (74, 0), 3.7), ReferencePair((0, 0), (0, 234), 12.19)],
            origin_px=(480, 600),
        )


def test_image_to_metric_matrix_agrees_with_point_projection() -> None:
    from aeb_app.geometry.calibration import load_calibration, shipped_calibration

    cal = load_calibration(shipped_calibration())
    pts = np.array([[480.0, 500.0], [300.0, 420.0], [700.0, 360.0]])
    h = cal.image_to_metric_matrix()
    homog = np.c_[pts, np.ones(len(pts))] @ h.T
    np.testing.assert_allclose(homog[:, :2] / homog[:, 2:], cal.image_to_metric(pts), atol=1e-6)
