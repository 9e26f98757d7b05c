"""INT8 calibration images: a seeded random sample of a COCO folder, preprocessed as inference.

The same batches feed ONNX Runtime's static quantizer (Q/DQ path) and TensorRT's legacy
``IInt8EntropyCalibrator2`` (:mod:`aeb_app.inference.build.trt_calibrator`). This module imports no
other inference module (no import cycle with the quantiser or the TensorRT backend). Images go through :func:`~aeb_app.model.preprocess.resize_batch`
and :func:`~aeb_app.model.preprocess.normalize_numpy`, exactly as every backend's inference
path, so calibration sees the activations that inference will see. The resized uint8 batch is
cached (``.npy`` in ``engines/calib/``) keyed by the chosen files' names and contents and the model's
input spec, so a second quantisation run does not decode 200 JPEGs again.
"""

from __future__ import annotations

import hashlib
import logging
import random
from pathlib import Path
from typing import Iterator, Sequence

import cv2
import numpy as np
import numpy.typing as npt

from aeb_app import defaults
from aeb_app.atomic import atomic_path
from aeb_app.errors import InputError
from aeb_app.model.preprocess import normalize_numpy, resize_batch
from aeb_app.model.spec import ModelSpec

log = logging.getLogger(__name__)

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp")
DEFAULT_NUM_IMAGES = defaults.CALIBRATION_IMAGES
DEFAULT_SEED = defaults.CALIBRATION_SEED


def image_folder(coco_dir: str | Path) -> Path:
    """The folder holding the images: ``coco_dir/val2017`` when present, else ``coco_dir``.

    Raises:
        InputError: the folder does not exist.
    """
    root = Path(coco_dir)
    folder = root / "val2017" if (root / "val2017").is_dir() else root
    if not folder.is_dir():
        raise InputError(f"{folder}: calibration image folder not found")
    return folder


def select_images(coco_dir: str | Path, num_images: int = DEFAULT_NUM_IMAGES, seed: int = DEFAULT_SEED) -> list[Path]:
    """``num_images`` image files drawn at random (``random.Random(seed)``) from the sorted listing.

    Raises:
        InputError: fewer images than requested (names the folder and both counts).
    """
    if num_images < 1:
        raise ValueError(f"num_images must be >= 1, got {num_images}")
    folder = image_folder(coco_dir)
    files = sorted(p for p in folder.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file())
    if len(files) < num_images:
        raise InputError(
            f"{folder}: {len(files)} images found, {num_images} needed for calibration "
            "(lower --num-images or point --coco-dir at COCO val2017)"
        )
    return sorted(random.Random(seed).sample(files, num_images))


def read_images(paths: Sequence[Path]) -> list[npt.NDArray[np.uint8]]:
    """Decode BGR frames; an unreadable or empty file raises :class:`InputError` naming it."""
    frames = []
    for path in paths:
        frame = cv2.imread(str(path), cv2.IMREAD_COLOR)
        if frame is None or frame.size == 0:
            raise InputError(f"{path}: cannot decode calibration image (corrupt, truncated or not an image)")
        frames.append(frame)
    return frames


def images_sha256(paths: Sequence[Path]) -> str:
    """Hex sha256 over the chosen files' names and contents, in order (what calibration saw)."""
    digest = hashlib.sha256()
    for path in paths:
        digest.update(f"{path.name}:".encode())
        digest.update(hashlib.sha256(path.read_bytes()).digest())
    return digest.hexdigest()


def selection_key(paths: Sequence[Path], spec: ModelSpec) -> str:
    """Hex sha256 of the chosen files' names and contents plus the input spec they are resized for."""
    digest = hashlib.sha256(f"{spec.input_hw}|{spec.resize}|".encode())
    digest.update(images_sha256(paths).encode())
    return digest.hexdigest()


def calibration_batch(
    coco_dir: str | Path,
    spec: ModelSpec,
    *,
    num_images: int = DEFAULT_NUM_IMAGES,
    seed: int = DEFAULT_SEED,
    cache_dir: str | Path | None = None,
) -> tuple[npt.NDArray[np.uint8], str]:
    """Resized RGB uint8 calibration images (N, H, W, 3) and their selection key.

    Args:
        coco_dir: COCO root (with ``val2017/``) or an image folder.
        spec: the model's spec (input size and resize filter).
        num_images / seed: sample size and seed.
        cache_dir: where to cache the resized batch (``<key>.npy``); None disables the cache.

    Raises:
        InputError: too few images, or one cannot be decoded (named).
    """
    paths = select_images(coco_dir, num_images, seed)
    key = selection_key(paths, spec)
    cache = Path(cache_dir) / f"calib-{key[:16]}.npy" if cache_dir is not None else None
    if cache is not None and cache.is_file():
        try:
            batch = np.load(cache)
            if batch.shape == (num_images, *spec.input_hw, 3) and batch.dtype == np.uint8:
                log.info("calibration images from cache %s", cache)
                return batch, key
        except (OSError, ValueError, EOFError):  # truncated or foreign file
            log.warning("%s: unreadable calibration cache; rebuilding it", cache)
    batch = resize_batch(read_images(paths), spec)
    if cache is not None:
        with atomic_path(cache) as tmp:
            np.save(tmp, batch)
    return batch, key


def normalized_batches(batch_nhwc_u8: npt.NDArray[np.uint8], spec: ModelSpec,
                       batch_size: int) -> Iterator[npt.NDArray[np.float32]]:
    """Float32 NCHW network inputs, ``batch_size`` images at a time (the last may be smaller)."""
    for start in range(0, len(batch_nhwc_u8), batch_size):
        yield normalize_numpy(batch_nhwc_u8[start:start + batch_size], spec)


def ort_reader(batch_nhwc_u8: npt.NDArray[np.uint8], spec: ModelSpec, *, batch_size: int = 8,
               input_name: str = "images"):
    """An ``onnxruntime.quantization.CalibrationDataReader`` over the calibration batch."""
    from onnxruntime.quantization import CalibrationDataReader

    class _Reader(CalibrationDataReader):
        def __init__(self) -> None:
            self._it = iter(())
            self.rewind()

        def get_next(self):
            x = next(self._it, None)
            return None if x is None else {input_name: x}

        def rewind(self) -> None:
            self._it = normalized_batches(batch_nhwc_u8, spec, batch_size)

    return _Reader()
