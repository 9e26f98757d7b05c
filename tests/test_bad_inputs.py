"""A bad-input corpus against every entry point, run as ``python -m aeb_app ...`` subprocesses.

The corpus is generated here (nothing binary is checked in): hostile calibration YAMLs, corrupt,
truncated, torn, frozen, blank and one-frame videos, damaged JPEGs, bad options for every command,
bad outputs, bad sidecars and caches. Every case must end in either a one-line error (exit 2, no
"Traceback" in stderr) or a correct result, within 10 s of CPU time and 1 GB of memory, with every
input and every pre-existing output byte-identical afterwards and no temp file left behind.

Cases that only parse options or read inputs run before any model loads (the "fast" group); the
few that need the model (``--mode fp32 --threads 1``) form the "model" group. Each group runs its
subprocesses two at a time in one module-scoped fixture; the tests then check one case each.
"""

from __future__ import annotations

import hashlib
import os
import signal
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import cv2
import numpy as np
import pytest
import yaml

REPO = Path(__file__).resolve().parents[1]
CALIBRATION = REPO / "calibration" / "solidWhiteRight.yaml"
#: Limits per case (CPU seconds, not wall: CI machines are shared; resident memory, KiB).
MAX_CPU_S = 10.0
MAX_RSS_KB = 1 << 20
#: A hung child is killed after this many wall-clock seconds.
WALL_TIMEOUT_S = 120.0


# -- the corpus ---------------------------------------------------------------------------------------------

def _cal_dict() -> dict:
    return yaml.safe_load(CALIBRATION.read_text(encoding="utf-8"))


def _cal_with(**changes) -> bytes:
    data = _cal_dict()
    data.update(changes)
    return yaml.safe_dump(data, width=10**6).encode()


def calibration_corpus() -> dict[str, tuple[bytes, str]]:
    """name -> (file bytes, regex the one-line error must match)."""
    laughs = ["schema_version: 1", 'l0: &l0 ["lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol"]']
    laughs += [f"l{i}: &l{i} [{', '.join([f'*l{i - 1}'] * 9)}]" for i in range(1, 9)] + ["reference_pairs: [*l8]"]
    pairs = _cal_dict()["reference_pairs"]
    pairs[0] = {**pairs[0], "a_bev_px": [1e308, -1e308]}
    return {
        "billion_laughs": ("\n".join(laughs).encode(), "anchors .* not allowed"),
        "non_utf8": ("camera_notes: 'caf\u00e9'\n".encode("latin-1"), "not UTF-8"),
        "deep_nesting": (("origin_px: " + "[" * 5000 + "]" * 5000).encode(), "nested deeper"),
        "oversized": (b"camera_notes: '" + b"x" * 400_000 + b"'\n", "larger than"),
        "huge_int": (_cal_with(origin_ahead_m=10**400), "origin_ahead_m.*out of range"),
        "int_5000_digits": (b"schema_version: 1" + b"0" * 5000 + b"\n", "cannot be read"),
        "origin_ab": (_cal_with(origin_px="ab"), r"origin_px: expected \[x, y\]"),
        "origin_short": (_cal_with(origin_px=[480]), r"origin_px: expected \[x, y\]"),
        "pair_1e308": (_cal_with(reference_pairs=pairs), r"reference_pairs\[0\]\.a_bev_px\[0\]"),
        "source_nan": (_cal_with(source_points_px=[[float("nan"), 1]] + _cal_dict()["source_points_px"][1:]),
                       r"source_points_px\[0\]\[0\]"),
        "source_3_points": (_cal_with(source_points_px=_cal_dict()["source_points_px"][:3]), "list of 4"),
        "source_singular": (_cal_with(source_points_px=[[10, 10], [20, 20], [30, 30], [40, 40]]), "collinear"),
        "origin_above_horizon": (_cal_with(origin_px=[480.0, 100.0]), "above the horizon"),
        "horizon_outside": (_cal_with(source_points_px=[[300, 300], [600, 300], [620, 520], [280, 520]]),
                            "horizon lies outside"),
        "empty": (b"", "expected a mapping"),
        "python_tag": (b"schema_version: !!python/object/apply:os.system ['true']\n", "malformed YAML"),
    }


def sample_frames(video: Path, n: int) -> list[np.ndarray]:
    cap = cv2.VideoCapture(str(video))
    try:
        frames = [cap.read()[1] for _ in range(n)]
    finally:
        cap.release()
    assert all(f is not None for f in frames), f"cannot read {n} frames of {video}"
    return frames


def write_avi(path: Path, frames: list[np.ndarray]) -> None:
    """MJPG .avi (each frame coded alone: repeated frames decode bit-identical)."""
    h, w = frames[0].shape[:2]
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), 25, (w, h))
    for frame in frames:
        writer.write(frame)
    writer.release()
    assert path.stat().st_size > 0


#: Frames of :func:`implausible_video` (without its tail).
IMPLAUSIBLE_FRAMES = 36


def implausible_video(frames: list[np.ndarray], path: Path, tail: int = 0) -> None:
    """30 real frames with a blank one at 5, a torn one (decoder fill) at 16 and a frozen run at 27-31
    (two of them count as frozen), then ``tail`` more real frames."""
    assert len(frames) >= 30
    torn = frames[15].copy()
    torn[160:480] = (0, 135, 0)
    seq = (frames[:5] + [np.full_like(frames[0], 90)] + frames[5:15] + [torn] + frames[15:25] + [frames[25]] * 5
           + frames[26:30])
    assert len(seq) == IMPLAUSIBLE_FRAMES
    write_avi(path, seq + [frames[i % len(frames)] for i in range(tail)])


def truncated_jpeg(still: Path, path: Path, *, end_marker: bool) -> None:
    data = still.read_bytes()
    path.write_bytes(data[: len(data) // 2] + (b"\xff\xd9" if end_marker else b""))


# -- running the CLI ----------------------------------------------------------------------------------------

@dataclass
class Outcome:
    rc: int
    stdout: str
    stderr: str
    cpu_s: float
    rss_kb: int
    before: dict[str, str]
    after: dict[str, str]


@dataclass
class Case:
    """One corpus entry: files to create in its folder, the command, and what must come out.

    ``expect`` is ``"error"`` (exit 2, one line matching ``message``) or ``"ok"`` (exit 0, ``check`` passes,
    the only new files are ``outputs``).
    """

    name: str
    args: list[str]
    expect: str = "error"
    message: str = ""
    setup: Callable[[Path], None] | None = None
    outputs: tuple[str, ...] = ()
    check: Callable[[Path, Outcome], None] | None = None
    env: dict[str, str] = field(default_factory=dict)


def snapshot(folder: Path) -> dict[str, str]:
    """relative path -> sha256 of every file under ``folder`` (hidden temp files included)."""
    return {str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file()}


def run_cli(args: list[str], cwd: Path, env: dict[str, str] | None = None,
            on_start: Callable[[subprocess.Popen], None] | None = None) -> tuple[int, str, str, float, int]:
    """``python -m aeb_app ARGS`` in ``cwd``; returns (exit code, stdout, stderr, CPU s, max RSS KiB)."""
    full_env = {**os.environ, "PYTHONPATH": str(REPO), "AEB_APP_CACHE_DIR": str(cwd / ".." / "cache"),
                "PYTHONWARNINGS": "ignore", **(env or {})}
    out, err = cwd.parent / f"{cwd.name}.out", cwd.parent / f"{cwd.name}.err"
    with out.open("wb") as fo, err.open("wb") as fe:
        proc = subprocess.Popen([sys.executable, "-m", "aeb_app", *args], cwd=cwd, env=full_env,
                                stdout=fo, stderr=fe, stdin=subprocess.DEVNULL)
        timer = threading.Timer(WALL_TIMEOUT_S, proc.kill)
        timer.start()
        try:
            if on_start is not None:
                on_start(proc)
            status, usage, peak_kb = _wait_with_peak_rss(proc.pid)
        finally:
            timer.cancel()
        proc.returncode = os.waitstatus_to_exitcode(status)  # reaped here; keep Popen from waiting again
    return (proc.returncode, out.read_text(errors="replace"), err.read_text(errors="replace"),
            usage.ru_utime + usage.ru_stime, peak_kb)


def _wait_with_peak_rss(pid: int) -> tuple[int, Any, int]:
    """Reap ``pid``; returns (wait status, rusage, peak resident memory in KiB).

    The peak is the child's ``VmHWM`` from ``/proc``, polled while it runs: ``ru_maxrss`` would also count
    the parent's pages that the child held between fork and exec (the whole pytest process).
    """
    peak = 0
    while True:
        done, status, usage = os.wait4(pid, os.WNOHANG)
        if done:
            return status, usage, peak
        try:
            text = Path(f"/proc/{pid}/status").read_text()
            peak = max(peak, int(next(ln.split()[1] for ln in text.splitlines() if ln.startswith("VmHWM:"))))
        except (OSError, StopIteration, ValueError):
            pass
        time.sleep(0.02)


def run_case(case: Case, root: Path) -> Outcome:
    folder = root / case.name
    folder.mkdir(parents=True)
    if case.setup is not None:
        case.setup(folder)
    before = snapshot(folder)
    args = [a.format(d=folder) for a in case.args]
    env = {k: v.format(d=folder) for k, v in case.env.items()}
    rc, stdout, stderr, cpu_s, rss_kb = run_cli(args, folder, env)
    return Outcome(rc, stdout, stderr, cpu_s, rss_kb, before, snapshot(folder))


def assert_outcome(case: Case, outcome: Outcome, folder: Path) -> None:
    err = outcome.stderr
    assert "Traceback" not in err, err[-2000:]
    assert outcome.cpu_s < MAX_CPU_S, f"{case.name}: {outcome.cpu_s:.1f} s CPU"
    assert outcome.rss_kb < MAX_RSS_KB, f"{case.name}: {outcome.rss_kb / 1024:.0f} MiB"
    changed = {k for k in outcome.before if outcome.after.get(k) != outcome.before[k]}
    assert not changed, f"{case.name}: inputs/outputs modified or removed: {sorted(changed)}"
    new = set(outcome.after) - set(outcome.before)
    if case.expect == "error":
        # The app's own report is one line; native libraries (FFmpeg, libjpeg) may print their own lines.
        lines = [ln for ln in err.strip().splitlines() if ln.startswith("aeb-app") and "error:" in ln]
        assert outcome.rc == 2, (outcome.rc, err[-1500:])
        assert len(lines) == 1, err[-1500:]
        import re

        assert re.search(case.message, lines[0]), (case.message, lines[0])
        assert len(lines[0]) < 400
        assert not new, f"{case.name}: files written on error: {sorted(new)}"
    else:
        assert outcome.rc == 0, (outcome.rc, err[-1500:])
        assert new == set(case.outputs), (sorted(new), case.outputs)
        if case.check is not None:
            case.check(folder, outcome)


# -- the cases ----------------------------------------------------------------------------------------------

def _put(name: str, data: bytes | Callable[[], bytes]) -> Callable[[Path], None]:
    def setup(folder: Path) -> None:
        (folder / name).write_bytes(data() if callable(data) else data)
    return setup


def _both(*setups: Callable[[Path], None]) -> Callable[[Path], None]:
    def setup(folder: Path) -> None:
        for s in setups:
            s(folder)
    return setup


def _clip(video: Path, name: str, n: int, size_wh: tuple[int, int] | None = None,
          fps: float = 25) -> Callable[[Path], None]:
    """Setup: the first ``n`` frames of the real clip (resized to ``size_wh``) as an MJPG .avi at ``fps``."""
    def setup(folder: Path) -> None:
        frames = sample_frames(video, n)
        if size_wh is not None:
            frames = [cv2.resize(f, size_wh, interpolation=cv2.INTER_AREA) for f in frames]
        h, w = frames[0].shape[:2]
        writer = cv2.VideoWriter(str(folder / name), cv2.VideoWriter_fourcc(*"MJPG"), fps, (w, h))
        for frame in frames:
            writer.write(frame)
        writer.release()
    return setup


def _coco_copy(coco: Path, images: int = 2, edit: Callable[[dict], None] | None = None,
               rotate_exif: bool = False) -> Callable[[Path], None]:
    """Setup: ``c/`` with the first ``images`` real COCO images and their annotations, changed by ``edit``;
    ``rotate_exif``: the images saved with an EXIF tag that rotates them by 90 degrees."""
    import json
    import shutil

    def setup(folder: Path) -> None:
        data = json.loads(next((coco / "annotations").glob("instances_*.json")).read_text())
        data["images"] = data["images"][:images]
        ids = {im["id"] for im in data["images"]}
        data["annotations"] = [a for a in data["annotations"] if a["image_id"] in ids]
        (folder / "c" / "annotations").mkdir(parents=True)
        (folder / "c" / "val2017").mkdir()
        for im in data["images"]:
            src, dst = coco / "val2017" / im["file_name"], folder / "c" / "val2017" / im["file_name"]
            if rotate_exif:
                from PIL import Image

                exif = Image.Exif()
                exif[0x0112] = 6  # rotate 90 degrees clockwise when shown
                with Image.open(src) as image:
                    image.save(dst, exif=exif.tobytes())
            else:
                shutil.copy(src, dst)
        if edit is not None:
            edit(data)
        (folder / "c" / "annotations" / "instances_x.json").write_text(json.dumps(data))
    return setup


def _first_ann(change: Callable[[dict], None]) -> Callable[[dict], None]:
    return lambda data: change(data["annotations"][0])


def unseen_material_cases(video: Path, coco: Path) -> list[Case]:
    """Real-world material nobody here has seen: odd sizes, other clocks, COCO sets that disagree with their
    images. All refused before the model loads."""
    cal = str(CALIBRATION)
    coco_cases = [
        ("exif_rotated", _coco_copy(coco, rotate_exif=True), r"image is 426x640 but instances_x.json says 640x426"),
        ("bbox_text", _coco_copy(coco, edit=_first_ann(lambda a: a.update(bbox="1,2,3,4"))),
         r"annotation \d+: bbox 1,2,3,4 is not \[x, y, width, height\]"),
        ("bbox_nan", _coco_copy(coco, edit=_first_ann(lambda a: a.update(bbox=[1, 2, float("nan"), 4]))),
         r"annotation \d+: bbox .* finite numbers"),
        ("no_area", _coco_copy(coco, edit=_first_ann(lambda a: a.pop("area"))), r"area None is not a finite"),
        ("unknown_image_id", _coco_copy(coco, edit=_first_ann(lambda a: a.update(image_id=999999))),
         r"image_id 999999 is not in 'images'"),
        ("unknown_category", _coco_copy(coco, edit=_first_ann(lambda a: a.update(category_id=999))),
         r"category_id 999 is not in 'categories'"),
        ("no_ground_truth", _coco_copy(coco, edit=lambda d: d.update(annotations=[])), "no ground-truth boxes"),
        ("image_missing", _coco_copy(coco, edit=lambda d: d["images"].append(
            dict(d["images"][0], id=1, file_name="gone.jpg"))), "image gone.jpg listed in the annotations is missing"),
    ]
    cases = [Case(f"coco_{name}", ["eval", "--coco-dir", "c", "--json", "r.json", "--mode", "fp32"], message=rx,
                  setup=setup) for name, setup, rx in coco_cases]
    cases.append(Case("coco_bench_exif_rotated", ["bench", "--out", "b", "--coco-dir", "c", "--modes", "fp32",
                                                  "--batches", "1"],
                      message=r"image is 426x640 but instances_x.json says 640x426",  # before any timing
                      setup=_coco_copy(coco, rotate_exif=True)))
    late = _put("late.csv", b"time_s,speed_mps\n1700000000.0,10\n1700000000.5,11\n")  # Unix time: another clock
    cases += [
        Case("size_tiny_rescaled", ["run", "tiny.avi", "--calibration", cal],
             message=r"solidWhiteRight.yaml: rescaled from 960x540 to 32x18: .*collinear",
             setup=_clip(video, "tiny.avi", 3, (32, 18))),
        Case("size_portrait", ["run", "p.avi", "--calibration", cal],
             message=r"solidWhiteRight.yaml: calibration is for 960x540 images, the video is 540x960",
             setup=_clip(video, "p.avi", 3, (540, 960))),
        Case("speed_other_clock", ["run", str(video), "--ego-speed", "late.csv"],
             message=r"--ego-speed late.csv: its times run 1.7e\+09-1.7e\+09 s, the video's 0-8.8 s: no overlap",
             setup=late),
        Case("name_newline", ["run", "nl\nname.mp4"], message=r"error: nl\\nname\.mp4: empty file$",
             setup=_put("nl\nname.mp4", b"")),
        Case("name_terminal_escape", ["run", "x\x1b[31mred.mp4"], message=r"video: x\\x1b\[31mred\.mp4: no such file$"),
        Case("name_line_separator", ["detect", "a\u2028b.jpg"], message=r"a\\u2028b\.jpg: file not found$"),
        Case("opt_replay_threads_neg", ["replay", str(video), "--out", "o", "--threads", "-1"],
             message="--threads: must be >= 1"),
        Case("opt_replay_speed_nan", ["replay", str(video), "--out", "o", "--speed-kmh", "nan"],
             message="--speed-kmh: must be a finite"),
        Case("opt_replay_tolerance_nan", ["replay", str(video), "--out", "o", "--compare-tolerance", "nan"],
             message="--compare-tolerance: must be a finite"),
        Case("opt_replay_set_nan", ["replay", str(video), "--out", "o", "--set", "warning.caution_ttc_s=nan"],
             message="--set warning.caution_ttc_s=nan: expected finite float"),
        Case("opt_replay_timeout_neg", ["replay", str(video), "--out", "o", "--connect-timeout", "-1"],
             message="--connect-timeout: must be > 0"),
    ]
    return cases


def fast_cases(video: Path, coco: Path, still: Path) -> list[Case]:
    v, c = str(video), str(coco)
    cases = [Case(f"cal_{name}", ["run", v, "--calibration", "bad.yaml", "--no-progress"], message=rx,
                  setup=_put("bad.yaml", data)) for name, (data, rx) in calibration_corpus().items()]
    options = [
        ("run_score_1.5", ["run", v, "--score-threshold", "1.5"], "--score-threshold: must be between 0 and 1"),
        ("run_score_nan", ["run", v, "--score-threshold", "nan"], "--score-threshold: must be a finite"),
        ("run_speed_neg", ["run", v, "--speed-kmh", "-10"], "--speed-kmh: must be >= 0"),
        ("run_threads_neg", ["run", v, "--threads", "-1"], "--threads: must be >= 1"),
        ("run_max_frames_neg", ["run", v, "--max-frames", "-1"], "--max-frames: must be >= 1"),
        ("run_mode_bogus", ["run", v, "--mode", "bogus"], "--mode: invalid choice"),
        ("run_timings_txt", ["run", v, "--timings", "t.txt"], "--timings: t.txt: extension must be one of .csv"),
        ("run_timings_is_tracks", ["run", v, "--timings", "t.csv", "--tracks", "t.csv"],
         "--timings t.csv is the same file as --tracks"),
        ("detect_batch_0", ["detect", str(still), "--batch-size", "0"], "--batch-size: must be >= 1"),
        ("detect_device_bogus", ["detect", str(still), "--device", "bogus"], "--device: 'bogus'"),
        ("detect_score_2", ["detect", str(still), "--score-threshold", "2"], "--score-threshold"),
        ("detect_max_frames_neg", ["detect", v, "--max-frames", "-1"], "--max-frames: must be >= 1"),
        ("eval_limit_neg", ["eval", "--coco-dir", c, "--json", "r.json", "--limit", "-1"], "--limit: must be >= 1"),
        ("eval_limit_0", ["eval", "--coco-dir", c, "--json", "r.json", "--limit", "0"], "--limit: must be >= 1"),
        ("eval_max_det_0", ["eval", "--coco-dir", c, "--json", "r.json", "--max-detections", "0"],
         "--max-detections: must be >= 1"),
        ("eval_coco_missing", ["eval", "--coco-dir", "nope", "--json", "r.json"], "--coco-dir: nope: no such folder"),
        ("bench_batches_0", ["bench", "--out", "b", "--batches", "0"], "--batches: must be >= 1"),
        ("bench_min_time_nan", ["bench", "--out", "b", "--min-time", "nan"], "--min-time: must be a finite"),
        ("bench_warmup_neg", ["bench", "--out", "b", "--warmup", "-1"], "--warmup: must be >= 0"),
        ("bench_limit_0", ["bench", "--out", "b", "--limit", "0"], "--limit: must be >= 1"),
        ("bench_device_bogus", ["bench", "--out", "b", "--device", "gpu0"], "--device"),
        ("build_seed_neg", ["build-engine", "--model", "ssd_mobilenet_v1", "--precision", "fp16", "--seed", "-1"],
         "--seed: must be >= 0"),
        ("build_max_batch_0", ["build-engine", "--model", "m", "--precision", "fp16", "--max-batch", "0"],
         "--max-batch: must be >= 1"),
        ("quantize_seed_neg", ["quantize", "--model", "m", "--coco-dir", c, "--seed", "-1"], "--seed: must be >= 0"),
        ("quantize_images_0", ["quantize", "--model", "m", "--coco-dir", c, "--num-images", "0"], "--num-images"),
        ("scenarios_miss_2", ["scenarios", "--miss-prob", "2"], "--miss-prob: must be between 0 and 1"),
        ("scenarios_noise_nan", ["scenarios", "--noise-px", "nan"], "--noise-px: must be a finite"),
        ("scenarios_seed_neg", ["scenarios", "--seed", "-1"], "--seed: must be >= 0"),
        ("gui_camera_neg", ["gui", "--camera", "-1"], "--camera: must be >= 0"),
        ("gui_calibration_missing", ["gui", "--calibration", "nope.yaml"], "--calibration: nope.yaml: no such file"),
    ]
    cases += [Case(f"opt_{n}", a, message=m) for n, a, m in options]
    existing = _put("a.mp4", b"previous output")
    cases += [
        Case("out_is_input", ["run", "in.mp4", "--out", "in.mp4"], message="same file as VIDEO",
             setup=_put("in.mp4", video.read_bytes)),
        Case("out_events_txt", ["run", v, "--events", "x.txt"], message="--events: x.txt: extension must be"),
        Case("out_events_folder", ["run", v, "--events", "sub"], message="is a folder",
             setup=lambda d: (d / "sub").mkdir()),
        Case("out_grandparent_is_file", ["run", v, "--events", "f/sub/e.csv"], message="f/sub/e.csv: f is a file",
             setup=_put("f", b"x")),
        Case("out_parent_is_file", ["run", v, "--out", "f/a.mp4"], message="f/a.mp4: f is a file, not a folder",
             setup=_put("f", b"x")),
        Case("out_events_equals_out", ["run", v, "--out", "a.mp4", "--events", "a.mp4"],
             message="--events: a.mp4: extension"),
        Case("out_existing_kept_on_bad_input", ["run", "junk.mp4", "--out", "a.mp4"],
             message="not a readable video", setup=_both(existing, _put("junk.mp4", b"not a video " * 300))),
        Case("detect_json_is_input", ["detect", "img.jpg", "--json", "img.jpg"], message="--json: img.jpg: extension",
             setup=_put("img.jpg", still.read_bytes)),
        Case("eval_json_is_annotations", ["eval", "--coco-dir", c, "--annotations", "a.json", "--json", "a.json"],
             message="same file as --annotations", setup=_put("a.json", b"{}")),
        Case("bench_out_foreign_folder", ["bench", "--out", "docs", "--modes", "fp32", "--batches", "1"],
             message="not a previous bench output",
             setup=lambda d: ((d / "docs").mkdir(), (d / "docs/x").write_text("k"))),
        Case("bench_out_is_file", ["bench", "--out", "f"], message="exists and is not a folder", setup=_put("f", b"x")),
        Case("scenarios_json_folder", ["scenarios", "--json", "."], message="is a folder"),
        Case("video_empty", ["run", "e.mp4"], message="empty file", setup=_put("e.mp4", b"")),
        Case("video_junk", ["run", "j.mp4"], message="not a readable video", setup=_put("j.mp4", os.urandom(50_000))),
        Case("video_header_only", ["run", "h.mp4"], message="not a readable video|no decodable frame",
             setup=_put("h.mp4", lambda: video.read_bytes()[:3000])),
        Case("video_is_folder", ["run", "."], message=r"\.: folder holds no video frames"),
        Case("cache_engines_dir_is_file", ["export-onnx", "--model", "ssd_mobilenet_v1", "--engines-dir", "engines"],
             message="--engines-dir: engines: exists and is not a folder", setup=_put("engines", b"")),
        Case("cache_empty_sha256_pin", ["assets", "list"], expect="ok", setup=_pin_setup,
             env={"AEB_APP_DATA_MIRROR": "", "AEB_APP_CACHE_DIR": "{d}/pin_cache"}, check=_pin_check),
    ]
    return cases + unseen_material_cases(video, coco)


def _pin_setup(folder: Path) -> None:
    cache = folder / "pin_cache" / "videos" / "udacity"
    cache.mkdir(parents=True, exist_ok=True)
    (cache / "solidWhiteRight.mp4").write_bytes(b"x")
    (cache / "solidWhiteRight.mp4.sha256").write_text("")


def _pin_check(folder: Path, outcome: Outcome) -> None:
    assert "empty or malformed checksum pin" in outcome.stderr and "solidWhiteRight.mp4.sha256" in outcome.stderr
    assert "corrupt" in outcome.stdout


def _events(folder: Path, name: str = "e.csv") -> list[dict]:
    import csv

    with (folder / name).open(newline="", encoding="utf-8") as fh:
        return list(csv.DictReader(fh))


def _implausible_check(folder: Path, outcome: Outcome) -> None:
    reasons = [e["reason"] for e in _events(folder) if e["level"] == "UNAVAILABLE"]
    for word in ("blank frame", "torn frame", "frozen frame"):
        assert any(word in r for r in reasons), (word, reasons)
    assert f"frames {IMPLAUSIBLE_FRAMES}" in outcome.stdout


def corrupt_middle_mp4(video: Path, path: Path, n: int = 60) -> None:
    """The first ``n`` real frames as an mp4 with 40 kB of random bytes a third into its data (index intact)."""
    from aeb_app.video import VideoWriter

    with VideoWriter(path, fps=25) as writer:
        for frame in sample_frames(video, n):
            writer.write(frame)
    data = bytearray(path.read_bytes())
    at = len(data) // 3
    data[at:at + 40_000] = np.random.default_rng(0).bytes(40_000)
    path.write_bytes(bytes(data))


def _corrupt_middle_check(folder: Path, outcome: Outcome) -> None:
    """Every frame is counted (the run used to stop at the damage) and the lost ones are UNAVAILABLE."""
    import re

    failed = int(re.search(r"frames 60 \(failed (\d+)\)", outcome.stdout).group(1))
    reasons = [e["reason"] for e in _events(folder) if e["level"] == "UNAVAILABLE"]
    assert 1 <= failed < 50 and any("corrupt data skipped" in r for r in reasons), (outcome.stdout, reasons)
    assert "cannot be decoded: " in outcome.stdout and "follows lost frames: " in outcome.stdout  # why, counted


def _rate_check(folder: Path, outcome: Outcome) -> None:
    assert "levels: UNAVAILABLE 12 (frame times unknown: 12)" in outcome.stdout, outcome.stdout
    assert "frame rate, 1000 fps, is not a camera's" in _events(folder)[0]["reason"]


def model_cases(video: Path, still: Path, frames: list[np.ndarray]) -> list[Case]:
    fast = ["--mode", "fp32", "--threads", "1", "--no-progress"]
    cal = ["--calibration", str(CALIBRATION)]
    return [
        Case("video_corrupt_middle", ["run", "cm.mp4", "--events", "e.csv", *fast], expect="ok",
             setup=lambda d: corrupt_middle_mp4(video, d / "cm.mp4"), outputs=("e.csv",), check=_corrupt_middle_check),
        Case("video_fps_1000", ["run", "r.avi", "--events", "e.csv", *cal, *fast], expect="ok",
             setup=_clip(video, "r.avi", 12, fps=1000), outputs=("e.csv",), check=_rate_check),
        Case("video_odd_size_non_ascii_path", ["run", "a b \u00fc.avi", "--out", "o \u00fc/x y.mp4", *cal, *fast],
             expect="ok", setup=_clip(video, "a b \u00fc.avi", 6, (961, 541)), outputs=("o \u00fc/x y.mp4",),
             check=lambda d, o: ("frames 6 (failed 0)" in o.stdout) or pytest.fail(o.stdout)),
        Case("video_implausible_frames", ["run", "bad.avi", "--events", "e.csv", *fast], expect="ok",
             setup=lambda d: implausible_video(frames, d / "bad.avi"), outputs=("e.csv",), check=_implausible_check),
        Case("video_one_frame", ["run", "one.avi", "--events", "e.json", *fast], expect="ok",
             setup=lambda d: write_avi(d / "one.avi", frames[:1]), outputs=("e.json",),
             check=lambda d, o: ("frames 1 (failed 0)" in o.stdout) or pytest.fail(o.stdout)),
        Case("image_truncated_with_eoi", ["detect", "t.jpg", "--mode", "fp32"], message="corrupt or truncated",
             setup=lambda d: truncated_jpeg(still, d / "t.jpg", end_marker=True)),
        Case("image_truncated", ["detect", "t.jpg", "--mode", "fp32"], message="truncated",
             setup=lambda d: truncated_jpeg(still, d / "t.jpg", end_marker=False)),
        Case("cache_engines_path_is_file", ["run", str(video), "--mode", "fp32_ort", "--max-frames", "2",
                                            "--no-progress"],
             message="engines is a file, not a folder", setup=_put("engines", b""),
             env={"AEB_APP_ENGINES_DIR": "{d}/engines"}),  # the engine cache (default: the user cache dir)
    ]


# -- fixtures and tests -------------------------------------------------------------------------------------

def _run_all(cases: list[Case], root: Path) -> dict[str, Outcome]:
    with ThreadPoolExecutor(max_workers=2) as pool:
        futures = {c.name: pool.submit(run_case, c, root) for c in cases}
        return {name: f.result() for name, f in futures.items()}


@pytest.fixture(scope="module")
def corpus(sample_video: Path, coco_dir: Path, data_dir: Path, tmp_path_factory) -> dict:
    still = data_dir / "videos" / "udacity" / "test_images" / "solidWhiteCurve.jpg"
    assert still.is_file(), still
    frames = sample_frames(sample_video, 30)
    return {"fast": fast_cases(sample_video, coco_dir, still), "model": model_cases(sample_video, still, frames),
            "root": tmp_path_factory.mktemp("bad_inputs")}


@pytest.fixture(scope="module")
def fast_results(corpus: dict) -> dict[str, Outcome]:
    return _run_all(corpus["fast"], corpus["root"] / "fast")


@pytest.fixture(scope="module")
def model_results(corpus: dict) -> dict[str, Outcome]:
    return _run_all(corpus["model"], corpus["root"] / "model")


def _case_ids(group: str) -> list[str]:
    dummy = Path("/nonexistent")
    cases = fast_cases(dummy, dummy, dummy) if group == "fast" else model_cases(dummy, dummy, [])
    return [c.name for c in cases]


@pytest.mark.parametrize("name", _case_ids("fast"))
def test_fast_case(name: str, corpus: dict, fast_results: dict[str, Outcome]) -> None:
    case = next(c for c in corpus["fast"] if c.name == name)
    assert_outcome(case, fast_results[name], corpus["root"] / "fast" / name)


@pytest.mark.parametrize("name", _case_ids("model"))
def test_model_case(name: str, corpus: dict, model_results: dict[str, Outcome]) -> None:
    case = next(c for c in corpus["model"] if c.name == name)
    assert_outcome(case, model_results[name], corpus["root"] / "model" / name)


def test_corpus_covers_every_class() -> None:
    names = _case_ids("fast") + _case_ids("model")
    for prefix, at_least in (("cal_", 15), ("opt_", 29), ("out_", 6), ("video_", 9), ("image_", 2), ("cache_", 3),
                             ("coco_", 8), ("size_", 2), ("speed_", 1), ("name_", 3)):
        assert sum(n.startswith(prefix) for n in names) >= at_least, prefix
    commands = {"run", "detect", "eval", "bench", "build", "quantize", "scenarios", "gui"}
    assert commands <= {n.split("_")[1] for n in names if n.startswith("opt_")}


def test_killed_run_keeps_its_events_and_leaves_no_temp_file(sample_video: Path, tmp_path: Path) -> None:
    """SIGTERM mid-run: the CSV has the rows seen so far, the old --out file is untouched, no temp files."""
    frames = sample_frames(sample_video, 30)
    folder = tmp_path / "kill"
    folder.mkdir()
    implausible_video(frames, folder / "long.avi", tail=300)
    (folder / "a.mp4").write_bytes(b"previous output")
    before = snapshot(folder)

    def kill_after_first_event(proc: subprocess.Popen) -> None:
        deadline = time.monotonic() + 90
        while time.monotonic() < deadline and proc.poll() is None:
            events = folder / "e.csv"
            if events.is_file() and events.read_text().count("\n") >= 2:  # header + the first event
                break
            time.sleep(0.2)
        proc.send_signal(signal.SIGTERM)

    rc, _, err, _, _ = run_cli(["run", "long.avi", "--out", "a.mp4", "--events", "e.csv", "--mode", "fp32",
                                "--threads", "1", "--no-progress"], folder, on_start=kill_after_first_event)
    assert rc == 128 + signal.SIGTERM and "Traceback" not in err, err[-1500:]
    after = snapshot(folder)
    assert {k: after[k] for k in before} == before  # the input and the old output are untouched
    assert set(after) - set(before) == {"e.csv"}  # no temp mp4 left behind
    rows = _events(folder)
    assert rows and rows[0]["level"] == "UNAVAILABLE" and "blank frame" in rows[0]["reason"]


def test_onnx_sidecar_that_is_not_an_object_means_rebuild(tmp_path: Path, caplog) -> None:
    from aeb_app.inference import artifacts as ac

    model = tmp_path / "m.onnx"
    model.write_bytes(b"onnx bytes")
    for text in ("[]", '"a string"', "{not json", '{"model": 5, "sha256": []}', "null",
                 '{"kind": "onnx-int8-qdq", "calibration": []}', '{"schema_version": 2, "kind": "onnx"}'):
        ac.sidecar_path(model).write_text(text)
        caplog.clear()
        assert ac.cached_sidecar(model) is None and ac.intact(model, ac.ONNX) is None
        assert caplog.records and "treated as missing" in caplog.text and "m.onnx.json" in caplog.text, text


def test_engine_sidecar_of_wrong_shape_is_one_line(tmp_path: Path) -> None:
    from aeb_app.errors import EngineLoadError
    from aeb_app.inference import artifacts as ac

    engine = tmp_path / "x.engine"
    engine.write_bytes(b"engine")
    for text, match in (("[]", "not a JSON object"), ('"s"', "not a JSON object"),
                        ('{"runtime_version": 10, "gpu_name": "g", "compute_capability": "9.0", '
                         '"engine_sha256": "x", "profile": {"max_batch": 8}}', "schema .none. is from an older"),
                        ('{"schema_version": 2, "kind": "trt-engine", "model": 1}', "missing or of the wrong type")):
        ac.sidecar_path(engine).write_text(text)
        with pytest.raises(EngineLoadError, match=match) as info:
            ac.read_sidecar(engine)
        assert "\n" not in str(info.value) and str(info.value).startswith(str(ac.sidecar_path(engine)))


def test_atomic_dir_never_mixes_two_runs(tmp_path: Path) -> None:
    from aeb_app.atomic import atomic_dir

    out = tmp_path / "bench"
    with atomic_dir(out) as tmp:
        (tmp / "results.json").write_text("run 1")
        (tmp / "old_plot.png").write_text("run 1")
    with pytest.raises(RuntimeError):
        with atomic_dir(out) as tmp:
            (tmp / "results.json").write_text("run 2, killed")
            raise RuntimeError("killed")
    assert sorted(p.name for p in out.iterdir()) == ["old_plot.png", "results.json"]
    assert (out / "results.json").read_text() == "run 1"
    with atomic_dir(out) as tmp:
        (tmp / "results.json").write_text("run 3")
    assert [p.name for p in out.iterdir()] == ["results.json"]  # nothing of run 1 mixed in
    assert [p.name for p in tmp_path.iterdir()] == ["bench"]  # no temp folders left


def test_temp_files_of_a_kill_9_are_swept_on_the_next_write(tmp_path: Path) -> None:
    from aeb_app.atomic import write_text

    dead = subprocess.Popen(["true"])
    dead.wait()  # a pid that no longer runs
    stale = tmp_path / f".a.{dead.pid}.k3j2.mp4"
    stale.write_bytes(b"half a video")
    alive = tmp_path / f".a.{os.getpid()}.zz.mp4"  # ours (still running): left alone
    alive.write_bytes(b"x")
    write_text(tmp_path / "a.mp4", "new")
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(["a.mp4", alive.name])


def test_argtypes_accept_good_values_and_compare_paths_by_file(tmp_path: Path, monkeypatch) -> None:
    import argparse

    from aeb_app.cli import argtypes as at
    from aeb_app.errors import ConfigError

    assert at.device("cuda:1") == "cuda:1" and at.device("cpu") == "cpu"
    for bad in ("cuda:x", "gpu", "CUDA", "cuda:"):
        with pytest.raises(argparse.ArgumentTypeError):
            at.device(bad)
    assert at.probability("0") == 0.0 and at.probability("1") == 1.0 and at.positive_int("3") == 3
    assert at.csv_of(at.positive_int)("1, 8,64") == (1, 8, 64)
    with pytest.raises(argparse.ArgumentTypeError, match="not an integer"):
        at.positive_int("1e3")
    with pytest.raises(argparse.ArgumentTypeError, match="finite"):
        at.positive_float("inf")
    monkeypatch.chdir(tmp_path)
    (tmp_path / "in.mp4").write_bytes(b"v")
    (tmp_path / "link.mp4").symlink_to(tmp_path / "in.mp4")
    assert at.writable_output(".mp4")("new.mp4") == Path("new.mp4")
    at.check_outputs([("VIDEO", "in.mp4"), ("--calibration", None)], [("--out", "new.mp4"), ("--events", None)])
    for spelling in ("./in.mp4", str(tmp_path / "in.mp4"), "link.mp4", "sub/../in.mp4"):
        (tmp_path / "sub").mkdir(exist_ok=True)
        with pytest.raises(ConfigError, match="same file as VIDEO"):
            at.check_outputs([("VIDEO", "in.mp4")], [("--out", spelling)])
    with pytest.raises(ConfigError, match="--events e.csv is the same file as --out"):
        at.check_outputs([], [("--out", "e.csv"), ("--events", "e.csv")])
    assert at.video_source("0") == "0"


def test_gui_session_plays_a_damaged_clip_to_its_end_with_the_lost_frames_unavailable(sample_video: Path,
                                                                                       tmp_path: Path) -> None:
    """The GUI's open path (``live_session`` over the front door) on a clip with a damaged middle: every frame
    index comes once, in order, the lost ones UNAVAILABLE with the reason, and playback reaches the last frame
    (the session used to stop at the damage and pause there as if the clip had ended)."""
    from aeb_app.gui.session import EndOfStream, LiveFrame, PlaybackControl, SessionConfig, live_session
    from aeb_app.types import WarningLevel

    clip = tmp_path / "damaged \u00fc.mp4"
    corrupt_middle_mp4(sample_video, clip)
    control = PlaybackControl()
    results, end = [], None
    for item in live_session(SessionConfig(str(clip), mode="fp32", calibration_path=CALIBRATION, realtime=False),
                             control):
        if isinstance(item, LiveFrame):
            results.append(item.result)
        elif isinstance(item, EndOfStream):
            end = item.frame_index
            control.stop()
    assert [r.frame_index for r in results] == list(range(60)) and end == 59
    lost = [r for r in results if r.frame is None]
    assert lost and all(r.level == WarningLevel.UNAVAILABLE and "corrupt data skipped" in r.reason for r in lost)
    assert sum(r.level != WarningLevel.UNAVAILABLE for r in results) >= 10  # the intact frames are judged


def test_eval_check_warns_of_exif_tags_it_cannot_see_in_the_size(coco_dir: Path, tmp_path: Path, caplog) -> None:
    """An image turned 180 degrees by its EXIF tag keeps its size, so the size check passes it: one warning
    names it (the boxes are scored against the turned image); untagged images give none."""
    import logging

    from PIL import Image

    from aeb_app.bench.coco_eval import check_images

    _coco_copy(coco_dir)(tmp_path)
    name = sorted((tmp_path / "c" / "val2017").iterdir())[0]
    with caplog.at_level(logging.WARNING, logger="aeb_app.bench.coco_eval"):
        annotations, ids = check_images(tmp_path / "c")
    assert len(ids) == 2 and "EXIF" not in caplog.text
    exif = Image.Exif()
    exif[0x0112] = 3  # rotate 180 degrees when shown
    with Image.open(name) as image:
        image.load()
        image.save(name, exif=exif.tobytes())
    with caplog.at_level(logging.WARNING, logger="aeb_app.bench.coco_eval"):
        check_images(tmp_path / "c")
    assert "1 image(s) carry an EXIF orientation tag" in caplog.text and name.name in caplog.text
