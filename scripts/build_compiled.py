"""Build AOTInductor packages of SSD300-ResNet50 (FP16, batch 1 and 64) on the GPU, then time them.

Two variants, each in its own engines folder: Inductor with freezing ("fast", ~1-2 min per shape)
and freezing + max-autotune ("tuned", several minutes per shape, cut off by --tune-timeout).
Usage (on the GPU machine): python3 scripts/build_compiled.py --out DIR
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import time
from pathlib import Path

BUILD = """
import sys, time, logging
logging.basicConfig(level=logging.INFO)
from aeb_app.model.registry import load_model
from aeb_app.inference.build.compile import compile_package
batch, tuned, engines = int(sys.argv[1]), sys.argv[2] == "tuned", sys.argv[3]
t0 = time.perf_counter()
path = compile_package(load_model("ssd300_resnet50", "random"), precision="fp16", batch=batch,
                       device="cuda", engines_dir=engines, max_autotune=tuned)
print(f"built {path} in {time.perf_counter() - t0:.0f} s", flush=True)
"""


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--batches", default="1,64")
    parser.add_argument("--tune-timeout", type=int, default=330)
    parser.add_argument("--variants", default="fast", help="fast and/or tuned (max-autotune: >5 min per shape)")
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    jobs = []
    variants = args.variants.split(",")
    for variant in variants:
        for batch in args.batches.split(","):
            log = open(args.out / f"build_{variant}_b{batch}.log", "w")
            cmd = [sys.executable, "-c", BUILD, batch, variant, f"/tmp/engines_{variant}"]
            jobs.append((variant, batch, subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT), time.time()))
    for variant, batch, proc, start in jobs:
        limit = args.tune_timeout if variant == "tuned" else 400
        try:
            proc.wait(timeout=max(1, limit - (time.time() - start)))
        except subprocess.TimeoutExpired:
            proc.kill()
            print(f"{variant} b{batch}: compile cut off after {limit} s", flush=True)
        print(f"{variant} b{batch}: exit {proc.returncode} after {time.time() - start:.0f} s", flush=True)
    for variant in variants:
        subprocess.run([sys.executable, "-m", "aeb_app", "bench", "--model", "ssd300_resnet50", "--weights", "random",
                        "--modes", "fp16_aoti,fp16_graph,fp16", "--batches", args.batches,
                        "--engines-dir", f"/tmp/engines_{variant}", "--out", str(args.out / f"ssd300_compiled_{variant}")],
                       check=False)
    return 0


if __name__ == "__main__":
    sys.exit(main())
