"""Camera-to-road calibration: BEV homography + metre scale + ego origin, stored as YAML.

Metric road coordinates used everywhere downstream: ``(lateral_m, ahead_m)``, lateral positive to
the right of the ego vehicle's centre line, ``ahead_m`` measured forward from the ego front bumper.
The origin is the ground point under image pixel ``origin_px`` (default: bottom centre of the image,
the nearest visible road point) plus ``origin_ahead_m``, the bumper-to-that-point distance measured
once when the camera is installed.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import numpy.typing as npt
import yaml

from aeb_app.atomic import write_text
from aeb_app.errors import CalibrationError
from aeb_app.geometry.homography import BirdsEyeView
from aeb_app.geometry.scale import ReferencePair, fit_scale

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

    def metric_to_image(self, metric_m: npt.ArrayLike) -> npt.NDArray[np.float64]:
        """(n, 2) ``(lateral_m, ahead_m)`` -> (n, 2) image pixels (for drawing the zone)."""
        return self.view.to_image(self.metric_to_bev(metric_m))

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


def _check_size(value: Any, name: str) -> tuple[int, int]:
    if not (isinstance(value, (list, tuple)) and len(value) == 2
            and all(isinstance(v, (int, np.integer)) and not isinstance(v, bool) and v > 0 for v in value)):
        raise CalibrationError(f"{name}: expected [width, height] positive integers, got {value!r}")
    return int(value[0]), int(value[1])


_REQUIRED = ("schema_version", "image_size", "source_points_px", "bev_size", "bev_points_px",
             "reference_pairs", "k_x_m_per_px", "k_y_m_per_px")
_OPTIONAL = ("fit_residual_m", "origin_px", "origin_ahead_m", "camera_notes")


def _number(data: dict[str, Any], key: str, where: str) -> float:
    value = data[key]
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not np.isfinite(value):
        raise CalibrationError(f"{where}: {key}: expected a finite number, got {value!r}")
    return float(value)


def _pairs(raw: Any, where: str) -> list[ReferencePair]:
    if not isinstance(raw, list):
        raise CalibrationError(f"{where}: reference_pairs: expected a list, got {type(raw).__name__}")
    pairs = []
    for i, item in enumerate(raw):
        field_name = f"reference_pairs[{i}]"
        if not isinstance(item, dict) or not {"a_bev_px", "b_bev_px", "distance_m"} <= set(item):
            raise CalibrationError(f"{where}: {field_name}: needs a_bev_px, b_bev_px, distance_m; got {item!r}")
        pts = []
        for key in ("a_bev_px", "b_bev_px"):
            p = item[key]
            if not (isinstance(p, list) and len(p) == 2 and all(isinstance(v, (int, float)) for v in p)):
                raise CalibrationError(f"{where}: {field_name}.{key}: expected [x, y], got {p!r}")
            pts.append((float(p[0]), float(p[1])))
        pairs.append(ReferencePair(pts[0], pts[1], _number(item, "distance_m", f"{where}: {field_name}"),
                                   str(item.get("note", ""))))
    return pairs


def _from_dict(data: Any, where: str) -> Calibration:
    if not isinstance(data, dict):
        raise CalibrationError(f"{where}: expected a mapping at top level, got {type(data).__name__}")
    version = data.get("schema_version")
    if version != SCHEMA_VERSION:
        raise CalibrationError(f"{where}: schema_version is {version!r}, this version reads {SCHEMA_VERSION}")
    missing = [k for k in _REQUIRED if k not in data]
    if missing:
        raise CalibrationError(f"{where}: missing field(s): {', '.join(missing)}")
    unknown = sorted(set(data) - set(_REQUIRED) - set(_OPTIONAL))
    if unknown:
        raise CalibrationError(f"{where}: unknown field(s): {', '.join(unknown)}")
    try:
        cal = Calibration.from_points(
            image_size_wh=_check_size(data["image_size"], "image_size"),
            source_points_px=data["source_points_px"],
            bev_points_px=data["bev_points_px"],
            bev_size_wh=_check_size(data["bev_size"], "bev_size"),
            reference_pairs=_pairs(data["reference_pairs"], where),
            origin_px=tuple(data["origin_px"]) if "origin_px" in data else None,
            origin_ahead_m=_number(data, "origin_ahead_m", where) if "origin_ahead_m" in data else 0.0,
            camera_notes=str(data.get("camera_notes", "")),
        )
    except CalibrationError as exc:
        raise CalibrationError(f"{where}: {exc}") from exc
    for key, fitted in (("k_x_m_per_px", cal.k_x_m_per_px), ("k_y_m_per_px", cal.k_y_m_per_px)):
        stored = _number(data, key, where)
        if not stored > 0 or abs(stored - fitted) > K_CONSISTENCY_TOL * fitted:
            raise CalibrationError(
                f"{where}: {key}: stored {stored} disagrees with {fitted:.6g} refitted from reference_pairs"
            )
    return cal


def load_calibration(path: str | os.PathLike[str]) -> Calibration:
    """Read and validate a calibration YAML file.

    Raises:
        CalibrationError: unreadable file, malformed YAML, wrong ``schema_version``, a missing/unknown/invalid
            field, or stored k_x/k_y that disagree with the reference pairs; the message names file and field.
    """
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise CalibrationError(f"{path}: cannot read calibration file ({exc.strerror or exc})") from exc
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise CalibrationError(f"{path}: malformed YAML ({' '.join(str(exc).split())})") from exc
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
