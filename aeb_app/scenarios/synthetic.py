"""Synthetic camera and traffic: a pinhole camera over a flat straight road and a lead vehicle.

World axes (metres): X right of the ego centre line, Y down, Z forward from the camera; the road is
the plane Y = camera height. Ranges ("gaps") are bumper to bumper: camera Z minus ``setback_m``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from aeb_app.geometry import BirdsEyeView, Calibration, ReferencePair
from aeb_app.geometry.construct import ground_ahead_m, project_world

__all__ = ["PinholeCamera", "LeadMotion", "VehicleShape", "vehicle_box_px", "synthetic_calibration"]

LANE_WIDTH_M = 3.7
DASH_PERIOD_M = 3.05 + 9.14


@dataclass(frozen=True)
class PinholeCamera:
    """A forward camera: image size, focal length (px), mounting height (m), pitch down (rad), setback (m).

    ``setback_m`` is how far the camera sits behind the ego front bumper.
    """

    width_px: int = 960
    height_px: int = 540
    focal_px: float = 1000.0
    height_m: float = 1.3
    pitch_rad: float = math.radians(1.0)
    setback_m: float = 1.5

    def project(self, points_m: npt.ArrayLike) -> npt.NDArray[np.float64]:
        """(n, 3) world points (X right, Y down, Z forward; camera at origin) -> (n, 2) pixels."""
        return project_world(points_m, focal_px=self.focal_px, cx=self.width_px / 2, cy=self.height_px / 2,
                             pitch_rad=self.pitch_rad)

    def ground_px(self, lateral_m: float, ahead_cam_m: float) -> tuple[float, float]:
        """Pixel of the road point ``lateral_m`` right and ``ahead_cam_m`` ahead of the camera."""
        u, v = self.project([[lateral_m, self.height_m, ahead_cam_m]])[0]
        return float(u), float(v)

    def ground_ahead_of_pixel_row_m(self, v_px: float) -> float:
        """Distance ahead of the camera (m) of the road point seen on the centre column at row ``v_px``."""
        return ground_ahead_m(v_px, focal_px=self.focal_px, cy=self.height_px / 2, height_m=self.height_m,
                              pitch_rad=self.pitch_rad)


@dataclass(frozen=True)
class LeadMotion:
    """Straight-line kinematics of ego and lead along one lane.

    Attributes:
        ego_speed_mps: ego speed at t = 0.
        lead_speed_mps: lead speed before braking.
        initial_gap_m: bumper-to-bumper gap at t = 0.
        lead_decel_mps2: lead deceleration from ``brake_start_s`` (> 0 brakes until it stops, < 0
            accelerates away).
        brake_start_s: when the lead starts braking (or accelerating).
        ego_accel_mps2: ego acceleration from ``ego_accel_start_s`` (< 0 brakes until it stops). The FCW
            tests drive into the threat at constant speed (0).
        ego_accel_start_s: when the ego starts accelerating or braking.
    """

    ego_speed_mps: float
    lead_speed_mps: float
    initial_gap_m: float
    lead_decel_mps2: float = 0.0
    brake_start_s: float = 0.0
    ego_accel_mps2: float = 0.0
    ego_accel_start_s: float = 0.0

    def lead_position_m(self, t_s: npt.ArrayLike) -> npt.NDArray[np.float64]:
        """Lead rear position (m) from the ego's start bumper position, at times ``t_s``."""
        return self.initial_gap_m + _travel(t_s, self.lead_speed_mps, -self.lead_decel_mps2, self.brake_start_s)

    def ego_position_m(self, t_s: npt.ArrayLike) -> npt.NDArray[np.float64]:
        """Ego front-bumper position (m) from its start, at times ``t_s``."""
        return _travel(t_s, self.ego_speed_mps, self.ego_accel_mps2, self.ego_accel_start_s)

    def ego_speed_at(self, t_s: float, dt_s: float = 1e-3) -> float:
        """Ego speed (m/s) at ``t_s``."""
        return float((self.ego_position_m(t_s + dt_s) - self.ego_position_m(t_s)) / dt_s)

    def gap_m(self, t_s: npt.ArrayLike) -> npt.NDArray[np.float64]:
        """Bumper-to-bumper gap (m) at times ``t_s``."""
        return self.lead_position_m(t_s) - self.ego_position_m(t_s)

    def collision_time_s(self, horizon_s: float = 60.0, step_s: float = 1e-3) -> float:
        """First time the gap reaches 0 (``inf`` if not within ``horizon_s``)."""
        t = np.arange(0.0, horizon_s, step_s)
        hit = np.flatnonzero(self.gap_m(t) <= 0)
        return float(t[hit[0]]) if len(hit) else math.inf

    def closing_speed_mps(self, t_s: float, dt_s: float = 1e-3) -> float:
        """-d(gap)/dt at ``t_s``."""
        return float((self.gap_m(t_s) - self.gap_m(t_s + dt_s)) / dt_s)


def _travel(t_s: npt.ArrayLike, v0_mps: float, accel_mps2: float, start_s: float) -> npt.NDArray[np.float64]:
    """Distance covered by a vehicle at ``v0`` that accelerates by ``accel`` from ``start_s`` (stops at 0 m/s)."""
    t = np.asarray(t_s, dtype=np.float64)
    before = v0_mps * np.minimum(t, start_s)
    tb = np.maximum(t - start_s, 0.0)
    if accel_mps2 < 0:
        tb = np.minimum(tb, v0_mps / -accel_mps2 if v0_mps > 0 else 0.0)
    return before + v0_mps * tb + 0.5 * accel_mps2 * tb**2


@dataclass(frozen=True)
class VehicleShape:
    """A vehicle as a box on wheels (metres): width, height, length, bumper height above the road, and
    the rear/front overhangs (the tyres touch the road that far ahead of the rear face / behind the front)."""

    width_m: float = 1.8
    height_m: float = 1.5
    length_m: float = 4.5
    bumper_m: float = 0.3
    rear_overhang_m: float = 0.9
    front_overhang_m: float = 0.9


def vehicle_box_px(camera: PinholeCamera, *, lateral_m: float, ahead_cam_m: float,
                   shape: VehicleShape | None = None, width_m: float | None = None,
                   height_m: float | None = None) -> npt.NDArray[np.float64] | None:
    """The xyxy pixels a perfect detector would give for a vehicle, clipped to the image; None when not visible.

    The body (from ``bumper_m`` to ``height_m``) and the four tyre contacts on the road are projected;
    the box is their bounding box. Its bottom is therefore the rear tyres' contact, ``rear_overhang_m``
    ahead of the rear face, and a vehicle beside the ego lane shows its side in the box.

    Args:
        camera: the camera.
        lateral_m: vehicle centre right of the ego centre line, metres.
        ahead_cam_m: rear face ahead of the camera, metres.
        shape: vehicle shape (default a 1.8 m wide car); ``width_m``/``height_m`` override it.
    """
    shape = shape or VehicleShape()
    w, h = width_m or shape.width_m, height_m or shape.height_m
    if ahead_cam_m < 0.5:
        return None
    z0, z1 = ahead_cam_m, ahead_cam_m + shape.length_m
    body = [[lateral_m + sx * w / 2, camera.height_m - y, z] for sx in (-1, 1)
            for y in (shape.bumper_m, h) for z in (z0, z1)]
    tyres = [[lateral_m + sx * (w / 2 - 0.1), camera.height_m, z] for sx in (-1, 1)
             for z in (z0 + shape.rear_overhang_m, z1 - shape.front_overhang_m)]
    corners = camera.project(body + tyres)
    x1, y1 = corners.min(axis=0)
    x2, y2 = corners.max(axis=0)
    x1, x2 = np.clip([x1, x2], 0, camera.width_px)
    y1, y2 = np.clip([y1, y2], 0, camera.height_px)
    if x2 - x1 < 1 or y2 - y1 < 1:
        return None
    return np.array([x1, y1, x2, y2])


def synthetic_calibration(camera: PinholeCamera) -> Calibration:
    """Calibrate the synthetic camera exactly as a user would calibrate a real one.

    Four road points on the ego-lane lines at 8 m and 30 m, a BEV lane rectangle (same layout as the
    shipped calibration), and three reference points (lane width 3.7 m across, two dash periods
    24.38 m along) clicked in the image and mapped into the BEV. The distance origin is the bottom
    centre pixel; its distance ahead of the bumper is what an installer would measure with a tape.
    """
    half = LANE_WIDTH_M / 2
    near_m, far_m, ref_m = 8.0, 30.0, 10.0
    src = [camera.ground_px(-half, far_m), camera.ground_px(half, far_m),
           camera.ground_px(half, near_m), camera.ground_px(-half, near_m)]
    bev_points = [(113.0, 900.0), (187.0, 900.0), (187.0, 1340.0), (113.0, 1340.0)]
    view = BirdsEyeView.from_points(image_points_px=src, bev_points_px=bev_points, bev_size_wh=(300, 1400),
                                    image_size_wh=(camera.width_px, camera.height_px))
    origin, across, along = view.to_bev([camera.ground_px(-half, ref_m), camera.ground_px(half, ref_m),
                                         camera.ground_px(-half, ref_m + 2 * DASH_PERIOD_M)])
    pairs = [ReferencePair(tuple(origin), tuple(across), LANE_WIDTH_M, "lane width"),
             ReferencePair(tuple(origin), tuple(along), 2 * DASH_PERIOD_M, "two dash periods")]
    origin_px = (camera.width_px / 2, float(camera.height_px))
    origin_ahead_m = camera.ground_ahead_of_pixel_row_m(camera.height_px) - camera.setback_m
    return Calibration.from_points(
        image_size_wh=(camera.width_px, camera.height_px), source_points_px=src, bev_points_px=bev_points,
        bev_size_wh=(300, 1400), reference_pairs=pairs, origin_px=origin_px, origin_ahead_m=origin_ahead_m,
        camera_notes=f"synthetic pinhole camera {camera}",
    )
