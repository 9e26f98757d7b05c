"""GPU measurement of the GPU-resident frame path and the staged runner (issue #12), one run on an H200.

Sections (each one's failure is recorded and the next one runs):
1. ``ssd300``: SSD300 (random weights) in ``fp16_fused`` (``fp16_graph`` if unavailable) at batch 64:
   network only (normalised input already on the GPU; network + box decoding) vs end to end through
   the GPU path (64 COCO JPEGs as bytes in host memory -> nvJPEG -> resize/normalise -> network -> NMS ->
   one copy of the kept boxes) vs end to end through the CPU path (decoded frames -> OpenCV/PIL
   resize -> upload -> ...), plus the GPU path's decode and resize alone. CUDA events, warm-up,
   p50 over >= 20 calls and >= 1 s.
2. ``map``: ssd_mobilenet_v1 COCO mAP on ``--coco-dir`` through the GPU path (both resizes, each decode
   place) and the CPU path, for ``fp32`` and ``fp16_fused``, batch 32.
3. ``run``: ``aeb-app run`` on the sample clip with ssd_mobilenet_v1 ``fp16_fused`` at batch 1 (as live):
   writing the annotated mp4, and events + tracks only (``--no-render``); NVDEC when PyNvVideoCodec is
   installed, and the OpenCV decoder for comparison; paced like a camera (``--realtime``, staged and
   ``--sequential``: the latency without a queue in front of it); then ``--batch 32`` (offline throughput).
   FPS, decode-to-warning latency p50/p99 (from the run summary).

Writes ``gpu_e2e.json`` (everything) and ``gpu_e2e.md`` (a summary) into ``--out``; nothing else.

Usage (repo root; AEB_APP_DATA_MIRROR pointing at a copy of the data mirror's model, COCO subset and video)::

    PYTHONUNBUFFERED=1 python3 scripts/gpu_e2e.py --coco-dir .gpudata/coco/val2017_subset \\
        --video .gpudata/videos/udacity/solidWhiteRight.mp4 --out $OUT
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import re
import subprocess
import sys
import time
import traceback
from pathlib import Path

log = logging.getLogger("gpu_e2e")

BATCH = 64
FAST_MODES = ("fp16_fused", "fp16_graph")
#: Pipelined end-to-end variants beside the default one: (key, decode place, device decoder, what it does).
STREAM_VARIANTS = (
    ("e2e_gpu_streamed_host", "host", "nvjpeg", "host threads decode (OpenCV) and resize (the CPU path's functions) "
     "all of each batch; one upload; the GPU runs the network only"),
    ("e2e_gpu_streamed_split", "split", "nvjpeg", "host threads and nvJPEG share each batch (work-stealing)"),
    ("e2e_gpu_streamed_hw", "gpu", "nvimgcodec", "the GPU's hardware JPEG engines (nvImageCodec) decode each batch"),
    ("e2e_gpu_streamed_split_hw", "split", "nvimgcodec", "host threads and the hardware JPEG engines share each batch"),
)


def _open(loaded, modes: tuple[str, ...], device: str):
    """The first of ``modes`` that opens, activated; and the reasons of those that did not."""
    from aeb_app.errors import AebError
    from aeb_app.inference.registry import create

    reasons = {}
    for mode in modes:
        try:
            detector = create(loaded, mode, device=device)
            detector.__enter__()
            return detector, reasons
        except AebError as exc:
            reasons[mode] = str(exc)
    raise RuntimeError(f"none of {modes} opened: {reasons}")


def _timed(fn, n_images: int, device: str) -> dict:
    from aeb_app.bench.timing import measure

    stats = measure(fn, cuda=device.startswith("cuda"), warmup_iters=5, min_iters=20, min_time_s=1.0)
    return {"p50_ms": stats.p50_ms, "p99_ms": stats.p99_ms, "iters": stats.iters, "clock": stats.clock,
            "img_per_s": n_images * 1000.0 / stats.p50_ms}


def ssd300_section(coco_dir: Path, device: str, batch: int, model: str = "ssd300_resnet50") -> dict:
    """Network-only vs end-to-end img/s at batch 64 (see the module docstring)."""
    from aeb_app.bench.sweep import sample_frames, sample_jpegs
    from aeb_app.inference.run.gpu_frames import decode_images, resize_to_input
    from aeb_app.inference.run.split_decode import default_host_threads
    from aeb_app.model.preprocess import normalize, resize_batch
    from aeb_app.model.registry import load_model

    loaded = load_model(model, "random" if model == "ssd300_resnet50" else "auto")
    frames, jpegs = sample_frames(coco_dir, batch), sample_jpegs(coco_dir, batch)
    det, unavailable = _open(loaded, FAST_MODES if device.startswith("cuda") else ("fp32",), device)
    try:
        net_fn, net_includes = det.network_fn(resize_batch(frames, det.spec))
        images = decode_images(jpegs, device)
        out = {"model": model, "mode": det.info.mode, "unavailable": unavailable, "batch": batch,
               "network": {**_timed(net_fn, batch, device), "includes": net_includes},
               "e2e_gpu": {**_timed(lambda: det.infer_tensors(decode_images(jpegs, device)), batch, device),
                           "includes": "JPEG bytes in host memory -> nvJPEG + resize + normalise + network + "
                                       "decode + NMS on the GPU -> one copy of the kept boxes"},
               "gpu_decode_only": _timed(lambda: decode_images(jpegs, device), batch, device),
               "gpu_resize_normalize_only": _timed(lambda: normalize(resize_to_input(images, det.spec), det.spec),
                                                   batch, device),
               "gpu_resize_matmul_normalize_only": _timed(
                   lambda: normalize(resize_to_input(images, det.spec, method="matmul"), det.spec), batch, device)}
        from aeb_app.bench.timing import measure

        cpu = measure(lambda: det.infer(frames), cuda=device.startswith("cuda"), warmup_iters=2, min_iters=5,
                      min_time_s=1.0)
        out["e2e_cpu_path"] = {"p50_ms": cpu.p50_ms, "img_per_s": batch * 1000.0 / cpu.p50_ms, "iters": cpu.iters,
                               "includes": "decoded BGR frames -> CPU resize -> upload -> network -> NMS -> boxes"}
        from aeb_app.bench.sweep import stream_throughput

        n_batches = max(20, int(2000.0 / out["e2e_gpu"]["p50_ms"]))
        out["e2e_gpu_streamed"] = {"img_per_s": stream_throughput(det, jpegs, n_batches), "batches": n_batches,
                                   "includes": "as e2e_gpu, over many batches with decode + resize of the next batch "
                                               "on a side CUDA stream overlapping the network (stream_jpeg_batches)"}
        out["e2e_gpu_streamed_matmul"] = {"img_per_s": stream_throughput(det, jpegs, n_batches, resize="matmul"),
                                          "batches": n_batches, "includes": "as e2e_gpu_streamed, the batch resized "
                                          "as Wy @ X @ Wx^T (two batched matrix products) instead of per image size"}
        for key, place, decoder, how in STREAM_VARIANTS:
            try:
                out[key] = {"img_per_s": stream_throughput(det, jpegs, n_batches, decode=place, device_decoder=decoder),
                            "batches": n_batches, "host_threads": default_host_threads(),
                            "includes": f"as e2e_gpu_streamed; {how}"}
            except Exception as exc:  # noqa: BLE001 - e.g. nvImageCodec not installed: record, go on
                out[key] = {"img_per_s": float("nan"), "error": f"{type(exc).__name__}: {exc}"}
        kept = det.infer_tensors(decode_images(jpegs, device))
        out["kept_boxes_per_image"] = sum(len(d) for d in kept) / len(kept)
    finally:
        det.__exit__(None, None, None)
    out["e2e_over_network"] = out["e2e_gpu"]["img_per_s"] / out["network"]["img_per_s"]
    out["e2e_streamed_over_network"] = out["e2e_gpu_streamed"]["img_per_s"] / out["network"]["img_per_s"]
    out["e2e_streamed_matmul_over_network"] = (out["e2e_gpu_streamed_matmul"]["img_per_s"]
                                               / out["network"]["img_per_s"])
    for key, *_ in STREAM_VARIANTS:
        out[key.replace("e2e_gpu_streamed", "e2e_streamed") + "_over_network"] = (out[key]["img_per_s"]
                                                                                / out["network"]["img_per_s"])
    return out


#: The mAP section's GPU-path runs: (key, frame path, JPEG decode place, resize), each against MAP_CPU_RUN.
MAP_GPU_RUNS = (("gpu", "gpu", "gpu", "interpolate"), ("gpu_matmul", "gpu", "gpu", "matmul"),
                ("gpu_split", "gpu", "split", "interpolate"), ("gpu_host", "gpu", "host", "interpolate"))
MAP_CPU_RUN = (("cpu", "cpu", "gpu", "interpolate"),)


def map_section(coco_dir: Path, device: str) -> dict:
    """ssd_mobilenet_v1 mAP through both frame paths, per mode."""
    from aeb_app.bench.coco_eval import evaluate_detector
    from aeb_app.model.registry import load_model

    loaded = load_model("ssd_mobilenet_v1", "auto")
    out = {}
    on_gpu = device.startswith("cuda")
    for modes in (("fp32",), FAST_MODES) if on_gpu else (("fp32",),):
        det, unavailable = _open(loaded, modes, device)
        try:
            row = {"unavailable": unavailable}
            runs = MAP_GPU_RUNS + MAP_CPU_RUN if on_gpu else MAP_CPU_RUN  # on the CPU: a smoke test
            for key, path, place, resize in runs:
                t0 = time.perf_counter()
                result = evaluate_detector(det, coco_dir, batch_size=32, frame_path=path, decode=place, resize=resize)
                row[key] = {"map": result["map"], "map50": result["map50"], "images": result["num_images"],
                            "seconds": time.perf_counter() - t0}
            for key, *_ in MAP_GPU_RUNS if on_gpu else ():
                row[f"map_{key}_minus_cpu"] = row[key]["map"] - row["cpu"]["map"]
            out[det.info.mode] = row
        finally:
            det.__exit__(None, None, None)
    return out


SUMMARY_RE = re.compile(r"frames (\d+) \(failed (\d+)(?:, skipped (\d+)[^)]*)?\), ([\d.]+) s, ([\d.]+) FPS end to "
                        r"end.*latency p50 ([\d.]+) ms, p99 ([\d.]+) ms")


def _aeb_run(video: Path, extra: list[str], env_extra: dict[str, str], mode: str) -> dict:
    cmd = [sys.executable, "-m", "aeb_app", "run", str(video), "--model", "ssd_mobilenet_v1", "--mode", mode,
           "--no-progress", *extra]
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, capture_output=True, text=True, env={**os.environ, **env_extra}, timeout=240)
    text = proc.stdout + proc.stderr
    match = SUMMARY_RE.search(text)
    row = {"command": " ".join(cmd[1:]), "env": env_extra, "rc": proc.returncode,
           "wall_s": time.perf_counter() - t0, "log_tail": text[-1500:],
           "decoder": "nvdec" if "decoding on the GPU with NVDEC" in text else "opencv"}
    if match:
        row.update(frames=int(match[1]), failed=int(match[2]), skipped=int(match[3] or 0), loop_s=float(match[4]),
                   fps=float(match[5]), latency_p50_ms=float(match[6]), latency_p99_ms=float(match[7]))
    return row


#: Run-name suffixes that switch a diagnostic off for comparison (``aeb-app run`` reads these variables).
RUN_VARIANTS = {"_nograph": {"AEB_APP_FRAME_GRAPH": "0"}, "_nofreeze": {"AEB_APP_GC_FREEZE": "0"},
                "_opencv": {"AEB_APP_VIDEO_DECODER": "opencv"}}


def run_section(video: Path, tmp: Path, mode: str, max_frames: int | None, only: list[str] | None = None,
                timings_csv: Path | None = None) -> dict:
    """``aeb-app run`` writing the mp4 / events + tracks only: paced like a camera (the latency) first, then as fast
    as it goes at batch 32 and 1, NVDEC (if installed) and OpenCV decoding. A name may end in suffixes of
    :data:`RUN_VARIANTS` (e.g. ``events_only_realtime_sequential_nograph``: the whole-frame CUDA Graph off).
    ``only``: these runs, in this order (a name may repeat). ``timings_csv``: every run's ``--timings`` rows in this
    one file, with the run's name in a first column (one file: the device tool brings back only a few).
    Each run's summary is logged as it ends (a run cut short keeps the ones before)."""
    common = ["--max-frames", str(max_frames)] if max_frames else []
    mp4 = ["--out", str(tmp / "annotated.mp4")]
    events = ["--no-render", "--events", str(tmp / "events.csv"), "--tracks", str(tmp / "tracks.csv")]
    runs = {"events_only_realtime_sequential": [*events, "--realtime", "--sequential"],
            "events_only_realtime": [*events, "--realtime"], "mp4_realtime": [*mp4, "--realtime"],
            "events_only_batch32": [*events, "--batch", "32"], "mp4_batch32": [*mp4, "--batch", "32"],
            "events_only_auto": events, "mp4_auto": mp4, "mp4_sequential": [*mp4, "--sequential"]}
    default = [*runs, "events_only_auto_opencv", "mp4_auto_opencv"]
    out = {}
    for i, name in enumerate(only or default):
        base, env = name, {}
        while base not in runs:
            suffix = next((s for s in RUN_VARIANTS if base.endswith(s)), None)
            if suffix is None:
                raise ValueError(f"unknown run {name!r}")
            base, env = base.removesuffix(suffix), {**env, **RUN_VARIANTS[suffix]}
        key = name if name not in out else f"{name}_{i}"
        timings = ["--timings", str(tmp / "timings.csv")] if timings_csv else []
        (tmp / "timings.csv").unlink(missing_ok=True)
        out[key] = row = _aeb_run(video, [*runs[base], *common, *timings], env, mode)
        if timings_csv is not None and (tmp / "timings.csv").exists():
            _add_timings(timings_csv, key, tmp / "timings.csv")
        log.info("run %s: %s FPS, latency p50 %s / p99 %s ms, skipped %s, decoder %s, rc %s", key, row.get("fps"),
                 row.get("latency_p50_ms"), row.get("latency_p99_ms"), row.get("skipped"), row["decoder"], row["rc"])
    return out


def _add_timings(all_csv: Path, run: str, run_csv: Path) -> None:
    """Append one run's ``--timings`` rows to ``all_csv`` (rewritten atomically) under a ``run`` column."""
    from aeb_app.atomic import write_text

    header, *rows = run_csv.read_text().splitlines()
    lines = all_csv.read_text().splitlines() if all_csv.exists() else [f"run,{header}"]
    write_text(all_csv, "\n".join([*lines, *(f"{run},{row}" for row in rows)]) + "\n")


def markdown(result: dict) -> str:
    lines = ["# GPU frame path and staged runner (scripts/gpu_e2e.py)", "",
             f"Machine: {json.dumps(result.get('machine', {}))}", ""]
    for key in ("ssd300", "mobilenet"):
        lines += _e2e_lines(result.get(key, {}))
    for mode, row in result.get("map", {}).items():
        for key, *_ in MAP_GPU_RUNS:
            if key in row and "cpu" in row:
                lines.append(f"- mAP {mode}: {key} path {row[key]['map']:.4f}, CPU path {row['cpu']['map']:.4f}, "
                             f"difference {row[f'map_{key}_minus_cpu']:+.4f} (goal within 0.002)")
    lines += ["", "## aeb-app run, ssd_mobilenet_v1 (batch 1 unless the row says otherwise)", "",
              "| run | decoder | FPS | latency p50 / p99 ms | rc |", "|---|---|---|---|---|"]
    for name, row in result.get("run", {}).items():
        if isinstance(row, dict):
            lines.append(f"| {name} | {row.get('decoder')} | {row.get('fps', 'n/a')} | "
                         f"{row.get('latency_p50_ms', 'n/a')} / {row.get('latency_p99_ms', 'n/a')} | {row.get('rc')} |")
    errors = {k: v for k, v in result.items() if k.endswith("_error")}
    if errors:
        lines += ["", "## Errors", ""] + [f"- {k}: {v.splitlines()[-1]}" for k, v in errors.items()]
    return "\n".join(lines) + "\n"


def _e2e_lines(s: dict) -> list[str]:
    if "network" not in s:
        return []
    lines = [f"## {s['model']}, batch {s['batch']}", "", "| what | img/s | p50 ms |", "|---|---|---|"]
    for key in ("network", "e2e_gpu", "e2e_gpu_streamed", "e2e_gpu_streamed_matmul",
                *(v[0] for v in STREAM_VARIANTS), "e2e_cpu_path",
                "gpu_decode_only", "gpu_resize_normalize_only", "gpu_resize_matmul_normalize_only"):
        lines.append(f"| {key} ({s['mode']}) | {s[key]['img_per_s']:.0f} | {s[key].get('p50_ms', float('nan')):.2f} |")
    return lines + ["", f"End to end / network only: one batch at a time {100 * s['e2e_over_network']:.1f} %, "
                        f"pipelined **{100 * s['e2e_streamed_over_network']:.1f} %**, pipelined with the matmul "
                        f"resize **{100 * s['e2e_streamed_matmul_over_network']:.1f} %**; "
                        + ", ".join(f"{v[0]} **{100 * s[v[0].replace('e2e_gpu_streamed', 'e2e_streamed') + '_over_network']:.1f} %**"
                                    for v in STREAM_VARIANTS) + " (goal >= 50 %); "
                        f"kept boxes per image {s['kept_boxes_per_image']:.1f}", ""]


def _machine() -> dict:
    import torch
    import torchvision

    from aeb_app.bench.machine import fingerprint

    info = {**fingerprint(), "torch": torch.__version__, "torchvision": torchvision.__version__}
    try:
        import PyNvVideoCodec as nvc  # noqa: N813

        info["pynvvideocodec"] = getattr(nvc, "__version__", "?")
    except ImportError:
        info["pynvvideocodec"] = None
    return info


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--coco-dir", type=Path, required=True, help="COCO folder (val2017/ + annotations/)")
    parser.add_argument("--video", type=Path, required=True, help="the sample clip")
    parser.add_argument("--out", type=Path, required=True, help="folder for gpu_e2e.json and gpu_e2e.md")
    parser.add_argument("--sections", default="ssd300,mobilenet,map,run", help="comma-separated subset")
    parser.add_argument("--device", default="cuda", help="cuda (the measurement) or cpu (a smoke test of the script)")
    parser.add_argument("--batch", type=int, default=BATCH, help="SSD300 batch size (default 64)")
    parser.add_argument("--ssd-model", default="ssd300_resnet50", help="model of the ssd300 section (smoke tests)")
    parser.add_argument("--run-mode", default="fp16_fused", help="aeb-app run's mode (default fp16_fused)")
    parser.add_argument("--max-frames", type=int, default=None, help="aeb-app run: first N frames only")
    parser.add_argument("--runs", default=None, help="run section: these runs only, comma-separated, in order")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
    for path in (args.coco_dir / "annotations", args.video):
        if not path.exists():
            parser.error(f"{path}: not found")
    args.out.mkdir(parents=True, exist_ok=True)
    from aeb_app.atomic import write_text

    result: dict = {"machine": _machine()}
    tmp = Path(os.environ.get("TMPDIR", "/tmp")) / "gpu_e2e_run"
    tmp.mkdir(parents=True, exist_ok=True)
    sections = {"ssd300": lambda: ssd300_section(args.coco_dir, args.device, args.batch, args.ssd_model),
                "mobilenet": lambda: ssd300_section(args.coco_dir, args.device, args.batch, "ssd_mobilenet_v1"),
                "map": lambda: map_section(args.coco_dir, args.device),
                "run": lambda: run_section(args.video, tmp, args.run_mode, args.max_frames,
                                           args.runs.split(",") if args.runs else None,
                                           args.out / "timings.csv")}
    for name in args.sections.split(","):
        t0 = time.perf_counter()
        try:
            result[name] = sections[name]()
        except Exception:  # noqa: BLE001 - record and go on with the next section
            result[f"{name}_error"] = traceback.format_exc()
            log.error("section %s failed:\n%s", name, result[f"{name}_error"])
        log.info("section %s: %.1f s", name, time.perf_counter() - t0)
        write_text(args.out / "gpu_e2e.json", json.dumps(result, indent=2, default=str) + "\n")
        write_text(args.out / "gpu_e2e.md", markdown(result))
    print(markdown(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
