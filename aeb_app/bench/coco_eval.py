"""COCO mAP of a detector over any COCO-layout folder (images + instances json), via pycocotools."""

from __future__ import annotations

import contextlib
import io
import json
import logging
from pathlib import Path
from typing import Any, Callable, Iterator

import numpy as np

from aeb_app.errors import InputError
from aeb_app.images import read_image
from aeb_app.inference.base import Detector
from aeb_app.model.postprocess import EVAL_POSTPROCESS, PostprocessConfig
from aeb_app.types import Detections

log = logging.getLogger(__name__)

STAT_NAMES = (
    "map", "map50", "map75", "map_small", "map_medium", "map_large",
    "ar1", "ar10", "ar100", "ar_small", "ar_medium", "ar_large",
)


def find_annotations(coco_dir: Path) -> Path:
    """The instances json of a COCO folder: ``annotations/instances_*.json`` (exactly one)."""
    found = sorted((coco_dir / "annotations").glob("instances_*.json"))
    if len(found) != 1:
        raise InputError(
            f"{coco_dir}: expected one annotations/instances_*.json, found {len(found)}; pass --annotations"
        )
    return found[0]


def find_image(coco_dir: Path, file_name: str) -> Path:
    """Images live in ``<dir>/<file_name>``, ``<dir>/val2017/`` or ``<dir>/images/``."""
    for sub in ("", "val2017", "images"):
        if (path := coco_dir / sub / file_name).is_file():
            return path
    raise InputError(f"{coco_dir}: image {file_name} listed in the annotations is missing")


def load_coco(annotations: Path):
    from pycocotools.coco import COCO

    if not annotations.is_file():
        raise InputError(f"{annotations}: annotations file not found")
    try:
        with contextlib.redirect_stdout(io.StringIO()):
            return COCO(str(annotations))
    except (json.JSONDecodeError, KeyError, TypeError, ValueError) as exc:
        raise InputError(f"{annotations}: not a COCO instances json ({type(exc).__name__}: {exc})") from exc


def check_images(coco_dir: Path, annotations: Path | None = None, limit: int | None = None) -> tuple[Path, list[int]]:
    """Load the annotations and check every image they list (the first ``limit`` by id) before any work:
    each exists and, read from its header (EXIF orientation applied, as OpenCV decodes it), has the size
    the annotations give it; otherwise the boxes would be scored against other pixels (a silent mAP of 0).

    Returns:
        (annotations path, image ids to evaluate).

    Raises:
        InputError: malformed annotations, no images, a missing, unreadable or wrongly sized image (named).
    """
    annotations, _, image_ids = _load_checked(Path(coco_dir), annotations, limit)
    return annotations, image_ids


def _load_checked(coco_dir: Path, annotations: Path | None, limit: int | None) -> tuple[Path, Any, list[int]]:
    """:func:`check_images`, also returning the loaded ``COCO`` object."""
    annotations = Path(annotations) if annotations else find_annotations(coco_dir)
    coco = load_coco(annotations)
    image_ids = sorted(coco.getImgIds())[: limit or None]
    if not image_ids:
        raise InputError(f"{annotations}: no images to evaluate")
    _check_annotations(coco, annotations, image_ids)
    oriented = []
    for image_id in image_ids:
        entry = coco.imgs[image_id]
        if not isinstance(entry.get("file_name"), str):
            raise InputError(f"{annotations}: image id {image_id} has no file_name")
        if _check_size(find_image(coco_dir, entry["file_name"]), entry, annotations) not in (None, 1):
            oriented.append(entry["file_name"])
    if oriented:  # the sizes agree, but a 180-degree or mirroring tag cannot be told apart by size
        log.warning("%s: %d image(s) carry an EXIF orientation tag (e.g. %s): they are decoded turned as shown, "
                    "so their boxes must be for the turned image", annotations, len(oriented), oriented[0])
    return annotations, coco, image_ids


def _check_annotations(coco, annotations: Path, image_ids: list[int]) -> None:
    """Every box pycocotools will score is well formed and refers to a listed image and category, and the
    images evaluated have ground truth (an mAP without any is undefined, not 0)."""
    import math

    if not coco.cats:
        raise InputError(f"{annotations}: no categories")
    for ann in coco.anns.values():
        where = f"{annotations}: annotation {ann.get('id', '?')}"
        bbox, area = ann.get("bbox"), ann.get("area")
        if ann.get("image_id") not in coco.imgs:
            raise InputError(f"{where}: image_id {ann.get('image_id')!r} is not in 'images'")
        if ann.get("category_id") not in coco.cats:
            raise InputError(f"{where}: category_id {ann.get('category_id')!r} is not in 'categories'")
        numbers = bbox if isinstance(bbox, list) and len(bbox) == 4 else []
        if not numbers or not all(isinstance(v, (int, float)) and math.isfinite(v) for v in numbers) \
                or min(numbers[2:]) < 0:
            raise InputError(f"{where}: bbox {str(bbox)[:60]} is not [x, y, width, height] of finite numbers")
        if not isinstance(area, (int, float)) or not math.isfinite(area):
            raise InputError(f"{where}: area {area!r} is not a finite number")
    if not any(coco.imgToAnns.get(i) for i in image_ids):
        raise InputError(f"{annotations}: no ground-truth boxes on the {len(image_ids)} image(s) evaluated")


def _check_size(path: Path, entry: dict, annotations: Path) -> int | None:
    """``path``'s displayed size (header only) equals the annotations' width x height; returns its EXIF
    orientation tag (None without one)."""
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as image:
            w, h = image.size
            orientation = image.getexif().get(0x0112)
            if orientation in (5, 6, 7, 8):  # EXIF orientations that swap width and height
                w, h = h, w
    except (OSError, UnidentifiedImageError, ValueError) as exc:
        raise InputError(f"{path}: not a readable image ({exc})") from exc
    want = (entry.get("width"), entry.get("height"))
    if None not in want and (w, h) != want:
        raise InputError(f"{path}: image is {w}x{h} but {annotations.name} says {want[0]}x{want[1]} "
                         "(an EXIF orientation tag, or another image under this name)")
    return orientation


def held_out_annotations(annotations: Path, exclude_names: set[str], out: Path) -> Path:
    """Write to ``out`` a copy of a COCO annotation file without the images named in ``exclude_names``
    (e.g. the calibration images, so accuracy is scored on images the quantiser never saw)."""
    data = json.loads(annotations.read_text(encoding="utf-8"))
    images = [im for im in data["images"] if im["file_name"] not in exclude_names]
    ids = {im["id"] for im in images}
    data["images"] = images
    data["annotations"] = [a for a in data["annotations"] if a["image_id"] in ids]
    out.write_text(json.dumps(data), encoding="utf-8")
    return out


def to_coco_results(image_id: int, dets: Detections) -> list[dict]:
    xywh = dets.xyxy_px.copy()
    xywh[:, 2:] -= xywh[:, :2]
    return [
        {"image_id": image_id, "category_id": int(c), "bbox": [round(float(v), 2) for v in box],
         "score": round(float(s), 5)}
        for box, s, c in zip(xywh, dets.scores, dets.category_ids)
    ]


def _batches(coco, image_ids: list[int], coco_dir: Path, batch_size: int) -> Iterator[tuple[list[int], list]]:
    for start in range(0, len(image_ids), batch_size):
        ids = image_ids[start:start + batch_size]
        frames = [read_image(find_image(coco_dir, coco.imgs[i]["file_name"])) for i in ids]
        yield ids, frames


def _gpu_batches(coco, image_ids: list[int], coco_dir: Path, batch_size: int, detector: Detector,
                 config: PostprocessConfig, decode: str = "gpu", device_decoder: str = "nvjpeg",
                 resize: str = "interpolate") -> Iterator[tuple[list[int], list]]:
    """Like :func:`_batches` followed by inference, through the pipelined GPU path: the files' bytes
    are decoded (nvJPEG) and resized on the GPU while the previous batch runs its network
    (:func:`aeb_app.inference.run.gpu_frames.stream_jpeg_batches`). Yields (ids, detections)."""
    from aeb_app.inference.run.gpu_frames import stream_jpeg_batches

    chunks = [image_ids[start:start + batch_size] for start in range(0, len(image_ids), batch_size)]
    paths = [[find_image(coco_dir, coco.imgs[i]["file_name"]) for i in ids] for ids in chunks]
    datas = ([p.read_bytes() for p in batch] for batch in paths)
    names = ([str(p) for p in batch] for batch in paths)
    yield from zip(chunks, stream_jpeg_batches(detector, datas, config, names=names, decode=decode,
                                               device_decoder=device_decoder, resize=resize))


def resolve_frame_path(detector: Detector, frame_path: str) -> str:
    """``auto`` -> ``gpu`` for a CUDA detector with a device path (PyTorch modes), else ``cpu``;
    ``gpu`` needs a CUDA detector.

    Raises:
        ValueError: an unknown value, or ``gpu`` with a detector that is not on CUDA.
    """
    on_cuda = detector.info.device.startswith("cuda")
    if frame_path == "auto":
        return "gpu" if on_cuda and detector.device_input() is not None else "cpu"
    if frame_path not in ("gpu", "cpu"):
        raise ValueError(f"frame_path must be auto, gpu or cpu, not {frame_path!r}")
    if frame_path == "gpu" and not on_cuda:
        raise ValueError(f"frame_path 'gpu' needs a CUDA detector; {detector.info.mode} runs on {detector.info.device}")
    return frame_path


def evaluate_detector(
    detector: Detector,
    coco_dir: Path,
    *,
    annotations: Path | None = None,
    batch_size: int = 8,
    limit: int | None = None,
    config: PostprocessConfig = EVAL_POSTPROCESS,
    progress: Callable[[int, int], None] | None = None,
    frame_path: str = "auto",
    decode: str = "gpu",
    device_decoder: str = "nvjpeg",
    resize: str = "interpolate",
) -> dict:
    """Run ``detector`` (already activated) over a COCO folder and score it.

    Args:
        detector: an active :class:`Detector`.
        coco_dir: folder with images (flat, ``val2017/`` or ``images/``) and ``annotations/``.
        annotations: instances json; default: the one in ``coco_dir/annotations``.
        batch_size: frames per ``infer`` call.
        limit: evaluate only the first ``limit`` images (by id).
        config: detection thresholds (COCO protocol: low threshold, 100 per image).
        progress: called with (images done, total).
        frame_path: ``gpu``: JPEG decoding, resizing, NMS on the GPU
            (:mod:`aeb_app.inference.run.gpu_frames`); ``cpu``: OpenCV decoding and resizing on the host;
            ``auto``: see :func:`resolve_frame_path`.
        decode: on the ``gpu`` frame path, where JPEGs are decoded
            (:data:`~aeb_app.inference.run.split_decode.DECODE_PLACES`).
        device_decoder: on the ``gpu`` frame path, what decodes on the GPU
            (:data:`~aeb_app.inference.run.hardware_jpeg.DEVICE_DECODERS`).
        resize: on the ``gpu`` frame path, how images are resized on the device
            (:data:`~aeb_app.inference.run.gpu_frames.RESIZE_METHODS`).

    Returns:
        ``map`` (@[.5:.95]), ``map50`` and the other 10 COCO stats, ``num_images``, ``model``,
        ``backend``, ``precision``, ``mode``, ``frame_path``, ``summary`` (the standard 12 lines), ``per_class``
        (:class:`~aeb_app.bench.per_class.ClassAP` dicts) and ``pr_curve`` (precision at 101 recall
        points, :class:`~aeb_app.bench.per_class.PrCurve`); both empty when nothing was detected.
    """
    from pycocotools.cocoeval import COCOeval

    coco_dir = Path(coco_dir)
    annotations, coco, image_ids = _load_checked(coco_dir, annotations, limit)
    results: list[dict] = []
    done = 0
    frame_path = resolve_frame_path(detector, frame_path)
    on_gpu = frame_path == "gpu"
    batches = (_gpu_batches(coco, image_ids, coco_dir, batch_size, detector, config, decode, device_decoder, resize)
               if on_gpu
               else ((ids, detector.infer(frames, config)) for ids, frames in
                     _batches(coco, image_ids, coco_dir, batch_size)))
    for ids, batch_dets in batches:
        for image_id, dets in zip(ids, batch_dets):
            results.extend(to_coco_results(image_id, dets))
        done += len(ids)
        if progress:
            progress(done, len(image_ids))
    stats, summary, ev = _score(coco, results, image_ids, COCOeval)
    info = detector.info
    return {
        **dict(zip(STAT_NAMES, stats)),
        **_per_class(coco, ev, image_ids),
        "num_images": len(image_ids), "num_detections": len(results),
        "model": info.model, "backend": info.backend, "precision": info.precision, "mode": info.mode,
        "frame_path": frame_path, "jpeg_decode": decode if on_gpu else "cpu",
        "jpeg_decoder": device_decoder if on_gpu and decode != "host" else "opencv",
        "resize": resize if on_gpu and decode != "host" else "cpu",
        "max_detections": config.max_detections, "score_threshold": config.score_threshold,
        "annotations": str(annotations), "summary": summary,
    }


def _per_class(coco, ev, image_ids: list[int]) -> dict:
    """``per_class`` AP rows and the ``pr_curve`` from an accumulated COCOeval (or empty ones)."""
    from dataclasses import asdict

    from aeb_app.bench.per_class import per_class_ap, pr_curve, to_json

    if ev is None:
        return {"per_class": [], "pr_curve": {}}
    cat_ids = list(ev.params.catIds)
    names = {c["id"]: c["name"] for c in coco.loadCats(cat_ids)}
    num_gt = {c: len(coco.getAnnIds(imgIds=image_ids, catIds=[c], iscrowd=False)) for c in cat_ids}
    precision = ev.eval["precision"]
    return {"per_class": to_json(per_class_ap(precision, cat_ids, names, num_gt)),
            "pr_curve": asdict(pr_curve(precision, ev.params.recThrs))}


def _score(coco, results: list[dict], image_ids: list[int], cocoeval_cls) -> tuple[list[float], str, object]:
    if not results:
        return [0.0] * len(STAT_NAMES), "no detections", None
    buf = io.StringIO()
    with contextlib.redirect_stdout(buf):
        dt = coco.loadRes(results)
        ev = cocoeval_cls(coco, dt, "bbox")
        ev.params.imgIds = image_ids
        ev.evaluate()
        ev.accumulate()
    with contextlib.redirect_stdout(summary := io.StringIO()):
        ev.summarize()
    # pycocotools reports -1 where a size range has no ground truth; keep it (not 0).
    return [float(s) for s in np.asarray(ev.stats)], summary.getvalue().rstrip(), ev
