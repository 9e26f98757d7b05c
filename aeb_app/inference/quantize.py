"""INT8 explicit quantisation: a Q/DQ ONNX made by ``onnxruntime.quantization.quantize_static``.

This is the path TensorRT 10.1+ recommends and TensorRT 11 requires (strongly typed
networks; INT8 comes from ``QuantizeLinear``/``DequantizeLinear`` pairs in the ONNX). The
same file runs on ONNX Runtime's CPU provider, so INT8 accuracy is measured without a GPU.

Choices, and why:

* **QDQ format, int8 activations and weights, both symmetric (zero point 0).** TensorRT only
  accepts symmetric int8 Q/DQ; ``ActivationSymmetric=True`` makes ONNX Runtime's scales
  match (uint8/asymmetric activations would be rejected by TensorRT's parser).
* **Per-channel weights** (axis 0 of each Conv weight), as TensorRT does for its own INT8.
* **Entropy calibration** (the same KL-divergence method as TensorRT's
  ``IInt8EntropyCalibrator2``) by default; ``minmax`` and ``percentile`` are the knobs.
* **The decode head stays float.** Every node after the last convolutions (reshapes, concat,
  ``Exp`` of the box sizes, ``Sigmoid``/``Softmax`` of the scores) is in ``nodes_to_exclude``:
  quantising ``exp``'s input or the probabilities costs accuracy and saves nothing.
* Calibration ranges are cached by ONNX Runtime's ``calibration_cache_path`` (JSON in
  ``engines/calib/``), keyed by the source ONNX hash, image selection and method.
"""

from __future__ import annotations

import json
import logging
import shutil
import tempfile
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from aeb_app.atomic import atomic_path, write_json
from aeb_app.errors import EngineError
from aeb_app.inference.calibration_data import DEFAULT_NUM_IMAGES, DEFAULT_SEED, calibration_batch, ort_reader
from aeb_app.inference.onnx_export import OPSET, export_onnx, file_sha256, read_sidecar, sidecar_path
from aeb_app.model.registry import LoadedModel

log = logging.getLogger(__name__)

METHODS = ("entropy", "minmax", "percentile")


@dataclass(frozen=True)
class QuantizeConfig:
    """Knobs of the static quantisation.

    Attributes:
        num_images / seed: calibration sample (seeded random draw from the COCO folder).
        method: ``entropy`` (default, as TensorRT's calibrator), ``minmax`` or ``percentile``.
        exclude_first_conv: keep the first convolution (raw image input) in float.
        exclude_nodes: further node names to keep in float.
        batch_size: calibration batch size.
    """

    num_images: int = DEFAULT_NUM_IMAGES
    seed: int = DEFAULT_SEED
    method: str = "entropy"
    exclude_first_conv: bool = False
    exclude_nodes: tuple[str, ...] = field(default_factory=tuple)
    batch_size: int = 8

    def __post_init__(self) -> None:
        if self.method not in METHODS:
            raise ValueError(f"unknown calibration method {self.method!r}; choose one of {', '.join(METHODS)}")
        if self.num_images < 1 or self.batch_size < 1:
            raise ValueError(f"num_images and batch_size must be >= 1, got {self.num_images} and {self.batch_size}")

    @property
    def tag(self) -> str:
        """Short name used in file names, e.g. ``entropy-n200-s0``."""
        extra = "-xfirst" if self.exclude_first_conv else ""
        return f"{self.method}-n{self.num_images}-s{self.seed}{extra}"


def decode_head_nodes(model) -> list[str]:
    """Names of the nodes after the network's last convolutions (the decode head).

    A node belongs to the head when no ``Conv`` depends on its output and it is not a ``Conv``
    itself: the per-level reshapes/concats of the predictions and the box/score decoding.
    """
    producers = {out: node for node in model.graph.node for out in node.output}
    feeds_conv: set[str] = set()
    stack = [n for n in model.graph.node if n.op_type == "Conv"]
    while stack:
        node = stack.pop()
        for name in node.input:
            parent = producers.get(name)
            if parent is not None and parent.name not in feeds_conv:
                feeds_conv.add(parent.name)
                stack.append(parent)
    return [n.name for n in model.graph.node if n.op_type != "Conv" and n.name not in feeds_conv]


def first_conv_node(model) -> str:
    """Name of the first ``Conv`` in topological order."""
    for node in model.graph.node:
        if node.op_type == "Conv":
            return node.name
    raise EngineError("model has no Conv node")


def qdq_path_for(fp32_onnx: Path, config: QuantizeConfig) -> Path:
    """``<fp32 name>.int8-qdq-<tag>.onnx`` beside the FP32 model."""
    return fp32_onnx.with_name(f"{fp32_onnx.stem}.int8-qdq-{config.tag}.onnx")


def qdq_model_intact(path: Path) -> bool:
    """True when ``path`` has a Q/DQ sidecar whose sha256 matches the file (not truncated or edited)."""
    meta = read_sidecar(path)
    if not isinstance(meta, dict) or meta.get("kind") != "onnx-int8-qdq" or not path.is_file():
        return False
    if meta.get("sha256") != file_sha256(path):
        log.warning("%s: file hash differs from its sidecar (corrupt or edited); ignoring it", path)
        return False
    return True


def find_qdq_model(loaded: LoadedModel, engines_dir: str | Path, *, weights_hash: str | None = None) -> Path | None:
    """The newest intact Q/DQ model for ``loaded`` in ``engines_dir``, or None."""
    from aeb_app.inference.onnx_export import onnx_path_for

    stem = onnx_path_for(loaded, engines_dir, weights_hash=weights_hash).stem
    found = sorted(Path(engines_dir).glob(f"{stem}.int8-qdq-*.onnx"), key=lambda p: p.stat().st_mtime, reverse=True)
    return next((p for p in found if qdq_model_intact(p)), None)


def _ort_options(config: QuantizeConfig) -> dict[str, Any]:
    from onnxruntime.quantization import CalibrationMethod

    methods = {"entropy": CalibrationMethod.Entropy, "minmax": CalibrationMethod.MinMax,
               "percentile": CalibrationMethod.Percentile}
    extra = {"ActivationSymmetric": True, "WeightSymmetric": True}
    if config.method == "percentile":
        extra["CalibPercentile"] = 99.999
    return {"calibrate_method": methods[config.method], "extra_options": extra}


def quantize_onnx(fp32_onnx: Path, reader, *, out: Path, config: QuantizeConfig,
                  calib_cache: Path | None = None) -> list[str]:
    """Write the Q/DQ model of ``fp32_onnx`` to ``out`` (atomically); returns the float nodes.

    Raises:
        EngineError: the source cannot be read or quantisation fails.
    """
    import onnx
    from onnxruntime.quantization import QuantFormat, QuantType, quantize_static

    try:
        model = onnx.load(str(fp32_onnx))
    except Exception as exc:
        raise EngineError(f"{fp32_onnx}: cannot read ONNX model ({exc})") from exc
    excluded = decode_head_nodes(model) + list(config.exclude_nodes)
    if config.exclude_first_conv:
        excluded.append(first_conv_node(model))
    with tempfile.TemporaryDirectory(prefix="aeb-quant-") as tmp_dir, atomic_path(out) as tmp:
        tmp_cache = None
        if calib_cache is not None:
            # ONNX Runtime writes a new cache in place; let it write a temp file we move atomically.
            tmp_cache = calib_cache if calib_cache.is_file() else Path(tmp_dir) / "calib.json"
        try:
            quantize_static(
                str(fp32_onnx), str(tmp), reader, quant_format=QuantFormat.QDQ, per_channel=True,
                activation_type=QuantType.QInt8, weight_type=QuantType.QInt8, nodes_to_exclude=excluded,
                calibration_cache_path=None if tmp_cache is None else str(tmp_cache), **_ort_options(config),
            )
        except Exception as exc:
            raise EngineError(f"{fp32_onnx}: INT8 quantisation failed ({type(exc).__name__}: {exc})") from exc
        if calib_cache is not None and tmp_cache != calib_cache and tmp_cache.is_file():
            with atomic_path(calib_cache) as tmp_final:
                shutil.copyfile(tmp_cache, tmp_final)
    return excluded


def quantize_model(
    loaded: LoadedModel,
    coco_dir: str | Path,
    *,
    engines_dir: str | Path = "engines",
    config: QuantizeConfig = QuantizeConfig(),
    out: str | Path | None = None,
    force: bool = False,
) -> Path:
    """FP32 ONNX (exported or cached) -> INT8 Q/DQ ONNX in ``engines_dir``, with a sidecar.

    Args:
        loaded: model from :func:`~aeb_app.model.registry.load_model`.
        coco_dir: COCO val2017 root or image folder for calibration.
        engines_dir: cache folder (ONNX, Q/DQ ONNX, ``calib/`` caches).
        config: calibration and exclusion knobs.
        out: explicit output path instead of :func:`qdq_path_for`.
        force: quantise again even when an intact model from the same source, images,
            knobs and quantizer version is already at the output path.

    Returns:
        Path of the Q/DQ model.

    Raises:
        InputError: too few or unreadable calibration images (named).
        EngineError: export or quantisation failed; nothing half-written is left.
    """
    engines_dir = Path(engines_dir)
    fp32 = export_onnx(loaded, engines_dir=engines_dir)
    fp32_sha = file_sha256(fp32)
    batch, selection = calibration_batch(coco_dir, loaded.spec, num_images=config.num_images,
                                         seed=config.seed, cache_dir=engines_dir / "calib")
    calib_cache = engines_dir / "calib" / f"{loaded.spec.name}-{fp32_sha[:12]}-{config.tag}-{selection[:12]}.json"
    out_path = Path(out) if out is not None else qdq_path_for(fp32, config)
    expected = {"source_onnx_sha256": fp32_sha, "images_sha256": selection,
                "config": json.loads(json.dumps(asdict(config))), "quantizer": _quantizer_version()}
    if not force and _reusable(out_path, expected):
        log.info("reusing %s", out_path)
        return out_path
    t0 = time.perf_counter()
    # ONNX Runtime's histogram collector stacks per-batch outputs: every batch must have one size.
    batch_size = max(d for d in range(1, config.batch_size + 1) if config.num_images % d == 0)
    excluded = quantize_onnx(fp32, ort_reader(batch, loaded.spec, batch_size=batch_size),
                             out=out_path, config=config, calib_cache=calib_cache)
    write_json(sidecar_path(out_path), {
        "kind": "onnx-int8-qdq", "model": loaded.spec.name, "opset": OPSET,
        "source_onnx": fp32.name, "source_onnx_sha256": fp32_sha, "sha256": file_sha256(out_path),
        "calibration": {**expected["config"], "images_sha256": selection, "coco_dir": str(coco_dir),
                        "cache": calib_cache.name},
        "quantizer": expected["quantizer"], "activations": "int8 symmetric (zero point 0)",
        "weights": "int8 symmetric per-channel", "float_nodes": excluded,
        "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
    })
    log.info("wrote %s in %.1f s (%d nodes kept in float)", out_path, time.perf_counter() - t0, len(excluded))
    return out_path


def _reusable(path: Path, expected: dict[str, Any]) -> bool:
    """True when ``path`` is intact and its sidecar records the same source, images, knobs and quantizer."""
    if not qdq_model_intact(path):
        return False
    meta = read_sidecar(path)
    calib = meta.get("calibration") or {}
    return (meta.get("source_onnx_sha256") == expected["source_onnx_sha256"]
            and calib.get("images_sha256") == expected["images_sha256"]
            and {k: calib.get(k) for k in expected["config"]} == expected["config"]
            and meta.get("quantizer") == expected["quantizer"])


def _quantizer_version() -> str:
    import onnxruntime

    return f"onnxruntime {onnxruntime.__version__}"
