"""COCO mAP on wide frames: whole frames squeezed into the network's square input vs tiles (aeb_app.model.tiling).

Builds a wide copy of a COCO folder: from each image the band of aspect ``--aspect`` (width / height; 3.31 is
KITTI's 1242x375) centred vertically, saved as PNG (lossless), with the ground truth clipped to the band (a box
keeps when at least half of it is inside; crowd boxes as they are). Then scores the detector on it with and
without tiling, and writes a JSON and a Markdown table.

    python scripts/wide_frames_eval.py --coco ../shared/data/coco/val2017_subset --mode fp32_ort \
        --out docs/benchmarks/wide_frames.json
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from aeb_app.bench.coco_eval import evaluate_detector  # noqa: E402
from aeb_app.bench.wide_frames import ROAD_USERS, make_wide_coco  # noqa: E402
from aeb_app.model.postprocess import EVAL_POSTPROCESS  # noqa: E402
from aeb_app.model.tiling import NO_TILING  # noqa: E402


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--coco", type=Path, required=True, help="COCO folder (images + annotations/)")
    parser.add_argument("--model", default="ssd_mobilenet_v1")
    parser.add_argument("--mode", default="fp32_ort")
    parser.add_argument("--aspect", type=float, default=1242 / 375)
    parser.add_argument("--out", type=Path, required=True, help="JSON to write (a .md beside it)")
    args = parser.parse_args()
    from aeb_app.stream import create_detector

    rows = []
    with tempfile.TemporaryDirectory() as tmp, create_detector(model=args.model, mode=args.mode) as detector:
        folder, boxes = make_wide_coco(args.coco, Path(tmp), args.aspect)
        for name, config in (("whole frame, squeezed", replace(EVAL_POSTPROCESS, tiling=NO_TILING)),
                             ("tiles + whole frame", EVAL_POSTPROCESS)):
            t0 = time.perf_counter()
            result = evaluate_detector(detector, folder, config=config, batch_size=4)
            rows.append({"view": name, "map": round(result["map"], 4), "map50": round(result["map50"], 4),
                         "map_small": round(result["map_small"], 4), "map_medium": round(result["map_medium"], 4),
                         "map_large": round(result["map_large"], 4), "ar100": round(result["ar100"], 4),
                         "seconds": round(time.perf_counter() - t0, 1),
                         "road_users_ap": {c["name"]: None if c["ap"] is None else round(c["ap"], 4)
                                           for c in result["per_class"] if c["name"] in ROAD_USERS}})
    report = {"command": " ".join(["python", *sys.argv]), "model": args.model, "mode": args.mode,
              "aspect": round(args.aspect, 3), "images": result["num_images"], "gt_boxes": boxes, "rows": rows}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2) + "\n")
    users = [n for n in ROAD_USERS if rows[0]["road_users_ap"].get(n) is not None]
    lines = ["| view | mAP | mAP50 | small | medium | large | AR@100 | " + " | ".join(f"AP {n}" for n in users) + " | s |",
             "|---" * (8 + len(users)) + "|"]
    lines += [f"| {r['view']} | {r['map']:.4f} | {r['map50']:.4f} | {r['map_small']:.4f} | {r['map_medium']:.4f} | "
              f"{r['map_large']:.4f} | {r['ar100']:.4f} | "
              + " | ".join(f"{r['road_users_ap'][n]:.3f}" for n in users) + f" | {r['seconds']} |" for r in rows]
    head = [f"# COCO on wide frames ({args.model}, {args.mode}): squeezed whole vs tiles", "",
            f"{report['images']} COCO val2017 images cut to bands of aspect {report['aspect']} (KITTI's 1242x375), "
            f"{boxes} ground-truth boxes clipped to them; `{report['command']}`. Accuracy does not depend on the "
            "machine; the seconds column is one 2-core CPU, not a benchmark.", ""]
    args.out.with_suffix(".md").write_text("\n".join(head + lines) + "\n")
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
