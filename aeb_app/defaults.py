"""The one place for user-facing defaults: thresholds, mode policy, cache and output folders.

Every command's ``--help`` shows these values (``ArgumentDefaultsHelpFormatter``); the GUI and the
library read the same constants, so a default never differs between entry points without a reason
written here.

Environment variables:
    ``AEB_APP_CACHE_DIR``: the per-user cache root (assets, engines, compile caches); default
    ``$XDG_CACHE_HOME/aeb_app``, else ``~/.cache/aeb_app``.
    ``AEB_APP_ENGINES_DIR``: only the engines/compile cache; default ``<cache root>/engines``.
"""

from __future__ import annotations

import os
from pathlib import Path

#: Score threshold for what is *shown* (detect, run, GUI): few false boxes on screen.
DISPLAY_SCORE_THRESHOLD = 0.4
#: Score threshold for COCO evaluation: mAP integrates the whole precision-recall curve, so low
#: scores must be kept (the COCO convention; pycocotools keeps the best 100 per image).
EVAL_SCORE_THRESHOLD = 0.01
#: Boxes kept per image for COCO evaluation (COCO: 100).
EVAL_MAX_DETECTIONS = 100

#: ``--mode`` default of every command that runs a detector: walk the fallback order below.
DEFAULT_MODE = "auto"
#: Fallback order on a machine with a CUDA GPU: fastest first (docs/benchmarks/h200/).
GPU_FALLBACK: tuple[str, ...] = ("fp16_trt", "fp16_fused", "fp16_graph", "fp16", "fp32_ort", "fp32")
#: Fallback order on a CPU-only machine: fastest first, measured with ``aeb-app run`` on the sample
#: clip (docs/benchmarks/headless_cpu.md: fp32_ort beats PyTorch fp32 end to end).
CPU_FALLBACK: tuple[str, ...] = ("fp32_ort", "fp32")

#: ``detect`` saves under ``<DETECT_PROJECT>/<name>``, ``<name>2``, ... (the ultralytics convention).
DETECT_PROJECT = Path("runs") / "detect"
DETECT_NAME = "predict"

#: INT8 calibration: images drawn from COCO val2017 and the seed of the draw (``aeb-app quantize``,
#: ``build-engine --precision int8``).
CALIBRATION_IMAGES = 200
CALIBRATION_SEED = 0

#: ``bench --batches`` default: the seed's batch sizes.
BENCH_BATCHES: tuple[int, ...] = (1, 4, 8, 16, 32, 64)
#: ``bench`` without ``--modes`` runs those of these that the machine can run: the seed's five, the
#: fastest eager GPU mode and the CPU ONNX Runtime modes. The compiled modes (minutes of compilation
#: per batch size) are opt-in through ``--modes``.
BENCH_CANDIDATES: tuple[str, ...] = ("int8_trt", "fp16_trt", "fp32_trt", "fp16_fused", "fp16", "fp32", "fp32_ort",
                                     "int8_ort")

#: ``bench`` flags a figure whose p99 exceeds this multiple of its p50 as unstable.
UNSTABLE_P99_OVER_P50 = 3.0

CACHE_ENV = "AEB_APP_CACHE_DIR"
ENGINES_ENV = "AEB_APP_ENGINES_DIR"


def cache_root() -> Path:
    """The per-user cache root: ``$AEB_APP_CACHE_DIR``, ``$XDG_CACHE_HOME/aeb_app`` or ``~/.cache/aeb_app``."""
    if os.environ.get(CACHE_ENV):
        return Path(os.environ[CACHE_ENV]).expanduser()
    xdg = os.environ.get("XDG_CACHE_HOME")
    base = Path(xdg).expanduser() if xdg and Path(xdg).is_absolute() else Path.home() / ".cache"
    return base / "aeb_app"


def engines_dir() -> Path:
    """Where exported ONNX, Q/DQ models, engines, packages and compile caches go by default.

    ``$AEB_APP_ENGINES_DIR``, else ``<cache_root()>/engines``: independent of the current folder, so a
    new folder reuses what was built before and nothing is written into a checkout.
    """
    if os.environ.get(ENGINES_ENV):
        return Path(os.environ[ENGINES_ENV]).expanduser()
    return cache_root() / "engines"


def cpu_cores() -> int:
    """CPU cores this process may use: its affinity mask, capped by a cgroup v2 CPU quota
    (containers report the host's cores in ``os.cpu_count()``)."""
    try:
        cores = len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        cores = os.cpu_count() or 1
    try:
        quota, period = Path("/sys/fs/cgroup/cpu.max").read_text().split()[:2]
        if quota != "max":
            cores = min(cores, max(1, int(int(quota) // int(period))))
    except (OSError, ValueError):
        pass
    return max(1, cores)


def pipeline_cpu_threads() -> int:
    """PyTorch intra-op threads for a CPU pipeline: all usable cores but one (at least 1).

    The pipeline decodes, draws and encodes beside the network (and the GUI paints); when any of that,
    or another process, takes a core from torch's OpenMP team, every parallel region waits for the
    descheduled thread. Measured with ``aeb-app run`` on a busy 2-core machine: 812 ms per frame with
    2 threads, 84 ms with 1 (docs/benchmarks/headless_cpu.md).
    """
    return max(1, cpu_cores() - 1)


def fallback_order(device: str | None = None) -> tuple[str, ...]:
    """The default ``--mode auto`` order for ``device`` (None: CUDA if torch sees a GPU, else CPU)."""
    if device is None:
        import torch

        device = "cuda" if torch.cuda.is_available() else "cpu"
    return CPU_FALLBACK if device == "cpu" else GPU_FALLBACK
