"""The bird's-eye-view panel: road in metres seen from above, zone, lane, objects as dots, a scale.

The panel is drawn from plain arrays in road metres ``(lateral_m, ahead_m)`` (lateral positive
to the right, ahead from the ego bumper). With a calibration and the camera frame, the road is
warped into the panel as a background so the lane paint can be checked against the lane lines.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

import cv2
import numpy as np
import numpy.typing as npt

from aeb_app.render.overlay import FONT, GREEN, POINT_RADIUS_PX, RED, WHITE, YELLOW, draw_zone

__all__ = ["BevLayout", "render_bev"]

Image = npt.NDArray[np.uint8]


@dataclass(frozen=True)
class BevLayout:
    """Geometry of the panel.

    Attributes:
        width_px: panel width, pixels.
        height_px: panel height, pixels.
        px_per_m: scale, pixels per metre (both axes).
        bottom_margin_px: pixels below ``ahead_m = 0`` (room for the ego car).
    """

    width_px: int = 320
    height_px: int = 540
    px_per_m: float = 6.0
    bottom_margin_px: int = 40

    @property
    def max_ahead_m(self) -> float:
        return (self.height_px - self.bottom_margin_px) / self.px_per_m

    def to_panel(self, metric_m: npt.ArrayLike) -> npt.NDArray[np.float64]:
        """(n, 2) road metres -> (n, 2) panel pixels."""
        pts = np.asarray(metric_m, dtype=np.float64).reshape(-1, 2)
        x = self.width_px / 2.0 + pts[:, 0] * self.px_per_m
        y = self.height_px - self.bottom_margin_px - pts[:, 1] * self.px_per_m
        return np.stack([x, y], axis=1)

    def metric_matrix(self) -> npt.NDArray[np.float64]:
        """3x3 affine road metres -> panel pixels (homogeneous)."""
        s = self.px_per_m
        return np.array([[s, 0.0, self.width_px / 2.0],
                         [0.0, -s, self.height_px - self.bottom_margin_px],
                         [0.0, 0.0, 1.0]])


def _background(layout: BevLayout, frame: Image | None, image_to_metric: npt.NDArray[np.float64] | None) -> Image:
    size = (layout.width_px, layout.height_px)
    if frame is None or image_to_metric is None:
        return np.full((layout.height_px, layout.width_px, 3), 45, np.uint8)
    matrix = layout.metric_matrix() @ image_to_metric
    warped = cv2.warpPerspective(frame, matrix, size, flags=cv2.INTER_LINEAR, borderValue=(45, 45, 45))
    return cv2.convertScaleAbs(warped, alpha=0.6)  # dim it so the drawing stands out


def _draw_scale(img: Image, layout: BevLayout, step_m: float = 10.0) -> None:
    """Horizontal ticks every ``step_m`` metres with labels, along the left edge."""
    for y, text in _scale_ticks(layout, step_m):
        cv2.line(img, (0, y), (12, y), WHITE, 1)
        cv2.line(img, (12, y), (layout.width_px, y), (90, 90, 90), 1)
        cv2.putText(img, text, (14, y - 2), FONT, 0.38, WHITE, 1, cv2.LINE_AA)


@functools.lru_cache(maxsize=8)
def _scale_ticks(layout: BevLayout, step_m: float) -> tuple[tuple[int, str], ...]:
    """The scale's (panel row, label) per tick, computed once per layout."""
    ticks, ahead = [], 0.0
    while ahead <= layout.max_ahead_m:
        (_, y), = layout.to_panel([[0.0, ahead]]).astype(int)
        ticks.append((int(y), f"{ahead:.0f} m"))
        ahead += step_m
    return tuple(ticks)


def _draw_lanes(img: Image, layout: BevLayout, lane_width_m: float) -> None:
    for k in (-1.5, -0.5, 0.5, 1.5):
        x = int(round(layout.to_panel([[k * lane_width_m, 0.0]])[0, 0]))
        color = WHITE if abs(k) == 0.5 else (160, 160, 160)
        for y in range(0, layout.height_px - layout.bottom_margin_px, 16 if abs(k) > 1 else 4):
            cv2.line(img, (x, y), (x, y + (8 if abs(k) > 1 else 4)), color, 1)


@functools.lru_cache(maxsize=8)
def _lane_layer(layout: BevLayout, lane_width_m: float) -> tuple[Image, npt.NDArray[np.uint8]]:
    """The dashed lane lines as (layer, mask), drawn once per layout and lane width.

    About 300 ``cv2.line`` calls per panel otherwise; pasting the cached layer gives the same pixels
    (1 px lines without anti-aliasing, never black, so the mask is exact).
    """
    layer = np.zeros((layout.height_px, layout.width_px, 3), np.uint8)
    _draw_lanes(layer, layout, lane_width_m)
    mask = layer.any(axis=2).astype(np.uint8)
    layer.setflags(write=False)
    mask.setflags(write=False)
    return layer, mask


def _draw_zone(img: Image, layout: BevLayout, zone_polygon_m: npt.ArrayLike) -> None:
    """The zone blended in its bounding rectangle only (the same pixels as a blend of the whole panel)."""
    draw_zone(img, layout.to_panel(zone_polygon_m), color=YELLOW, alpha=0.35, line_type=cv2.LINE_8)


def render_bev(
    *,
    objects_m: npt.ArrayLike,
    in_zone: npt.ArrayLike,
    zone_polygon_m: npt.ArrayLike | None,
    lane_width_m: float = 3.7,
    layout: BevLayout = BevLayout(),
    frame: Image | None = None,
    image_to_metric: npt.NDArray[np.float64] | None = None,
) -> Image:
    """Draw the panel.

    Args:
        objects_m: (n, 2) objects' ground points, road metres (non-finite rows are skipped).
        in_zone: (n,) bool, red when True, green otherwise.
        zone_polygon_m: (k, 2) braking-zone polygon, road metres, or None.
        lane_width_m: ego-lane width for the lane lines, metres.
        layout: panel geometry.
        frame: optional camera frame (BGR) to warp as background.
        image_to_metric: 3x3 homography image pixels -> road metres (needed with ``frame``).

    Returns:
        (layout.height_px, layout.width_px, 3) uint8 BGR panel.
    """
    img = _background(layout, frame, image_to_metric)
    lanes, lane_mask = _lane_layer(layout, float(lane_width_m))
    cv2.copyTo(lanes, lane_mask, img)
    if zone_polygon_m is not None and len(np.asarray(zone_polygon_m)):
        _draw_zone(img, layout, zone_polygon_m)
    _draw_scale(img, layout)
    ego_w, ego_l = lane_width_m * 0.5, 4.0
    ego = np.round(layout.to_panel([[-ego_w / 2, -ego_l], [ego_w / 2, 0.0]])).astype(int)
    cv2.rectangle(img, tuple(ego[0]), tuple(ego[1]), (255, 200, 0), cv2.FILLED)
    pts = layout.to_panel(objects_m)
    for (x, y), hit in zip(pts, np.asarray(in_zone, dtype=bool).reshape(-1)):
        if np.isfinite(x) and np.isfinite(y) and 0 <= x < layout.width_px and 0 <= y < layout.height_px:
            cv2.circle(img, (int(x), int(y)), POINT_RADIUS_PX, RED if hit else GREEN, cv2.FILLED)
    cv2.putText(img, "bird's-eye view", (6, layout.height_px - 8), FONT, 0.4, WHITE, 1, cv2.LINE_AA)
    return img
