"""``aeb-app detect``: an image or a video in, annotated image/video and JSON detections out."""

from __future__ import annotations

import argparse
import contextlib
import logging
from pathlib import Path

from aeb_app.cli import argtypes as at
from aeb_app.cli.common import add_model_args, make_detector
from aeb_app.errors import InputError

log = logging.getLogger(__name__)


def add_parser(sub: argparse._SubParsersAction) -> argparse.ArgumentParser:
    p = sub.add_parser("detect", help="detect objects in an image or a video")
    p.add_argument("path", type=Path, metavar="PATH", help="image (.jpg, .png, ...) or video file")
    add_model_args(p)
    p.add_argument("--out", type=at.writable_output(), help="annotated image or video (same kind as PATH)")
    p.add_argument("--json", type=at.writable_output(".json"), help="detections as JSON")
    p.add_argument("--score-threshold", type=at.probability, default=0.5)
    p.add_argument("--batch-size", type=at.positive_int, default=8, help="video frames per inference call")
    p.add_argument("--max-frames", type=at.positive_int, help="stop a video after N frames")
    p.set_defaults(func=run)
    return p


def run(args: argparse.Namespace) -> int:
    from aeb_app.atomic import write_json
    from aeb_app.images import IMAGE_SUFFIXES
    from aeb_app.model.postprocess import PostprocessConfig

    if not args.path.is_file():
        raise InputError(f"{args.path}: file not found")
    at.check_outputs([("PATH", args.path)], [("--out", args.out), ("--json", args.json)])
    is_image = args.path.suffix.lower() in IMAGE_SUFFIXES
    if args.out and (args.out.suffix.lower() in IMAGE_SUFFIXES) != is_image:
        raise InputError(f"{args.out}: output must be {'an image' if is_image else 'a video'} like {args.path.name}")
    config = PostprocessConfig(score_threshold=args.score_threshold)
    detector = make_detector(args)
    with detector:
        handler = _detect_image if is_image else _detect_video
        frames = handler(detector, args, config)
    info = detector.info
    total = sum(len(f["detections"]) for f in frames)
    print(f"{args.path.name}: {total} detections in {len(frames)} frame(s) "
          f"[{info.model}, {info.mode}, {info.device}]")
    if args.json:
        write_json(args.json, {"source": str(args.path), "model": info.model, "mode": info.mode,
                               "score_threshold": args.score_threshold, "frames": frames})
    return 0


def _detect_image(detector, args: argparse.Namespace, config) -> list[dict]:
    import cv2

    from aeb_app.atomic import atomic_path
    from aeb_app.images import read_image
    from aeb_app.render.overlay import draw_detections

    image = read_image(args.path)
    [dets] = detector.infer([image], config)
    if args.out:
        with atomic_path(args.out) as tmp:
            if not cv2.imwrite(str(tmp), draw_detections(image.copy(), dets)):
                raise InputError(f"{args.out}: OpenCV cannot write this image format")
    return [{"frame_index": 0, "detections": dets.to_json()}]


def _detect_video(detector, args: argparse.Namespace, config) -> list[dict]:
    from tqdm import tqdm

    from aeb_app.render.overlay import draw_detections
    from aeb_app.video.reader import VideoSource
    from aeb_app.video.writer import VideoWriter

    results: list[dict] = []
    with contextlib.ExitStack() as stack:
        source = stack.enter_context(VideoSource(args.path))
        writer = stack.enter_context(VideoWriter(args.out, fps=source.info.fps)) if args.out else None
        bar = stack.enter_context(tqdm(total=args.max_frames or source.info.frame_count, unit="frame"))
        batch = []
        for frame in source.frames(max_frames=args.max_frames):
            if not frame.ok:
                raise InputError(f"{args.path}: frame {frame.index}: {frame.error}")
            batch.append(frame)
            if len(batch) == args.batch_size:
                _flush(detector, batch, config, results, writer, draw_detections)
                bar.update(len(batch))
                batch = []
        if batch:
            _flush(detector, batch, config, results, writer, draw_detections)
            bar.update(len(batch))
    if not results:
        raise InputError(f"{args.path}: no frames could be read")
    return results


def _flush(detector, batch, config, results, writer, draw) -> None:
    for frame, dets in zip(batch, detector.infer([f.image for f in batch], config)):
        results.append({"frame_index": frame.index, "timestamp_s": round(frame.timestamp_s, 3),
                        "detections": dets.to_json()})
        if writer is not None:
            writer.write(draw(frame.image.copy(), dets))
