"""TensorRT 10 engine builder and runtime (thin; ``tensorrt`` is imported lazily).

Written against the TensorRT 10 Python API documentation; it has not run against a real
TensorRT here (not installable on these machines; see docs/nvidia-setup.md), so no TensorRT
speed or accuracy figure exists for it. Shaped like TensorRT's
``samples/python/efficientdet/build_engine.py``: :class:`EngineBuilder` (``create_network``
from ONNX, ``create_engine(precision, ...)``), an entropy calibrator that reads and writes its
cache, and :func:`build_engine` writing ``engine + sidecar`` atomically.

INT8 has two paths behind one command:

* ``qdq`` (default; TensorRT 10.1+ recommends it, 11 requires it): parse the Q/DQ ONNX from
  :mod:`aeb_app.inference.quantize` into a *strongly typed* network (TensorRT 10 and 11: no
  precision flags; the ONNX's Q/DQ and float types decide each layer's precision, as the
  explicit-quantization docs ask since 10.12 deprecated weakly typed Q/DQ builds). The file is
  checked by :mod:`aeb_app.inference.trt_compat` first, so a node the parser would reject is
  named before TensorRT runs.
* ``calibrator`` (legacy, TensorRT 10 only): FP32 ONNX + ``IInt8EntropyCalibrator2``
  (:mod:`aeb_app.inference.trt_calibrator`) fed with the same calibration images. TensorRT
  calibrates at the calibration profile's *opt* shape, so the calibrator's batch is the
  profile's opt batch. Its ``.trtcache`` is keyed by content (ONNX, images, count, seed,
  batch, TensorRT version) and checked before reuse; ``--rebuild`` does not read it.

A timing cache per GPU and TensorRT version (``engines/timing/``) is loaded before and saved
after every build, so a rebuild does not re-time every tactic.

The runtime keeps device buffers as torch CUDA tensors (one CUDA context, no pycuda) and runs
``execute_async_v3`` on its own non-default CUDA stream, ordered with ``wait_stream`` after the
input's producer and before its consumers (TensorRT synchronises around the default stream).
"""

from __future__ import annotations

import hashlib
import logging
from pathlib import Path

import numpy as np

from aeb_app.errors import BackendUnavailableError, EngineError, EngineLoadError, InputError
from aeb_app.inference import engine_cache as ec
from aeb_app.inference.base import Detector, DetectorInfo
from aeb_app.inference.trt_api import INSTALL_HINT, import_trt, trt_major

__all__ = ["INSTALL_HINT", "EngineBuilder", "TensorRTDetector", "build_engine", "create", "import_trt", "trt_major"]

log = logging.getLogger(__name__)

PRECISIONS = ("fp32", "fp16", "int8")
INT8_METHODS = ("qdq", "calibrator")
INPUT_NAME = "images"
OUTPUT_NAMES = ("boxes", "scores")


def machine_info() -> ec.MachineInfo:
    """TensorRT version + current CUDA GPU name and compute capability."""
    import torch

    trt = import_trt()
    if not torch.cuda.is_available():
        raise BackendUnavailableError("TensorRT needs a CUDA GPU; torch.cuda.is_available() is False")
    major, minor = torch.cuda.get_device_capability()
    return ec.MachineInfo(trt.__version__, torch.cuda.get_device_name(), f"{major}.{minor}")


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

    def create_engine(self, precision: str, profile: ec.Profile, *, calibrator=None) -> bytes:
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

    def _batch_profile(self, name: str, chw: tuple, profile: ec.Profile):
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


_TORCH_DTYPES = {"FLOAT": "float32", "HALF": "float16"}


class TensorRTDetector(Detector):
    """Runs a serialized engine on its own CUDA stream; inputs/outputs are torch CUDA tensors."""

    def __init__(self, engine_path: Path, spec, *, mode: str, precision: str, machine: ec.MachineInfo) -> None:
        data, meta = ec.load_checked(engine_path, machine)
        super().__init__(spec, DetectorInfo(mode, "tensorrt", precision, "cuda", spec.name,
                                            max_batch=meta["profile"]["max_batch"],
                                            notes={"engine": str(engine_path), "sidecar": meta}))
        self._data = data
        self.runtime = self.engine = self.context = None
        self._out_dtypes: dict = {}
        self._out_shapes: dict = {}
        self._last_shape: tuple | None = None
        self._stream = None

    def activate(self) -> None:
        trt = import_trt()
        where = self.info.notes["engine"]
        self.runtime = trt.Runtime(trt.Logger(trt.Logger.WARNING))
        self.engine = self.runtime.deserialize_cuda_engine(self._data)
        if self.engine is None:
            raise EngineLoadError(f"{where}: TensorRT could not deserialize the engine")
        names = [self.engine.get_tensor_name(i) for i in range(self.engine.num_io_tensors)]
        inputs = [n for n in names if self.engine.get_tensor_mode(n) == trt.TensorIOMode.INPUT]
        outputs = [n for n in names if self.engine.get_tensor_mode(n) == trt.TensorIOMode.OUTPUT]
        if inputs != [INPUT_NAME] or sorted(outputs) != sorted(OUTPUT_NAMES):
            raise EngineLoadError(f"{where}: engine tensors are {inputs} -> {outputs}; expected "
                                  f"['{INPUT_NAME}'] -> {list(OUTPUT_NAMES)}; rebuild with 'aeb-app build-engine'")
        self._check_dtypes(trt, where)
        max_batch = int(self.engine.get_tensor_profile_shape(INPUT_NAME, 0)[2][0])
        if max_batch != self.info.max_batch:
            raise EngineLoadError(f"{where}: engine profile max batch {max_batch} differs from its sidecar's "
                                  f"{self.info.max_batch}; rebuild it")
        self.context = self.engine.create_execution_context()
        self._stream = self._make_stream()
        self._last_shape = None

    def _check_dtypes(self, trt, where: str) -> None:
        """Map each output's TensorRT dtype to a torch dtype once; the input must be float32."""
        import torch

        if self.engine.get_tensor_dtype(INPUT_NAME) != trt.DataType.FLOAT:
            raise EngineLoadError(f"{where}: input '{INPUT_NAME}' is {self.engine.get_tensor_dtype(INPUT_NAME)}, "
                                  "expected float32; rebuild the engine")
        for name in OUTPUT_NAMES:
            dtype = self.engine.get_tensor_dtype(name)
            key = next((k for k in _TORCH_DTYPES if dtype == getattr(trt.DataType, k)), None)
            if key is None:
                raise EngineLoadError(f"{where}: output '{name}' has unsupported dtype {dtype}")
            self._out_dtypes[name] = getattr(torch, _TORCH_DTYPES[key])

    def deactivate(self) -> None:
        self.context = self.engine = self.runtime = self._stream = None

    def _make_stream(self):
        """A dedicated non-default CUDA stream for ``execute_async_v3`` (as Polygraphy's runner keeps its own)."""
        import torch

        return torch.cuda.Stream()

    def _current_stream(self):
        import torch

        return torch.cuda.current_stream()

    def _bind(self, name: str, tensor) -> None:
        """``set_tensor_address`` with the tensor's device pointer; False from TensorRT is an error."""
        if not self.context.set_tensor_address(name, int(tensor.data_ptr())):
            raise EngineError(f"{self.info.mode}: TensorRT refused the address of tensor '{name}' "
                              f"({tuple(tensor.shape)}, {tensor.dtype})")

    def _enqueue(self, tensors) -> None:
        """Run on the detector's stream, after the work queued on the current stream and before later work."""
        producer = self._current_stream()
        self._stream.wait_stream(producer)  # the input (and output allocations) are ready
        ok = self.context.execute_async_v3(self._stream.cuda_stream)
        for tensor in tensors:  # keep the caching allocator from reusing them while TensorRT runs
            if tensor.is_cuda:
                tensor.record_stream(self._stream)
        producer.wait_stream(self._stream)  # consumers on the current stream see the outputs
        if not ok:
            raise EngineError(f"{self.info.mode}: execute_async_v3 failed (see the TensorRT log)")

    def forward_normalized(self, x):
        """Decoded (boxes, scores) CUDA tensors for a normalised float32 NCHW CUDA tensor."""
        import torch

        n = int(x.shape[0])
        if n > self.info.max_batch:
            raise EngineError(f"{self.info.mode}: batch of {n} exceeds the engine profile's max batch "
                              f"{self.info.max_batch}; rebuild with --max-batch {n}")
        x = x.contiguous()
        if tuple(x.shape) != self._last_shape:  # output shapes only change with the input shape
            if not self.context.set_input_shape(INPUT_NAME, tuple(x.shape)):
                raise EngineError(f"{self.info.mode}: TensorRT rejected input shape {tuple(x.shape)}")
            self._out_shapes = {n_: tuple(self.context.get_tensor_shape(n_)) for n_ in OUTPUT_NAMES}
            self._last_shape = tuple(x.shape)
        self._bind(INPUT_NAME, x)
        # Fresh outputs per call: callers may keep the previous results.
        out = {name: torch.empty(self._out_shapes[name], dtype=self._out_dtypes[name], device=x.device)
               for name in OUTPUT_NAMES}
        for name, tensor in out.items():
            self._bind(name, tensor)
        self._enqueue([x, *out.values()])
        return out["boxes"].float(), out["scores"].float()

    def run_decoded(self, batch_nhwc_u8):
        import torch

        from aeb_app.model.preprocess import normalize

        x = torch.from_numpy(np.ascontiguousarray(batch_nhwc_u8)).pin_memory().cuda(non_blocking=True)
        return self.forward_normalized(normalize(x, self.spec))

    def synchronize(self) -> None:
        import torch

        torch.cuda.synchronize()


def find_engine(engines_dir: Path, model: str, precision: str, machine: ec.MachineInfo) -> Path | None:
    """Newest engine file for ``model``/``precision`` built for this GPU (name and SM) and runtime version, or None."""
    sm = machine.compute_capability.replace(".", "")
    pattern = f"{model}_{precision}*_sm{sm}_*{machine.runtime_version}_{ec.gpu_slug(machine.gpu_name)}_*.engine"
    found = sorted(Path(engines_dir).glob(pattern), key=lambda p: p.stat().st_mtime)
    return found[-1] if found else None


def create(loaded, mode, *, device: str | None = None, engines_dir: str | Path | None = None,
           engine_path: str | Path | None = None, **options) -> TensorRTDetector:
    """Factory for ``int8_trt`` / ``fp16_trt`` / ``fp32_trt``: the newest matching engine in ``engines_dir``.

    Raises:
        BackendUnavailableError: TensorRT or a GPU missing, or no engine built for this machine.
        EngineLoadError: the engine's sidecar names another GPU/TensorRT, or the file is corrupt.
    """
    machine = machine_info()
    if engine_path is None:
        engines_dir = Path(engines_dir or "engines")
        engine_path = find_engine(engines_dir, loaded.spec.name, mode.precision, machine)
        if engine_path is None:
            raise BackendUnavailableError(
                f"{mode.name}: no {mode.precision} engine for {loaded.spec.name} built with TensorRT "
                f"{machine.runtime_version} on sm_{machine.compute_capability.replace('.', '')} in {engines_dir}; "
                f"run 'aeb-app build-engine --model {loaded.spec.name} --precision {mode.precision}'")
    return TensorRTDetector(Path(engine_path), loaded.spec, mode=mode.name, precision=mode.precision,
                            machine=machine)


def build_engine(loaded, *, precision: str, profile: ec.Profile, engines_dir: str | Path = "engines",
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
    from aeb_app.inference.onnx_export import file_sha256
    from aeb_app.inference.trt_calibrator import legacy_calibration_key, legacy_calibrator
    from aeb_app.inference.trt_compat import require_compatible

    require_compatible(onnx_path)
    onnx_sha = file_sha256(onnx_path)
    calib_key = None
    if method == "calibrator":
        calib_key = legacy_calibration_key(loaded, onnx_sha, coco_dir, num_images=num_images, seed=seed,
                                           batch=profile.opt_batch, trt_version=trt.__version__)
    key = ec.engine_key(model=loaded.spec.name, precision=precision, profile=profile, machine=machine,
                        source_sha256=onnx_sha if calib_key is None else f"{onnx_sha}+{calib_key.digest()}",
                        int8_method=method)
    target = ec.engine_path(engines_dir, key)
    if not rebuild and not ec.needs_build(target, machine):
        log.info("reusing %s", target)
        return target
    builder = EngineBuilder(workspace_gib=workspace_gib)
    timing = engines_dir / "timing" / f"{ec.gpu_slug(machine.gpu_name)}-trt{machine.runtime_version}.cache"
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
        from aeb_app.inference.onnx_export import export_onnx

        return export_onnx(loaded, engines_dir=engines_dir)
    from aeb_app.inference.quantize import QuantizeConfig, find_qdq_model, quantize_model

    if coco_dir is None:
        found = find_qdq_model(loaded, engines_dir)
        if found is None:
            _need_coco()
        return found
    return quantize_model(loaded, coco_dir, engines_dir=engines_dir,
                          config=QuantizeConfig(num_images=num_images, seed=seed))


def _write_engine(target: Path, data: bytes, *, loaded, precision, profile, machine, onnx_path: Path,
                  onnx_sha: str, method, builder: EngineBuilder, calib: dict) -> None:
    """Engine, then its sidecar, each written atomically (a crash between leaves a sidecar-less
    engine, which :func:`engine_cache.needs_build` rebuilds)."""
    from aeb_app.atomic import write_bytes, write_json

    tf32 = precision != "fp32"
    meta = ec.make_sidecar(model=loaded.spec.name, precision=precision, profile=profile, machine=machine,
                           onnx_sha256=onnx_sha, engine_sha256=hashlib.sha256(data).hexdigest(),
                           calibration_sha256=calib.get("calibration_sha256"), int8_method=method,
                           extra={"onnx": onnx_path.name, "strongly_typed": builder.strongly_typed, "tf32": tf32,
                                  **{k: v for k, v in calib.items() if k != "calibration_sha256"}})
    write_bytes(target, data)
    write_json(ec.sidecar_path(target), meta)


def _need_coco():
    raise InputError("INT8 needs calibration images: pass --coco-dir (COCO val2017)")
