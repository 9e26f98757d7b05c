"""``aeb-app run VIDEO``: process a video headless with the same overlays as the window.

Writes the annotated video (camera view | bird's-eye view) and the warning events atomically,
shows a progress bar on stderr and prints a summary (frames, FPS, warnings).
"""

from __future__ import annotations

import argparse
import contextlib
import logging
import sys
import time
from dataclasses import dataclass, field
from typing import Iterator

from aeb_app.cli import argtypes as at
from aeb_app.cli.common import add_tiles_arg, tiling_of
from aeb_app.errors import AebError

log = logging.getLogger(__name__)


def add_parser(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    parser = subparsers.add_parser("run", help="process a video without a display (annotated mp4 + events)")
    parser.add_argument("video", type=at.video_source,
                        help="input video file, a folder of frames (KITTI raw's image_02: times from its "
                             "timestamps.txt, else give --fps), or a camera index")
    parser.add_argument("--fps", type=at.positive_float, default=None,
                        help="frame rate of a folder of frames without a timestamps.txt; for a video file it "
                             "replaces the rate in its header (when that is wrong)")
    parser.add_argument("--calibration", type=at.existing_file, default=None,
                        help="road calibration YAML; one for another frame size of the same aspect ratio is "
                             "rescaled (default: the sample footage's calibration for 960x540 videos, else "
                             "detections only with AEB unavailable)")
    from aeb_app.names import AUTO, MODE_NAMES, MODEL_NAMES

    parser.add_argument("--model", default="ssd_mobilenet_v1", choices=MODEL_NAMES,
                        help="model name (default ssd_mobilenet_v1)")
    parser.add_argument("--mode", default="auto", choices=[AUTO, *MODE_NAMES],
                        help="inference mode, e.g. fp32, fp32_ort, fp16_trt, or 'auto': the first mode of the "
                             "fallback order this machine can run, as in the GUI (default: %(default)s)")
    parser.add_argument("--out", type=at.writable_output(".mp4", ".avi", ".mkv", ".m4v"), default=None,
                        help="annotated video to write (.mp4/.avi)")
    parser.add_argument("--events", type=at.writable_output(".csv", ".json"), default=None,
                        help="warning events: .csv written as they happen (kept if killed), .json at the end")
    parser.add_argument("--max-frames", type=at.positive_int, default=None, metavar="N", help="stop after N frames")
    parser.add_argument("--speed-kmh", type=at.non_negative_float, default=None, metavar="X",
                        help="ego speed for the braking-zone length (default: fixed length)")
    parser.add_argument("--ego-speed", type=at.existing_file, default=None, metavar="CSV",
                        help="ego speed per frame from a time_s,speed_mps CSV (CAN/GPS log), instead of --speed-kmh")
    parser.add_argument("--tracks", type=at.writable_output(".csv"), default=None, metavar="CSV",
                        help="write one row per frame per tracked object (range, TTC, cues; see README)")
    parser.add_argument("--timings", type=at.writable_output(".csv"), default=None, metavar="CSV",
                        help="write each frame's stage times, decode-to-warning latency and garbage-collection "
                             "time (one row per frame, at the end of the run; see README)")
    parser.add_argument("--settings", type=at.existing_file, default=None, metavar="YAML",
                        help="warning-logic settings (zone, warning, filter, expansion, cues sections; "
                             "see docs/scenarios.md); refused at start if a value is bad")
    parser.add_argument("--score-threshold", type=at.probability, default=0.4, help="detection score threshold")
    parser.add_argument("--threads", type=at.positive_int, default=None, help="CPU threads for inference (torch/ORT)")
    add_tiles_arg(parser)
    parser.add_argument("--no-render", action="store_true",
                        help="skip drawing (only with no --out; without --out nothing is drawn anyway)")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    parser.add_argument("--batch", type=at.positive_int, default=1, metavar="N",
                        help="frames per network call, for offline files: more throughput on a GPU, and each "
                             "frame waits for its batch to fill (decisions do not change; default 1, as live)")
    parser.add_argument("--realtime", action="store_true",
                        help="play a file at its frame rate, as a camera delivers it: frames the run is not ready "
                             "for are skipped and counted, and the latency is the system's, not a queue's")
    parser.add_argument("--sequential", action="store_true",
                        help="run decode, inference, logic/drawing and encoding one after the other on one "
                             "thread (default: overlapped on their own threads, frame order kept)")
    parser.set_defaults(func=run)
    return parser


@dataclass
class RunSummary:
    """What a headless run did."""

    frames: int = 0
    failed_frames: int = 0
    skipped_frames: int = 0  # --realtime: decoded, not processed (behind the video clock)
    seconds: float = 0.0
    warnings: int = 0
    levels: dict[str, int] = field(default_factory=dict)
    unavailable_reasons: dict[str, int] = field(default_factory=dict)  # short reason -> frames
    mean_stage_ms: dict[str, float] = field(default_factory=dict)
    latency_p50_ms: float = 0.0
    latency_p99_ms: float = 0.0
    cpu_seconds: float = 0.0  # process CPU time (all threads) in the frame loop

    @property
    def fps(self) -> float:
        return self.frames / self.seconds if self.seconds > 0 else 0.0

    def text(self) -> str:
        stages = ", ".join(f"{k} {v:.1f}" for k, v in self.mean_stage_ms.items())
        levels = ", ".join(f"{k} {v}" for k, v in sorted(self.levels.items()))
        if self.unavailable_reasons:  # why, most frames first: what a user fixes (calibration, file)
            levels += " (" + ", ".join(f"{why}: {n}" for why, n in sorted(
                self.unavailable_reasons.items(), key=lambda kv: -kv[1])[:3]) + ")"
        skipped = f", skipped {self.skipped_frames} to keep real time" if self.skipped_frames else ""
        return (f"frames {self.frames} (failed {self.failed_frames}{skipped}), {self.seconds:.2f} s, {self.fps:.1f} FPS "
                f"end to end; warnings {self.warnings}; levels: {levels}; mean ms: {stages}; "
                f"decode-to-warning latency p50 {self.latency_p50_ms:.1f} ms, p99 {self.latency_p99_ms:.1f} ms; "
                f"CPU time {self.cpu_seconds:.2f} s ({1e3 * self.cpu_seconds / max(self.frames, 1):.1f} ms/frame)")


def run(args: argparse.Namespace) -> int:
    if args.no_render and args.out:
        raise AebError("--no-render cannot be combined with --out")
    if getattr(args, "batch", 1) > 1 and str(args.video).isdigit():
        raise AebError(f"--batch {args.batch}: camera {args.video} is live, frames cannot wait for a batch (use 1)")
    if getattr(args, "realtime", False):
        if str(args.video).isdigit():
            raise AebError(f"--realtime: camera {args.video} is live already (the option plays a file like a camera)")
        if getattr(args, "batch", 1) > 1:
            raise AebError(f"--batch {args.batch} with --realtime: live frames cannot wait for a batch (use 1)")
    at.check_outputs([("VIDEO", args.video), ("--calibration", args.calibration), ("--ego-speed", args.ego_speed),
                      ("--settings", args.settings)],
                     [("--out", args.out), ("--events", args.events), ("--tracks", args.tracks),
                      ("--timings", getattr(args, "timings", None))])
    summary = process_video(args)
    print(summary.text())
    return 0


def stream_config(args: argparse.Namespace, ego_speed=None):
    """The front door's configuration for these arguments (``ego_speed``: a loaded ``--ego-speed`` profile)."""
    from aeb_app.model.postprocess import PostprocessConfig
    from aeb_app.pipeline import PipelineSettings
    from aeb_app.stream import StreamConfig

    settings = PipelineSettings(
        postprocess=PostprocessConfig(score_threshold=args.score_threshold, tiling=tiling_of(args)),
        ego_speed_mps=args.speed_kmh / 3.6 if args.speed_kmh is not None else None,
        render=bool(args.out) and not args.no_render,  # nothing to draw for an events/tracks-only run
        hud=True, ego_speed_profile=ego_speed,
    )
    from aeb_app.safety.settings import LogicSettings, load_logic_settings

    logic = load_logic_settings(args.settings) if getattr(args, "settings", None) else LogicSettings()
    return StreamConfig(args.video, fps=args.fps, model=args.model, mode=args.mode, threads=args.threads,
                        calibration=args.calibration, settings=settings, zone=logic.zone, warning=logic.warning,
                        logic=logic, batch=getattr(args, "batch", 1))


def process_video(args: argparse.Namespace) -> RunSummary:
    """Run the pipeline over ``args.video``; write ``--out``/``--events``; return the summary.

    Raises:
        AebError: bad input, calibration, model or backend (one-line message).
    """
    from aeb_app.event_log import EventLog
    from aeb_app.frame_timings import TimingLog, write_timings_csv
    from aeb_app.pipeline import EventRecorder, WarningEvent
    from aeb_app.stream import open_stream
    from aeb_app.tracks import TracksCsvWriter
    from aeb_app.video import VideoWriter

    ego_speed = _ego_speed(args)
    summary = RunSummary()
    with contextlib.ExitStack() as stack:
        stream = stack.enter_context(open_stream(stream_config(args, ego_speed)))
        writer = stack.enter_context(VideoWriter(args.out, fps=stream.source.info.fps)) if args.out else None
        recorder = EventRecorder()
        # Events and tracks are appended as they happen, so a late failure or a kill keeps them.
        events = stack.enter_context(EventLog(args.events, WarningEvent.__dataclass_fields__)) if args.events else None
        tracks = stack.enter_context(TracksCsvWriter(args.tracks)) if args.tracks else None
        timing_log = stack.enter_context(TimingLog()) if getattr(args, "timings", None) else None
        stack.enter_context(_frozen_heap())
        try:
            _loop(stream.pipeline, stream.source, writer, recorder, summary, args, events, tracks, timing_log)
        finally:
            if timing_log is not None and timing_log.rows:  # what was measured, also when the run failed
                write_timings_csv(args.timings, timing_log.rows)
    if args.events:
        log.info("wrote %s (%d events)", args.events, len(recorder.events))
    return summary


@contextlib.contextmanager
def _frozen_heap() -> Iterator[None]:
    """For the frame loop, move what start-up made (modules, the network, the warm-up's objects) out of the
    interpreter's garbage collection: a full collection would otherwise walk all of it in the middle of some
    frame. Undone after the loop. ``AEB_APP_GC_FREEZE=0`` leaves the collector as it is (for comparisons)."""
    import gc
    import os

    if os.environ.get("AEB_APP_GC_FREEZE", "1") == "0":
        yield
        return
    gc.collect()
    gc.freeze()
    try:
        yield
    finally:
        gc.unfreeze()


def _ego_speed(args: argparse.Namespace):
    """The ``--ego-speed`` profile (checked before any long work), or None."""
    from aeb_app.safety.ego_speed import load_ego_speed_csv

    if args.ego_speed is not None and args.speed_kmh is not None:
        raise AebError("--ego-speed and --speed-kmh cannot be combined")
    if args.ego_speed is None:
        return None
    profile = load_ego_speed_csv(args.ego_speed)
    if not str(args.video).isdigit():
        _check_speed_span(args, profile.time_s[0], profile.time_s[-1])
    return profile


def _check_speed_span(args: argparse.Namespace, first_s: float, last_s: float) -> None:
    """The speed file's times must overlap the video's (seconds from its first frame): a log on another
    clock (e.g. Unix time) would otherwise leave every frame without a speed, silently."""
    from aeb_app.video import VideoSource

    with VideoSource(args.video, fps=args.fps, check_frames=False) as source:
        info = source.info
    if info.frame_count is None:
        return
    frames = min(info.frame_count, args.max_frames or info.frame_count)
    end_s = (frames - 1) / info.fps
    overlap = min(end_s, last_s) - max(0.0, first_s)
    span = f"--ego-speed {args.ego_speed}: its times run {first_s:g}-{last_s:g} s, the video's 0-{end_s:g} s"
    if overlap < 0:
        raise AebError(f"{span}: no overlap (times must be seconds from the video's first frame)")
    if end_s > 0 and overlap < end_s:
        log.warning("%s: frames outside its times have no speed (the zone falls back to its fixed length)", span)


def _hud_lines(pipeline, frame_number: int, fps: float) -> list[str]:
    info = pipeline.detector.info
    return [f"{info.model} | {info.backend} {info.precision} on {info.device}",
            f"frame {frame_number}  {fps:.1f} FPS"]


def _loop(pipeline, source, writer, recorder, summary: RunSummary, args: argparse.Namespace,
          events=None, tracks=None, timing_log=None) -> None:
    from tqdm import tqdm

    from aeb_app.frame_loop import latency_percentiles, staged_results
    from aeb_app.pipeline import level_of, tally_level
    from aeb_app.video.pacing import PlaybackClock, paced

    total = source.info.frame_count
    if args.max_frames is not None:
        total = min(total or args.max_frames, args.max_frames)
    sums: dict[str, float] = {}
    latencies: list[float] = []
    batch = getattr(args, "batch", 1)
    try:
        pipeline.detector.check_batch(batch)  # before the first frame: e.g. an engine built for smaller batches
    except AebError as exc:
        raise AebError(f"--batch {batch}: {exc}") from exc
    frames = source.frames(max_frames=args.max_frames)
    clock = PlaybackClock(source.info.fps) if getattr(args, "realtime", False) else None
    if clock is not None:
        frames = paced(frames, clock)
    bar = tqdm(total=total, unit="frame", disable=args.no_progress, file=sys.stderr, dynamic_ncols=True)
    t0, cpu0 = time.perf_counter(), time.process_time()
    for work in staged_results(pipeline, frames, writer=writer,
                               hud_lines=lambda number, fps: _hud_lines(pipeline, number, fps),
                               sequential=getattr(args, "sequential", False), batch=batch):
        result = work.result
        event = recorder.update(result)
        if events is not None and event is not None:
            events.append(event)
        if tracks is not None:
            tracks.write(result.state)
        tally_level(summary.levels, summary.unavailable_reasons, result)
        level = level_of(result).name
        summary.frames += 1
        summary.failed_frames += not result.ok
        latencies.append(work.latency_ms)
        for key in ("decode_ms", "preprocess_ms", "inference_ms", "postprocess_ms", "geometry_ms", "render_ms"):
            sums[key] = sums.get(key, 0.0) + getattr(result.times, key)
        sums["encode_ms"] = sums.get("encode_ms", 0.0) + work.encode_ms
        if timing_log is not None:
            timing_log.add(work)
        bar.set_postfix_str(level, refresh=False)
        bar.update(1)
    bar.close()
    summary.skipped_frames = clock.skipped if clock is not None else 0
    summary.seconds = time.perf_counter() - t0
    summary.cpu_seconds = time.process_time() - cpu0
    summary.warnings = recorder.warning_count
    summary.mean_stage_ms = {k.removesuffix("_ms"): v / max(summary.frames, 1) for k, v in sums.items()}
    summary.latency_p50_ms, summary.latency_p99_ms = latency_percentiles(latencies)
