"""The one artifact cache (``engines/``) and the one sidecar contract, shared by the build and run sides.

Every artifact the build side writes (FP32 ONNX, INT8 Q/DQ ONNX, TensorRT engine, AOTInductor package)
gets a JSON sidecar ``<file>.json`` beside it: a :class:`Sidecar` (schema version, kind, model, weights
hash, precision, batch shapes, library versions, the file's sha256, the GPU it is tied to, and what a
runner needs: input layout, preprocessing, output format, class names), written atomically. The run
side reads it with :func:`read_sidecar` (a one-line :class:`SidecarError` naming the file) or, where a
bad sidecar only means "build again", :func:`cached_sidecar` (None + one log line).

Sidecars written before schema 2 (aeb_app <= 2026-12: ``sidecar_version`` 1 engines, versionless ONNX,
Q/DQ and ``.pt2`` sidecars) are refused with "rebuild it"; caches treat them as a miss and rebuild.

A TensorRT engine only runs on the TensorRT version and GPU that built it; :func:`load_checked` checks
the sidecar against the machine *before* deserialising, with an error that says what to do.
Pure (no torch at import; :func:`weights_sha256` imports it when called).
"""

from __future__ import annotations

import hashlib
import json
import logging
import re
import time
from dataclasses import MISSING, asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

from aeb_app.atomic import write_json
from aeb_app.errors import EngineLoadError

log = logging.getLogger(__name__)

#: Version of the sidecar layout; a reader refuses any other (old files mean "rebuild").
SCHEMA_VERSION = 2
#: Largest sidecar read, bytes (real ones are under 8 KB).
MAX_SIDECAR_BYTES = 1 << 20

#: Artifact kinds (:attr:`Sidecar.kind`).
ONNX, QDQ_ONNX, TRT_ENGINE, AOTI_PACKAGE = "onnx", "onnx-int8-qdq", "trt-engine", "aoti"
KINDS = (ONNX, QDQ_ONNX, TRT_ENGINE, AOTI_PACKAGE)

#: The exported graph's contract (every artifact made from it keeps these names).
OPSET = 18
INPUT_NAME = "images"
OUTPUT_NAMES = ("boxes", "scores")
#: Upper bound of the dynamic batch axis recorded in the ONNX graph (TensorRT profiles pick their own).
MAX_EXPORT_BATCH = 1024


class SidecarError(EngineLoadError):
    """A sidecar that is missing, unreadable, of an older schema or malformed (the message names the file)."""


@dataclass(frozen=True)
class Profile:
    """Batch shapes an artifact accepts (TensorRT ``set_shape(min, opt, max)``; fixed batch: all equal)."""

    min_batch: int = 1
    opt_batch: int = 16
    max_batch: int = 64

    def __post_init__(self) -> None:
        if not 1 <= self.min_batch <= self.opt_batch <= self.max_batch:
            raise ValueError(f"need 1 <= min <= opt <= max batch, got {self.min_batch}/{self.opt_batch}/{self.max_batch}")


@dataclass(frozen=True)
class MachineInfo:
    """What an engine is tied to: the runtime library version and the GPU."""

    runtime_version: str  # e.g. TensorRT "10.3.0"
    gpu_name: str  # e.g. "NVIDIA H200"
    compute_capability: str  # e.g. "9.0"


@dataclass(frozen=True)
class Usage:
    """What a runner (aeb_app's or another tool's) needs to feed the artifact and read its outputs.

    Each field is the JSON object written to the sidecar (see :func:`usage_for`)."""

    input_format: dict[str, Any]
    preprocessing: dict[str, Any]
    output_format: dict[str, Any]
    class_names: list[str]
    class_ids: list[int]


@dataclass(frozen=True)
class Sidecar:
    """The JSON written beside every artifact (``asdict`` of this, plus nothing else).

    Attributes:
        kind: one of :data:`KINDS`.
        model: registry name, e.g. ``"ssd_mobilenet_v1"``.
        weights_sha256: :func:`weights_sha256` of the network the artifact was made from.
        precision: ``"fp32"``, ``"fp16"``, ``"int8"`` ...
        batch: the batch shapes the artifact accepts.
        sha256: hex sha256 of the artifact file (checked before use).
        builder: what made it (``"torch.onnx dynamo"``, ``"tensorrt-onnx"``, ``"torch2trt"`` ...).
        versions: library -> version the artifact depends on (``{"torch": "2.14.1"}``).
        source_sha256: sha256 of the file it was built from (ONNX for engines and Q/DQ), or ``""``.
        machine: the GPU + runtime it is tied to (TensorRT engines), else None.
        usage: input/preprocessing/output format and class names, when the artifact is a graph.
        details: builder-specific facts kept for people and checks (opset, calibration, compile options).
    """

    kind: str
    model: str
    weights_sha256: str
    precision: str
    batch: Profile
    sha256: str
    builder: str
    versions: dict[str, str]
    source_sha256: str = ""
    machine: MachineInfo | None = None
    usage: Usage | None = None
    details: dict[str, Any] = field(default_factory=dict)
    created: str = field(default_factory=lambda: time.strftime("%Y-%m-%dT%H:%M:%S%z"))
    schema_version: int = SCHEMA_VERSION


# --- hashes -----------------------------------------------------------------------------------------


def file_sha256(path: str | Path) -> str:
    """Hex sha256 of a file, read in 1 MiB chunks."""
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def weights_sha256(loaded) -> str:
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


# --- cache paths ------------------------------------------------------------------------------------


def sidecar_path(artifact: str | Path) -> Path:
    """JSON sidecar next to an artifact: ``<file>.json``."""
    artifact = Path(artifact)
    return artifact.with_name(artifact.name + ".json")


def onnx_path_for(loaded, engines_dir: str | Path, *, weights_hash: str | None = None) -> Path:
    """FP32 ONNX cache location ``engines/<model>-<weights hash[:12]>-opset<N>.onnx``."""
    weights_hash = weights_hash or weights_sha256(loaded)
    return Path(engines_dir) / f"{loaded.spec.name}-{weights_hash[:12]}-opset{OPSET}.onnx"


def qdq_path_for(fp32_onnx: Path, tag: str) -> Path:
    """INT8 Q/DQ model ``<fp32 name>.int8-qdq-<tag>.onnx`` beside the FP32 model."""
    return fp32_onnx.with_name(f"{fp32_onnx.stem}.int8-qdq-{tag}.onnx")


def gpu_slug(gpu_name: str) -> str:
    """File-name form of a GPU name: ``"NVIDIA H200"`` -> ``"nvidia-h200"``."""
    return re.sub(r"[^a-z0-9]+", "-", gpu_name.lower()).strip("-") or "gpu"


def engine_key(*, model: str, precision: str, profile: Profile, source_sha256: str, machine: MachineInfo,
               int8_method: str | None = None, kind: str = "trt") -> str:
    """File stem of an engine: readable fields (GPU name included: two GPUs of one SM may not share
    an engine) + a short hash of everything it depends on."""
    sm = "sm" + machine.compute_capability.replace(".", "")
    parts = [model, precision + (f"-{int8_method}" if int8_method else ""),
             f"b{profile.min_batch}-{profile.opt_batch}-{profile.max_batch}", sm, f"{kind}{machine.runtime_version}",
             gpu_slug(machine.gpu_name)]
    digest = hashlib.sha256("|".join([*parts, source_sha256]).encode()).hexdigest()[:10]
    return "_".join(parts + [digest])


def engine_path(engines_dir: str | Path, key: str, suffix: str = ".engine") -> Path:
    return Path(engines_dir) / f"{key}{suffix}"


@dataclass(frozen=True)
class PackageKey:
    """Everything an AOTInductor package depends on (it is compiled for one batch, device and torch)."""

    model: str
    weights_sha256: str
    precision: str
    batch: int
    device: str  # "cuda" or "cpu"
    torch_version: str

    def path(self, engines_dir: str | Path) -> Path:
        torch_tag = self.torch_version.replace("+", "-")
        return Path(engines_dir) / (f"{self.model}-{self.weights_sha256[:12]}_{self.precision}_b{self.batch}_"
                                    f"{self.device}_torch{torch_tag}.pt2")

    def differences(self, side: Sidecar) -> dict[str, tuple[Any, Any]]:
        """``{field: (have, want)}`` where the package's sidecar disagrees with this key."""
        have = {"model": side.model, "weights_sha256": side.weights_sha256, "precision": side.precision,
                "batch": side.batch.max_batch, "device": side.details.get("device"),
                "torch_version": side.versions.get("torch")}
        return {k: (have[k], v) for k, v in asdict(self).items() if have[k] != v}


# --- sidecar I/O ------------------------------------------------------------------------------------


def write_sidecar(artifact: str | Path, side: Sidecar) -> Path:
    """Write ``side`` atomically as ``<artifact>.json``; returns the sidecar's path."""
    path = sidecar_path(artifact)
    write_json(path, asdict(side))
    return path


def read_sidecar(artifact: str | Path) -> Sidecar:
    """The artifact's sidecar, validated.

    Raises:
        SidecarError: missing, unreadable, not a JSON object, an older schema, or a field missing or of
            the wrong type; one line naming the sidecar and saying "rebuild".
    """
    path = sidecar_path(artifact)
    try:
        if path.stat().st_size > MAX_SIDECAR_BYTES:
            raise ValueError(f"larger than {MAX_SIDECAR_BYTES} bytes")
        raw = json.loads(path.read_text(encoding="utf-8"))
    except (FileNotFoundError, NotADirectoryError):
        raise SidecarError(f"{Path(artifact)}: no sidecar {path.name}; rebuild it") from None
    except (OSError, ValueError, RecursionError) as exc:
        raise SidecarError(f"{path}: unreadable sidecar ({' '.join(str(exc).split())[:120]}); rebuild it") from None
    if not isinstance(raw, dict):
        raise SidecarError(f"{path}: sidecar is not a JSON object (a {type(raw).__name__}); rebuild it")
    version = raw.get("schema_version", raw.get("sidecar_version"))
    if version != SCHEMA_VERSION:
        raise SidecarError(f"{path}: sidecar schema {version if version is not None else '(none)'} is from an "
                           f"older aeb_app (this one reads schema {SCHEMA_VERSION}); rebuild it")
    try:
        return _from_json(raw)
    except (TypeError, ValueError) as exc:
        raise SidecarError(f"{path}: {exc}; rebuild it") from None


def cached_sidecar(artifact: str | Path) -> Sidecar | None:
    """:func:`read_sidecar` for cache look-ups: None when there is none, or (with one log line) when it
    is unusable or from an older aeb_app, so the artifact counts as missing and is rebuilt."""
    if not sidecar_path(artifact).exists():
        return None
    try:
        return read_sidecar(artifact)
    except SidecarError as exc:
        log.warning("%s (treated as missing)", exc)
        return None


#: JSON types of the scalar fields (``bool`` is refused where an int is wanted).
_TYPES: dict[str, type | tuple[type, ...]] = {
    "kind": str, "model": str, "weights_sha256": str, "precision": str, "sha256": str, "builder": str,
    "versions": dict, "source_sha256": str, "details": dict, "created": str, "schema_version": int,
}


def _from_json(raw: dict[str, Any]) -> Sidecar:
    """Build a :class:`Sidecar` from its JSON object; ``TypeError``/``ValueError`` name the bad field."""
    names = {f.name for f in fields(Sidecar)}
    if unknown := sorted(set(raw) - names):
        raise ValueError(f"unknown sidecar field(s) {', '.join(unknown)}")
    required = [f.name for f in fields(Sidecar) if f.default is f.default_factory is MISSING]
    bad = [k for k in required if k not in raw]
    bad += [k for k, kind in _TYPES.items() if k in raw and (not isinstance(raw[k], kind) or isinstance(raw[k], bool))]
    if raw.get("kind") not in KINDS:
        bad.append("kind")
    if bad:
        raise TypeError(f"sidecar field(s) {', '.join(sorted(set(bad)))} missing or of the wrong type")
    values = dict(raw, batch=_sub(Profile, raw["batch"], "batch"))
    values["machine"] = None if raw.get("machine") is None else _sub(MachineInfo, raw["machine"], "machine")
    values["usage"] = None if raw.get("usage") is None else _sub(Usage, raw["usage"], "usage")
    return Sidecar(**values)


def _sub(cls, value: Any, name: str):
    if not isinstance(value, dict):
        raise TypeError(f"sidecar field {name} is not an object")
    if cls is Profile and not all(type(v) is int for v in value.values()):
        raise TypeError("sidecar field batch: batch sizes must be integers")
    try:
        return cls(**value)
    except TypeError as exc:
        raise TypeError(f"sidecar field {name}: {exc}") from None


# --- what a runner needs ----------------------------------------------------------------------------


def usage_for(spec) -> Usage:
    """Input layout/colour order/size, the normalisation ``(x - mean) / std`` on 0..255 RGB values, the
    output box format and the class name of every score channel of the exported graph.

    Args:
        spec: the model's :class:`~aeb_app.model.spec.ModelSpec`.
    """
    from aeb_app.model.coco import COCO_NAMES

    h, w = spec.input_hw
    return Usage(
        input_format={"name": INPUT_NAME, "layout": "NCHW", "dtype": "float32", "color_order": "RGB",
                      "height": int(h), "width": int(w), "batch": "dynamic"},
        preprocessing={
            "resize": spec.resize, "resize_to_hw": [int(h), int(w)], "keep_aspect_ratio": False,
            "pixel_range": [0, 255], "formula": "(x - mean) / std", "mean_rgb": [float(v) for v in spec.mean_rgb],
            "std_rgb": [float(v) for v in spec.std_rgb],
        },
        output_format={
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
        class_names=[COCO_NAMES.get(c, "background" if c == 0 else f"id{c}") for c in spec.class_ids],
        class_ids=[int(c) for c in spec.class_ids],
    )


# --- cache look-ups (run side) ----------------------------------------------------------------------


def intact(path: Path, kind: str) -> Sidecar | None:
    """The sidecar of ``path`` when the file exists, the sidecar is valid and of ``kind``, and the file's
    sha256 matches it; else None (a corrupt or edited file is logged)."""
    side = cached_sidecar(path)
    if side is None or side.kind != kind or not path.is_file():
        return None
    if side.sha256 != file_sha256(path):
        log.warning("%s: file hash differs from its sidecar (corrupt or edited); ignoring it", path)
        return None
    return side


def onnx_current(path: Path, loaded, *, weights_hash: str | None = None) -> bool:
    """True when ``path`` is an intact FP32 ONNX of ``loaded`` made by this torch at :data:`OPSET`."""
    import torch

    side = intact(path, ONNX)
    if side is None:
        return False
    want = {"model": loaded.spec.name, "weights_sha256": weights_hash or weights_sha256(loaded), "opset": OPSET,
            "torch": torch.__version__}
    have = {"model": side.model, "weights_sha256": side.weights_sha256, "opset": side.details.get("opset"),
            "torch": side.versions.get("torch")}
    if have != want:
        log.info("%s: sidecar does not match (%s); rebuilding", path.name,
                 {k: have[k] for k in want if have[k] != want[k]})
        return False
    return True


def find_onnx(loaded, engines_dir: str | Path, *, weights_hash: str | None = None) -> Path | None:
    """The cached FP32 ONNX of ``loaded`` in ``engines_dir`` when :func:`onnx_current`, else None."""
    weights_hash = weights_hash or weights_sha256(loaded)
    path = onnx_path_for(loaded, engines_dir, weights_hash=weights_hash)
    return path if onnx_current(path, loaded, weights_hash=weights_hash) else None


def find_qdq_model(loaded, engines_dir: str | Path, *, weights_hash: str | None = None) -> Path | None:
    """The newest intact INT8 Q/DQ model for ``loaded`` in ``engines_dir``, or None."""
    stem = onnx_path_for(loaded, engines_dir, weights_hash=weights_hash).stem
    found = sorted(Path(engines_dir).glob(f"{stem}.int8-qdq-*.onnx"), key=lambda p: p.stat().st_mtime, reverse=True)
    return next((p for p in found if intact(p, QDQ_ONNX) is not None), None)


# --- engines: checks against the machine ------------------------------------------------------------


def _describe(machine: MachineInfo, lib: str) -> str:
    return f"{machine.gpu_name} (sm_{machine.compute_capability.replace('.', '')}) with {lib} {machine.runtime_version}"


def check_compatible(engine: str | Path, side: Sidecar, machine: MachineInfo, lib: str = "TensorRT") -> None:
    """Raise unless the engine was built for this GPU and runtime version.

    Raises:
        EngineLoadError: e.g. "built for NVIDIA H200 (sm_90) with TensorRT 10.3.0; this machine
            has NVIDIA L4 (sm_89) with TensorRT 10.3.0: rebuild with 'aeb-app build-engine'".
    """
    if side.machine is None:
        raise SidecarError(f"{sidecar_path(engine)}: sidecar names no GPU/runtime (machine); rebuild the engine")
    if side.machine != machine:
        raise EngineLoadError(
            f"{Path(engine).name}: built for {_describe(side.machine, lib)}; this machine has {_describe(machine, lib)}: "
            "rebuild with 'aeb-app build-engine' (or pass --rebuild)"
        )


def verify_bytes(artifact: str | Path, side: Sidecar) -> bytes:
    """Read the artifact and check its sha256 against the sidecar (catches truncation and corruption).

    Raises:
        EngineLoadError: unreadable, empty, truncated or modified file.
    """
    artifact = Path(artifact)
    try:
        data = artifact.read_bytes()
    except OSError as exc:
        raise EngineLoadError(f"{artifact}: cannot read engine ({exc})") from exc
    if not data:
        raise EngineLoadError(f"{artifact}: empty engine file; rebuild it")
    if hashlib.sha256(data).hexdigest() != side.sha256:
        raise EngineLoadError(
            f"{artifact}: contents do not match its sidecar hash ({len(data)} bytes; corrupt or truncated); rebuild it"
        )
    return data


def load_checked(engine: str | Path, machine: MachineInfo, lib: str = "TensorRT") -> tuple[bytes, Sidecar]:
    """Existence + sidecar + machine + hash checks; returns (engine bytes, sidecar).

    Raises:
        EngineLoadError: the engine is missing, or any check fails (a :class:`SidecarError` for the sidecar).
    """
    engine = Path(engine)
    if not engine.is_file():
        raise EngineLoadError(f"{engine}: engine file not found; build it with 'aeb-app build-engine'")
    side = read_sidecar(engine)
    check_compatible(engine, side, machine, lib)
    return verify_bytes(engine, side), side


def needs_build(engine: str | Path, machine: MachineInfo, *, rebuild_on_mismatch: bool = True) -> bool:
    """True when the engine must be (re)built: missing, corrupt, an old sidecar, or (optionally) for another machine.

    Raises:
        EngineLoadError: a mismatch when ``rebuild_on_mismatch`` is False.
    """
    try:
        load_checked(engine, machine)
    except EngineLoadError as exc:
        if not rebuild_on_mismatch and Path(engine).is_file():
            raise
        if Path(engine).is_file():
            log.info("%s; rebuilding", exc)
        return True
    return False
