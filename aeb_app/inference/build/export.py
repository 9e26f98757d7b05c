"""ONNX export of a detector (network + in-graph box decoding), cached in ``engines/``.

The exported graph is :class:`~aeb_app.model.registry.DetectionNet`: input ``images``
(float32 NCHW, already normalised, dynamic batch, static 300x300), outputs ``boxes``
(N, A, 4) normalised xyxy and ``scores`` (N, A, C) probabilities. Decoding lives in the
graph, so ONNX Runtime and TensorRT return exactly what PyTorch returns and share
:func:`~aeb_app.model.postprocess.postprocess` (NMS) with it.

We use the dynamo exporter (``torch.onnx.export(..., dynamo=True)``) at opset 18: it keeps
every dimension but the batch static (MobileNet's TF-SAME padding is a symmetric ``Conv`` pad
plus a static ``Slice``), a clean graph for TensorRT's parser. (The legacy TorchScript exporter leaves
``Pad``/``Shape``/``ConstantOfShape`` chains and a symbolic anchor dimension.)

Each ``.onnx`` is written atomically with its :class:`~aeb_app.inference.artifacts.Sidecar`
(model, weights sha256, opset, torch version, file sha256, and the input/output description another
tool needs); a cached file is reused only when :func:`~aeb_app.inference.artifacts.find_onnx` accepts it.
"""

from __future__ import annotations

import logging
import time
from pathlib import Path

from aeb_app.atomic import atomic_path
from aeb_app.errors import EngineError
from aeb_app.inference import artifacts as ac
from aeb_app.model.registry import DetectionNet, LoadedModel

log = logging.getLogger(__name__)


def onnx_sidecar(loaded: LoadedModel, weights_hash: str, sha256: str) -> ac.Sidecar:
    """The sidecar of an exported FP32 graph (what :func:`~aeb_app.inference.artifacts.find_onnx` checks)."""
    import onnx
    import torch

    return ac.Sidecar(
        kind=ac.ONNX, model=loaded.spec.name, weights_sha256=weights_hash, precision="fp32",
        batch=ac.Profile(1, 1, ac.MAX_EXPORT_BATCH), sha256=sha256, builder="torch.onnx.export (dynamo)",
        versions={"torch": torch.__version__, "onnx": onnx.__version__}, usage=ac.usage_for(loaded.spec),
        details={"opset": ac.OPSET, "weights_source": loaded.weights, "input": ac.INPUT_NAME,
                 "outputs": list(ac.OUTPUT_NAMES), "input_shape": ["batch", 3, *loaded.spec.input_hw]},
    )


def _export_to(net: DetectionNet, target: Path, input_hw: tuple[int, int]) -> None:
    """Run the dynamo exporter into ``target`` (one self-contained file, no external data)."""
    import torch

    example = torch.zeros(2, 3, *input_hw)
    batch = torch.export.Dim("batch", min=1, max=ac.MAX_EXPORT_BATCH)
    torch.onnx.export(
        net, (example,), str(target), input_names=[ac.INPUT_NAME], output_names=list(ac.OUTPUT_NAMES),
        opset_version=ac.OPSET, dynamo=True, dynamic_shapes=({0: batch},), external_data=False,
        verbose=False,
    )


def check_onnx(path: str | Path) -> None:
    """``onnx.checker`` (full check, with shape inference) on a file.

    Raises:
        EngineError: the file cannot be read or is not a valid ONNX model (message names it).
    """
    import onnx

    try:
        onnx.checker.check_model(str(path), full_check=True)
    except Exception as exc:  # onnx raises ValidationError, DecodeError, OSError ...
        raise EngineError(f"{path}: not a valid ONNX model ({type(exc).__name__}: {exc})") from exc


def export_onnx(
    loaded: LoadedModel,
    *,
    engines_dir: str | Path = "engines",
    out: str | Path | None = None,
    force: bool = False,
    weights_hash: str | None = None,
) -> Path:
    """Export ``loaded`` (network + decode head) to ONNX, or reuse the valid cached file.

    Args:
        loaded: model from :func:`~aeb_app.model.registry.load_model`.
        engines_dir: cache folder; the default file name is :func:`~aeb_app.inference.artifacts.onnx_path_for`.
        out: explicit output file instead of the cache name (a sidecar is written beside it).
        force: export even when a valid cached file exists.
        weights_hash: :func:`~aeb_app.inference.artifacts.weights_sha256` of ``loaded`` when the caller already has it
            (hashing a ResNet-50's weights costs a noticeable fraction of a second).

    Returns:
        Path of the checked ``.onnx`` file.

    Raises:
        EngineError: the export or the ONNX check failed (nothing is left at the target).
    """
    weights_hash = weights_hash or ac.weights_sha256(loaded)
    path = Path(out) if out is not None else ac.onnx_path_for(loaded, engines_dir, weights_hash=weights_hash)
    if not force and ac.onnx_current(path, loaded, weights_hash=weights_hash):
        log.info("reusing %s", path)
        return path
    net = DetectionNet(loaded.network, loaded.spec).eval()
    t0 = time.perf_counter()
    with atomic_path(path) as tmp:
        try:
            _export_to(net, tmp, loaded.spec.input_hw)
        except Exception as exc:
            raise EngineError(f"{loaded.spec.name}: ONNX export failed ({type(exc).__name__}: {exc})") from exc
        check_onnx(tmp)
        sha = ac.file_sha256(tmp)
    ac.write_sidecar(path, onnx_sidecar(loaded, weights_hash, sha))
    log.info("exported %s in %.1f s", path, time.perf_counter() - t0)
    return path
