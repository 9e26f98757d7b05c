"""TensorRT's legacy INT8 calibrator (``IInt8EntropyCalibrator2``, TensorRT 10 only) and its cache.

Shaped like ``EngineCalibrator`` in TensorRT's ``samples/python/efficientdet/build_engine.py``
(subclass ``trt.IInt8EntropyCalibrator2``, call the base ``__init__``, ``get_batch`` returns a
list of ``int`` device pointers or None at the end, the cache is read and written as bytes),
with three differences the sample does not need:

* Exceptions in ``get_batch`` (and the cache callbacks) are caught and kept: TensorRT's
  Python trampoline prints them and reads the call as "end of data", so calibration would
  silently use fewer batches. :meth:`raise_if_failed` re-raises the first one after the build.
* The cache is keyed by content (:class:`~aeb_app.inference.build.calibration_cache.CalibrationKey`)
  and verified *before* the build (an exception inside ``read_calibration_cache`` would be
  swallowed too); ``--rebuild`` passes ``cached=None`` so TensorRT calibrates again.
* Device memory is a torch CUDA tensor (one CUDA context with the rest of the app, no pycuda).
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np

from aeb_app.errors import CalibrationError, InputError
from aeb_app.inference.build.calibration_cache import CalibrationKey, read_cache, write_cache
from aeb_app.inference.build.calibration import calibration_batch, images_sha256, normalized_batches, select_images
from aeb_app.inference.trt_api import import_trt

log = logging.getLogger(__name__)

#: Device of the calibration input buffer TensorRT reads (CUDA; tests run it on the CPU).
DEVICE = "cuda"


def trt_calibrator(batches, *, cache_file: Path, key: CalibrationKey, cached: bytes | None, batch_size: int,
                   device: str | None = None):
    """An ``IInt8EntropyCalibrator2`` over float32 NCHW host batches.

    Args:
        batches: iterable of (batch_size, 3, H, W) float32 arrays.
        cache_file: where TensorRT's calibration table is written (with a key sidecar).
        key: what the table depends on (written to the sidecar).
        cached: verified cache bytes to hand TensorRT (skips calibration), or None to calibrate.
        batch_size: images per batch (TensorRT's ``get_batch_size`` contract).
        device: torch device of the input buffer (default :data:`DEVICE`, ``cuda``).
    """
    trt = import_trt()
    device = device or DEVICE

    class EngineCalibrator(trt.IInt8EntropyCalibrator2):
        def __init__(self) -> None:
            super().__init__()  # pybind11 trampolines need the base initialiser
            self._batches = iter(batches)
            self._buffer = None  # torch tensor on ``device``, kept alive while TensorRT reads it
            self.error: BaseException | None = None
            self.batches_used = 0

        def get_batch_size(self) -> int:
            return batch_size

        def get_batch(self, names):
            try:
                return self._next_pointers(names)
            except BaseException as exc:  # noqa: BLE001 - TensorRT would swallow it
                self.error = self.error or exc
                return None

        def _next_pointers(self, names):
            x = next(self._batches, None)
            if x is None:
                return None
            if tuple(names) != ("images",):
                raise CalibrationError(f"calibrator feeds one input 'images'; TensorRT asks for {list(names)}")
            if x.shape[0] != batch_size:
                raise CalibrationError(f"calibration batch of {x.shape[0]} images; TensorRT expects {batch_size}")
            import torch

            host = torch.from_numpy(np.ascontiguousarray(x, dtype=np.float32))
            if self._buffer is None or self._buffer.shape != host.shape:
                self._buffer = torch.empty(host.shape, dtype=torch.float32, device=device)
            self._buffer.copy_(host)
            self.batches_used += 1
            return [int(self._buffer.data_ptr())]

        def read_calibration_cache(self):
            return cached

        def write_calibration_cache(self, cache) -> None:
            try:
                write_cache(cache_file, bytes(cache), key)
            except BaseException as exc:  # noqa: BLE001
                self.error = self.error or exc

        def raise_if_failed(self) -> None:
            """Re-raise what TensorRT swallowed; also fail when calibration saw no batch at all."""
            if self.error is not None:
                raise CalibrationError(f"INT8 calibration failed after {self.batches_used} batches "
                                       f"({type(self.error).__name__}: {self.error})") from self.error
            if cached is None and self.batches_used == 0:
                raise CalibrationError("INT8 calibration received no batch (no calibration images were fed)")

    return EngineCalibrator()


def legacy_calibration_key(loaded, onnx_sha: str, coco_dir, *, num_images: int, seed: int, batch: int,
                           trt_version: str):
    """Key of the legacy calibrator's table: ONNX, image contents, --num-images, --seed, batch, TensorRT version.

    TensorRT calibrates whole batches of the profile's opt batch, so ``num_images`` is rounded
    down to a multiple of ``batch`` (the key records the images actually used).

    Raises:
        InputError: no --coco-dir, fewer images than one batch, or unreadable images.
    """
    if coco_dir is None:
        raise InputError("INT8 needs calibration images: pass --coco-dir (COCO val2017)")
    if num_images < batch:
        raise InputError(f"{coco_dir}: {num_images} calibration images is fewer than one batch of the profile's "
                         f"opt batch {batch}; raise --num-images or lower --opt-batch")
    used = num_images - num_images % batch
    if used < num_images:
        log.info("calibrating on %d of %d images (whole batches of %d)", used, num_images, batch)
    paths = select_images(coco_dir, num_images, seed)[:used]
    return CalibrationKey(kind="trt-entropy2", model=loaded.spec.name, source_sha256=onnx_sha,
                          images_sha256=images_sha256(paths), num_images=used, seed=seed, method="entropy",
                          batch_size=batch, settings=(("requested_images", str(num_images)),
                                                      ("tensorrt", trt_version)))


def legacy_calibrator(loaded, engines_dir: Path, key: CalibrationKey, coco_dir, *, rebuild: bool):
    """``IInt8EntropyCalibrator2`` over full batches of ``key.batch_size`` images (the profile's opt
    batch); its table is read (after the key and hash check) unless ``rebuild``.

    Raises:
        CalibrationError: the table on disk was made for another model/settings or edited.
    """
    cache_file = engines_dir / "calib" / key.file_name(".trtcache")
    cached = None if rebuild else read_cache(cache_file, key)
    batches = iter(())
    if cached is None:  # decode images only when TensorRT will calibrate
        images, _ = calibration_batch(coco_dir, loaded.spec, num_images=int(dict(key.settings)["requested_images"]),
                                      seed=key.seed, cache_dir=engines_dir / "calib")
        batches = normalized_batches(images[:key.num_images], loaded.spec, key.batch_size)
    return trt_calibrator(batches, cache_file=cache_file, key=key, cached=cached, batch_size=key.batch_size)
