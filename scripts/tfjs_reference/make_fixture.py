"""Produce tests/fixtures/ssdlite_tfjs_reference.json: TF.js's own outputs on a few COCO images.

Usage (from the repository root, once; needs Node 18+ and network access for ``npm ci``):

    (cd scripts/tfjs_reference && npm ci)
    python scripts/tfjs_reference/make_fixture.py ../shared/data

Each image is resized to 300x300 RGB with the app's own resize (``resize_frame``), so TF.js
(whose graph resizes 300x300 to 300x300, an identity) and the PyTorch rebuild see the same
pixels; the comparison is of the networks, not of two resize implementations. TF.js runs with
its CPU backend (``reference.js``), and does the per-class NMS itself. The fixture keeps, per
image, TF.js's detections and a raw sample: the 40 highest (anchor, class) scores and the
boxes of those anchors, plus every 50th anchor's box and best score.
"""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
from pathlib import Path

import cv2
import numpy as np

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO))

from aeb_app.atomic import write_text  # noqa: E402
from aeb_app.model.preprocess import resize_frame  # noqa: E402
from aeb_app.model.ssdlite_mobilenet_v2 import build_ssdlite_mobilenet_v2  # noqa: E402

MODEL_REL = "models/ssdlite_mobilenet_v2_coco_tfjs"
#: Five COCO val2017 images of the mirror with people, vehicles, animals and clutter.
IMAGES = ("000000000139.jpg", "000000005001.jpg", "000000017627.jpg", "000000022892.jpg", "000000087038.jpg")
TOP_PAIRS = 40
ANCHOR_STRIDE = 50
OUT = REPO / "tests" / "fixtures" / "ssdlite_tfjs_reference.json"


def _raw_sample(scores: np.ndarray, boxes: np.ndarray) -> dict:
    flat = np.argsort(-scores.reshape(-1), kind="stable")[:TOP_PAIRS]
    anchors, classes = np.divmod(flat, scores.shape[1])
    grid = np.arange(0, scores.shape[0], ANCHOR_STRIDE)
    return {
        "top_anchor": anchors.tolist(), "top_class_index": classes.tolist(),
        "top_score": np.round(scores[anchors, classes], 6).tolist(),
        "top_box_yxyx": np.round(boxes[anchors], 6).tolist(),
        "grid_anchor": grid.tolist(), "grid_box_yxyx": np.round(boxes[grid], 6).tolist(),
        "grid_max_score": np.round(scores[grid].max(axis=1), 6).tolist(),
    }


def main(data_dir: Path) -> None:
    spec, _ = build_ssdlite_mobilenet_v2(data_dir / MODEL_REL / "model.json")
    lock = json.loads((REPO / "scripts/tfjs_reference/package-lock.json").read_text())
    with tempfile.TemporaryDirectory(prefix="tfjs-ref-") as tmp:
        work = Path(tmp)
        items = []
        for name in IMAGES:
            frame = cv2.imread(str(data_dir / "coco/val2017_subset/val2017" / name), cv2.IMREAD_COLOR)
            if frame is None:
                raise SystemExit(f"{name}: not readable in {data_dir}")
            rgb = resize_frame(frame, spec)
            (work / f"{name}.rgb").write_bytes(rgb.tobytes())
            items.append({"name": name, "file": f"{name}.rgb", "height": rgb.shape[0], "width": rgb.shape[1]})
        (work / "inputs.json").write_text(json.dumps(items))
        subprocess.run(["node", str(REPO / "scripts/tfjs_reference/reference.js"), str(data_dir / MODEL_REL),
                        str(work)], check=True, cwd=REPO / "scripts/tfjs_reference")
        ref = json.loads((work / "detections.json").read_text())
        images = []
        for item, res in zip(items, ref["results"]):
            scores = np.fromfile(work / (item["file"] + ".scores.f32"), np.float32).reshape(-1, 90)
            boxes = np.fromfile(work / (item["file"] + ".boxes.f32"), np.float32).reshape(-1, 4)
            dets = [{"category_id": d["class_index"] + 1, "score": round(d["score"], 6),
                     "box_yxyx": [round(v, 6) for v in d["box_yxyx"]], "anchor": d["anchor"]}
                    for d in res["detections"]]
            images.append({"name": item["name"], "detections": dets, "raw": _raw_sample(scores, boxes)})
    fixture = {
        "what": "TF.js COCO-SSD lite_mobilenet_v2 graph model outputs on 300x300 RGB inputs made by "
                "aeb_app.model.preprocess.resize_frame; scores exclude background (index + 1 = COCO id); "
                "boxes are ymin, xmin, ymax, xmax normalised",
        "made_by": "scripts/tfjs_reference/make_fixture.py",
        "versions": {**ref["versions"],
                     "npm_lock_tfjs": lock["packages"]["node_modules/@tensorflow/tfjs"]["version"]},
        "nms": ref["nms"],
        "images": images,
    }
    write_text(OUT, json.dumps(fixture, indent=1) + "\n")
    print(f"wrote {OUT} ({OUT.stat().st_size} bytes)")


if __name__ == "__main__":
    main(Path(sys.argv[1]).resolve())
