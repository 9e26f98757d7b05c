"""Fleet-replay throughput: frames/s of ``aeb-app replay`` in-process and on local Dask clusters.

Makes ``--copies`` copies of one video (each a recording), then replays them once per configuration,
each in a fresh ``python -m aeb_app replay`` process and a fresh output folder:
``inprocess`` (no Dask), ``workers1`` / ``workers2`` (LocalCluster, worker processes sharing the visible
GPUs), ``gpus1`` / ``gpus2`` (dask-cuda LocalCUDACluster, one worker per GPU; skipped when dask_cuda is
missing or fewer GPUs are visible). Frames/s = frames / the replay's wall time, which counts from the first
task to the last result after the workers' warm-up (heavy imports, model load, CUDA Graph capture), and also
frames / the whole command's time (cluster start and warm-up included). Also checks that every configuration
wrote byte-identical events CSVs.

Writes ``replay_bench.json`` and ``replay_bench.md`` (plus one log per configuration) into ``--out``.
On the lent H200 (see docs/replay.md for the wheels and the device command)::

    python3 scripts/replay_bench.py --video .gpudata/videos/udacity/solidWhiteRight.mp4 --copies 32 \
        --mode fp16_fused --out $OUT
"""

from __future__ import annotations

import argparse
import filecmp
import json
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

CONFIGS = {"inprocess": [], "workers1": ["--workers", "1"], "workers2": ["--workers", "2"],
           "gpus1": ["--gpus", "1"], "gpus2": ["--gpus", "2"]}


def _gpu_count() -> int:
    try:
        import torch

        return torch.cuda.device_count()
    except ImportError:
        return 0


def _runnable(name: str) -> str:
    """'' when the configuration can run here, else why not."""
    if not name.startswith("gpus"):
        return ""
    try:
        import dask_cuda  # noqa: F401
    except ImportError as exc:
        return f"dask_cuda missing ({exc})"
    need = int(name[4:])
    return "" if _gpu_count() >= need else f"{need} GPUs needed, {_gpu_count()} visible"


def _replay(name: str, inputs: Path, work: Path, args: argparse.Namespace, logs: Path) -> dict:
    out = work / name
    cmd = [sys.executable, "-m", "aeb_app", "replay", str(inputs), "--out", str(out), "--mode", args.mode,
           "--engines-dir", str(work / "engines"), "--no-progress", *CONFIGS[name]]
    t0 = time.perf_counter()
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=args.timeout)
    except subprocess.TimeoutExpired as exc:  # recorded, and the other configurations still run
        (logs / f"replay_bench_{name}.log").write_text(" ".join(cmd) + "\n" + str(exc.stderr or "")[-20000:])
        return {"config": name, "error": f"timed out after {args.timeout} s"}
    total_s = time.perf_counter() - t0
    (logs / f"replay_bench_{name}.log").write_text(" ".join(cmd) + "\n" + proc.stdout + proc.stderr[-20000:])
    if proc.returncode != 0:
        return {"config": name, "error": f"exit {proc.returncode}: {proc.stderr.strip().splitlines()[-1:]}"}
    report = json.loads((out / "report.json").read_text())
    frames, wall = report["totals"]["frames"], report["wall_s"]
    busy = sum(r["processing_s"] for r in report["recordings"])
    return {"config": name, "where": report["where"], "recordings": report["totals"]["finished"],
            "frames": frames, "wall_s": wall, "process_total_s": round(total_s, 1),
            "warmup_s": report.get("warmup_s", 0.0), "fps_whole_command": round(frames / total_s, 1),
            "fps": round(frames / wall, 1), "frame_loop_fps_per_worker": round(frames / busy, 1),
            "workers": len({r["worker"] for r in report["recordings"]}),
            "detectors": sorted({r["detector"] for r in report["recordings"]}),
            "warnings": report["totals"]["warnings"]}


def _same_events(work: Path, names: list[str]) -> bool:
    first, *rest = names
    ids = sorted(p.parent.name for p in (work / first).glob("*/events.csv"))
    return bool(ids) and all(filecmp.cmp(work / first / i / "events.csv", work / n / i / "events.csv", shallow=False)
                             for n in rest for i in ids)


def _base(rows: list[dict], name: str) -> dict | None:
    """The one-worker row that ``name`` scales against: gpus1 for gpusN, workers1 for workersN."""
    kind = name.rstrip("0123456789")
    return next((r for r in rows if r["config"] == f"{kind}1" and "fps" in r), None) if kind != "inprocess" else None


def _markdown(rows: list[dict], machine: dict, args: argparse.Namespace, same: bool) -> str:
    lines = ["# Fleet replay throughput", "",
             f"{args.copies} copies of `{Path(args.video).name}`, mode `{args.mode}`. "
             f"Machine: {machine.get('gpu')} (driver {machine.get('driver')}), {machine.get('cpu_count')} CPUs, "
             f"torch {machine.get('torch')}, CUDA {machine.get('cuda')}.", "",
             "| config | where | workers | frames | warm-up s | replay wall s | frames/s | x 1 worker | "
             "whole command s | frames/s (whole) | x 1 worker (whole) | frame-loop fps per worker |",
             "|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        if "error" in r or "skipped" in r:
            lines.append(f"| {r['config']} | {r.get('error') or r.get('skipped')} |" + " |" * 10)
            continue
        base = _base(rows, r["config"])
        speedup = f"{r['fps'] / base['fps']:.2f}" if base else ""
        whole = f"{r['fps_whole_command'] / base['fps_whole_command']:.2f}" if base else ""
        lines.append(f"| {r['config']} | {r['where']} | {r['workers']} | {r['frames']} | {r['warmup_s']:.1f} | "
                     f"{r['wall_s']:.1f} | {r['fps']:.1f} | {speedup} | {r['process_total_s']:.1f} | "
                     f"{r['fps_whole_command']:.1f} | {whole} | {r['frame_loop_fps_per_worker']:.1f} |")
    lines += ["", f"Events CSVs identical across configurations: {'yes' if same else 'NO'}.", "",
              "Replay wall: first task to last result, after the workers were warmed in parallel (heavy imports, "
              "model load, CUDA Graph capture: the warm-up column; in process the detector is loaded before the "
              "clock starts). Whole command: the `aeb-app replay` process from start to exit, cluster start, "
              "warm-up and report included. Frame-loop fps per worker: frames / the sum of per-recording loop "
              "times (decode + inference + post-processing + AEB logic; rendering off)."]
    return "\n".join(lines) + "\n"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--video", required=True, help="the recording to copy")
    parser.add_argument("--copies", type=int, default=32)
    parser.add_argument("--mode", default="fp16_fused")
    parser.add_argument("--configs", default="inprocess,workers1,workers2,gpus1,gpus2")
    parser.add_argument("--timeout", type=int, default=240, help="seconds per configuration")
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix="replay-bench-"))
    inputs = work / "inputs"
    inputs.mkdir()
    for i in range(args.copies):
        shutil.copy(args.video, inputs / f"rec{i:03d}{Path(args.video).suffix}")
    rows = []
    for name in args.configs.split(","):
        why = _runnable(name)
        rows.append({"config": name, "skipped": why} if why else _replay(name, inputs, work, args, args.out))
        print(json.dumps(rows[-1]), flush=True)
    from aeb_app.bench.machine import fingerprint

    machine = fingerprint()
    ran = [r["config"] for r in rows if "fps" in r]
    same = len(ran) > 1 and _same_events(work, ran)
    (args.out / "replay_bench.json").write_text(json.dumps({"machine": machine, "mode": args.mode,
                                                            "copies": args.copies, "rows": rows,
                                                            "events_identical": same}, indent=2) + "\n")
    (args.out / "replay_bench.md").write_text(_markdown(rows, machine, args, same))
    print(_markdown(rows, machine, args, same))
    return 0 if ran else 1


if __name__ == "__main__":
    sys.exit(main())
