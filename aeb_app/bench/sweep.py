"""The precision x batch sweep: accuracy and speed of every mode at every batch size.

For each mode (backend + precision) the detector is created and activated once; for each
batch size it measures
- network-only latency (``Detector.network_fn``: input already on the device for PyTorch),
  timed with CUDA events on a GPU, ``perf_counter`` on the CPU;
- end-to-end latency, timed with the host clock, device synchronised: on a CUDA detector with a
  device path (PyTorch modes) JPEG bytes in memory -> nvJPEG decode -> resize/normalise -> network ->
  NMS on the GPU -> one copy of the kept boxes (:mod:`aeb_app.inference.run.gpu_frames`); otherwise
  decoded BGR frames -> resize on the CPU -> upload -> network -> NMS -> detections on the host;
- COCO mAP at that batch size (when the model has real weights and a COCO folder is given).
A mode that cannot run here yields rows marked unavailable with the reason, never omitted.
"""

from __future__ import annotations

import logging
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable

from aeb_app import defaults
from aeb_app.bench.machine import count_flops, fingerprint, peak_tflops, sanity_check
from aeb_app.bench.timing import TimingStats, measure
from aeb_app.errors import AebError

log = logging.getLogger(__name__)

SEED_MODES = ("int8_trt", "fp16_trt", "fp32_trt", "fp16", "fp32")
SEED_BATCHES = defaults.BENCH_BATCHES
DEFAULT_CANDIDATES = defaults.BENCH_CANDIDATES


@dataclass
class SweepConfig:
    """What to sweep and how carefully to time it."""

    model: str = "ssd_mobilenet_v1"
    modes: tuple[str, ...] = SEED_MODES
    batches: tuple[int, ...] = SEED_BATCHES
    coco_dir: Path | None = None
    annotations: Path | None = None
    limit: int | None = None
    weights: str = "auto"
    device: str | None = None
    warmup_iters: int = 10
    min_iters: int = 20
    min_time_s: float = 1.0
    map_at: str = "all"  # "all" batch sizes, "first" only, or "none"
    reference_mode: str = "fp16"
    tf32: bool = False
    end_to_end: bool = True
    engines_dir: Path | None = None

    def __post_init__(self) -> None:
        if not self.modes or not self.batches or min(self.batches) < 1:
            raise ValueError("a sweep needs at least one mode and batch sizes >= 1")
        if self.map_at not in ("all", "first", "none"):
            raise ValueError(f"map_at must be all, first or none, not {self.map_at!r}")


@dataclass
class Row:
    """One (mode, batch) result. Times in ms; throughput in images/s."""

    model: str
    mode: str
    batch: int
    available: bool
    reason: str = ""
    backend: str = ""
    precision: str = ""
    device: str = ""
    map: float | None = None
    map50: float | None = None
    map_images: int | None = None
    ms_per_sample: float | None = None
    fps: float | None = None
    p50_ms: float | None = None
    p99_ms: float | None = None
    iters: int | None = None
    clock: str = ""
    includes: str = ""
    e2e_ms_per_sample: float | None = None
    e2e_fps: float | None = None
    e2e_p50_ms: float | None = None
    e2e_p99_ms: float | None = None
    e2e_includes: str = ""
    e2e_stream_fps: float | None = None
    acceleration: float | None = None
    reference_mode: str = ""
    gpu_mem_mb: float | None = None
    flops_per_image: float | None = None
    achieved_tflops: float | None = None
    peak_tflops: float | None = None
    pct_of_peak: float | None = None
    sanity: str = "unknown"
    unstable: bool = False
    e2e_unstable: bool = False
    tf32: bool | None = None
    extra: dict = field(default_factory=dict)


E2E_INCLUDES = "resize on CPU + upload + normalisation + network + decode + NMS/top-k on device + copy of kept boxes"
E2E_INCLUDES_GPU = ("JPEG bytes in host memory -> nvJPEG decode + resize + normalisation + network + decode + "
                    "NMS/top-k on the GPU + one copy of the batch's kept boxes")


class Cancelled(AebError):
    """The sweep was cancelled by the caller."""


def sample_frames(coco_dir: Path | None, count: int):
    """``count`` real BGR frames: COCO images if given, else the sample dashcam stills (cycled)."""
    from aeb_app.images import read_image

    images = [read_image(p) for p in _sample_paths(coco_dir, count)]
    return [images[i % len(images)] for i in range(count)]


def sample_jpegs(coco_dir: Path | None, count: int) -> list[bytes]:
    """The files of :func:`sample_frames` as encoded bytes (the GPU path's end-to-end input)."""
    data = [p.read_bytes() for p in _sample_paths(coco_dir, count)]
    return [data[i % len(data)] for i in range(count)]


def _sample_paths(coco_dir: Path | None, count: int) -> list[Path]:
    from aeb_app import assets

    if coco_dir is not None:
        paths = sorted(Path(coco_dir).rglob("*.jpg"))[:64]
    else:
        paths = [assets.resolve("sample_video", n) for n in ("solidWhiteRight.jpg", "whiteCarLaneSwitch.jpg",
                                                              "solidYellowLeft.jpg", "solidWhiteCurve.jpg")]
    if not paths:
        raise AebError(f"{coco_dir}: no .jpg images to time with")
    return list(paths[: min(len(paths), count)])


def run_sweep(
    cfg: SweepConfig,
    *,
    on_row: Callable[[Row], None] | None = None,
    should_stop: Callable[[], bool] | None = None,
) -> list[Row]:
    """Run the whole matrix; rows come back in (mode, batch) order and also through ``on_row``.

    Raises:
        Cancelled: ``should_stop`` returned True (rows so far were delivered through ``on_row``).
    """
    from aeb_app.model.registry import load_model

    _set_tf32(cfg.tf32)
    loaded = load_model(cfg.model, cfg.weights)
    flops = count_flops(cfg.model)
    frames = sample_frames(cfg.coco_dir, max(cfg.batches))
    jpegs = sample_jpegs(cfg.coco_dir, max(cfg.batches))
    machine = fingerprint()
    rows: list[Row] = []
    for mode in cfg.modes:
        for row in _sweep_mode(cfg, loaded, mode, frames, should_stop, jpegs):
            _add_compute(row, flops, machine.get("gpu") or "", cfg.tf32)
            rows.append(row)
            if on_row:
                on_row(row)
    add_acceleration(rows, cfg.reference_mode)
    return rows


def _set_tf32(enabled: bool) -> None:
    import torch

    torch.backends.cuda.matmul.allow_tf32 = enabled
    torch.backends.cudnn.allow_tf32 = enabled


def _open(cfg: SweepConfig, loaded, mode: str, batch: int | None):
    from aeb_app.inference.registry import create

    options = {} if batch is None else {"batch": batch}
    detector = create(loaded, mode, device=cfg.device, engines_dir=cfg.engines_dir, **options)
    detector.__enter__()
    return detector


def _sweep_mode(cfg: SweepConfig, loaded, mode: str, frames, should_stop, jpegs: list[bytes] | None = None
                ) -> list[Row]:
    from aeb_app.inference.registry import get_mode

    # AOTInductor packages are compiled for one batch size: open one per batch.
    per_batch = get_mode(mode).backend == "pytorch-aoti"
    rows: list[Row] = []
    shared, failure, first_map = None, None, None
    try:
        for b in cfg.batches:
            if should_stop and should_stop():
                raise Cancelled("benchmark cancelled")
            try:
                if failure is None and (per_batch or shared is None):
                    detector = _open(cfg, loaded, mode, b if per_batch else None)
                    shared = None if per_batch else detector
            except AebError as exc:
                log.debug("mode %s unavailable: %s", mode, exc)  # reported once per mode by the caller
                failure = None if per_batch else str(exc)
                rows.append(Row(cfg.model, mode, b, False, reason=str(exc)))
                continue
            if failure is not None:
                rows.append(Row(cfg.model, mode, b, False, reason=failure))
                continue
            try:
                row = _measure_batch(cfg, detector, b, frames[:b], should_stop, jpegs[:b] if jpegs else None)
                first_map = _maybe_accuracy(cfg, loaded, detector, row, first_map)
            finally:
                if per_batch:
                    detector.__exit__(None, None, None)
            rows.append(row)
    finally:
        if shared is not None:
            shared.__exit__(None, None, None)
    return rows


def _maybe_accuracy(cfg: SweepConfig, loaded, detector, row: Row, first_map: tuple | None) -> tuple | None:
    """Fill the row's mAP (measured at this batch, or copied from the first batch)."""
    if loaded.weights == "random":
        row.extra["map_note"] = "random weights: accuracy not meaningful"
        return first_map
    if not row.available or cfg.map_at == "none" or not cfg.coco_dir:
        return first_map
    if cfg.map_at == "all" or first_map is None:
        first_map = _accuracy(cfg, detector, row.batch)
    row.map, row.map50, row.map_images = first_map
    row.extra["map_batch"] = row.batch if cfg.map_at == "all" else cfg.batches[0]
    return first_map


def _measure_batch(cfg: SweepConfig, detector, b: int, frames, should_stop, jpegs: list[bytes] | None = None) -> Row:
    from aeb_app.model.preprocess import resize_batch

    info = detector.info
    row = Row(cfg.model, info.mode, b, True, backend=info.backend, precision=info.precision,
              device=info.device, tf32=cfg.tf32 if info.precision == "fp32" else None)
    on_gpu = info.device.startswith("cuda")
    try:
        _reset_peak_memory(on_gpu)
        fn, includes = detector.network_fn(resize_batch(frames, detector.spec))
        net = measure(fn, cuda=on_gpu, warmup_iters=cfg.warmup_iters, min_iters=cfg.min_iters,
                      min_time_s=cfg.min_time_s, should_stop=should_stop)
        _fill(row, net, b, includes)
        if cfg.end_to_end:
            fn, row.e2e_includes = end_to_end_fn(detector, frames, jpegs)
            e2e = measure(fn, cuda=False, warmup_iters=max(2, cfg.warmup_iters // 2),
                          min_iters=max(5, cfg.min_iters // 2), min_time_s=cfg.min_time_s, should_stop=should_stop)
            row.e2e_p50_ms, row.e2e_p99_ms = e2e.p50_ms, e2e.p99_ms
            row.e2e_ms_per_sample, row.e2e_fps = e2e.p50_ms / b, b * 1000.0 / e2e.p50_ms
            row.e2e_unstable = is_unstable(e2e.p50_ms, e2e.p99_ms)
            if row.e2e_includes == E2E_INCLUDES_GPU:
                n = max(10, int(cfg.min_time_s * 1000.0 / max(e2e.p50_ms, 1e-3)) + 1)
                row.e2e_stream_fps = stream_throughput(detector, jpegs, n)
        row.gpu_mem_mb = _peak_memory_mb(on_gpu)
    except AebError as exc:  # e.g. batch larger than an engine's profile
        row.available, row.reason = False, str(exc)
    except RuntimeError as exc:  # CUDA out of memory and friends
        if "out of memory" not in str(exc).lower():
            raise
        row.available, row.reason = False, f"out of memory at batch {b}"
    return row


def end_to_end_fn(detector, frames, jpegs: list[bytes] | None) -> tuple[Callable[[], object], str]:
    """One end-to-end call for the batch and what it includes: the GPU frame path for a CUDA detector
    with a device path (and ``jpegs``), else decoded frames through :meth:`Detector.infer`.

    Either call returns only after the kept boxes are on the host (the host clock times it all).
    """
    if jpegs is not None and detector.info.device.startswith("cuda") and detector.device_input() is not None:
        from aeb_app.inference.run.gpu_frames import decode_images

        device = detector.info.device
        return (lambda: detector.infer_tensors(decode_images(jpegs, device))), E2E_INCLUDES_GPU
    return (lambda: detector.infer(frames)), E2E_INCLUDES


def stream_throughput(detector, jpegs: list[bytes], n_batches: int, warmup_batches: int = 2, *,
                      resize: str = "interpolate", decode: str = "gpu", device_decoder: str = "nvjpeg") -> float:
    """Images/s of the pipelined GPU path (:func:`~aeb_app.inference.run.gpu_frames.stream_jpeg_batches`:
    decoding and resizing the next batch overlaps the current one's network) over ``n_batches`` copies
    of the batch: host wall clock from the first batch's bytes to the last batch's kept boxes on the
    host (so the device work is all done), after ``warmup_batches`` untimed ones. ``resize``: the
    GPU resize method (:data:`~aeb_app.inference.run.gpu_frames.RESIZE_METHODS`); ``decode``: where the
    JPEGs are decoded (:data:`~aeb_app.inference.run.split_decode.DECODE_PLACES`) and by what on the device
    (:data:`~aeb_app.inference.run.hardware_jpeg.DEVICE_DECODERS`)."""
    import functools
    import time

    from aeb_app.inference.run.gpu_frames import stream_jpeg_batches
    from aeb_app.model.postprocess import PostprocessConfig

    stream = functools.partial(stream_jpeg_batches, detector, config=PostprocessConfig(), resize=resize, decode=decode,
                               device_decoder=device_decoder)
    for _ in stream([jpegs] * warmup_batches):
        pass
    t0 = time.perf_counter()
    for _ in stream([jpegs] * n_batches):
        pass
    return n_batches * len(jpegs) / (time.perf_counter() - t0)


def is_unstable(p50_ms: float | None, p99_ms: float | None) -> bool:
    """True when p99 exceeds :data:`aeb_app.defaults.UNSTABLE_P99_OVER_P50` times p50 (a busy machine,
    throttling, a stray compilation): the median may still be right, but the figure needs a re-run."""
    from aeb_app.defaults import UNSTABLE_P99_OVER_P50

    return p50_ms is not None and p99_ms is not None and p99_ms > UNSTABLE_P99_OVER_P50 * p50_ms


def runnable_modes(cfg: SweepConfig, candidates: tuple[str, ...] = DEFAULT_CANDIDATES
                   ) -> tuple[tuple[str, ...], dict[str, str]]:
    """Split ``candidates`` into the modes this machine can create and ``{mode: why not}``.

    Creating a detector is cheap (nothing is activated), except that ``fp32_ort`` exports the ONNX
    on first use, which the sweep would do anyway.
    """
    from aeb_app.inference.registry import create
    from aeb_app.model.registry import load_model

    loaded = load_model(cfg.model, cfg.weights)
    ok, unavailable = [], {}
    for mode in candidates:
        try:
            create(loaded, mode, device=cfg.device, engines_dir=cfg.engines_dir)
        except AebError as exc:
            unavailable[mode] = str(exc)
            continue
        ok.append(mode)
    return tuple(ok), unavailable


def _fill(row: Row, stats: TimingStats, b: int, includes: str) -> None:
    row.p50_ms, row.p99_ms, row.iters, row.clock = stats.p50_ms, stats.p99_ms, stats.iters, stats.clock
    row.unstable = is_unstable(stats.p50_ms, stats.p99_ms)
    row.ms_per_sample = stats.p50_ms / b
    row.fps = b * 1000.0 / stats.p50_ms
    row.includes = includes


def _accuracy(cfg: SweepConfig, detector, b: int) -> tuple[float, float, int]:
    from aeb_app.bench.coco_eval import evaluate_detector

    if cfg.coco_dir is None:
        raise ValueError("mAP needs a COCO folder")
    result = evaluate_detector(detector, cfg.coco_dir, annotations=cfg.annotations, batch_size=b, limit=cfg.limit)
    return result["map"], result["map50"], result["num_images"]


def _reset_peak_memory(on_gpu: bool) -> None:
    if on_gpu:
        import torch

        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()


def _peak_memory_mb(on_gpu: bool) -> float | None:
    if not on_gpu:
        return None
    import torch

    return torch.cuda.max_memory_allocated() / 2**20


def _add_compute(row: Row, flops: float, gpu_name: str, tf32: bool) -> None:
    if not row.available or row.fps is None:
        return
    row.flops_per_image = flops
    row.achieved_tflops = flops * row.fps / 1e12
    if row.device.startswith("cuda"):
        row.peak_tflops = peak_tflops(gpu_name, row.precision, tf32=tf32)
    if row.peak_tflops:
        row.pct_of_peak = 100.0 * row.achieved_tflops / row.peak_tflops
    row.sanity = sanity_check(flops, row.fps, row.peak_tflops)


def add_acceleration(rows: list[Row], reference_mode: str) -> None:
    """``acceleration = fps(mode, b) / fps(reference, b)``; the reference falls back to fp32 if absent."""
    fps_by_key = {(r.mode, r.batch): r.fps for r in rows if r.available and r.fps}
    for row in rows:
        if not row.available or not row.fps:
            continue
        for ref in (reference_mode, "fp32"):
            if (ref_fps := fps_by_key.get((ref, row.batch))) is not None:
                row.acceleration = row.fps / ref_fps
                row.reference_mode = ref
                break


def row_dicts(rows: list[Row], machine: dict) -> list[dict]:
    return [{**asdict(r), "machine": machine} for r in rows]
