"""``aeb-app detect``: images, videos, folders and globs in; annotated copies and JSON detections out.

By default every run is saved in a new folder, ``runs/detect/predict``, ``predict2``... (the
ultralytics convention, relative to the current folder): one annotated copy per input (videos as
``.mp4``) and ``detections.json``. ``--out``/``--json`` (one input) write exactly those files instead;
``--no-save`` writes nothing. Each input prints one line: ``image 1/3 a.jpg: 1 person, 2 cars, 12.3 ms``,
where ms is the detector's time per image (resize, normalise, network, NMS; not decoding or drawing).
"""

from __future__ import annotations

import argparse
import contextlib
import logging
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

from aeb_app import defaults
from aeb_app.cli import argtypes as at
from aeb_app.cli.common import add_model_args, add_tiles_arg, make_detector, tiling_of
from aeb_app.cli.detect_io import count_summary, expand_sources, is_image, next_run_dir, output_names
from aeb_app.errors import InputError

log = logging.getLogger(__name__)


def add_parser(sub: argparse._SubParsersAction) -> argparse.ArgumentParser:
    p = sub.add_parser("detect", help="detect objects in images, videos, folders or globs (saved under runs/detect)")
    p.add_argument("sources", nargs="+", metavar="SOURCE",
                   help="image/video files, folders (their images and videos) or quoted globs ('dir/*.jpg')")
    add_model_args(p)
    add_tiles_arg(p)
    p.add_argument("--score-threshold", type=at.probability, default=defaults.DISPLAY_SCORE_THRESHOLD,
                   help="drop detections scoring below this")
    p.add_argument("--project", type=Path, default=defaults.DETECT_PROJECT,
                   help="parent of the run folders")
    p.add_argument("--name", default=defaults.DETECT_NAME,
                   help="run folder name: PROJECT/NAME, then NAME2, NAME3...")
    p.add_argument("--no-save", action="store_true", help="print results only; write no files")
    p.add_argument("--out", type=at.writable_output(),
                   help="one input only: write its annotated copy here instead of a run folder")
    p.add_argument("--json", type=at.writable_output(".json"), help="write the detections JSON here instead of a run folder")
    p.add_argument("--batch-size", type=at.positive_int, default=8, help="video frames per inference call")
    p.add_argument("--max-frames", type=at.positive_int, help="stop each video after N frames")
    p.set_defaults(func=run)
    return p


@dataclass
class SourceResult:
    """Detections of one input: ``frames`` as JSON-ready dicts, timing in ms per frame."""

    source: str
    kind: str  # "image" or "video"
    annotated: str | None
    frames: list[dict] = field(default_factory=list)
    ms_per_frame: float = 0.0


@dataclass
class Outputs:
    """Where a run writes: the run folder (or None), and the annotated/JSON file of each input."""

    run_dir: Path | None
    annotated: list[Path | None]
    json_path: Path | None


def plan_outputs(args: argparse.Namespace, sources: list[Path]) -> Outputs:
    """Decide every output path before any work (nothing is created here)."""
    if args.out is not None or args.json is not None or args.no_save:
        if args.out is not None and len(sources) != 1:
            raise InputError(f"--out {args.out}: only for one input ({len(sources)} given); use --project/--name")
        if args.out is not None and is_image(args.out) != is_image(sources[0]):
            kind = "an image" if is_image(sources[0]) else "a video"
            raise InputError(f"{args.out}: output must be {kind} like {sources[0].name}")
        return Outputs(None, [args.out] + [None] * (len(sources) - 1), args.json)
    run_dir = next_run_dir(args.project, args.name)
    return Outputs(run_dir, [run_dir / n for n in output_names(sources)], run_dir / "detections.json")


def run(args: argparse.Namespace) -> int:
    from aeb_app.atomic import write_json
    from aeb_app.model.postprocess import PostprocessConfig

    sources = expand_sources(args.sources)
    at.check_outputs([("PATH", s) for s in sources], [("--out", args.out), ("--json", args.json)])
    outputs = plan_outputs(args, sources)
    _check_images(sources)
    config = PostprocessConfig(score_threshold=args.score_threshold, tiling=tiling_of(args))
    detector = make_detector(args)
    results: list[SourceResult] = []
    with detector:
        _warm_up(detector)
        for i, (src, out) in enumerate(zip(sources, outputs.annotated)):
            handler = _detect_image if is_image(src) else _detect_video
            result = handler(detector, src, out, args, config)
            results.append(result)
            print(f"{result.kind} {i + 1}/{len(sources)} {src}: {_line(result)}", flush=True)
    info = detector.info
    if outputs.json_path is not None:
        write_json(outputs.json_path, {
            "model": info.model, "mode": info.mode, "device": info.device, "score_threshold": args.score_threshold,
            "ms_includes": "resize + normalise + network + NMS per frame (not decoding, not drawing)",
            "results": [asdict(r) for r in results],
        })
    total = sum(len(f["detections"]) for r in results for f in r.frames)
    print(f"{total} detections in {len(sources)} input(s) [{info.model}, {info.mode}, {info.device}]"
          + (f"; results saved to {outputs.run_dir}" if outputs.run_dir else ""))
    return 0


def _check_images(sources: list[Path]) -> None:
    """Decode every image once before the model loads, so a bad one fails first, in one line
    (costs one extra decode per image, a few ms each; videos are checked as they are read)."""
    from aeb_app.images import read_image

    for src in sources:
        if is_image(src):
            read_image(src)


def _warm_up(detector) -> None:
    """One untimed inference, so the first image's ms is not lazy imports and first-run set-up."""
    import numpy as np

    h, w = detector.spec.input_hw
    detector.infer([np.zeros((h, w, 3), np.uint8)])


def _line(result: SourceResult) -> str:
    from aeb_app.model.coco import COCO_NAMES

    names = [d["name"] for f in result.frames for d in f["detections"]]
    summary = count_summary(names, order=list(COCO_NAMES.values()))
    if result.kind == "image":
        return f"{summary}, {result.ms_per_frame:.1f} ms"
    return f"{len(result.frames)} frames, {summary}, {result.ms_per_frame:.1f} ms per frame"


def _detect_image(detector, src: Path, out: Path | None, args: argparse.Namespace, config) -> SourceResult:
    import cv2

    from aeb_app.atomic import atomic_path
    from aeb_app.images import read_image
    from aeb_app.render.overlay import draw_detections

    image = read_image(src)
    t0 = time.perf_counter()
    [dets] = detector.infer([image], config)
    ms = (time.perf_counter() - t0) * 1e3
    if out is not None:
        with atomic_path(out) as tmp:
            if not cv2.imwrite(str(tmp), draw_detections(image.copy(), dets)):
                raise InputError(f"{out}: OpenCV cannot write this image format")
    return SourceResult(str(src), "image", str(out) if out else None,
                        [{"frame_index": 0, "detections": dets.to_json()}], ms)


def _detect_video(detector, src: Path, out: Path | None, args: argparse.Namespace, config) -> SourceResult:
    from tqdm import tqdm

    from aeb_app.video.reader import VideoSource
    from aeb_app.video.writer import VideoWriter

    result = SourceResult(str(src), "video", str(out) if out else None)
    seconds = 0.0
    with contextlib.ExitStack() as stack:
        source = stack.enter_context(VideoSource(src))
        writer = stack.enter_context(VideoWriter(out, fps=source.info.fps)) if out else None
        bar = stack.enter_context(tqdm(total=args.max_frames or source.info.frame_count, unit="frame", leave=False))
        batch: list = []
        for frame in source.frames(max_frames=args.max_frames):
            if not frame.ok:
                raise InputError(frame.error or f"{src}: frame {frame.index} cannot be decoded")  # names file, frame
            batch.append(frame)
            if len(batch) == args.batch_size:
                seconds += _flush(detector, batch, config, result.frames, writer)
                bar.update(len(batch))
                batch = []
        if batch:
            seconds += _flush(detector, batch, config, result.frames, writer)
            bar.update(len(batch))
        if not result.frames:
            raise InputError(f"{src}: no frames could be read")
    result.ms_per_frame = seconds * 1e3 / len(result.frames)
    return result


def _flush(detector, batch, config, frames: list[dict], writer) -> float:
    """Detect on a batch of frames, record them, write annotated frames; returns inference seconds."""
    from aeb_app.render.overlay import draw_detections

    t0 = time.perf_counter()
    detections = detector.infer([f.image for f in batch], config)
    seconds = time.perf_counter() - t0
    for frame, dets in zip(batch, detections):
        frames.append({"frame_index": frame.index, "timestamp_s": round(frame.timestamp_s, 3),
                       "detections": dets.to_json()})
        if writer is not None:
            writer.write(draw_detections(frame.image.copy(), dets))
    return seconds
