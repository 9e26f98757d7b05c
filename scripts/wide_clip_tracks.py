"""One wide clip through ``aeb-app run`` with and without tiles: how steady the tracked boxes are.

No ground truth is needed: a box bottom that jumps from frame to frame is range noise (the issue's cause 2: "worse
when a wide frame is squeezed into 300x300"). For each run: rows and tracks in the tracks CSV, tracks seen in at
least 10 frames, and over consecutive frames of one track the |change| of the box bottom (y2, px) and of the box
width (px), median and 95th percentile, and the frame-to-frame |change| of the per-frame range measurement
relative to it (``measured_m``; also the 95th percentile under 25 m and at 25-50 m). Writes a JSON (and prints a
table).

    python scripts/wide_clip_tracks.py CLIP.mp4 --calibration CLIP.yaml --mode fp32_ort --out result.json
"""

from __future__ import annotations

import argparse
import csv
import json
import sys
import tempfile
from collections import defaultdict
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from aeb_app.cli import main as cli_main  # noqa: E402


def track_steadiness(tracks_csv: Path) -> dict:
    rows = list(csv.DictReader(tracks_csv.open()))
    by_track: dict[str, list[dict]] = defaultdict(list)
    for row in rows:
        by_track[row["track_id"]].append(row)
    dy, dw, dr = [], [], []
    bands: dict[str, list[float]] = {"under_25m": [], "25_50m": []}
    for seq in by_track.values():
        seq.sort(key=lambda r: int(r["frame"]))
        for a, b in zip(seq, seq[1:]):
            if int(b["frame"]) != int(a["frame"]) + 1:
                continue
            dy.append(abs(float(b["y2"]) - float(a["y2"])))
            dw.append(abs((float(b["x2"]) - float(b["x1"])) - (float(a["x2"]) - float(a["x1"]))))
            ma, mb = float(a["measured_m"]), float(b["measured_m"])
            if ma > 0 and mb > 0:
                dr.append(abs(mb - ma) / ma)
                if ma < 50:
                    bands["under_25m" if ma < 25 else "25_50m"].append(abs(mb - ma) / ma)
    pct = lambda v, q: round(float(np.percentile(v, q)), 3) if v else None  # noqa: E731
    return {"rows": len(rows), "tracks": len(by_track), "tracks_10_frames": sum(len(s) >= 10 for s in by_track.values()),
            "pairs": len(dy), "bottom_jump_px_median": pct(dy, 50), "bottom_jump_px_p95": pct(dy, 95),
            "width_jump_px_median": pct(dw, 50), "width_jump_px_p95": pct(dw, 95),
            "range_jump_rel_median": pct(dr, 50), "range_jump_rel_p95": pct(dr, 95),
            **{f"range_jump_rel_p95_{k}": pct(v, 95) for k, v in bands.items()}}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("video", type=Path)
    parser.add_argument("--calibration", type=Path, required=True)
    parser.add_argument("--mode", default="fp32_ort")
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args()
    result = {"command": " ".join(["python", *sys.argv]), "video": str(args.video), "runs": {}}
    with tempfile.TemporaryDirectory() as tmp:
        for name, extra in (("whole frame, squeezed", ["--no-tiles"]), ("tiles + whole frame", [])):
            tracks = Path(tmp) / "tracks.csv"
            code = cli_main(["run", str(args.video), "--calibration", str(args.calibration), "--mode", args.mode,
                             "--tracks", str(tracks), "--no-progress", *extra])
            if code != 0:
                return code
            result["runs"][name] = track_steadiness(tracks)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    keys = list(next(iter(result["runs"].values())))
    print("| run | " + " | ".join(keys) + " |")
    print("|---" * (len(keys) + 1) + "|")
    for name, stats in result["runs"].items():
        print(f"| {name} | " + " | ".join(str(stats[k]) for k in keys) + " |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
