"""Camera-to-road calibration: BEV homography + metre scale + ego origin, stored as YAML.

Metric road coordinates used everywhere downstream: ``(lateral_m, ahead_m)``, lateral positive to
the right of the ego vehicle's centre line, ``ahead_m`` measured forward from the ego front bumper.
The origin is the ground point under image pixel ``origin_px`` (default: bottom centre of the image,
the nearest visible road point) plus ``origin_ahead_m``, the bumper-to-that-point distance measured
once when the camera is installed.
"""

from __future__ import annotations

import logging
import math
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

import cv2
import numpy as np
import numpy.typing as npt
import yaml

from aeb_app.atomic import write_text
from aeb_app.errors import CalibrationError
from aeb_app.geometry.homography import BirdsEyeView
from aeb_app.geometry.scale import ReferencePair, fit_scale
from aeb_app.safe_yaml import YamlLimitError, load_bounded_yaml, short_repr

__all__ = ["SCHEMA_VERSION", "Calibration", "load_calibration", "save_calibration", "shipped_calibration"]

log = logging.getLogger(__name__)

SCHEMA_VERSION = 1
#: Stored k_x/k_y may differ from the refit of the stored reference pairs by at most this fraction.
K_CONSISTENCY_TOL = 0.02


@dataclass(frozen=True)
class Calibration:
    """A validated road calibration. Build with :meth:`from_points` or :func:`load_calibration`.

    Attributes:
        image_size_wh: (width, height) of the camera image, pixels.
        view: the image <-> BEV homography.
        reference_pairs: the BEV reference pairs the scale was fitted to.
        k_x_m_per_px: metres per BEV pixel across the road.
        k_y_m_per_px: metres per BEV pixel along the road.
        fit_residual_m: RMS residual of the scale fit, metres.
        origin_px: (x, y) image pixel of the ground point distances are measured from.
        origin_ahead_m: distance from the ego front bumper forward to that ground point, metres.
        camera_notes: free text (camera, mounting, how the points were picked).
    """

    image_size_wh: tuple[int, int]
    view: BirdsEyeView
    reference_pairs: tuple[ReferencePair, ...]
    k_x_m_per_px: float
    k_y_m_per_px: float
    fit_residual_m: float
    origin_px: tuple[float, float]
    origin_ahead_m: float = 0.0
    camera_notes: str = ""
    _origin_bev_px: npt.NDArray[np.float64] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        w, h = self.image_size_wh
        ox, oy = self.origin_px
        if not (0 <= ox <= w and 0 <= oy <= h):
            raise CalibrationError(f"origin_px: {self.origin_px} outside the {w}x{h} image")
        if not np.isfinite(self.origin_ahead_m):
            raise CalibrationError(f"origin_ahead_m: must be finite, got {self.origin_ahead_m}")
        try:
            origin_bev = self.view.to_bev([self.origin_px])[0]
        except ValueError as exc:
            raise CalibrationError(f"origin_px: {self.origin_px} is not on the road plane ({exc})") from exc
        object.__setattr__(self, "_origin_bev_px", origin_bev)
        _check_origin_below_horizon(self)

    @classmethod
    def from_points(
        cls,
        *,
        image_size_wh: tuple[int, int],
        source_points_px: npt.ArrayLike,
        bev_points_px: npt.ArrayLike,
        bev_size_wh: tuple[int, int],
        reference_pairs: Sequence[ReferencePair],
        origin_px: tuple[float, float] | None = None,
        origin_ahead_m: float = 0.0,
        camera_notes: str = "",
    ) -> "Calibration":
        """Build a calibration: homography from the 4 road points, then k_x/k_y from the BEV reference pairs.

        Args:
            image_size_wh: camera image (width, height), pixels.
            source_points_px: (4, 2) road points in the image, in order (TL, TR, BR, BL).
            bev_points_px: (4, 2) rectangle corners they map to in the BEV, same order.
            bev_size_wh: BEV image (width, height), pixels.
            reference_pairs: BEV point pairs with known ground distances (>= 2, across and along).
            origin_px: image pixel of the distance origin; default bottom centre of the image.
            origin_ahead_m: bumper-to-origin distance, metres.
            camera_notes: free text.

        Raises:
            CalibrationError: for any degenerate input, naming the field.
        """
        w, h = _check_size(image_size_wh, "image_size")
        view = BirdsEyeView.from_points(
            image_points_px=source_points_px, bev_points_px=bev_points_px,
            bev_size_wh=bev_size_wh, image_size_wh=(w, h),
        )
        fit = fit_scale(list(reference_pairs))
        return cls(
            (w, h), view, tuple(reference_pairs), fit.k_x_m_per_px, fit.k_y_m_per_px, fit.residual_m,
            (float(origin_px[0]), float(origin_px[1])) if origin_px is not None else (w / 2.0, float(h)),
            float(origin_ahead_m), camera_notes,
        )

    @property
    def origin_bev_px(self) -> npt.NDArray[np.float64]:
        """(2,) BEV pixel of the distance origin."""
        return self._origin_bev_px.copy()

    def bev_to_metric(self, bev_px: npt.ArrayLike) -> npt.NDArray[np.float64]:
        """(n, 2) BEV pixels -> (n, 2) ``(lateral_m, ahead_m)``."""
        pts = np.asarray(bev_px, dtype=np.float64).reshape(-1, 2)
        lateral = (pts[:, 0] - self._origin_bev_px[0]) * self.k_x_m_per_px
        ahead = (self._origin_bev_px[1] - pts[:, 1]) * self.k_y_m_per_px + self.origin_ahead_m
        return np.stack([lateral, ahead], axis=1)

    def metric_to_bev(self, metric_m: npt.ArrayLike) -> npt.NDArray[np.float64]:
        """(n, 2) ``(lateral_m, ahead_m)`` -> (n, 2) BEV pixels."""
        pts = np.asarray(metric_m, dtype=np.float64).reshape(-1, 2)
        x = self._origin_bev_px[0] + pts[:, 0] / self.k_x_m_per_px
        y = self._origin_bev_px[1] - (pts[:, 1] - self.origin_ahead_m) / self.k_y_m_per_px
        return np.stack([x, y], axis=1)

    def image_to_metric(self, points_px: npt.ArrayLike) -> npt.NDArray[np.float64]:
        """(n, 2) image ground points (pixels) -> (n, 2) ``(lateral_m, ahead_m)``; (0, 2) for empty input.

        Points at or above the horizon have no ground position: they raise ``ValueError`` from the
        projection or come back with ``ahead_m`` negative/huge; callers filter on ``ahead_m``.
        """
        return self.bev_to_metric(self.view.to_bev(points_px))

    def image_to_metric_matrix(self) -> npt.NDArray[np.float64]:
        """3x3 homography image pixels -> ``(lateral_m, ahead_m)``: :meth:`image_to_metric` as one
        matrix, for warping a whole frame into metric coordinates (the bird's-eye panel)."""
        (ox, oy), kx, ky = self._origin_bev_px, self.k_x_m_per_px, self.k_y_m_per_px
        bev_to_metric = np.array([[kx, 0.0, -ox * kx], [0.0, -ky, oy * ky + self.origin_ahead_m], [0.0, 0.0, 1.0]])
        return bev_to_metric @ self.view.matrix

    def metric_to_image_matrix(self) -> npt.NDArray[np.float64]:
        """3x3 homography ``(lateral_m, ahead_m)`` -> image pixels: :meth:`metric_to_image` as one matrix."""
        (ox, oy), kx, ky = self._origin_bev_px, self.k_x_m_per_px, self.k_y_m_per_px
        metric_to_bev = np.array([[1.0 / kx, 0.0, ox], [0.0, -1.0 / ky, oy + self.origin_ahead_m / ky],
                                  [0.0, 0.0, 1.0]])
        return self.view.inverse @ metric_to_bev

    def metric_to_image(self, metric_m: npt.ArrayLike) -> npt.NDArray[np.float64]:
        """(n, 2) ``(lateral_m, ahead_m)`` -> (n, 2) image pixels (for drawing the zone); NaN rows for points the
        calibration puts beyond the road's horizon (a calibration that does not fit: nothing to draw there)."""
        return self.view.to_image(self.metric_to_bev(metric_m), visible_only=True)

    def to_dict(self) -> dict[str, Any]:
        """A YAML-ready dict in the file schema (see ``calibration/*.yaml``)."""
        rnd = lambda a: [[round(float(v), 3) for v in p] for p in np.asarray(a)]  # noqa: E731
        return {
            "schema_version": SCHEMA_VERSION,
            "image_size": list(self.image_size_wh),
            "source_points_px": rnd(self.view.image_points_px),
            "bev_size": list(self.view.bev_size_wh),
            "bev_points_px": rnd(self.view.bev_points_px),
            "reference_pairs": [
                {"a_bev_px": rnd([p.a_bev_px])[0], "b_bev_px": rnd([p.b_bev_px])[0],
                 "distance_m": round(float(p.distance_m), 4), "note": p.note}
                for p in self.reference_pairs
            ],
            "k_x_m_per_px": round(self.k_x_m_per_px, 7),
            "k_y_m_per_px": round(self.k_y_m_per_px, 7),
            "fit_residual_m": round(self.fit_residual_m, 4),
            "origin_px": [float(v) for v in self.origin_px],
            "origin_ahead_m": float(self.origin_ahead_m),
            "camera_notes": self.camera_notes,
        }


#: Bounds of the file's fields: a plausible camera, bird's-eye view and road (checked before any maths,
#: so huge or non-finite values give a CalibrationError naming the key, never an OverflowError).
MAX_IMAGE_SIDE_PX = 16384
MAX_BEV_SIDE_PX = 100_000
MAX_COORD_PX = 1e6
MAX_DISTANCE_M = 1e4
MAX_ORIGIN_AHEAD_M = 100.0
MAX_K_M_PER_PX = 1e3
MAX_PAIRS = 1000
MAX_TEXT_CHARS = 10_000
#: The origin may be at most this many times farther (in homogeneous scale) than the road points.
MIN_ORIGIN_W_RATIO = 0.01


def _check_size(value: Any, name: str, max_side: int = MAX_BEV_SIDE_PX) -> tuple[int, int]:
    if not (isinstance(value, (list, tuple)) and len(value) == 2
            and all(isinstance(v, (int, np.integer)) and not isinstance(v, bool) and 0 < v <= max_side
                    for v in value)):
        raise CalibrationError(
            f"{name}: expected [width, height] integers in 1..{max_side}, got {short_repr(value)}")
    return int(value[0]), int(value[1])


def _finite(value: Any, key: str, *, low: float = -math.inf, high: float = math.inf,
            low_open: bool = False) -> float:
    """A real number (not bool) within [low, high] (``(low, high]`` when ``low_open``)."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise CalibrationError(f"{key}: expected a finite number, got {short_repr(value)}")
    if isinstance(value, int) and abs(value) > 1e15:  # float() of a 400-digit int overflows
        raise CalibrationError(f"{key}: {short_repr(value, 24)} is out of range")
    number = float(value)
    if not math.isfinite(number):
        raise CalibrationError(f"{key}: expected a finite number, got {number}")
    if number > high or (number <= low if low_open else number < low):
        bracket = "(" if low_open else "["
        raise CalibrationError(f"{key}: {number:g} outside {bracket}{low:g}, {high:g}]")
    return number


def _point(value: Any, key: str) -> tuple[float, float]:
    if not (isinstance(value, (list, tuple)) and len(value) == 2):
        raise CalibrationError(f"{key}: expected [x, y], got {short_repr(value)}")
    x, y = (_finite(v, f"{key}[{i}]", low=-MAX_COORD_PX, high=MAX_COORD_PX) for i, v in enumerate(value))
    return x, y


def _points(value: Any, key: str, count: int = 4) -> list[tuple[float, float]]:
    if not (isinstance(value, list) and len(value) == count):
        got = f"{len(value)} items" if isinstance(value, list) else short_repr(value)
        raise CalibrationError(f"{key}: expected a list of {count} [x, y] points, got {got}")
    return [_point(p, f"{key}[{i}]") for i, p in enumerate(value)]


def _text(value: Any, key: str) -> str:
    if not isinstance(value, str) or len(value) > MAX_TEXT_CHARS:
        raise CalibrationError(f"{key}: expected text of at most {MAX_TEXT_CHARS} characters, got "
                               f"{short_repr(value) if not isinstance(value, str) else f'{len(value)} characters'}")
    return value


_REQUIRED = ("schema_version", "image_size", "source_points_px", "bev_size", "bev_points_px",
             "reference_pairs", "k_x_m_per_px", "k_y_m_per_px")
_OPTIONAL = ("fit_residual_m", "origin_px", "origin_ahead_m", "camera_notes")
_PAIR_KEYS = ("a_bev_px", "b_bev_px", "distance_m")


def _number(data: dict[str, Any], key: str, where: str) -> float:
    try:
        return _finite(data[key], key, low=0.0, high=MAX_K_M_PER_PX, low_open=True)
    except CalibrationError as exc:
        raise CalibrationError(f"{where}: {exc}") from None


def _pairs(raw: Any) -> list[ReferencePair]:
    if not isinstance(raw, list) or not 2 <= len(raw) <= MAX_PAIRS:
        got = f"{len(raw)} items" if isinstance(raw, list) else type(raw).__name__
        raise CalibrationError(f"reference_pairs: expected a list of 2..{MAX_PAIRS} pairs, got {got}")
    pairs = []
    for i, item in enumerate(raw):
        name = f"reference_pairs[{i}]"
        if not isinstance(item, dict) or not set(_PAIR_KEYS) <= set(item):
            raise CalibrationError(f"{name}: needs a_bev_px, b_bev_px, distance_m; got {short_repr(item)}")
        unknown = sorted(str(k) for k in set(item) - {*_PAIR_KEYS, "note"})
        if unknown:
            raise CalibrationError(f"{name}: unknown field(s): {short_repr(', '.join(unknown))}")
        a, b = _point(item["a_bev_px"], f"{name}.a_bev_px"), _point(item["b_bev_px"], f"{name}.b_bev_px")
        distance = _finite(item["distance_m"], f"{name}.distance_m", low=0.0, high=MAX_DISTANCE_M, low_open=True)
        pairs.append(ReferencePair(a, b, distance, _text(item.get("note", ""), f"{name}.note")))
    return pairs


def _check_keys(data: Any) -> None:
    if not isinstance(data, dict):
        got = "an empty file" if data is None else type(data).__name__
        raise CalibrationError(f"expected a mapping at top level, got {got}")
    version = data.get("schema_version")
    if isinstance(version, bool) or version != SCHEMA_VERSION:
        raise CalibrationError(f"schema_version is {short_repr(version)}, this version reads {SCHEMA_VERSION}")
    missing = [k for k in _REQUIRED if k not in data]
    if missing:
        raise CalibrationError(f"missing field(s): {', '.join(missing)}")
    unknown = sorted(str(k) for k in set(data) - set(_REQUIRED) - set(_OPTIONAL))
    if unknown:
        raise CalibrationError(f"unknown field(s): {short_repr(', '.join(unknown), 120)}")


def _build(data: dict[str, Any]) -> Calibration:
    """Every field type- and range-checked (the key named), then :meth:`Calibration.from_points`."""
    w, h = _check_size(data["image_size"], "image_size", MAX_IMAGE_SIDE_PX)
    origin = _point(data["origin_px"], "origin_px") if "origin_px" in data else None
    if "fit_residual_m" in data:
        _finite(data["fit_residual_m"], "fit_residual_m", low=0.0, high=MAX_DISTANCE_M)
    ahead = (_finite(data["origin_ahead_m"], "origin_ahead_m", low=-MAX_ORIGIN_AHEAD_M, high=MAX_ORIGIN_AHEAD_M)
             if "origin_ahead_m" in data else 0.0)
    kwargs = dict(
        image_size_wh=(w, h), source_points_px=_points(data["source_points_px"], "source_points_px"),
        bev_points_px=_points(data["bev_points_px"], "bev_points_px"),
        bev_size_wh=_check_size(data["bev_size"], "bev_size"), reference_pairs=_pairs(data["reference_pairs"]),
        origin_px=origin, origin_ahead_m=ahead, camera_notes=_text(data.get("camera_notes", ""), "camera_notes"),
    )
    try:
        cal = Calibration.from_points(**kwargs)  # type: ignore[arg-type]
    except (np.linalg.LinAlgError, cv2.error, ArithmeticError, ValueError) as exc:
        if isinstance(exc, CalibrationError):
            raise
        raise CalibrationError(f"degenerate points ({type(exc).__name__}: {short_repr(str(exc), 120)})") from None
    _check_horizon_crosses_image(cal)
    return cal


def _road_side_w(cal: Calibration, points_px: npt.ArrayLike) -> npt.NDArray[np.float64]:
    """Homogeneous scale of image points under the image->BEV homography, signed so road points are > 0."""
    m = cal.view.matrix
    pts = np.asarray(points_px, dtype=np.float64).reshape(-1, 2)
    w = pts @ m[2, :2] + m[2, 2]
    sign = np.sign(np.median(cal.view.image_points_px @ m[2, :2] + m[2, 2]))
    return w * sign


def _check_origin_below_horizon(cal: Calibration) -> None:
    """The distance origin must be a road pixel: below the horizon, not at infinity."""
    ref = float(np.median(_road_side_w(cal, cal.view.image_points_px)))
    w_origin = float(_road_side_w(cal, [cal.origin_px])[0])
    if not w_origin > MIN_ORIGIN_W_RATIO * ref:
        where = "above" if w_origin < 0 else "at"
        raise CalibrationError(
            f"origin_px: {short_repr(cal.origin_px)} is {where} the horizon of the road plane (not a road pixel); "
            "pick a pixel on the road near the bottom of the image")


def _check_horizon_crosses_image(cal: Calibration) -> None:
    """A forward-looking camera sees the horizon: the road plane must end inside the frame."""
    w, h = cal.image_size_wh
    corners = _road_side_w(cal, [(0, 0), (w, 0), (w, h), (0, h)])
    if (corners > 0).all():
        raise CalibrationError(
            f"source_points_px: the road plane's horizon lies outside the {w}x{h} image (the lane lines do not "
            "converge inside the frame); pick points on the two lane lines at two distances, in order TL, TR, BR, BL")


def _from_dict(data: Any, where: str) -> Calibration:
    try:
        _check_keys(data)
        cal = _build(data)
    except CalibrationError as exc:
        raise CalibrationError(f"{where}: {exc}") from None
    for key, fitted in (("k_x_m_per_px", cal.k_x_m_per_px), ("k_y_m_per_px", cal.k_y_m_per_px)):
        stored = _number(data, key, where)
        if abs(stored - fitted) > K_CONSISTENCY_TOL * fitted:
            raise CalibrationError(
                f"{where}: {key}: stored {stored} disagrees with {fitted:.6g} refitted from reference_pairs"
            )
    return cal


def load_calibration(path: str | os.PathLike[str]) -> Calibration:
    """Read and validate a calibration YAML file, safely (see :mod:`aeb_app.safe_yaml`).

    The file is at most 256 KiB of UTF-8 YAML without anchors/aliases or deep nesting; every field is
    type- and range-checked before any maths; the origin must lie below the road's horizon and the
    horizon inside the image.

    Raises:
        CalibrationError: unreadable, oversized, non-UTF-8 or malformed file, anchors/aliases, wrong
            ``schema_version``, a missing/unknown/invalid field, degenerate points, an origin above the
            horizon, or stored k_x/k_y that disagree with the reference pairs; one line naming file and field.
    """
    path = Path(path)
    try:
        data = load_bounded_yaml(path)
    except YamlLimitError as exc:
        prefix = "" if str(exc).startswith(("cannot read", "malformed YAML")) else "calibration file: "
        raise CalibrationError(f"{path}: {prefix}{exc}") from None
    return _from_dict(data, str(path))


def save_calibration(calibration: Calibration, path: str | os.PathLike[str]) -> None:
    """Write ``calibration`` as YAML atomically (temporary file in the same folder, then ``os.replace``)."""
    path = Path(path)
    text = yaml.safe_dump(calibration.to_dict(), sort_keys=False, default_flow_style=None, width=120)
    write_text(path, text)
    log.info("saved calibration to %s", path)


def shipped_calibration(name: str = "solidWhiteRight.yaml") -> Path:
    """A calibration shipped with the project, e.g. the one for the sample footage.

    Looked up in ``./calibration`` (the working folder), the source checkout's ``calibration/``,
    then ``<prefix>/share/aeb_app/calibration`` (where a non-editable install puts it). When none
    has it, the checkout path is returned, so the caller's error names a concrete file.
    """
    import sys

    checkout = Path(__file__).resolve().parents[2] / "calibration" / name
    for candidate in (Path.cwd() / "calibration" / name, checkout,
                      Path(sys.prefix) / "share" / "aeb_app" / "calibration" / name):
        if candidate.is_file():
            return candidate
    return checkout
