"""Stateless drawing: overlays on a copy of the frame, and the bird's-eye-view panel."""

from __future__ import annotations

import math
from typing import Any, Sequence

import numpy as np
import numpy.typing as npt

from aeb_app.render.bev import BevLayout, render_bev
from aeb_app.render.labels import drop_repeated_boxes
from aeb_app.render.overlay import (
    BANNER_TEXT, GREEN, RED, YELLOW, draw_banner, draw_detections, draw_ground_points, draw_hud,
    draw_object_labels, draw_zone, format_ttc,
)
from aeb_app.types import Detections, WarningLevel

__all__ = [
    "BevLayout", "render_bev", "render_frame", "side_by_side", "BANNER_TEXT", "RED", "GREEN", "YELLOW",
    "draw_banner", "draw_detections", "draw_ground_points", "draw_hud", "draw_object_labels", "draw_zone",
    "format_ttc",
]


#: Objects farther than this (and outside the zone) get a dot but no distance/TTC label, metres.
LABEL_MAX_DISTANCE_M = 50.0


def render_frame(
    frame_bgr: npt.NDArray[np.uint8],
    detections: Detections | None,
    state: Any | None,
    *,
    level: WarningLevel,
    hud_lines: Sequence[str] = (),
    banner_detail: str = "",
) -> npt.NDArray[np.uint8]:
    """All overlays on a copy of ``frame_bgr``.

    Args:
        frame_bgr: (h, w, 3) uint8 camera frame (left untouched).
        detections: the frame's detections, or None.
        state: an AEB frame state (``zone_polygon_px``, ``objects`` with ``ground_px``, ``in_zone``,
            ``distance_m``, ``ttc_s``), or None without a calibration.
        level: the warning level for the banner.
        hud_lines: HUD text lines.
        banner_detail: extra text in the banner (e.g. why the system is unavailable).

    Returns:
        The annotated copy.
    """
    img = frame_bgr.copy()
    labels: list[tuple[int, int, int, int]] = []  # every label drawn so far: later ones avoid them
    if state is not None and len(state.zone_polygon_px):
        draw_zone(img, state.zone_polygon_px)
    if detections is not None:
        draw_detections(img, detections, occupied=labels)
    if state is not None and state.objects:
        ground = np.array([o.ground_px for o in state.objects], dtype=np.float64)
        draw_ground_points(img, ground, [o.in_zone for o in state.objects])
        # Labels only where they matter (in the zone, or near): far traffic would bury the view in text.
        # In-zone objects first, then by distance: the label that matters most keeps its place.
        near = sorted((i for i, o in enumerate(state.objects) if o.in_zone or o.distance_m < LABEL_MAX_DISTANCE_M),
                      key=lambda i: (not state.objects[i].in_zone, state.objects[i].distance_m))
        # One label per object: a detector's second box on it (another class) would repeat it.
        boxes = [getattr(state.objects[i], "xyxy_px", (math.nan,) * 4) for i in near]
        near = [near[k] for k in drop_repeated_boxes(boxes)]
        draw_object_labels(img, ground[near], [state.objects[i].distance_m for i in near],
                           [state.objects[i].ttc_s for i in near], occupied=labels)
    draw_banner(img, level, detail=banner_detail)
    if hud_lines:
        draw_hud(img, hud_lines)
    return img


def side_by_side(left: npt.NDArray[np.uint8], right: npt.NDArray[np.uint8]) -> npt.NDArray[np.uint8]:
    """``left | right``, the right image padded/cropped to the left's height."""
    h = left.shape[0]
    if right.shape[0] != h:
        pad = np.zeros((h, right.shape[1], 3), np.uint8)
        rows = min(h, right.shape[0])
        pad[:rows] = right[:rows]
        right = pad
    return np.hstack([left, right])
