"""TensorRT 10 engine builder and runtime (thin; ``tensorrt`` is imported lazily).

Written against the TensorRT 10 Python API documentation; it has not run against a real
TensorRT here (not installable on these machines; see docs/nvidia-setup.md). Shaped like
TensorRT's ``samples/python/efficientdet/build_engine.py``: :class:`EngineBuilder`
(``create_network`` from ONNX, ``create_engine(precision, ...)``), an entropy calibrator that
reads and writes its cache, and :func:`build_engine` writing ``engine + sidecar`` atomically.

INT8 has two paths behind one command:

* ``qdq`` (default; TensorRT 10.1+ recommends it, 11 requires it): parse the Q/DQ ONNX from
  :mod:`aeb_app.inference.quantize`. On TensorRT >= 11 the network is strongly typed (no
  precision flags); on 10 we set INT8 (+FP16 for the float remainder).
* ``calibrator`` (legacy, TensorRT 10 only): FP32 ONNX + ``IInt8EntropyCalibrator2`` fed with
  the same calibration images, its cache next to the engine.

The runtime keeps device buffers as torch CUDA tensors on torch's current stream (one CUDA
context, no pycuda): ``set_input_shape`` + ``set_tensor_address`` + ``execute_async_v3``.
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np

from aeb_app.errors import BackendUnavailableError, EngineError, EngineLoadError
from aeb_app.inference import engine_cache as ec
from aeb_app.inference.base import Detector, DetectorInfo

log = logging.getLogger(__name__)

INSTALL_HINT = ("TensorRT is not installed: pip install --extra-index-url https://pypi.nvidia.com "
                "'tensorrt-cu12>=10.0,<11' on a machine with an NVIDIA GPU and driver (see docs/nvidia-setup.md)")


def import_trt():
    """``import tensorrt`` or a :class:`BackendUnavailableError` saying how to install it."""
    try:
        import tensorrt as trt
    except ImportError as exc:
        raise BackendUnavailableError(f"{INSTALL_HINT} ({exc})") from exc
    return trt


def machine_info() -> ec.MachineInfo:
    """TensorRT version + current CUDA GPU name and compute capability."""
    import torch

    trt = import_trt()
    if not torch.cuda.is_available():
        raise BackendUnavailableError("TensorRT needs a CUDA GPU; torch.cuda.is_available() is False")
    major, minor = torch.cuda.get_device_capability()
    return ec.MachineInfo(trt.__version__, torch.cuda.get_device_name(), f"{major}.{minor}")


def make_calibrator(batches, cache_file: Path, batch_size: int):
    """A ``trt.IInt8EntropyCalibrator2`` over float32 NCHW host batches; reads/writes ``cache_file``."""
    import torch

    trt = import_trt()

    class EngineCalibrator(trt.IInt8EntropyCalibrator2):
        def __init__(self) -> None:
            super().__init__()
            self._batches = iter(batches)
            self._device = None

        def get_batch_size(self) -> int:
            return batch_size

        def get_batch(self, names):
            x = next(self._batches, None)
            if x is None:
                return None
            self._device = torch.from_numpy(np.ascontiguousarray(x)).cuda()
            return [int(self._device.data_ptr())]

        def read_calibration_cache(self):
            return cache_file.read_bytes() if cache_file.is_file() else None

        def write_calibration_cache(self, cache) -> None:
            from aeb_app.atomic import write_bytes

            write_bytes(cache_file, bytes(cache))

    return EngineCalibrator()


class EngineBuilder:
    """ONNX -> serialized TensorRT engine with one optimization profile on the batch axis."""

    def __init__(self, *, workspace_gib: float = 8.0, verbose: bool = False) -> None:
        self.trt = import_trt()
        self.logger = self.trt.Logger(self.trt.Logger.VERBOSE if verbose else self.trt.Logger.WARNING)
        self.builder = self.trt.Builder(self.logger)
        self.config = self.builder.create_builder_config()
        self.config.set_memory_pool_limit(self.trt.MemoryPoolType.WORKSPACE, int(workspace_gib * (1 << 30)))
        self.network = None
        self.strongly_typed = False

    def create_network(self, onnx_path: Path, *, strongly_typed: bool = False) -> None:
        """Parse the ONNX (explicit batch is the only mode in TensorRT 10: flags 0)."""
        flags = 0
        if strongly_typed:
            flags = 1 << int(self.trt.NetworkDefinitionCreationFlag.STRONGLY_TYPED)
        self.strongly_typed = strongly_typed
        self.network = self.builder.create_network(flags)
        parser = self.trt.OnnxParser(self.network, self.logger)
        if not parser.parse_from_file(str(onnx_path)):
            errors = "; ".join(str(parser.get_error(i)) for i in range(parser.num_errors))
            raise EngineError(f"{onnx_path}: TensorRT cannot parse the ONNX ({errors})")

    def create_engine(self, precision: str, profile: ec.Profile, *, input_name: str = "images",
                      calibrator=None) -> bytes:
        """Set precision flags and the batch profile, build, and return the serialized engine."""
        trt = self.trt
        shape = tuple(self.network.get_input(0).shape)[1:]
        opt = self.builder.create_optimization_profile()
        opt.set_shape(input_name, (profile.min_batch, *shape), (profile.opt_batch, *shape),
                      (profile.max_batch, *shape))
        self.config.add_optimization_profile(opt)
        if not self.strongly_typed:
            if precision in ("fp16", "int8"):
                self.config.set_flag(trt.BuilderFlag.FP16)
            if precision == "int8":
                self.config.set_flag(trt.BuilderFlag.INT8)
            if precision == "fp32":
                self.config.clear_flag(trt.BuilderFlag.TF32)  # true FP32, as the sidecar says
        if calibrator is not None:
            self.config.int8_calibrator = calibrator
            self.config.set_calibration_profile(opt)
        serialized = self.builder.build_serialized_network(self.network, self.config)
        if serialized is None:
            raise EngineError(f"TensorRT failed to build the {precision} engine (see the TensorRT log above)")
        return bytes(serialized)


class TensorRTDetector(Detector):
    """Runs a serialized engine; inputs/outputs are torch CUDA tensors on torch's current stream."""

    def __init__(self, engine_path: Path, spec, *, mode: str, precision: str, machine: ec.MachineInfo) -> None:
        data, meta = ec.load_checked(engine_path, machine)
        super().__init__(spec, DetectorInfo(mode, "tensorrt", precision, "cuda", spec.name,
                                            max_batch=meta["profile"]["max_batch"],
                                            notes={"engine": str(engine_path), "sidecar": meta}))
        self._data = data
        self.engine = self.context = None

    def activate(self) -> None:
        trt = import_trt()
        self.runtime = trt.Runtime(trt.Logger(trt.Logger.WARNING))
        self.engine = self.runtime.deserialize_cuda_engine(self._data)
        if self.engine is None:
            raise EngineLoadError(f"{self.info.notes['engine']}: TensorRT could not deserialize the engine")
        self.context = self.engine.create_execution_context()
        names = [self.engine.get_tensor_name(i) for i in range(self.engine.num_io_tensors)]
        self.inputs = [n for n in names if self.engine.get_tensor_mode(n) == trt.TensorIOMode.INPUT]
        self.outputs = [n for n in names if self.engine.get_tensor_mode(n) == trt.TensorIOMode.OUTPUT]

    def deactivate(self) -> None:
        self.context = self.engine = None

    def forward_normalized(self, x):
        """Decoded (boxes, scores) CUDA tensors for a normalised float32 NCHW CUDA tensor."""
        import torch

        n = int(x.shape[0])
        if n > self.info.max_batch:
            raise EngineError(f"{self.info.mode}: batch of {n} exceeds the engine profile's max batch "
                              f"{self.info.max_batch}; rebuild with --max-batch {n}")
        x = x.contiguous()
        self.context.set_input_shape(self.inputs[0], tuple(x.shape))
        self.context.set_tensor_address(self.inputs[0], x.data_ptr())
        out = {}
        for name in self.outputs:
            out[name] = torch.empty(tuple(self.context.get_tensor_shape(name)), dtype=torch.float32, device=x.device)
            self.context.set_tensor_address(name, out[name].data_ptr())
        if not self.context.execute_async_v3(torch.cuda.current_stream().cuda_stream):
            raise EngineError(f"{self.info.mode}: execute_async_v3 failed")
        return out["boxes"], out["scores"]

    def run_decoded(self, batch_nhwc_u8):
        import torch

        from aeb_app.model.preprocess import normalize

        x = torch.from_numpy(np.ascontiguousarray(batch_nhwc_u8)).pin_memory().cuda(non_blocking=True)
        return self.forward_normalized(normalize(x, self.spec))

    def synchronize(self) -> None:
        import torch

        torch.cuda.synchronize()


def create(loaded, mode, *, device: str | None = None, engines_dir: str | Path | None = None,
           engine_path: str | Path | None = None, **options) -> TensorRTDetector:
    """Factory for ``int8_trt`` / ``fp16_trt`` / ``fp32_trt``: the newest matching engine in ``engines_dir``.

    Raises:
        BackendUnavailableError: TensorRT or a GPU missing, or no engine built for this machine.
        EngineLoadError: the engine's sidecar names another GPU/TensorRT, or the file is corrupt.
    """
    machine = machine_info()
    if engine_path is None:
        pattern = f"{loaded.spec.name}_{mode.precision}*_sm{machine.compute_capability.replace('.', '')}_*.engine"
        found = sorted(Path(engines_dir or "engines").glob(pattern), key=lambda p: p.stat().st_mtime)
        if not found:
            raise BackendUnavailableError(
                f"{mode.name}: no {mode.precision} engine for {loaded.spec.name} in {engines_dir or 'engines'}; run "
                f"'aeb-app build-engine --model {loaded.spec.name} --precision {mode.precision}'")
        engine_path = found[-1]
    return TensorRTDetector(Path(engine_path), loaded.spec, mode=mode.name, precision=mode.precision,
                            machine=machine)


def build_engine(loaded, *, precision: str, profile: ec.Profile, engines_dir: str | Path = "engines",
                 int8_method: str = "qdq", coco_dir: str | Path | None = None, num_images: int = 200,
                 seed: int = 0, rebuild: bool = False, workspace_gib: float = 8.0) -> Path:
    """ONNX (exported, or Q/DQ for INT8) -> ``engines/<key>.engine`` + sidecar; reuses a valid one.

    Raises:
        BackendUnavailableError: no TensorRT / GPU. EngineError: parse or build failure.
        InputError: INT8 calibration images missing or unreadable.
    """
    from aeb_app.atomic import write_bytes, write_json
    from aeb_app.inference.onnx_export import export_onnx, file_sha256

    if precision not in ("fp32", "fp16", "int8"):
        raise EngineError(f"unknown precision {precision!r}; choose fp32, fp16 or int8")
    trt = import_trt()
    machine = machine_info()
    engines_dir = Path(engines_dir)
    onnx_path, calib_sha = export_onnx(loaded, engines_dir=engines_dir), None
    if precision == "int8" and int8_method == "qdq":
        onnx_path = _qdq_onnx(loaded, engines_dir, coco_dir, num_images, seed)
    onnx_sha = file_sha256(onnx_path)
    method = int8_method if precision == "int8" else None
    key = ec.engine_key(model=loaded.spec.name, precision=precision, profile=profile, source_sha256=onnx_sha,
                        machine=machine, int8_method=method)
    target = ec.engine_path(engines_dir, key)
    if not rebuild and not ec.needs_build(target, machine):
        log.info("reusing %s", target)
        return target
    builder = EngineBuilder(workspace_gib=workspace_gib)
    strongly_typed = method == "qdq" and int(trt.__version__.split(".")[0]) >= 11
    builder.create_network(onnx_path, strongly_typed=strongly_typed)
    calibrator = None
    if method == "calibrator":
        if int(trt.__version__.split(".")[0]) >= 11:
            raise EngineError("TensorRT 11 removed implicit INT8 calibrators: use --int8-method qdq")
        from aeb_app.inference.calibration_data import calibration_batch, normalized_batches

        images, calib_sha = calibration_batch(coco_dir or _need_coco(), loaded.spec, num_images=num_images,
                                              seed=seed, cache_dir=engines_dir / "calib")
        batch = max(d for d in range(1, 9) if num_images % d == 0)
        calibrator = make_calibrator(normalized_batches(images, loaded.spec, batch),
                                     engines_dir / "calib" / f"{key}.trtcache", batch)
    data = builder.create_engine(precision, profile, calibrator=calibrator)
    meta = ec.make_sidecar(model=loaded.spec.name, precision=precision, profile=profile, machine=machine,
                           onnx_sha256=onnx_sha, engine_sha256=__import__("hashlib").sha256(data).hexdigest(),
                           calibration_sha256=calib_sha, int8_method=method,
                           extra={"onnx": onnx_path.name, "strongly_typed": strongly_typed,
                                  "tf32": precision != "fp32"})
    write_bytes(target, data)
    write_json(ec.sidecar_path(target), meta)
    return target


def _need_coco():
    raise EngineError("INT8 needs calibration images: pass --coco-dir (COCO val2017)")


def _qdq_onnx(loaded, engines_dir: Path, coco_dir, num_images: int, seed: int) -> Path:
    from aeb_app.inference.quantize import QuantizeConfig, find_qdq_model, quantize_model

    if coco_dir is None:
        found = find_qdq_model(loaded, engines_dir)
        if found is None:
            _need_coco()
        return found
    return quantize_model(loaded, coco_dir, engines_dir=engines_dir,
                          config=QuantizeConfig(num_images=num_images, seed=seed))
