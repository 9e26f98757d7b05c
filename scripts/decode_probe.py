"""Where JPEG decoding can run beside the network on a GPU machine (issue #12), one run.

Measures, on 64 COCO JPEGs held in host memory:

1. ``nvjpeg``: torchvision's batched nvJPEG decode (what the GPU frame path uses): CUDA-event time, and
   whether the call lets other Python threads run (a counting thread's rate during the calls over its
   idle rate; about 1.0 means the GIL is released).
2. ``cpu_pool``: OpenCV decode + resize to 300x300 (the CPU path's own functions) in a thread pool of
   1..N threads: images/s.
3. ``nvimgcodec``: NVIDIA nvImageCodec's decoder per backend (the H200's hardware JPEG engines
   ``HW_GPU_ONLY``, CUDA ``GPU_ONLY``, ``HYBRID_CPU_GPU``) when ``--nvimgcodec DIR`` points at an unpacked
   copy of the ``nvidia-nvimgcodec-cu13`` wheel's ``nvimgcodec`` folder (with ``cu13/lib/libnvjpeg.so.13``
   beside it, and LD_LIBRARY_PATH naming that folder).
4. ``network_under_load``: SSD300 ``fp16_fused`` batch 64 network-only img/s alone and while a CPU pool
   decodes (does host decoding slow the network's launches?).

Writes ``decode_probe.json`` into ``--out``. Usage (repo root, device machine)::

    LD_LIBRARY_PATH=$PWD/.nvimg/cu13/lib python3 scripts/decode_probe.py \\
        --coco-dir .gpue2e/coco/val2017_subset --nvimgcodec .nvimg/nvimgcodec --out $OUT/probe
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import threading
import time
import traceback
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

BATCH = 64


def _gil_ratio(fn, calls: int) -> tuple[float, float]:
    """(seconds per call, counting-thread rate during the calls / its idle rate)."""
    stop = threading.Event()
    count = [0]

    def spin():
        while not stop.is_set():
            count[0] += 1

    def rate(seconds: float | None, work=None) -> tuple[float, float]:
        count[0] = 0
        stop.clear()
        thread = threading.Thread(target=spin)
        t0 = time.perf_counter()
        thread.start()
        if work is None:
            time.sleep(seconds)
        else:
            work()
        stop.set()
        thread.join()
        elapsed = time.perf_counter() - t0
        return count[0] / elapsed, elapsed

    idle, _ = rate(0.5)
    busy, elapsed = rate(None, lambda: [fn() for _ in range(calls)])
    return elapsed / calls, busy / idle


def nvjpeg_section(jpegs: list[bytes]) -> dict:
    import torch

    from aeb_app.bench.timing import measure
    from aeb_app.inference.run.gpu_frames import decode_images

    def decode():
        decode_images(jpegs, "cuda")
        torch.cuda.synchronize()

    stats = measure(lambda: decode_images(jpegs, "cuda"), cuda=True, warmup_iters=3, min_iters=20, min_time_s=1.0)
    per_call, gil = _gil_ratio(decode, 20)
    return {"img_per_s": BATCH * 1000 / stats.p50_ms, "p50_ms": stats.p50_ms, "host_s_per_call": per_call,
            "counting_thread_rate_ratio": gil}


def _cpu_decode_resize(data: bytes):
    import cv2
    import numpy as np

    image = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR)
    return cv2.resize(image, (300, 300), interpolation=cv2.INTER_LINEAR)


def cpu_pool_section(jpegs: list[bytes], threads: list[int]) -> dict:
    import cv2

    cv2.setNumThreads(1)
    out = {}
    work = jpegs * 8
    for n in threads:
        with ThreadPoolExecutor(n) as pool:
            list(pool.map(_cpu_decode_resize, jpegs))
            t0 = time.perf_counter()
            list(pool.map(_cpu_decode_resize, work))
            out[str(n)] = len(work) / (time.perf_counter() - t0)
    return out


def _load_nvimgcodec(folder: Path):
    import importlib.util

    os.environ.setdefault("NVIMGCODEC_EXTENSIONS_PATH", str(folder / "extensions"))
    so = next(folder.glob(f"nvimgcodec_impl.cpython-{sys.version_info[0]}{sys.version_info[1]}-*.so"))
    spec = importlib.util.spec_from_file_location("nvimgcodec_impl", so)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def nvimgcodec_section(jpegs: list[bytes], folder: Path) -> dict:
    import torch

    nvimg = _load_nvimgcodec(folder)
    out = {"version": nvimg.__version__}
    streams = [nvimg.CodeStream(d) for d in jpegs]
    for kind in ("HW_GPU_ONLY", "GPU_ONLY", "HYBRID_CPU_GPU"):
        try:
            decoder = nvimg.Decoder(device_id=0, backends=[nvimg.Backend(getattr(nvimg.BackendKind, kind))])

            def decode():
                images = decoder.decode(streams)
                torch.cuda.synchronize()
                return images

            images = decode()
            ok = sum(im is not None for im in images)
            first = torch.as_tensor(images[0], device="cuda") if images[0] is not None else None
            for _ in range(3):
                decode()
            t0 = time.perf_counter()
            calls = 20
            for _ in range(calls):
                decode()
            per_call = (time.perf_counter() - t0) / calls
            _, gil = _gil_ratio(decode, 10)
            out[kind] = {"decoded": ok, "img_per_s": BATCH / per_call, "ms_per_batch": per_call * 1e3,
                         "counting_thread_rate_ratio": gil,
                         "first_shape": list(first.shape) if first is not None else None}
        except Exception:  # noqa: BLE001 - record and try the next backend
            out[kind] = {"error": traceback.format_exc()[-1500:]}
    return out


def network_under_load_section(coco_dir: Path, jpegs: list[bytes], threads: int) -> dict:
    from aeb_app.bench.sweep import sample_frames
    from aeb_app.bench.timing import measure
    from aeb_app.inference.registry import create
    from aeb_app.model.preprocess import resize_batch
    from aeb_app.model.registry import load_model

    det = create(load_model("ssd300_resnet50", "random"), "fp16_fused", device="cuda")
    det.__enter__()
    try:
        fn, _ = det.network_fn(resize_batch(sample_frames(coco_dir, BATCH), det.spec))
        alone = measure(fn, cuda=True, warmup_iters=5, min_iters=20, min_time_s=1.0)
        stop = threading.Event()

        def load():
            while not stop.is_set():
                _cpu_decode_resize(jpegs[0])

        workers = [threading.Thread(target=load) for _ in range(threads)]
        for w in workers:
            w.start()
        try:
            loaded = measure(fn, cuda=True, warmup_iters=5, min_iters=20, min_time_s=1.0)
        finally:
            stop.set()
            for w in workers:
                w.join()
    finally:
        det.__exit__(None, None, None)
    return {"alone_img_per_s": BATCH * 1000 / alone.p50_ms, "with_cpu_decoding_img_per_s": BATCH * 1000 / loaded.p50_ms,
            "cpu_threads": threads}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--coco-dir", type=Path, required=True)
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--nvimgcodec", type=Path, default=None, help="unpacked nvimgcodec folder (optional)")
    parser.add_argument("--threads", default="1,4,8,12,14,15,16", help="CPU pool sizes")
    args = parser.parse_args(argv)
    from aeb_app.atomic import write_text
    from aeb_app.bench.sweep import sample_jpegs

    jpegs = sample_jpegs(args.coco_dir, BATCH)
    threads = [int(t) for t in args.threads.split(",")]
    sections = {"nvjpeg": lambda: nvjpeg_section(jpegs), "cpu_pool": lambda: cpu_pool_section(jpegs, threads),
                "nvimgcodec": (lambda: nvimgcodec_section(jpegs, args.nvimgcodec)) if args.nvimgcodec else None,
                "network_under_load": lambda: network_under_load_section(args.coco_dir, jpegs, max(threads) - 2)}
    result: dict = {"cpu_count": os.cpu_count()}
    args.out.mkdir(parents=True, exist_ok=True)
    for name, fn in sections.items():
        if fn is None:
            continue
        try:
            result[name] = fn()
        except Exception:  # noqa: BLE001 - record and go on
            result[name] = {"error": traceback.format_exc()[-2000:]}
        print(name, json.dumps(result[name], indent=1), flush=True)
        write_text(args.out / "decode_probe.json", json.dumps(result, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
