"""TensorRT 10 engine runtime (thin; ``tensorrt`` is imported lazily). The builder is
:mod:`aeb_app.inference.build.trt_build`.

Written against the TensorRT 10 Python API documentation; it has not run against a real
TensorRT here (not installable on these machines; see docs/nvidia-setup.md), so no TensorRT
speed or accuracy figure exists for it. Shaped like TensorRT's
``samples/python/efficientdet/build_engine.py``: :class:`EngineBuilder` (``create_network``
from ONNX, ``create_engine(precision, ...)``), an entropy calibrator that reads and writes its
cache, and :func:`build_engine` writing ``engine + sidecar`` atomically.

INT8 has two paths behind one command:

* ``qdq`` (default; TensorRT 10.1+ recommends it, 11 requires it): parse the Q/DQ ONNX from
  :mod:`aeb_app.inference.build.quantize` into a *strongly typed* network (TensorRT 10 and 11: no
  precision flags; the ONNX's Q/DQ and float types decide each layer's precision, as the
  explicit-quantization docs ask since 10.12 deprecated weakly typed Q/DQ builds). The file is
  checked by :mod:`aeb_app.inference.build.trt_compat` first, so a node the parser would reject is
  named before TensorRT runs.
* ``calibrator`` (legacy, TensorRT 10 only): FP32 ONNX + ``IInt8EntropyCalibrator2``
  (:mod:`aeb_app.inference.build.trt_calibrator`) fed with the same calibration images. TensorRT
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

import logging
from pathlib import Path

import numpy as np

from aeb_app.errors import BackendUnavailableError, EngineError, EngineLoadError
from aeb_app.inference import artifacts as ac
from aeb_app.inference.base import Detector, DetectorInfo
from aeb_app.inference.trt_api import INPUT_NAME, INSTALL_HINT, OUTPUT_NAMES, import_trt, machine_info, trt_major

__all__ = ["INSTALL_HINT", "TensorRTDetector", "create", "import_trt", "machine_info", "trt_major"]

log = logging.getLogger(__name__)

_TORCH_DTYPES = {"FLOAT": "float32", "HALF": "float16"}


class TensorRTDetector(Detector):
    """Runs a serialized engine on its own CUDA stream; inputs/outputs are torch CUDA tensors."""

    def __init__(self, engine_path: Path, spec, *, mode: str, precision: str, machine: ac.MachineInfo) -> None:
        data, side = ac.load_checked(engine_path, machine)
        super().__init__(spec, DetectorInfo(mode, "tensorrt", precision, "cuda", spec.name,
                                            max_batch=side.batch.max_batch,
                                            notes={"engine": str(engine_path), "sidecar": side}))
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


def find_engine(engines_dir: Path, model: str, precision: str, machine: ac.MachineInfo) -> Path | None:
    """Newest engine file for ``model``/``precision`` built for this GPU (name and SM) and runtime version, or None."""
    sm = machine.compute_capability.replace(".", "")
    pattern = f"{model}_{precision}*_sm{sm}_*{machine.runtime_version}_{ac.gpu_slug(machine.gpu_name)}_*.engine"
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
