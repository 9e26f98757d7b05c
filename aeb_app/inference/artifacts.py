"""Serialized engines in ``engines/``: file names, JSON sidecars and validation (pure, no TensorRT).

A TensorRT engine only runs on the TensorRT version and GPU (compute capability) that built it;
deserialising a mismatched one fails deep inside the library ("version tag does not match").
So every engine ``<key>.engine`` has a sidecar ``<key>.engine.json`` and we check the sidecar
against the machine *before* deserialising, with an error that says what to do.
The same sidecar shape serves AOTInductor ``.pt2`` packages (:mod:`compiled_backend`).
"""

from __future__ import annotations

import hashlib
import json
import re
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from aeb_app.errors import EngineLoadError

SIDECAR_VERSION = 1


@dataclass(frozen=True)
class Profile:
    """Optimization profile of the batch axis (TensorRT ``set_shape(min, opt, max)``)."""

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


def gpu_slug(gpu_name: str) -> str:
    """File-name form of a GPU name: ``"NVIDIA H200"`` -> ``"nvidia-h200"``."""
    return re.sub(r"[^a-z0-9]+", "-", gpu_name.lower()).strip("-") or "gpu"


def engine_path(engines_dir: str | Path, key: str, suffix: str = ".engine") -> Path:
    return Path(engines_dir) / f"{key}{suffix}"


def sidecar_path(engine: str | Path) -> Path:
    engine = Path(engine)
    return engine.with_name(engine.name + ".json")


def make_sidecar(*, model: str, precision: str, profile: Profile, machine: MachineInfo, onnx_sha256: str,
                 engine_sha256: str, calibration_sha256: str | None = None, int8_method: str | None = None,
                 builder: str = "tensorrt-onnx", extra: dict[str, Any] | None = None) -> dict[str, Any]:
    """The JSON sidecar stored next to an engine."""
    return {
        "sidecar_version": SIDECAR_VERSION,
        "builder": builder,
        "model": model,
        "precision": precision,
        "int8_method": int8_method,
        "profile": asdict(profile),
        "runtime_version": machine.runtime_version,
        "gpu_name": machine.gpu_name,
        "compute_capability": machine.compute_capability,
        "onnx_sha256": onnx_sha256,
        "calibration_sha256": calibration_sha256,
        "engine_sha256": engine_sha256,
        "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        **(extra or {}),
    }


def read_sidecar(engine: str | Path) -> dict[str, Any]:
    """Load and minimally validate an engine's sidecar.

    Raises:
        EngineLoadError: the engine or its sidecar is missing, or the sidecar is not valid JSON.
    """
    engine = Path(engine)
    if not engine.is_file():
        raise EngineLoadError(f"{engine}: engine file not found; build it with 'aeb-app build-engine'")
    side = sidecar_path(engine)
    try:
        if side.stat().st_size > MAX_SIDECAR_BYTES:
            raise ValueError(f"larger than {MAX_SIDECAR_BYTES} bytes")
        meta = json.loads(side.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise EngineLoadError(f"{engine}: no sidecar {side.name}; rebuild the engine with 'aeb-app build-engine'") from None
    except (OSError, ValueError, RecursionError) as exc:
        reason = " ".join(str(exc).split())[:120]
        raise EngineLoadError(f"{side}: unreadable engine sidecar ({reason}); rebuild the engine") from None
    if not isinstance(meta, dict):
        raise EngineLoadError(
            f"{side}: engine sidecar is not a JSON object (a {type(meta).__name__}); rebuild the engine")
    missing = [k for k, kind in _SIDECAR_SCHEMA.items() if not isinstance(meta.get(k), kind)]
    profile = meta.get("profile")
    if "profile" not in meta:
        missing.append("profile")
    elif not (isinstance(profile, dict) and isinstance(profile.get("max_batch"), int)
              and not isinstance(profile.get("max_batch"), bool)):
        missing.append("profile.max_batch")
    if missing:
        raise EngineLoadError(f"{side}: sidecar lacks {', '.join(missing)} (missing or wrong type); rebuild the engine")
    return meta


#: Largest sidecar read, bytes (real ones are under 2 KB).
MAX_SIDECAR_BYTES = 1 << 20
#: Fields every engine sidecar must have, with their JSON types.
_SIDECAR_SCHEMA: dict[str, type | tuple[type, ...]] = {
    "runtime_version": str, "gpu_name": str, "compute_capability": (str, int, float), "engine_sha256": str,
}


def _describe(meta_or_machine: dict[str, Any] | MachineInfo, lib: str) -> str:
    d = asdict(meta_or_machine) if isinstance(meta_or_machine, MachineInfo) else meta_or_machine
    sm = "sm_" + str(d["compute_capability"]).replace(".", "")
    return f"{d['gpu_name']} ({sm}) with {lib} {d['runtime_version']}"


def check_compatible(engine: str | Path, meta: dict[str, Any], machine: MachineInfo, lib: str = "TensorRT") -> None:
    """Raise unless the engine was built for this GPU and runtime version.

    Raises:
        EngineLoadError: e.g. "built for NVIDIA H200 (sm_90) with TensorRT 10.3.0; this machine
            has NVIDIA L4 (sm_89) with TensorRT 10.3.0: rebuild with 'aeb-app build-engine'".
    """
    same = (meta["runtime_version"] == machine.runtime_version
            and str(meta["compute_capability"]) == machine.compute_capability
            and meta["gpu_name"] == machine.gpu_name)
    if not same:
        raise EngineLoadError(
            f"{Path(engine).name}: built for {_describe(meta, lib)}; this machine has {_describe(machine, lib)}: "
            "rebuild with 'aeb-app build-engine' (or pass --rebuild)"
        )


def verify_engine_bytes(engine: str | Path, meta: dict[str, Any]) -> bytes:
    """Read the engine and check its sha256 against the sidecar (catches truncation and corruption).

    Raises:
        EngineLoadError: unreadable, empty, truncated or modified file.
    """
    engine = Path(engine)
    try:
        data = engine.read_bytes()
    except OSError as exc:
        raise EngineLoadError(f"{engine}: cannot read engine ({exc})") from exc
    if not data:
        raise EngineLoadError(f"{engine}: empty engine file; rebuild it")
    if hashlib.sha256(data).hexdigest() != meta["engine_sha256"]:
        raise EngineLoadError(
            f"{engine}: contents do not match its sidecar hash ({len(data)} bytes; corrupt or truncated); rebuild it"
        )
    return data


def load_checked(engine: str | Path, machine: MachineInfo, lib: str = "TensorRT") -> tuple[bytes, dict[str, Any]]:
    """Sidecar check + hash check; returns (engine bytes, sidecar). Raises :class:`EngineLoadError`."""
    meta = read_sidecar(engine)
    check_compatible(engine, meta, machine, lib)
    return verify_engine_bytes(engine, meta), meta


def needs_build(engine: str | Path, machine: MachineInfo, *, rebuild_on_mismatch: bool = True) -> bool:
    """True when the engine must be (re)built: missing, corrupt, or (optionally) for another machine.

    Raises:
        EngineLoadError: a mismatch when ``rebuild_on_mismatch`` is False.
    """
    try:
        load_checked(engine, machine)
    except EngineLoadError:
        if not rebuild_on_mismatch and Path(engine).is_file():
            raise
        return True
    return False
