"""``aeb-app run VIDEO``: process a video headless with the same overlays as the window.

Writes the annotated video (camera view | bird's-eye view) and the warning events atomically,
shows a progress bar on stderr and prints a summary (frames, FPS, warnings).
"""

from __future__ import annotations

import argparse
import logging
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

from aeb_app.geometry.calibration import shipped_calibration
from aeb_app.errors import AebError

log = logging.getLogger(__name__)

DEFAULT_CALIBRATION = shipped_calibration()


def add_parser(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    parser = subparsers.add_parser("run", help="process a video without a display (annotated mp4 + events)")
    parser.add_argument("video", help="input video file (or a camera index)")
    parser.add_argument("--calibration", type=Path, default=None,
                        help="road calibration YAML (default: calibration/solidWhiteRight.yaml of the checkout)")
    parser.add_argument("--model", default="ssd_mobilenet_v1", help="model name (default ssd_mobilenet_v1)")
    parser.add_argument("--mode", default=None,
                        help="inference mode, e.g. fp32, fp32_ort, fp16_trt (default: first available of the fallback)")
    parser.add_argument("--out", type=Path, default=None, help="annotated video to write (.mp4/.avi)")
    parser.add_argument("--events", type=Path, default=None, help="warning events to write (.csv or .json)")
    parser.add_argument("--max-frames", type=int, default=None, metavar="N", help="stop after N frames")
    parser.add_argument("--speed-kmh", type=float, default=None, metavar="X",
                        help="ego speed for the braking-zone length (default: fixed length)")
    parser.add_argument("--ego-speed", type=Path, default=None, metavar="CSV",
                        help="ego speed per frame from a time_s,speed_mps CSV (CAN/GPS log), instead of --speed-kmh")
    parser.add_argument("--tracks", type=Path, default=None, metavar="CSV",
                        help="write one row per frame per tracked object (range, TTC, cues; see README)")
    parser.add_argument("--score-threshold", type=float, default=0.4, help="detection score threshold")
    parser.add_argument("--threads", type=int, default=None, help="CPU threads for inference (torch/ORT)")
    parser.add_argument("--no-render", action="store_true", help="skip drawing (only with no --out)")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    parser.set_defaults(func=run)
    return parser


@dataclass
class RunSummary:
    """What a headless run did."""

    frames: int = 0
    failed_frames: int = 0
    seconds: float = 0.0
    warnings: int = 0
    levels: dict[str, int] = field(default_factory=dict)
    mean_stage_ms: dict[str, float] = field(default_factory=dict)

    @property
    def fps(self) -> float:
        return self.frames / self.seconds if self.seconds > 0 else 0.0

    def text(self) -> str:
        stages = ", ".join(f"{k} {v:.1f}" for k, v in self.mean_stage_ms.items())
        levels = ", ".join(f"{k} {v}" for k, v in sorted(self.levels.items()))
        return (f"frames {self.frames} (failed {self.failed_frames}), {self.seconds:.2f} s, {self.fps:.1f} FPS "
                f"end to end; warnings {self.warnings}; levels: {levels}; mean ms: {stages}")


def run(args: argparse.Namespace) -> int:
    if args.no_render and args.out:
        raise AebError("--no-render cannot be combined with --out")
    summary = process_video(args)
    print(summary.text())
    return 0


def _open_detector(model_name: str, mode: str | None, threads: int | None):
    from aeb_app.inference.registry import DEFAULT_FALLBACK, create, create_with_fallback
    from aeb_app.model.registry import load_model

    if threads:
        import torch

        torch.set_num_threads(threads)
    loaded = load_model(model_name)
    options = {"intra_op_threads": threads} if threads and mode and mode.endswith("_ort") else {}
    return create(loaded, mode, **options) if mode else create_with_fallback(loaded, DEFAULT_FALLBACK)


def _calibration(path: Path | None):
    from aeb_app.geometry import load_calibration

    return load_calibration(path or DEFAULT_CALIBRATION)


def process_video(args: argparse.Namespace) -> RunSummary:
    """Run the pipeline over ``args.video``; write ``--out``/``--events``; return the summary.

    Raises:
        AebError: bad input, calibration, model or backend (one-line message).
    """
    import contextlib

    from aeb_app.pipeline import (
        EventRecorder, Pipeline, PipelineSettings, check_calibration, tune_cpu_threads, write_events,
    )
    from aeb_app.tracks import TracksCsvWriter
    from aeb_app.video import VideoSource, VideoWriter

    calibration = _calibration(args.calibration)
    ego_speed = _ego_speed(args)
    summary = RunSummary()
    with contextlib.ExitStack() as stack:
        source = stack.enter_context(VideoSource(args.video))
        info = source.info
        check_calibration(calibration, info.size_wh)
        detector = stack.enter_context(_open_detector(args.model, args.mode, args.threads))
        log.info("detector: %s", detector.info)
        tune_cpu_threads(detector)
        _warm_up(detector, info.size_wh)
        from aeb_app.model.postprocess import PostprocessConfig

        settings = PipelineSettings(
            postprocess=PostprocessConfig(score_threshold=args.score_threshold),
            ego_speed_mps=args.speed_kmh / 3.6 if args.speed_kmh is not None else None,
            render=not args.no_render, hud=True, ego_speed_profile=ego_speed,
        )
        pipeline = Pipeline(detector, calibration, settings=settings)
        writer = stack.enter_context(VideoWriter(args.out, fps=info.fps)) if args.out else None
        recorder = EventRecorder()
        tracks = stack.enter_context(TracksCsvWriter(args.tracks)) if args.tracks else None
        _loop(pipeline, source, writer, recorder, summary, args, tracks)
    if args.events:
        write_events(args.events, recorder.events)
        log.info("wrote %s (%d events)", args.events, len(recorder.events))
    return summary


def _ego_speed(args: argparse.Namespace):
    """The ``--ego-speed`` profile (checked before any long work), or None; refuses clashing outputs."""
    from aeb_app.safety.ego_speed import load_ego_speed_csv

    if args.ego_speed is not None and args.speed_kmh is not None:
        raise AebError("--ego-speed and --speed-kmh cannot be combined")
    if args.tracks is not None:
        outputs = [p.resolve() for p in (args.out, args.events, args.ego_speed) if p is not None]
        if args.tracks.resolve() in outputs or str(args.tracks) == str(args.video):
            raise AebError(f"--tracks {args.tracks}: the same file as another input or output")
        if args.tracks.suffix.lower() != ".csv":
            raise AebError(f"--tracks {args.tracks}: the tracks file must end in .csv")
    return load_ego_speed_csv(args.ego_speed) if args.ego_speed is not None else None


def _warm_up(detector, size_wh: tuple[int, int]) -> None:
    """One untimed inference (lazy imports, allocations, ORT/torch first-run set-up) before timing."""
    import numpy as np

    t0 = time.perf_counter()
    detector.infer([np.zeros((size_wh[1], size_wh[0], 3), np.uint8)])
    log.info("warm-up inference: %.0f ms (not timed)", (time.perf_counter() - t0) * 1e3)


def _hud_lines(pipeline, summary: RunSummary, last_total_ms: float) -> list[str]:
    info = pipeline.detector.info
    return [f"{info.model} | {info.backend} {info.precision} on {info.device}",
            f"frame {summary.frames}  {1000.0 / last_total_ms if last_total_ms else 0:.1f} FPS"]


def _loop(pipeline, source, writer, recorder, summary: RunSummary, args: argparse.Namespace,
          tracks=None) -> None:
    from tqdm import tqdm

    from aeb_app import render
    from aeb_app.pipeline import level_of

    total = source.info.frame_count
    if args.max_frames is not None:
        total = min(total or args.max_frames, args.max_frames)
    sums: dict[str, float] = {}
    last_ms = 0.0
    bar = tqdm(total=total, unit="frame", disable=args.no_progress, file=sys.stderr, dynamic_ncols=True)
    t0 = time.perf_counter()
    for frame in source.frames(max_frames=args.max_frames):
        t_frame = time.perf_counter()
        result = pipeline.process(frame, hud_lines=_hud_lines(pipeline, summary, last_ms))
        if writer is not None:
            writer.write(render.side_by_side(result.extras["annotated"], result.extras["bev"]))
        recorder.update(result)
        if tracks is not None:
            tracks.write(result.extras.get("state"))
        level = level_of(result).name
        summary.levels[level] = summary.levels.get(level, 0) + 1
        summary.frames += 1
        summary.failed_frames += not result.ok
        for key in ("decode_ms", "preprocess_ms", "inference_ms", "postprocess_ms", "geometry_ms", "render_ms"):
            sums[key] = sums.get(key, 0.0) + getattr(result.times, key)
        last_ms = (time.perf_counter() - t_frame) * 1e3
        bar.set_postfix_str(level, refresh=False)
        bar.update(1)
    bar.close()
    summary.seconds = time.perf_counter() - t0
    summary.warnings = recorder.warning_count
    summary.mean_stage_ms = {k.removesuffix("_ms"): v / max(summary.frames, 1) for k, v in sums.items()}
