"""TensorRT engine builder: ONNX (exported, or Q/DQ for INT8) -> ``engines/<key>.engine`` + sidecar.

Shaped like TensorRT's ``samples/python/efficientdet/build_engine.py``: :class:`EngineBuilder`
(``create_network`` from ONNX, ``create_engine(precision, ...)``), an entropy calibrator that reads
and writes its cache (:mod:`aeb_app.inference.build.trt_calibrator`), and :func:`build_engine`
writing ``engine + sidecar`` atomically. The runtime that loads the result is
:mod:`aeb_app.inference.run.tensorrt_backend`; the INT8 paths are described there.
Never run against a real TensorRT here (see docs/nvidia-setup.md).
"""

from __future__ import annotations

import hashlib
import logging
from pathlib import Path

from aeb_app.errors import EngineError, InputError
from aeb_app.inference import artifacts as ac
from aeb_app.inference.trt_api import import_trt, machine_info, trt_major

log = logging.getLogger(__name__)

PRECISIONS = ("fp32", "fp16", "int8")
INT8_METHODS = ("qdq", "calibrator")


class EngineBuilder:
    """ONNX -> serialized TensorRT engine with one optimization profile on the batch axis."""

    def __init__(self, *, workspace_gib: float = 8.0, verbose: bool = False) -> None:
        self.trt = import_trt()
        self.logger = self.trt.Logger(self.trt.Logger.VERBOSE if verbose else self.trt.Logger.WARNING)
        self.builder = self.trt.Builder(self.logger)
        self.config = self.builder.create_builder_config()
        self.config.set_memory_pool_limit(self.trt.MemoryPoolType.WORKSPACE, int(workspace_gib * (1 << 30)))
        self.network = None
        self.onnx_path: Path | None = None
        # TensorRT 11 networks are always strongly typed (precision flags removed).
        self.strongly_typed = trt_major(self.trt) >= 11

    def create_network(self, onnx_path: Path, *, strongly_typed: bool = False) -> None:
        """Parse the ONNX. Explicit batch is the only mode in TensorRT 10 (flags 0); ``strongly_typed``
        (every Q/DQ build) sets ``NetworkDefinitionCreationFlag.STRONGLY_TYPED`` (11: always on).

        Raises:
            EngineError: the parser rejected the file (its errors, on one line).
        """
        flags = 0
        if strongly_typed:
            flags = 1 << int(self.trt.NetworkDefinitionCreationFlag.STRONGLY_TYPED)
        self.strongly_typed = self.strongly_typed or strongly_typed
        self.onnx_path = Path(onnx_path)
        self.network = self.builder.create_network(flags)
        parser = self.trt.OnnxParser(self.network, self.logger)
        if not parser.parse_from_file(str(onnx_path)):
            errors = "; ".join(" ".join(str(parser.get_error(i)).split()) for i in range(parser.num_errors))
            raise EngineError(f"{onnx_path}: TensorRT cannot parse the ONNX ({errors or 'no parser error recorded'})")

    def create_engine(self, precision: str, profile: ac.Profile, *, calibrator=None) -> bytes:
        """Set precision flags and the batch profile, build, and return the serialized engine.

        Raises:
            CalibrationError: the calibrator failed (re-raised here: TensorRT swallows it).
            EngineError: a precision this TensorRT cannot build from this network, or a build failure.
        """
        net_input = self.network.get_input(0)
        opt = self._batch_profile(net_input.name, tuple(net_input.shape)[1:], profile)
        self.config.add_optimization_profile(opt)
        self._set_precision(precision)
        if calibrator is not None:
            if self.strongly_typed:
                raise EngineError("strongly typed networks take INT8 from Q/DQ nodes, not a calibrator")
            self.config.int8_calibrator = calibrator
            self.config.set_calibration_profile(opt)  # TensorRT calibrates at this profile's opt shape
        serialized = self.builder.build_serialized_network(self.network, self.config)
        if calibrator is not None:
            calibrator.raise_if_failed()
        if serialized is None:
            raise EngineError(f"{self.onnx_path}: TensorRT failed to build the {precision} engine "
                              "(see the TensorRT log above)")
        return bytes(serialized)

    def load_timing_cache(self, data: bytes | None) -> None:
        """Start from a serialized timing cache (``b""``: an empty one); a stale one is refused by TensorRT.

        Raises:
            EngineError: TensorRT did not accept the cache (delete the file).
        """
        cache = self.config.create_timing_cache(data or b"")
        if not self.config.set_timing_cache(cache, False):  # ignore_mismatch=False: never mix devices
            raise EngineError("TensorRT refused the timing cache (another GPU or version); delete it")

    def timing_cache_bytes(self) -> bytes:
        """The builder's timing cache after a build, serialized."""
        return bytes(self.config.get_timing_cache().serialize())

    def _batch_profile(self, name: str, chw: tuple, profile: ac.Profile):
        opt = self.builder.create_optimization_profile()
        opt.set_shape(name, (profile.min_batch, *chw), (profile.opt_batch, *chw), (profile.max_batch, *chw))
        return opt

    def _set_precision(self, precision: str) -> None:
        trt = self.trt
        if self.strongly_typed:
            if precision == "fp16":
                raise EngineError(f"{self.onnx_path}: a strongly typed FP16 engine needs an FP16 ONNX, which is "
                                  "not provided; use TensorRT 10 or --precision fp32/int8")
            if precision == "fp32" and hasattr(trt.BuilderFlag, "TF32"):
                self.config.clear_flag(trt.BuilderFlag.TF32)
            return
        if precision in ("fp16", "int8"):
            self.config.set_flag(trt.BuilderFlag.FP16)
        if precision == "int8":
            self.config.set_flag(trt.BuilderFlag.INT8)
        if precision == "fp32":
            self.config.clear_flag(trt.BuilderFlag.TF32)  # true FP32, as the sidecar says




def build_engine(loaded, *, precision: str, profile: ac.Profile, engines_dir: str | Path = "engines",
                 int8_method: str = "qdq", coco_dir: str | Path | None = None, num_images: int = 200,
                 seed: int = 0, rebuild: bool = False, workspace_gib: float = 8.0) -> Path:
    """ONNX (exported, or Q/DQ for INT8) -> ``engines/<key>.engine`` + sidecar; reuses a valid one.

    Raises:
        BackendUnavailableError: no TensorRT / GPU. EngineError: bad precision/method, an ONNX the
        compatibility check rejects, parse or build failure. InputError: INT8 calibration images
        missing or unreadable. CalibrationError: a refused calibration cache, or calibration failed.
    """
    if precision not in PRECISIONS:
        raise EngineError(f"unknown precision {precision!r}; choose one of {', '.join(PRECISIONS)}")
    if int8_method not in INT8_METHODS:
        raise EngineError(f"unknown INT8 method {int8_method!r}; choose one of {', '.join(INT8_METHODS)}")
    trt = import_trt()
    machine = machine_info()
    engines_dir = Path(engines_dir)
    method = int8_method if precision == "int8" else None
    if method == "calibrator" and trt_major(trt) >= 11:
        raise EngineError("TensorRT 11 removed implicit INT8 calibrators: use --int8-method qdq")
    onnx_path = source_onnx(loaded, engines_dir, method, coco_dir, num_images, seed)
    from aeb_app.inference.build.trt_calibrator import legacy_calibration_key, legacy_calibrator
    from aeb_app.inference.build.trt_compat import require_compatible

    require_compatible(onnx_path)
    onnx_sha = ac.file_sha256(onnx_path)
    calib_key = None
    if method == "calibrator":
        calib_key = legacy_calibration_key(loaded, onnx_sha, coco_dir, num_images=num_images, seed=seed,
                                           batch=profile.opt_batch, trt_version=trt.__version__)
    key = ac.engine_key(model=loaded.spec.name, precision=precision, profile=profile, machine=machine,
                        source_sha256=onnx_sha if calib_key is None else f"{onnx_sha}+{calib_key.digest()}",
                        int8_method=method)
    target = ac.engine_path(engines_dir, key)
    if not rebuild and not ac.needs_build(target, machine):
        log.info("reusing %s", target)
        return target
    builder = EngineBuilder(workspace_gib=workspace_gib)
    timing = engines_dir / "timing" / f"{ac.gpu_slug(machine.gpu_name)}-trt{machine.runtime_version}.cache"
    builder.load_timing_cache(timing.read_bytes() if timing.is_file() else None)
    builder.create_network(onnx_path, strongly_typed=method == "qdq")
    calibrator = None
    if calib_key is not None:
        calibrator = legacy_calibrator(loaded, engines_dir, calib_key, coco_dir, rebuild=rebuild)
    data = builder.create_engine(precision, profile, calibrator=calibrator)
    from aeb_app.atomic import write_bytes

    write_bytes(timing, builder.timing_cache_bytes())
    calib = {} if calib_key is None else {"calibration_sha256": calib_key.images_sha256,
                                          "calibration_key": calib_key.digest(), "calibration_batch": profile.opt_batch,
                                          "calibration_images_used": calib_key.num_images}
    _write_engine(target, data, loaded=loaded, precision=precision, profile=profile, machine=machine,
                  onnx_path=onnx_path, onnx_sha=onnx_sha, method=method, builder=builder, calib=calib)
    return target


def source_onnx(loaded, engines_dir: Path, method: str | None, coco_dir, num_images: int, seed: int) -> Path:
    """The FP32 ONNX (exported or cached), or for ``qdq`` the Q/DQ model made from it."""
    if method != "qdq":
        from aeb_app.inference.build.export import export_onnx

        return export_onnx(loaded, engines_dir=engines_dir)
    from aeb_app.inference.build.quantize import QuantizeConfig, quantize_model

    if coco_dir is None:
        found = ac.find_qdq_model(loaded, engines_dir)
        if found is None:
            _need_coco()
        return found
    return quantize_model(loaded, coco_dir, engines_dir=engines_dir,
                          config=QuantizeConfig(num_images=num_images, seed=seed))


def _write_engine(target: Path, data: bytes, *, loaded, precision, profile, machine, onnx_path: Path,
                  onnx_sha: str, method, builder: EngineBuilder, calib: dict) -> None:
    """Engine, then its sidecar, each written atomically (a crash between leaves a sidecar-less
    engine, which :func:`~aeb_app.inference.artifacts.needs_build` rebuilds)."""
    from aeb_app.atomic import write_bytes

    tf32 = precision != "fp32"
    side = ac.Sidecar(
        kind=ac.TRT_ENGINE, model=loaded.spec.name, weights_sha256=ac.weights_sha256(loaded), precision=precision,
        batch=profile, sha256=hashlib.sha256(data).hexdigest(), builder="tensorrt-onnx",
        versions={"tensorrt": machine.runtime_version}, source_sha256=onnx_sha, machine=machine,
        usage=ac.usage_for(loaded.spec),
        details={"onnx": onnx_path.name, "int8_method": method, "strongly_typed": builder.strongly_typed, "tf32": tf32,
                 **calib})
    write_bytes(target, data)
    ac.write_sidecar(target, side)


def _need_coco():
    raise InputError("INT8 needs calibration images: pass --coco-dir (COCO val2017)")
