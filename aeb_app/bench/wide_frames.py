"""A wide copy of a COCO folder: each image's band of a given aspect ratio (3.31: KITTI's 1242x375), centred
vertically, with the ground truth clipped to it. How tiling (:mod:`aeb_app.model.tiling`) is scored on real images
with real annotations (``scripts/wide_frames_eval.py``, ``tests/test_tiling.py``).
"""

from __future__ import annotations

import json
from pathlib import Path

import cv2

from aeb_app.bench.coco_eval import find_annotations, find_image

__all__ = ["KEEP_INSIDE", "ROAD_USERS", "make_wide_coco"]

KEEP_INSIDE = 0.5
ROAD_USERS = ("person", "bicycle", "car", "motorcycle", "bus", "truck")


def _clip(ann: dict, top: float, bottom: float) -> dict | None:
    x, y, w, h = ann["bbox"]
    y1, y2 = max(y, top), min(y + h, bottom)
    if y2 <= y1 or (y2 - y1) < KEEP_INSIDE * h:
        return None
    return {**ann, "bbox": [x, y1 - top, w, y2 - y1], "area": w * (y2 - y1), "segmentation": []}


def make_wide_coco(coco_dir: Path, out: Path, aspect: float) -> tuple[Path, int]:
    """Write the wide copy under ``out``: PNG bands (lossless) and ``annotations/instances_wide.json`` (a box is
    kept, clipped, when at least :data:`KEEP_INSIDE` of its height is inside the band); returns (folder, kept
    boxes)."""
    data = json.loads(find_annotations(coco_dir).read_text())
    (out / "annotations").mkdir(parents=True, exist_ok=True)
    images, anns = [], []
    by_image: dict[int, list[dict]] = {}
    for ann in data["annotations"]:
        by_image.setdefault(ann["image_id"], []).append(ann)
    for im in data["images"]:
        frame = cv2.imread(str(find_image(coco_dir, im["file_name"])), cv2.IMREAD_COLOR)
        h, w = frame.shape[:2]
        band = min(h, round(w / aspect))
        top = (h - band) // 2
        name = Path(im["file_name"]).with_suffix(".png").name
        cv2.imwrite(str(out / name), frame[top:top + band])
        images.append({**im, "file_name": name, "height": band, "width": w})
        anns.extend(a for a in (_clip(a, top, top + band) for a in by_image.get(im["id"], [])) if a is not None)
    (out / "annotations" / "instances_wide.json").write_text(json.dumps({**data, "images": images,
                                                                         "annotations": anns}))
    return out, len(anns)
