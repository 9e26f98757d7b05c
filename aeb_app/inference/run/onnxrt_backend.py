"""ONNX Runtime backend: ``fp32_ort`` (the exported graph) and ``int8_ort`` (its Q/DQ twin).

As small as Polygraphy's ``backend/onnxrt/runner.py``: :meth:`activate` opens an
``InferenceSession``, :meth:`run_decoded` normalises on the host (ONNX Runtime takes host
arrays), runs, and returns torch tensors (moved to CUDA when the session runs there, so NMS
stays on the GPU). ``onnxruntime`` is imported lazily.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Sequence

import numpy as np
import numpy.typing as npt

from aeb_app.errors import BackendUnavailableError, EngineLoadError
from aeb_app.inference.base import Detector, DetectorInfo
from aeb_app.model.preprocess import normalize_numpy
from aeb_app.model.registry import LoadedModel
from aeb_app.model.spec import ModelSpec

log = logging.getLogger(__name__)


def _import_ort():
    try:
        import onnxruntime
    except ImportError as exc:
        raise BackendUnavailableError(
            f"ONNX Runtime is not installed ({exc}): pip install onnxruntime (or onnxruntime-gpu)"
        ) from exc
    return onnxruntime


def pick_providers(device: str | None) -> list[str]:
    """Execution providers for ``device``: CUDA first when asked for and present, CPU always last.

    Raises:
        BackendUnavailableError: a CUDA device was requested but the CUDA provider is missing.
    """
    ort = _import_ort()
    available = ort.get_available_providers()
    if device is not None and device.startswith("cuda"):
        if "CUDAExecutionProvider" not in available:
            raise BackendUnavailableError(
                f"ONNX Runtime on {device}: CUDAExecutionProvider missing (have {', '.join(available)}); "
                "pip install onnxruntime-gpu"
            )
        return ["CUDAExecutionProvider", "CPUExecutionProvider"]
    if device is None and "CUDAExecutionProvider" in available:
        return ["CUDAExecutionProvider", "CPUExecutionProvider"]
    return ["CPUExecutionProvider"]


class OnnxRuntimeDetector(Detector):
    """Runs an exported (or Q/DQ-quantised) detector ONNX with ONNX Runtime.

    Args:
        onnx_path: the ``.onnx`` file (input ``images``, outputs ``boxes``, ``scores``).
        spec: the model's spec (normalisation, class ids).
        mode: mode name for :class:`DetectorInfo` (``fp32_ort`` / ``int8_ort``).
        precision: ``fp32`` or ``int8``.
        providers: ONNX Runtime execution providers, in priority order.
        intra_op_threads: CPU threads (0: ONNX Runtime's default).
    """

    def __init__(self, onnx_path: str | Path, spec: ModelSpec, *, mode: str, precision: str,
                 providers: Sequence[str] = ("CPUExecutionProvider",), intra_op_threads: int = 0) -> None:
        device = "cuda" if providers and providers[0] == "CUDAExecutionProvider" else "cpu"
        super().__init__(spec, DetectorInfo(mode, "onnxruntime", precision, device, spec.name,
                                            notes={"onnx": str(onnx_path), "providers": list(providers)}))
        self.onnx_path = Path(onnx_path)
        self.providers = list(providers)
        self.intra_op_threads = intra_op_threads
        self.session = None

    def activate(self) -> None:
        ort = _import_ort()
        if not self.onnx_path.is_file():
            raise EngineLoadError(f"{self.onnx_path}: ONNX file not found")
        options = ort.SessionOptions()
        options.intra_op_num_threads = self.intra_op_threads
        options.log_severity_level = 3
        try:
            self.session = ort.InferenceSession(str(self.onnx_path), options, providers=self.providers)
        except Exception as exc:  # ORT raises its own Fail/InvalidGraph/... types
            raise EngineLoadError(f"{self.onnx_path}: ONNX Runtime cannot load it ({exc})") from exc
        self.info.notes["providers"] = self.session.get_providers()

    def deactivate(self) -> None:
        self.session = None

    def forward_normalized(self, x: npt.NDArray[np.float32]):
        """Decoded torch tensors for an already normalised float32 NCHW host array (benchmarks)."""
        import torch

        boxes, scores = self.session.run(["boxes", "scores"], {"images": x})
        out = torch.from_numpy(boxes), torch.from_numpy(scores)
        if self.info.device == "cuda":
            out = tuple(t.to("cuda", non_blocking=True) for t in out)
        return out

    def run_decoded(self, batch_nhwc_u8: npt.NDArray[np.uint8]):
        return self.forward_normalized(normalize_numpy(batch_nhwc_u8, self.spec))


def create(loaded: LoadedModel, mode, *, device: str | None = None, engines_dir: str | Path | None = None,
           onnx_path: str | Path | None = None, export_if_missing: bool = True,
           intra_op_threads: int = 0, **options) -> OnnxRuntimeDetector:
    """Factory for ``fp32_ort`` and ``int8_ort`` (see :mod:`aeb_app.inference.registry`).

    ``fp32_ort`` has the ONNX exported into ``engines_dir`` on first use (about 15 s on a CPU; through
    :func:`aeb_app.inference.registry.build_artifact`, the run side's one door to the build side) unless
    ``export_if_missing`` is False; ``int8_ort`` needs the Q/DQ model that ``aeb-app quantize``
    writes (calibration needs COCO images, so it is never made implicitly).

    Raises:
        BackendUnavailableError: ONNX Runtime missing, CUDA provider missing, or no cached model.
    """
    if options:
        raise BackendUnavailableError(f"{mode.name}: unknown options {sorted(options)}")
    providers = pick_providers(device)
    engines_dir = Path(engines_dir or "engines")
    if onnx_path is None:
        onnx_path = _find_model(loaded, mode.precision, engines_dir, export_if_missing)
    return OnnxRuntimeDetector(onnx_path, loaded.spec, mode=mode.name, precision=mode.precision,
                               providers=providers, intra_op_threads=intra_op_threads)


def _find_model(loaded: LoadedModel, precision: str, engines_dir: Path, export_if_missing: bool) -> Path:
    from aeb_app.inference import artifacts as ac

    if precision not in ("fp32", "int8"):
        raise BackendUnavailableError(f"ONNX Runtime backend has no precision {precision!r}")
    weights_hash = ac.weights_sha256(loaded)  # once: the cache look-up and a build both need it
    if precision == "fp32":
        found = ac.find_onnx(loaded, engines_dir, weights_hash=weights_hash)
        if found is not None:
            return found
        if export_if_missing:
            from aeb_app.inference.registry import build_artifact

            return build_artifact(ac.ONNX, loaded, engines_dir=engines_dir, weights_hash=weights_hash)
        path = ac.onnx_path_for(loaded, engines_dir, weights_hash=weights_hash)
        raise BackendUnavailableError(f"fp32_ort: {path} missing; run 'aeb-app export-onnx --model {loaded.spec.name}'")
    path = ac.find_qdq_model(loaded, engines_dir, weights_hash=weights_hash)
    if path is None:
        raise BackendUnavailableError(
            f"int8_ort: no INT8 Q/DQ model for {loaded.spec.name} in {engines_dir}; run "
            f"'aeb-app quantize --model {loaded.spec.name} --coco-dir DIR'"
        )
    return path
