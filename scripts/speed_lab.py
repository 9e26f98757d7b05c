"""SSD300 FP16 speed experiments on the GPU, several variants in one device call.

    python3 scripts/speed_lab.py run --out DIR [--compile-budget S] [--jobs NAMES]

Three groups, each variant in its own process so that one that crashes costs only itself:
  * eager: PyTorch FP16 channels-last with a CUDA graph, as loaded and with the inference rewrites
    (aeb_app.model.fuse: BatchNorm folded, fused heads), at batch 1 and 64, plus a kernel profile;
  * jit: torch.compile (Inductor, freezing) variants, compiled in parallel, then timed one at a
    time (each waits for a "go" file, so no timing shares the GPU with a compile);
  * aoti: AOTInductor packages built with/without channels-last, freezing and the rewrites, then
    loaded and run in a child started with faulthandler (a crash is recorded with its signal and
    the last stage reached: this is the bisection of the package that ended its process).
Every variant's outputs are compared with eager FP32 of the same weights (relative L2 error).
Timing: aeb_app.bench.timing.measure (CUDA events, warm-up, median over >= 1 s). Inputs are random.
`--device cpu --quick` runs the same logic on a CPU (tiny settings) to check the script itself.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

RW = ("fold_bn", "fused_heads")
CUDNN = ("cudnn_fused", "fused_heads")
JIT_JOBS = {  # name: (batch, torch.compile mode, conv_1x1_as_mm, rewrites)
    "jit_b64_tuned_mm": (64, "max-autotune-no-cudagraphs", True, RW),
    "jit_b64_default": (64, "default", False, RW),
    "jit_b1_default": (1, "default", False, RW),
    "jit_b64_cudnn": (64, "default", False, CUDNN),
    "jit_b1_cudnn": (1, "default", False, CUDNN),
}
AOTI_JOBS = {  # name: (batch, channels_last, freezing, rewrites)
    "aoti_b1_cl_freeze": (1, True, True, ()),
    "aoti_b1_nchw_freeze": (1, False, True, ()),
    "aoti_b1_cl_nofreeze": (1, True, False, ()),
    "aoti_b1_cl_freeze_rw": (1, True, True, RW),
}
EAGER = {"eager_as_loaded": (), "eager_rewrites": RW, "eager_cudnn": CUDNN}


def _write(path: Path, obj) -> None:
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(obj, indent=1, default=str))
    os.replace(tmp, path)


def build(device: str, dtype_name: str, rewrites: tuple[str, ...], channels_last: bool):
    """DetectionNet of SSD300 (seeded random weights) on ``device``; the FP32 CPU reference too."""
    import torch

    from aeb_app.model.fuse import optimize_for_inference
    from aeb_app.model.registry import DetectionNet, load_model

    loaded = load_model("ssd300_resnet50", "random")
    network = optimize_for_inference(loaded.network, rewrites)[0] if rewrites else loaded.network
    net = DetectionNet(network, loaded.spec).eval()
    net.network.to(device, dtype=getattr(torch, dtype_name))
    net.decode.to(device)
    if channels_last:
        net.network.to(memory_format=torch.channels_last)
    return net, loaded


def make_input(batch: int, device: str, dtype_name: str, channels_last: bool, seed: int = 0):
    import torch

    g = torch.Generator().manual_seed(seed)
    x = torch.randn(batch, 3, 300, 300, generator=g).to(device, getattr(torch, dtype_name))
    return x.contiguous(memory_format=torch.channels_last) if channels_last else x


def rel_error(outs, x) -> float:
    """Max over outputs of ||out - ref|| / ||ref|| against true FP32 (no TF32) of the same weights."""
    import torch

    ref_net, _ = build(str(x.device), "float32", (), False)
    tf32 = torch.backends.cudnn.allow_tf32
    torch.backends.cudnn.allow_tf32 = False
    try:
        with torch.inference_mode():
            ref = ref_net(x.float().contiguous())
    finally:
        torch.backends.cudnn.allow_tf32 = tf32
    return max(float((o.float() - r).norm() / r.norm()) for o, r in zip(outs, ref))


def time_fn(fn, device: str, quick: bool) -> dict:
    from aeb_app.bench.timing import measure

    s = measure(fn, cuda=device.startswith("cuda"), warmup_iters=2 if quick else 10,
                min_iters=2 if quick else 20, min_time_s=0.05 if quick else 1.0)
    return {"p50_ms": round(s.p50_ms, 4), "p99_ms": round(s.p99_ms, 4), "iters": s.iters, "clock": s.clock}


def _graphed(fn, device):
    if not device.startswith("cuda"):
        return fn
    from aeb_app.inference.run.cuda_graph import CudaGraphRunner

    return CudaGraphRunner(lambda t: tuple(fn(t)))


def _throughput(row: dict, batch: int) -> dict:
    row["img_per_s"] = round(batch / row["p50_ms"] * 1e3, 1)
    return row


def eager_job(args) -> None:
    import torch

    torch.backends.cudnn.benchmark = True
    results = []
    for name in args.eager.split(","):
        rewrites = EAGER[name]
        try:
            _eager_variant(args, name, rewrites, results)
        except RuntimeError as exc:  # e.g. a fused cuDNN call this cuDNN cannot run
            results.append({"variant": name, "error": str(exc)[:300]})
            print(name, "failed:", exc, flush=True)
        _write(args.out / "eager.json", results)


def _eager_variant(args, name: str, rewrites: tuple[str, ...], results: list) -> None:
    import torch

    net, _ = build(args.device, args.dtype, rewrites, args.device.startswith("cuda"))
    for batch in args.batches:
        x = make_input(batch, args.device, args.dtype, args.device.startswith("cuda"))
        with torch.inference_mode():
            err = rel_error(net(x), x)
            graphed = _graphed(net, args.device)
            row = {"variant": name, "batch": batch, "graph": args.device.startswith("cuda"), "rel_err": err,
                   **time_fn(lambda: graphed(x), args.device, args.quick)}
            results.append(_throughput(row, batch))
            if batch == max(args.batches) and name in args.profile.split(","):
                row = {"variant": name, "batch": batch, "graph": False,
                       **time_fn(lambda: net(x), args.device, args.quick)}
                results.append(_throughput(row, batch))
                _profile(net, x, args.out / f"profile_{name}_b{batch}.txt", args.device)
        print(json.dumps(results[-1]), flush=True)


def _profile(net, x, path: Path, device: str) -> None:
    import torch
    from torch.profiler import ProfilerActivity, profile

    acts = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if device.startswith("cuda") else [])
    with profile(activities=acts) as prof:
        for _ in range(5):
            net(x)
        if device.startswith("cuda"):
            torch.cuda.synchronize()
    key = "self_cuda_time_total" if device.startswith("cuda") else "self_cpu_time_total"
    path.write_text(prof.key_averages().table(sort_by=key, row_limit=30, max_name_column_width=70))


def _wait_for(path: Path, timeout_s: float) -> bool:
    end = time.time() + timeout_s
    while time.time() < end:
        if path.exists():
            return True
        time.sleep(0.2)
    return False


def jit_job(args) -> None:
    import torch
    from torch._inductor import config as inductor_config

    batch, mode, mm, rewrites = JIT_JOBS[args.name]
    batch = min(batch, 2) if args.quick else batch
    torch.backends.cudnn.benchmark = True
    inductor_config.freezing = True
    inductor_config.conv_1x1_as_mm = mm
    cl = args.device.startswith("cuda")
    net, _ = build(args.device, args.dtype, rewrites, cl)
    x = make_input(batch, args.device, args.dtype, cl)
    with torch.inference_mode():
        compiled = torch.compile(net, mode=("default" if args.quick else mode))
        t0 = time.perf_counter()
        outs = compiled(x)
        compiled(x)
        compile_s = time.perf_counter() - t0
        err = rel_error(outs, x)
        _write(args.out / f"{args.name}.ready", {"compile_s": round(compile_s, 1)})
        if not _wait_for(args.out / f"{args.name}.go", 1200):
            return
        row = {"variant": args.name, "batch": batch, "mode": mode, "conv_1x1_as_mm": mm, "rewrites": rewrites,
               "compile_s": round(compile_s, 1), "rel_err": err}
        rows = [_throughput({**row, "graph": False, **time_fn(lambda: compiled(x), args.device, args.quick)}, batch)]
        graphed = _graphed(compiled, args.device)
        rows.append(_throughput({**row, "graph": cl, **time_fn(lambda: graphed(x), args.device, args.quick)}, batch))
    _write(args.out / f"{args.name}.json", rows)


def aoti_build_job(args) -> None:
    import torch

    batch, cl, freezing, rewrites = AOTI_JOBS[args.name]
    batch = min(batch, 2) if args.quick else batch
    cl = cl and args.device.startswith("cuda")
    net, _ = build(args.device, args.dtype, rewrites, cl)
    x = make_input(batch, args.device, args.dtype, cl)
    t0 = time.perf_counter()
    with torch.inference_mode():
        exported = torch.export.export(net, (x,))
    torch._inductor.aoti_compile_and_package(exported, package_path=str(args.out / f"{args.name}.pt2"),
                                             inductor_configs={"freezing": freezing})
    _write(args.out / f"{args.name}.ready", {"compile_s": round(time.perf_counter() - t0, 1)})


def aoti_run_job(args) -> None:
    import torch

    batch, cl, _freezing, _rewrites = AOTI_JOBS[args.name]
    batch = min(batch, 2) if args.quick else batch
    cl = cl and args.device.startswith("cuda")
    print("stage: import", flush=True)
    runner = torch._inductor.aoti_load_package(str(args.out / f"{args.name}.pt2"))
    print("stage: loaded", flush=True)
    x = make_input(batch, args.device, args.dtype, cl)
    with torch.inference_mode():
        outs = runner(x)
        print("stage: ran", flush=True)
        if args.device.startswith("cuda"):
            torch.cuda.synchronize()
        print("stage: synchronised", flush=True)
        err = rel_error(outs, x)
        row = {"variant": args.name, "batch": batch, "rel_err": err}
        rows = [_throughput({**row, "graph": False, **time_fn(lambda: runner(x), args.device, args.quick)}, batch)]
        graphed = _graphed(runner, args.device)
        rows.append(_throughput({**row, "graph": cl, **time_fn(lambda: graphed(x), args.device, args.quick)}, batch))
    print("stage: timed", flush=True)
    _write(args.out / f"{args.name}.json", rows)


def _child(sub: str, args, name: str | None = None, faulthandler: bool = False) -> list[str]:
    cmd = [sys.executable, *(["-X", "faulthandler"] if faulthandler else []), str(Path(__file__).resolve()), sub,
           "--out", str(args.out), "--device", args.device, "--dtype", args.dtype, "--profile", args.profile,
           "--eager", args.eager]
    return cmd + (["--name", name] if name else []) + (["--quick"] if args.quick else [])


def orchestrate(args) -> None:
    start = time.time()
    args.out.mkdir(parents=True, exist_ok=True)
    names = [n for n in args.jobs.split(",") if n]
    procs = {}
    for name in names:
        sub = "jit" if name in JIT_JOBS else "aoti-build"
        log = open(args.out / f"{name}.log", "w")
        procs[name] = subprocess.Popen(_child(sub, args, name), stdout=log, stderr=subprocess.STDOUT)
    summary: dict = {"compile": {}, "run": {}}
    # Compile phase: wait for every job to be ready (or to die), up to the budget.
    while time.time() - start < args.compile_budget:
        pending = [n for n in names if procs[n].poll() is None and not (args.out / f"{n}.ready").exists()]
        if not pending:
            break
        time.sleep(1)
    for name in names:
        ready = args.out / f"{name}.ready"
        if ready.exists():
            summary["compile"][name] = json.loads(ready.read_text())
        else:
            if procs[name].poll() is None:
                procs[name].kill()
            summary["compile"][name] = {"failed": f"exit {procs[name].poll()}" if procs[name].poll() is not None
                                        and procs[name].returncode != -9 else f"not ready after {args.compile_budget} s"}
        print(name, summary["compile"][name], flush=True)
    # Timing phase, one process on the GPU at a time.
    eager = subprocess.run(_child("eager", args), capture_output=True, text=True, timeout=240)
    (args.out / "eager.log").write_text(eager.stdout + eager.stderr)
    summary["run"]["eager"] = {"rc": eager.returncode}
    for name in names:
        if "failed" in summary["compile"][name]:
            continue
        if name in JIT_JOBS:
            (args.out / f"{name}.go").touch()
            try:
                procs[name].wait(timeout=120)
            except subprocess.TimeoutExpired:
                procs[name].kill()
            summary["run"][name] = {"rc": procs[name].returncode}
        else:
            procs[name].wait()
            proc = subprocess.run(_child("aoti-run", args, name, faulthandler=True), capture_output=True, text=True,
                                  timeout=180)
            (args.out / f"{name}.run.log").write_text(proc.stdout + proc.stderr)
            stages = [line for line in proc.stdout.splitlines() if line.startswith("stage:")]
            summary["run"][name] = {"rc": proc.returncode, "last_stage": stages[-1] if stages else None,
                                    "stderr_tail": proc.stderr.strip().splitlines()[-6:]}
        print(name, summary["run"][name], flush=True)
    rows = []
    for path in sorted(args.out.glob("*.json")):
        if path.name not in ("summary.json",):
            data = json.loads(path.read_text())
            rows.extend(data if isinstance(data, list) else [])
    summary["rows"] = rows
    summary["elapsed_s"] = round(time.time() - start, 1)
    _write(args.out / "summary.json", summary)
    print(f"\n{'variant':28s} {'b':>3s} {'graph':>5s} {'p50 ms':>9s} {'img/s':>9s} {'rel_err':>9s}")
    for r in rows:
        if "p50_ms" not in r:
            print(f"{r['variant']:28s} {r.get('error', '?')[:100]}")
            continue
        print(f"{r['variant']:28s} {r['batch']:3d} {str(r.get('graph')):>5s} {r['p50_ms']:9.3f} {r['img_per_s']:9.1f} "
              f"{r.get('rel_err', float('nan')):9.2e}")


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("sub", choices=["run", "eager", "jit", "aoti-build", "aoti-run"])
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--device", default="cuda")
    parser.add_argument("--dtype", default="float16")
    parser.add_argument("--name")
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--compile-budget", type=float, default=330)
    parser.add_argument("--jobs", default=",".join([*JIT_JOBS, *AOTI_JOBS]))
    parser.add_argument("--eager", default=",".join(EAGER), help="eager variants to time")
    parser.add_argument("--profile", default=",".join(EAGER), help="eager variants to profile at the largest batch")
    args = parser.parse_args()
    args.batches = [1, 2] if args.quick else [1, 64]
    {"run": orchestrate, "eager": eager_job, "jit": jit_job, "aoti-build": aoti_build_job,
     "aoti-run": aoti_run_job}[args.sub](args)
    return 0


if __name__ == "__main__":
    sys.exit(main())
