"""Stateless drawing on BGR uint8 images: boxes, ground points, the braking zone, labels, banner, HUD.

Every function draws in place on the image it is given and returns it; callers pass a copy when
the original frame must stay clean (:func:`aeb_app.render.render_frame` does). Colours are BGR.
"""

from __future__ import annotations

import math
from typing import Sequence

import cv2
import numpy as np
import numpy.typing as npt

from aeb_app.render.labels import (CROSS_CLASS_IOU, Rect, class_color, merge_cross_class_duplicates, place_labels,
                                   place_point_labels)
from aeb_app.types import Detections, WarningLevel

__all__ = [
    "RED", "GREEN", "YELLOW", "WHITE", "BLACK", "BANNER_COLORS", "BANNER_TEXT",
    "draw_detections", "draw_zone", "draw_ground_points", "draw_object_labels",
    "draw_banner", "draw_hud", "format_ttc",
]

Image = npt.NDArray[np.uint8]

RED = (0, 0, 255)
GREEN = (0, 255, 0)
YELLOW = (0, 255, 255)
WHITE = (255, 255, 255)
BLACK = (0, 0, 0)
#: Text scale of box labels (OpenCV Hershey units).
LABEL_SCALE = 0.45
#: Banner background per level (NONE draws no banner).
BANNER_COLORS: dict[WarningLevel, tuple[int, int, int]] = {
    WarningLevel.CAUTION: (0, 200, 255),
    WarningLevel.BRAKE: (0, 0, 230),
    WarningLevel.UNAVAILABLE: (128, 128, 128),
}
BANNER_TEXT: dict[WarningLevel, str] = {
    WarningLevel.NONE: "",
    WarningLevel.CAUTION: "CAUTION: vehicle ahead closing",
    WarningLevel.BRAKE: "BRAKE!",
    WarningLevel.UNAVAILABLE: "AEB SYSTEM UNAVAILABLE",
}
FONT = cv2.FONT_HERSHEY_SIMPLEX
#: Radius of a ground-point dot, pixels.
POINT_RADIUS_PX = 6
#: Text scale of the distance / TTC labels beside the ground points.
RANGE_LABEL_SCALE = 0.42


def _text_with_background(img: Image, text: str, org: tuple[int, int], *, scale: float = 0.45,
                          color: tuple[int, int, int] = WHITE, bg: tuple[int, int, int] = BLACK) -> None:
    """Text whose baseline-left corner is ``org``, on a filled box so it reads on any background."""
    (tw, th), base = cv2.getTextSize(text, FONT, scale, 1)
    x, y = org
    y = max(y, th + 2)
    cv2.rectangle(img, (x, y - th - 2), (x + tw + 2, y + base), bg, cv2.FILLED)
    cv2.putText(img, text, (x + 1, y - 1), FONT, scale, color, 1, cv2.LINE_AA)


def draw_detections(img: Image, detections: Detections, *, color: tuple[int, int, int] | None = None,
                    merge_iou: float | None = CROSS_CLASS_IOU, occupied: list[Rect] | None = None) -> Image:
    """Draw each box in its class colour with ``name score`` on a label that avoids the others.

    Args:
        img: BGR image, drawn on in place.
        detections: boxes in ``img``'s pixels.
        color: one BGR colour for every box (None: :func:`~aeb_app.render.labels.class_color` per class).
        merge_iou: boxes of different classes overlapping above this IoU are drawn once, with the
            higher score's label (None: draw every box).
        occupied: label rectangles to avoid; the labels drawn here are appended to it.
    """
    if merge_iou is not None:
        detections = merge_cross_class_duplicates(detections, merge_iou)
    order = np.argsort(-detections.scores, kind="stable")  # the most confident label gets the best slot
    texts = [f"{detections.names[i] or '?'} {detections.scores[i]:.2f}" for i in order]
    sizes = []
    for text in texts:
        (tw, th), base = cv2.getTextSize(text, FONT, LABEL_SCALE, 1)
        sizes.append((tw + 2, th + base + 2))
    corners = place_labels(detections.xyxy_px[order], sizes, img.shape[:2], occupied=occupied)
    colors = [color or class_color(detections.category_ids[i]) for i in order]
    # every box first, so no box line crosses a label (np.round: half to even, as round() of each value)
    for (x1, y1, x2, y2), box_color in zip(np.round(detections.xyxy_px[order]).astype(np.int64).tolist(), colors):
        cv2.rectangle(img, (x1, y1), (x2, y2), box_color, 2)
    for text, box_color, (w, h), (x, y) in zip(texts, colors, sizes, corners):
        cv2.rectangle(img, (x, y), (x + w, y + h), box_color, cv2.FILLED)
        cv2.putText(img, text, (x + 1, y + h - 3), FONT, LABEL_SCALE, BLACK, 1, cv2.LINE_AA)
    return img


def draw_zone(img: Image, polygon_px: npt.ArrayLike, *, color: tuple[int, int, int] = YELLOW,
              alpha: float = 0.3, line_type: int = cv2.LINE_AA) -> Image:
    """Fill the (n, 2) image-pixel zone polygon translucently and outline it (``line_type``: OpenCV's).

    Only the polygon's bounding rectangle is blended, to keep the cost low on large frames (outside the
    polygon, ``alpha * p + (1 - alpha) * p`` rounds back to ``p``: the same pixels as a whole-image blend).
    """
    pts = np.asarray(polygon_px, dtype=np.float64).reshape(-1, 2)
    if len(pts) < 3 or not np.isfinite(pts).all():
        return img
    h, w = img.shape[:2]
    poly = np.round(pts).astype(np.int32)
    x0, y0 = np.clip(poly.min(axis=0), 0, [w, h])
    x1, y1 = np.clip(poly.max(axis=0) + 1, 0, [w, h])
    if x1 > x0 and y1 > y0:
        roi = img[y0:y1, x0:x1]
        layer = roi.copy()
        cv2.fillPoly(layer, [poly - [x0, y0]], color)
        cv2.addWeighted(layer, alpha, roi, 1 - alpha, 0, dst=roi)
    cv2.polylines(img, [poly], True, color, 2, line_type)
    return img


def draw_ground_points(img: Image, points_px: npt.ArrayLike, in_zone: npt.ArrayLike) -> Image:
    """Filled dots at (n, 2) ground points: red inside the zone, green outside."""
    pts = np.asarray(points_px, dtype=np.float64).reshape(-1, 2)
    inside = np.asarray(in_zone, dtype=bool).reshape(-1)
    for (x, y), hit in zip(pts, inside):
        if np.isfinite(x) and np.isfinite(y):
            cv2.circle(img, (int(round(x)), int(round(y))), POINT_RADIUS_PX, RED if hit else GREEN, cv2.FILLED)
    return img


def format_ttc(ttc_s: float) -> str:
    """``"TTC 2.3 s"``, or ``"TTC -"`` when not closing (infinite/NaN)."""
    return f"TTC {ttc_s:.1f} s" if math.isfinite(ttc_s) else "TTC -"


def draw_object_labels(img: Image, points_px: npt.ArrayLike, distance_m: Sequence[float],
                       ttc_s: Sequence[float], *, occupied: list[Rect] | None = None) -> Image:
    """``12.3 m | TTC 2.1 s`` beside each ground point (NaN distance: no label).

    Labels are placed in the order given (the caller puts the most important first) and never cover
    one another or a rectangle in ``occupied`` (e.g. the box labels): a label that would is moved
    up or down by its height (:func:`~aeb_app.render.labels.place_point_labels`).
    """
    pts = np.asarray(points_px, dtype=np.float64).reshape(-1, 2)
    keep = [i for i, ((x, y), dist) in enumerate(zip(pts, distance_m))
            if np.isfinite(x) and np.isfinite(y) and math.isfinite(dist)]
    texts = [f"{distance_m[i]:.1f} m | {format_ttc(ttc_s[i])}" for i in keep]
    metrics = [cv2.getTextSize(t, FONT, RANGE_LABEL_SCALE, 1) for t in texts]
    sizes = [(tw + 2, th + base + 2) for (tw, th), base in metrics]
    th_max = max((th for (_, th), _ in metrics), default=0)
    corners = place_point_labels(pts[keep].astype(np.int64), sizes, img.shape[:2],
                                 offset_xy=(POINT_RADIUS_PX + 2, 12 - th_max), occupied=occupied)
    for text, ((_, th), _), (w, h), (x, y) in zip(texts, metrics, sizes, corners):
        cv2.rectangle(img, (x, y), (x + w, y + h), BLACK, cv2.FILLED)
        cv2.putText(img, text, (x + 1, y + th + 1), FONT, RANGE_LABEL_SCALE, WHITE, 1, cv2.LINE_AA)
    return img


def draw_banner(img: Image, level: WarningLevel, *, detail: str = "") -> Image:
    """A full-width banner at the top for CAUTION, BRAKE and UNAVAILABLE; nothing for NONE."""
    if level == WarningLevel.NONE:
        return img
    w = img.shape[1]
    height = 44
    cv2.rectangle(img, (0, 0), (w, height), BANNER_COLORS[level], cv2.FILLED)
    text = BANNER_TEXT[level] + (f"  ({detail})" if detail else "")
    scale = 0.9 if level == WarningLevel.BRAKE else 0.7
    (tw, th), _ = cv2.getTextSize(text, FONT, scale, 2)
    cv2.putText(img, text, (max(4, (w - tw) // 2), (height + th) // 2), FONT, scale, WHITE, 2, cv2.LINE_AA)
    return img


def draw_hud(img: Image, lines: Sequence[str], *, origin: tuple[int, int] = (8, 60)) -> Image:
    """Lines of small text on a dark box, top-left below the banner."""
    x, y = origin
    for i, line in enumerate(lines):
        _text_with_background(img, line, (x, y + 16 * i), scale=0.42, bg=(40, 40, 40))
    return img
