"""CPU time per frame of each step of ``aeb-app run``, measured one step at a time in one thread.

Wall-clock FPS on a shared machine says little; the CPU time a step needs per frame does not depend on
what else runs. This runs the same steps as ``aeb-app run`` (decode, resize, network, NMS, AEB logic,
drawing, side-by-side + mp4 encoding, tracks rows) one after the other on the calling thread and measures
each with ``time.thread_time()`` (ONNX Runtime with one intra-op thread runs in the calling thread, so
the network's CPU time is counted too). Optionally it writes a digest per frame of the annotated frame,
the BEV panel and the detections, to check that a speed-up draws and decides the same.

    PYTHONPATH=$PWD python scripts/stage_cpu_times.py VIDEO [--mode fp32_ort] [--digests OUT.txt] [--repeat 2]

With ``--logic-only`` the detector runs once over the clip and only the AEB logic (``AebLogic.update``) is
timed, over ``--repeat`` passes of a fresh logic each; ``--profile N`` adds the N entries of a cProfile of
one more pass that took the most time of their own:

    PYTHONPATH=$PWD python scripts/stage_cpu_times.py VIDEO --logic-only --repeat 7 [--profile 25]

With ``--decision-only`` the detector runs once over the clip and the rest of the "detections available" to
"warning decided" path is timed: ``Pipeline.process`` without drawing (the detections handed in as the frame loop's
logic stage does: AEB logic, level, frame result), and separately the frame's tracks rows and warning event (what
``aeb-app run --tracks/--events`` builds per frame), over ``--repeat`` passes of a fresh pipeline each:

    PYTHONPATH=$PWD python scripts/stage_cpu_times.py VIDEO --decision-only --repeat 7

With ``--render-only`` the detector and the logic run once over the clip (its first ``--frames`` frames) and only
the drawing (``Pipeline._render``: annotated frame and BEV panel) is timed, over ``--repeat`` passes; ``--profile``
as above:

    PYTHONPATH=$PWD python scripts/stage_cpu_times.py VIDEO --render-only --repeat 5 [--frames 100] [--profile 25]
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import os
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np

STEPS = ("decode", "preprocess", "network", "postprocess", "logic", "render", "encode", "tracks")


def _timed(times: dict[str, list[float]], name: str, fn, *args, **kwargs):
    t0 = time.thread_time()
    out = fn(*args, **kwargs)
    times[name].append((time.thread_time() - t0) * 1e3)
    return out


def _digest(*arrays) -> str:
    h = hashlib.sha256()
    for a in arrays:
        h.update(b"-" if a is None else a.tobytes())
    return h.hexdigest()[:16]


def _one_frame(pipeline, frame, times, writer, tracks, render_on: bool):
    """Returns the digest line of this frame."""
    from aeb_app import render
    from aeb_app.model.preprocess import resize_batch
    from aeb_app.model.postprocess import postprocess
    from aeb_app.types import FrameResult, StageTimes

    det = pipeline.detector
    batch = _timed(times, "preprocess", resize_batch, [frame.image], det.spec)
    boxes, scores = _timed(times, "network", det.run_decoded, batch)
    dets = _timed(times, "postprocess", postprocess, boxes, scores, det.spec, [frame.image.shape[:2]],
                  pipeline.settings.postprocess)[0]
    state = _timed(times, "logic", pipeline._logic.update, frame.index, frame.timestamp_s, dets,
                   ego_speed_mps=pipeline.settings.ego_speed_at(frame.timestamp_s))
    level, reason = pipeline._level(state, None)
    result = FrameResult(frame.index, frame.timestamp_s, dets, StageTimes(), None, level=level, reason=reason,
                         state=state, frame=frame.image)
    if render_on:
        _timed(times, "render", pipeline._render, result, frame, [f"frame {frame.index}", "x FPS"])
        _timed(times, "encode", lambda: writer.write(render.side_by_side(result.annotated, result.bev)))
    _timed(times, "tracks", tracks.write, state)
    return f"{frame.index} {_digest(dets.xyxy_px, dets.scores, dets.category_ids)} " \
           f"{_digest(result.annotated)} {_digest(result.bev)} {level.name}"


def run_once(video: str, mode: str, render_on: bool, out_dir: Path) -> tuple[dict[str, list[float]], list[str]]:
    from aeb_app.model.postprocess import PostprocessConfig
    from aeb_app.pipeline import PipelineSettings
    from aeb_app.stream import StreamConfig, open_stream
    from aeb_app.tracks import TracksCsvWriter
    from aeb_app.video import VideoWriter

    settings = PipelineSettings(postprocess=PostprocessConfig(score_threshold=0.4), render=render_on, hud=True)
    times: dict[str, list[float]] = {k: [] for k in STEPS}
    lines = []
    with contextlib.ExitStack() as stack:
        stream = stack.enter_context(open_stream(StreamConfig(video, mode=mode, threads=1, settings=settings)))
        writer = stack.enter_context(VideoWriter(out_dir / "a.mp4", fps=25.0)) if render_on else None
        tracks = stack.enter_context(TracksCsvWriter(out_dir / "t.csv"))
        frames = stream.source.frames()
        while True:
            t0 = time.thread_time()
            frame = next(frames, None)
            if frame is None:
                break
            times["decode"].append((time.thread_time() - t0) * 1e3)
            lines.append(_one_frame(stream.pipeline, frame, times, writer, tracks, render_on))
    return times, lines


def clip_detections(video: str, mode: str):
    """The pipeline of ``aeb-app run`` (events and tracks only) and each frame's (index, time, detections)."""
    from aeb_app.model.postprocess import PostprocessConfig, postprocess
    from aeb_app.model.preprocess import resize_batch
    from aeb_app.pipeline import PipelineSettings
    from aeb_app.stream import StreamConfig, open_stream

    settings = PipelineSettings(postprocess=PostprocessConfig(score_threshold=0.4), render=False, hud=True)
    frames = []
    with open_stream(StreamConfig(video, mode=mode, threads=1, settings=settings)) as stream:
        pipeline, det = stream.pipeline, stream.pipeline.detector
        for frame in stream.source.frames():
            boxes, scores = det.run_decoded(resize_batch([frame.image], det.spec))
            dets = postprocess(boxes, scores, det.spec, [frame.image.shape[:2]], pipeline.settings.postprocess)[0]
            frames.append((frame.index, frame.timestamp_s, dets))
    return pipeline, frames


def clip_results(video: str, mode: str, limit: int):
    """The pipeline of ``aeb-app run`` (drawing) and its first ``limit`` frames with their results, undrawn."""
    from aeb_app.model.postprocess import PostprocessConfig
    from aeb_app.pipeline import PipelineSettings
    from aeb_app.stream import StreamConfig, open_stream

    settings = PipelineSettings(postprocess=PostprocessConfig(score_threshold=0.4), render=False, hud=True)
    pairs = []
    with open_stream(StreamConfig(video, mode=mode, threads=1, settings=settings)) as stream:
        for frame in stream.source.frames():
            if len(pairs) >= limit:
                break
            pairs.append((frame, stream.pipeline.process(frame)))
    return stream.pipeline, pairs


def render_pass(pipeline, pairs) -> float:
    """CPU ms per frame of ``pipeline._render`` over the (frame, result) pairs (``time.thread_time``)."""
    t0 = time.thread_time()
    for frame, result in pairs:
        pipeline._render(result, frame, [f"frame {frame.index}", "x FPS"])
    return (time.thread_time() - t0) * 1e3 / max(len(pairs), 1)


def render_only(video: str, mode: str, repeat: int, profile: int, limit: int) -> None:
    """Print the drawing's CPU time per frame over ``repeat`` passes (and its profile when ``profile``)."""
    pipeline, pairs = clip_results(video, mode, limit)
    passes = [render_pass(pipeline, pairs) for _ in range(repeat)]
    print(f"render CPU ms/frame over {len(pairs)} frames, {repeat} passes: "
          f"median {statistics.median(passes):.3f}, min {min(passes):.3f}, max {max(passes):.3f}")
    _profile(profile, render_pass, pipeline, pairs)


def _profile(top: int, fn, *args) -> None:
    """Print the ``top`` entries (own time) of a cProfile of ``fn(*args)`` (nothing when ``top`` is 0)."""
    if top:
        import cProfile
        import pstats

        profiler = cProfile.Profile()
        profiler.runcall(fn, *args)
        pstats.Stats(profiler).sort_stats("tottime").print_stats(top)


def logic_pass(pipeline, logic, frames) -> float:
    """CPU ms per frame of ``logic.update`` over the frames (``time.thread_time``)."""
    t0 = time.thread_time()
    for index, timestamp_s, dets in frames:
        logic.update(index, timestamp_s, dets, ego_speed_mps=pipeline.settings.ego_speed_at(timestamp_s))
    return (time.thread_time() - t0) * 1e3 / max(len(frames), 1)


def logic_only(video: str, mode: str, repeat: int, profile: int) -> None:
    """Print the AEB logic's CPU time per frame over ``repeat`` passes (and its profile when ``profile``)."""
    import copy

    pipeline, frames = clip_detections(video, mode)
    fresh = copy.deepcopy(pipeline._logic)  # as built for the clip, before any frame
    passes = [logic_pass(pipeline, copy.deepcopy(fresh), frames) for _ in range(repeat)]
    objects = sum(len(d) for _, _, d in frames) / max(len(frames), 1)
    print(f"AEB logic CPU ms/frame over {len(frames)} frames ({objects:.1f} detections/frame), {repeat} passes: "
          f"median {statistics.median(passes):.3f}, min {min(passes):.3f}, max {max(passes):.3f}")
    _profile(profile, logic_pass, pipeline, copy.deepcopy(fresh), frames)


class _Handed:
    """Stands in for the detector: returns the detections it was handed (as the frame loop's logic stage does)."""

    def __init__(self, detector) -> None:
        from aeb_app.inference.base import InferTimes

        self.info, self.spec, self.last_times, self.detections = detector.info, detector.spec, InferTimes(), None

    def infer(self, frames, config=None):
        return [self.detections]


def decision_pass(pipeline, frames) -> tuple[float, float]:
    """CPU ms per frame of ``pipeline.process`` (drawing off, detections handed in) and of the frame's tracks rows and
    warning event, over the frames (``time.thread_time``; ``pipeline.detector`` must be a :class:`_Handed`)."""
    from aeb_app.pipeline import EventRecorder
    from aeb_app.tracks import track_rows
    from aeb_app.video import VideoFrame

    pipeline.reset()
    recorder, image = EventRecorder(), np.zeros((4, 4, 3), np.uint8)
    process = rows = 0.0
    for index, timestamp_s, dets in frames:
        frame, pipeline.detector.detections = VideoFrame(index, timestamp_s, image), dets
        t0 = time.thread_time()
        result = pipeline.process(frame, hud_lines=[])
        t1 = time.thread_time()
        track_rows(result.state)
        recorder.update(result)
        process, rows = process + t1 - t0, rows + time.thread_time() - t1
    return process * 1e3 / max(len(frames), 1), rows * 1e3 / max(len(frames), 1)


def decision_only(video: str, mode: str, repeat: int) -> None:
    """Print the detection-to-decision path's CPU time per frame over ``repeat`` passes."""
    import dataclasses

    pipeline, frames = clip_detections(video, mode)
    pipeline.detector = _Handed(pipeline.detector)
    pipeline.configure(settings=dataclasses.replace(pipeline.settings, render=False))
    passes = [decision_pass(pipeline, frames) for _ in range(repeat)]
    for name, values in (("Pipeline.process (no drawing)", [p for p, _ in passes]),
                         ("tracks rows + event", [r for _, r in passes])):
        print(f"{name} CPU ms/frame over {len(frames)} frames, {repeat} passes: median "
              f"{statistics.median(values):.3f}, min {min(values):.3f}, max {max(values):.3f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("video")
    parser.add_argument("--mode", default="fp32_ort")
    parser.add_argument("--no-render", action="store_true")
    parser.add_argument("--digests", type=Path, default=None, help="write per-frame digests here")
    parser.add_argument("--repeat", type=int, default=1, help="runs; the per-step median over runs is shown")
    parser.add_argument("--logic-only", action="store_true", help="time only the AEB logic on the clip's detections")
    parser.add_argument("--profile", type=int, default=0, metavar="N",
                        help="with --logic-only or --render-only: print the top N entries of a cProfile of one more pass")
    parser.add_argument("--render-only", action="store_true", help="time only the drawing on the clip's results")
    parser.add_argument("--decision-only", action="store_true",
                        help="time Pipeline.process without drawing (detections handed in) and the tracks rows")
    parser.add_argument("--frames", type=int, default=100, help="with --render-only: the clip's first N frames")
    args = parser.parse_args()
    os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
    if args.logic_only:
        logic_only(args.video, args.mode, max(args.repeat, 1), args.profile)
        return
    if args.decision_only:
        decision_only(args.video, args.mode, max(args.repeat, 1))
        return
    if args.render_only:
        render_only(args.video, args.mode, max(args.repeat, 1), args.profile, max(args.frames, 1))
        return
    runs = []
    with tempfile.TemporaryDirectory() as tmp:
        for _ in range(args.repeat):
            times, lines = run_once(args.video, args.mode, not args.no_render, Path(tmp))
            runs.append({k: sum(v) / max(len(v), 1) for k, v in times.items() if v})
    if args.digests:
        args.digests.write_text("\n".join(lines) + "\n")
    med = {k: statistics.median(r[k] for r in runs) for k in runs[0]}
    print("CPU ms/frame (thread_time, median of %d runs): " % args.repeat
          + ", ".join(f"{k} {v:.2f}" for k, v in med.items()) + f"; total {sum(med.values()):.2f}")


if __name__ == "__main__":
    main()
