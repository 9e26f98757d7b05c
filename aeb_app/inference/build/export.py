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

Each ``.onnx`` is written atomically with a JSON sidecar (``<file>.json``: model name,
weights sha256, opset, torch version, file sha256); a cached file is reused only when its
sidecar matches the model being exported and the file's hash is intact.
"""

from __future__ import annotations

import hashlib
import logging
import time
from pathlib import Path
from typing import Any

from aeb_app.atomic import atomic_path, write_json
from aeb_app.errors import EngineError
from aeb_app.model.registry import DetectionNet, LoadedModel

log = logging.getLogger(__name__)

OPSET = 18
INPUT_NAME = "images"
OUTPUT_NAMES = ("boxes", "scores")
#: Upper bound of the dynamic batch axis recorded in the graph (TensorRT profiles pick their own).
MAX_EXPORT_BATCH = 1024


def file_sha256(path: str | Path) -> str:
    """Hex sha256 of a file, read in 1 MiB chunks."""
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def weights_sha256(loaded: LoadedModel) -> str:
    """Hex sha256 of the network's state dict (names, shapes and values, in order).

    Hashing the tensors rather than the weights file also identifies ``random`` weights and
    changes whenever the architecture code maps a file differently.
    """
    import torch

    digest = hashlib.sha256()
    for name, tensor in loaded.network.state_dict().items():
        t = tensor.detach().to("cpu", torch.float32).contiguous()
        digest.update(f"{name}:{tuple(t.shape)};".encode())
        digest.update(t.numpy().tobytes())
    return digest.hexdigest()


def onnx_path_for(loaded: LoadedModel, engines_dir: str | Path, *, weights_hash: str | None = None) -> Path:
    """Cache location ``engines/<model>-<weights hash[:12]>-opset<N>.onnx``."""
    weights_hash = weights_hash or weights_sha256(loaded)
    return Path(engines_dir) / f"{loaded.spec.name}-{weights_hash[:12]}-opset{OPSET}.onnx"


def sidecar_path(artifact: str | Path) -> Path:
    """JSON sidecar next to an artifact: ``<file>.json``."""
    artifact = Path(artifact)
    return artifact.with_name(artifact.name + ".json")


#: Largest sidecar read, bytes (real ones are under 2 KB).
MAX_SIDECAR_BYTES = 1 << 20


def read_sidecar(artifact: str | Path) -> dict[str, Any] | None:
    """The artifact's sidecar as a dict, or None when missing, unreadable or not a JSON object.

    A sidecar that exists but is unusable (not JSON, ``[]``, a string, oversized, or with a
    non-string key field) is logged once and treated as missing, so the artifact is rebuilt.
    """
    import json

    path = sidecar_path(artifact)
    try:
        if path.stat().st_size > MAX_SIDECAR_BYTES:
            raise ValueError(f"larger than {MAX_SIDECAR_BYTES} bytes")
        meta = json.loads(path.read_text(encoding="utf-8"))
    except (FileNotFoundError, NotADirectoryError):
        return None
    except (OSError, ValueError, RecursionError) as exc:
        log.warning("%s: unreadable sidecar (%s); ignoring it", path, " ".join(str(exc).split())[:120])
        return None
    if not isinstance(meta, dict):
        log.warning("%s: sidecar is a JSON %s, not an object; ignoring it", path, type(meta).__name__)
        return None
    bad = [k for k, kind in _SIDECAR_TYPES.items() if k in meta and not isinstance(meta[k], kind)]
    if bad:
        log.warning("%s: sidecar field(s) %s have the wrong type; ignoring it", path, ", ".join(bad))
        return None
    return meta


#: Types of the sidecar fields that readers use, when present (ONNX, Q/DQ and compiled-package sidecars).
_SIDECAR_TYPES: dict[str, type] = {
    "kind": str, "model": str, "weights_sha256": str, "torch_version": str, "sha256": str,
    "source_onnx_sha256": str, "quantizer": str, "calibration": dict,
}


def _expected_sidecar(loaded: LoadedModel, weights_hash: str) -> dict[str, Any]:
    import torch

    return {
        "kind": "onnx",
        "model": loaded.spec.name,
        "weights_sha256": weights_hash,
        "weights_source": loaded.weights,
        "opset": OPSET,
        "torch_version": torch.__version__,
        "input": INPUT_NAME,
        "outputs": list(OUTPUT_NAMES),
        "input_shape": ["batch", 3, *loaded.spec.input_hw],
        **usage_metadata(loaded.spec),
    }


#: Sidecar keys that tell another tool how to feed the graph and read its outputs (added 2026-11;
#: older sidecars lack them and stay valid: they are not part of the cache-validity check).
USAGE_KEYS = ("input_format", "preprocessing", "output_format", "class_names")


def usage_metadata(spec) -> dict[str, Any]:
    """What a tool other than aeb_app needs to use the exported graph.

    Args:
        spec: the model's :class:`~aeb_app.model.spec.ModelSpec`.

    Returns:
        JSON-ready dict: input layout/colour order/size, the normalisation ``(x - mean) / std`` on
        0..255 RGB values, output box format, and the class name of every score channel.
    """
    from aeb_app.model.coco import COCO_NAMES

    h, w = spec.input_hw
    return {
        "input_format": {"name": INPUT_NAME, "layout": "NCHW", "dtype": "float32", "color_order": "RGB",
                         "height": int(h), "width": int(w), "batch": "dynamic"},
        "preprocessing": {
            "resize": spec.resize, "resize_to_hw": [int(h), int(w)], "keep_aspect_ratio": False,
            "pixel_range": [0, 255], "formula": "(x - mean) / std", "mean_rgb": [float(v) for v in spec.mean_rgb],
            "std_rgb": [float(v) for v in spec.std_rgb],
        },
        "output_format": {
            OUTPUT_NAMES[0]: {
                "shape": ["batch", spec.num_anchors, 4], "format": "xyxy", "decoded": True,
                "coordinates": "normalised to [0, 1] of the network input (multiply by the original "
                               "image's width/height)",
                "per": "anchor (one box per anchor, shared by every class)",
            },
            OUTPUT_NAMES[1]: {
                "shape": ["batch", spec.num_anchors, spec.num_channels],
                "values": f"probabilities ({spec.score_fn} applied in the graph)",
                "background_channels": [i for i, c in enumerate(spec.class_ids) if c == 0],
            },
            "nms": "not in the graph: per-class NMS (aeb_app uses IoU 0.5) and a score threshold are up to you",
        },
        "class_names": [COCO_NAMES.get(c, "background" if c == 0 else f"id{c}") for c in spec.class_ids],
        "class_ids": [int(c) for c in spec.class_ids],
    }


def cached_onnx_valid(path: Path, expected: dict[str, Any]) -> bool:
    """True when ``path`` exists, its sidecar matches ``expected`` and its hash is intact."""
    meta = read_sidecar(path)
    if meta is None or not path.is_file():
        return False
    keys = ("model", "weights_sha256", "opset", "torch_version")
    if any(meta.get(k) != expected[k] for k in keys):
        log.info("%s: sidecar does not match (%s); re-exporting", path.name,
                 {k: meta.get(k) for k in keys if meta.get(k) != expected[k]})
        return False
    if meta.get("sha256") != file_sha256(path):
        log.warning("%s: file hash differs from its sidecar (corrupt or edited); re-exporting", path.name)
        return False
    return True


def _export_to(net: DetectionNet, target: Path, input_hw: tuple[int, int]) -> None:
    """Run the dynamo exporter into ``target`` (one self-contained file, no external data)."""
    import torch

    example = torch.zeros(2, 3, *input_hw)
    batch = torch.export.Dim("batch", min=1, max=MAX_EXPORT_BATCH)
    torch.onnx.export(
        net, (example,), str(target), input_names=[INPUT_NAME], output_names=list(OUTPUT_NAMES),
        opset_version=OPSET, dynamo=True, dynamic_shapes=({0: batch},), external_data=False,
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
        engines_dir: cache folder; the default file name is :func:`onnx_path_for`.
        out: explicit output file instead of the cache name (a sidecar is written beside it).
        force: export even when a valid cached file exists.
        weights_hash: :func:`weights_sha256` of ``loaded`` when the caller already has it
            (hashing a ResNet-50's weights costs a noticeable fraction of a second).

    Returns:
        Path of the checked ``.onnx`` file.

    Raises:
        EngineError: the export or the ONNX check failed (nothing is left at the target).
    """
    weights_hash = weights_hash or weights_sha256(loaded)
    path = Path(out) if out is not None else onnx_path_for(loaded, engines_dir, weights_hash=weights_hash)
    expected = _expected_sidecar(loaded, weights_hash)
    if not force and cached_onnx_valid(path, expected):
        log.info("reusing %s", path)
        meta = read_sidecar(path) or {}
        if any(k not in meta for k in USAGE_KEYS):  # an older sidecar: add the usage fields, keep the rest
            write_json(sidecar_path(path), {**meta, **usage_metadata(loaded.spec)})
        return path
    net = DetectionNet(loaded.network, loaded.spec).eval()
    t0 = time.perf_counter()
    with atomic_path(path) as tmp:
        try:
            _export_to(net, tmp, loaded.spec.input_hw)
        except Exception as exc:
            raise EngineError(f"{loaded.spec.name}: ONNX export failed ({type(exc).__name__}: {exc})") from exc
        check_onnx(tmp)
        sha = file_sha256(tmp)
    write_json(sidecar_path(path), {**expected, "sha256": sha, "created": time.strftime("%Y-%m-%dT%H:%M:%S%z")})
    log.info("exported %s in %.1f s", path, time.perf_counter() - t0)
    return path
