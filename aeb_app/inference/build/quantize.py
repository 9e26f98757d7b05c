"""INT8 explicit quantisation: a TensorRT-style Q/DQ ONNX made with ONNX Runtime's quantiser.

This is the path TensorRT 10.1+ recommends and TensorRT 11 requires (strongly typed
networks; INT8 comes from ``QuantizeLinear``/``DequantizeLinear`` pairs in the ONNX). The
same file runs on ONNX Runtime's CPU provider, so INT8 accuracy is measured without a GPU.

Choices, and why (TensorRT's explicit-quantization guide and onnx-tensorrt's parser):

* **Q/DQ on the inputs of weighted ops only** (``Conv``; the activation input and the
  weights), none on their outputs, and on the residual input of each residual ``Add``
  (:mod:`aeb_app.inference.build.qdq_placement`). Extra pairs on conv/ReLU outputs would block
  TensorRT's Conv+activation and Conv+Add fusions and add requantise kernels.
* **No bias quantisation** (``QuantizeBias=False``): TensorRT's ONNX parser accepts
  ``DequantizeLinear`` inputs of INT8/FP8/INT4/FP4 only; ONNX Runtime's default INT32 bias
  initialisers make every Conv unparsable. TensorRT quantises biases itself.
* **Symmetric INT8** activations and weights (zero point 0, TensorRT requires it),
  **per-channel weights on axis 0** (output channels).
* **Entropy calibration** by default (the KL-divergence method of TensorRT's
  ``IInt8EntropyCalibrator2``); ``minmax`` and ``percentile`` are the knobs.
* **The decode head stays float** (reshapes, concat, ``Exp``, ``Sigmoid``/``Softmax``).

Activation ranges are computed once by :func:`activation_ranges` (public: the GPU INT8 mode
reuses them) and cached in ``engines/calib/`` under a :class:`CalibrationKey` (source ONNX
hash, image names and contents, method, seed, count, batch, ONNX Runtime version); the
cache's sidecar holds its sha256, so an edited ranges file is refused.
"""

from __future__ import annotations

import json
import logging
import tempfile
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from aeb_app.atomic import atomic_path
from aeb_app.errors import CalibrationError, EngineError
from aeb_app.inference import artifacts as ac
from aeb_app.inference.build.calibration_cache import CalibrationKey, read_cache, write_cache
from aeb_app.inference.build.calibration import (DEFAULT_NUM_IMAGES, DEFAULT_SEED, calibration_batch,
                                                images_sha256, ort_reader, select_images)
from aeb_app.inference.build.export import export_onnx
from aeb_app.inference.build.qdq_placement import keep_residual_qdq_only
from aeb_app.model.registry import LoadedModel
from aeb_app.names import CALIBRATION_METHODS

log = logging.getLogger(__name__)

METHODS = CALIBRATION_METHODS
#: Weighted ops and residual Adds get Q/DQ on their inputs; nothing else is quantised.
QDQ_OP_TYPES = ("Conv", "Add")
INT8_MAX = 127.0


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

    @property
    def even_batch(self) -> int:
        """Largest batch <= ``batch_size`` dividing ``num_images`` (ONNX Runtime's histogram collector
        stacks per-batch outputs, so every batch must have one size)."""
        return max(d for d in range(1, self.batch_size + 1) if self.num_images % d == 0)


@dataclass(frozen=True)
class ActivationRanges:
    """Per-tensor activation ranges from calibration (float32 values of the FP32 ONNX's tensors).

    Attributes:
        key: what the ranges were computed from (model, source ONNX, images, method ...).
        ranges: tensor name -> (lowest, highest) calibrated value.
    """

    key: CalibrationKey
    ranges: dict[str, tuple[float, float]]

    def amax(self, tensor: str) -> float:
        """Symmetric range max(|lowest|, |highest|) of ``tensor``."""
        lo, hi = self.ranges[tensor]
        return max(abs(lo), abs(hi))

    def scale(self, tensor: str) -> float:
        """Symmetric INT8 scale of ``tensor``: amax / 127 (zero point 0), as TensorRT uses."""
        return self.amax(tensor) / INT8_MAX

    def to_bytes(self) -> bytes:
        return json.dumps({"ranges": {k: list(v) for k, v in sorted(self.ranges.items())}}).encode()

    @classmethod
    def from_bytes(cls, key: CalibrationKey, data: bytes) -> ActivationRanges:
        try:
            raw = json.loads(data)["ranges"]
            return cls(key, {str(k): (float(v[0]), float(v[1])) for k, v in raw.items()})
        except (ValueError, KeyError, TypeError, IndexError) as exc:
            raise CalibrationError(f"calibration ranges for {key.model} are malformed ({exc})") from exc


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
    return ac.qdq_path_for(fp32_onnx, config.tag)


def _ort_method(method: str):
    from onnxruntime.quantization import CalibrationMethod

    return {"entropy": CalibrationMethod.Entropy, "minmax": CalibrationMethod.MinMax,
            "percentile": CalibrationMethod.Percentile}[method]


def ort_extra_options() -> dict[str, Any]:
    """ONNX Runtime quantiser options giving TensorRT-parsable, TensorRT-style Q/DQ."""
    return {"ActivationSymmetric": True, "WeightSymmetric": True, "QuantizeBias": False,
            "OpTypesToExcludeOutputQuantization": list(QDQ_OP_TYPES), "AddQDQPairToWeight": False}


def compute_ranges(fp32_onnx: Path, reader, method: str) -> dict[str, tuple[float, float]]:
    """Calibrate the inputs/outputs of ``QDQ_OP_TYPES`` nodes of ``fp32_onnx`` on ``reader``'s batches.

    Returns:
        tensor name -> (lowest, highest) float values (entropy/percentile already clipped).

    Raises:
        EngineError: ONNX Runtime's calibrator failed.
    """
    from onnxruntime.quantization.calibrate import create_calibrator

    options = {"symmetric": True, **({"percentile": 99.999} if method == "percentile" else {})}
    with tempfile.TemporaryDirectory(prefix="aeb-calib-") as tmp:
        try:
            calibrator = create_calibrator(Path(fp32_onnx), list(QDQ_OP_TYPES),
                                           augmented_model_path=str(Path(tmp) / "augmented.onnx"),
                                           calibrate_method=_ort_method(method), extra_options=options)
            calibrator.collect_data(reader)
            data = calibrator.compute_data()
        except Exception as exc:
            raise EngineError(f"{fp32_onnx}: calibration failed ({type(exc).__name__}: {exc})") from exc
    return {name: (float(td.range_value[0]), float(td.range_value[1])) for name, td in data.items()}


def calibration_key(loaded: LoadedModel, fp32_sha: str, coco_dir: str | Path, config: QuantizeConfig) -> CalibrationKey:
    """The :class:`CalibrationKey` of ONNX Runtime ranges for these inputs (hashes the images' contents)."""
    import onnxruntime

    paths = select_images(coco_dir, config.num_images, config.seed)
    return CalibrationKey(kind="ort-ranges", model=loaded.spec.name, source_sha256=fp32_sha,
                          images_sha256=images_sha256(paths), num_images=config.num_images, seed=config.seed,
                          method=config.method, batch_size=config.even_batch,
                          settings=(("onnxruntime", onnxruntime.__version__), ("op_types", ",".join(QDQ_OP_TYPES)),
                                    ("input", f"{loaded.spec.input_hw}|{loaded.spec.resize}")))


def activation_ranges(loaded: LoadedModel, coco_dir: str | Path, *, engines_dir: str | Path = "engines",
                      config: QuantizeConfig = QuantizeConfig(), rebuild: bool = False) -> ActivationRanges:
    """Per-tensor activation ranges of ``loaded``'s FP32 ONNX, calibrated on COCO images (cached).

    This is the public entry for other INT8 paths (e.g. a GPU INT8 mode): ``ranges.scale(name)``
    is the symmetric INT8 scale of a tensor of the FP32 ONNX (inputs of every ``Conv`` and
    residual ``Add``). Cached in ``engines_dir/calib/`` under the key's digest; a cache made
    for another model/weights, other settings, or edited since it was written is refused.

    Args:
        loaded: model from :func:`~aeb_app.model.registry.load_model`.
        coco_dir: COCO val2017 root or an image folder.
        engines_dir: cache folder (FP32 ONNX and ``calib/``).
        config: images, seed, method, batch.
        rebuild: recalibrate without reading the cache (and overwrite it).

    Raises:
        InputError: too few or unreadable images. CalibrationError: a refused cache.
        EngineError: export or calibration failed.
    """
    engines_dir = Path(engines_dir)
    fp32 = export_onnx(loaded, engines_dir=engines_dir)
    key = calibration_key(loaded, ac.file_sha256(fp32), coco_dir, config)
    cache = engines_dir / "calib" / key.file_name(".ranges.json")
    data = None if rebuild else read_cache(cache, key)
    if data is not None:
        return ActivationRanges.from_bytes(key, data)
    batch, _ = calibration_batch(coco_dir, loaded.spec, num_images=config.num_images, seed=config.seed,
                                 cache_dir=engines_dir / "calib")
    t0 = time.perf_counter()
    ranges = ActivationRanges(key, compute_ranges(fp32, ort_reader(batch, loaded.spec, batch_size=key.batch_size),
                                                  config.method))
    write_cache(cache, ranges.to_bytes(), key)
    log.info("calibrated %d tensors in %.1f s -> %s", len(ranges.ranges), time.perf_counter() - t0, cache.name)
    return ranges


def _ort_cache(ranges: ActivationRanges, method: str, path: Path) -> None:
    """Write ``ranges`` in ONNX Runtime's calibration-cache format (quantize_static reads it)."""
    import numpy as np
    from onnxruntime.quantization.calibrate import TensorData, TensorsData, save_tensors_data

    data = {k: TensorData(lowest=np.float32(lo), highest=np.float32(hi)) for k, (lo, hi) in ranges.ranges.items()}
    save_tensors_data(TensorsData(_ort_method(method), data), path)


def quantize_onnx(fp32_onnx: Path, ranges: ActivationRanges, *, out: Path, config: QuantizeConfig) -> list[str]:
    """Write the TensorRT-style Q/DQ model of ``fp32_onnx`` to ``out`` (atomically); returns the float nodes.

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
        ort_cache = Path(tmp_dir) / "ranges.json"
        _ort_cache(ranges, config.method, ort_cache)
        try:
            quantize_static(
                str(fp32_onnx), str(tmp), None, quant_format=QuantFormat.QDQ, op_types_to_quantize=list(QDQ_OP_TYPES),
                per_channel=True, activation_type=QuantType.QInt8, weight_type=QuantType.QInt8,
                nodes_to_exclude=excluded, calibrate_method=_ort_method(config.method),
                extra_options=ort_extra_options(), calibration_cache_path=str(ort_cache),
            )
            qdq = onnx.load(str(tmp))
            keep_residual_qdq_only(qdq)
            onnx.save(qdq, str(tmp))
        except Exception as exc:
            raise EngineError(f"{fp32_onnx}: INT8 quantisation failed ({type(exc).__name__}: {exc})") from exc
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
        force: recalibrate (the ranges cache is not read) and quantise again even when an
            intact model from the same calibration key is already at the output path.

    Returns:
        Path of the Q/DQ model.

    Raises:
        InputError: too few or unreadable calibration images (named).
        CalibrationError: a ranges cache made for another model or edited.
        EngineError: export or quantisation failed; nothing half-written is left.
    """
    ranges = activation_ranges(loaded, coco_dir, engines_dir=engines_dir, config=config, rebuild=force)
    fp32 = export_onnx(loaded, engines_dir=Path(engines_dir))
    out_path = Path(out) if out is not None else qdq_path_for(fp32, config)
    calibration = {**json.loads(json.dumps(asdict(config))), "key": ranges.key.digest()}
    if not force and _reusable(out_path, ranges.key.source_sha256, calibration):
        log.info("reusing %s", out_path)
        return out_path
    t0 = time.perf_counter()
    excluded = quantize_onnx(fp32, ranges, out=out_path, config=config)
    ac.write_sidecar(out_path, _qdq_sidecar(loaded, fp32, ranges, out_path, calibration={
        **calibration, "images_sha256": ranges.key.images_sha256, "coco_dir": str(coco_dir)}, float_nodes=excluded))
    log.info("wrote %s in %.1f s (%d nodes kept in float)", out_path, time.perf_counter() - t0, len(excluded))
    return out_path


def _qdq_sidecar(loaded: LoadedModel, fp32: Path, ranges: ActivationRanges, out_path: Path, *,
                 calibration: dict[str, Any], float_nodes: list[str]) -> ac.Sidecar:
    import onnx
    import onnxruntime

    return ac.Sidecar(
        kind=ac.QDQ_ONNX, model=loaded.spec.name, weights_sha256=ac.weights_sha256(loaded), precision="int8",
        batch=ac.Profile(1, 1, ac.MAX_EXPORT_BATCH), sha256=ac.file_sha256(out_path), builder=_quantizer_version(),
        versions={"onnxruntime": onnxruntime.__version__, "onnx": onnx.__version__},
        source_sha256=ranges.key.source_sha256, usage=ac.usage_for(loaded.spec),
        details={"opset": ac.OPSET, "source_onnx": fp32.name, "calibration": calibration,
                 "placement": "tensorrt (inputs of Conv; residual input of Add)",
                 "activations": "int8 symmetric (zero point 0)", "weights": "int8 symmetric per-channel (axis 0)",
                 "bias": "float (not quantised)", "float_nodes": float_nodes},
    )


def _reusable(path: Path, source_sha256: str, calibration: dict[str, Any]) -> bool:
    """True when ``path`` is intact and its sidecar records the same source, calibration key, knobs and quantizer."""
    side = ac.intact(path, ac.QDQ_ONNX)
    if side is None:
        return False
    stored = side.details.get("calibration") or {}
    return (side.source_sha256 == source_sha256 and {k: stored.get(k) for k in calibration} == calibration
            and side.builder == _quantizer_version())


def _quantizer_version() -> str:
    import onnxruntime

    return f"onnxruntime {onnxruntime.__version__} (tensorrt placement v1)"
