"""Calibration caches keyed by content and checked on every reuse (pure: no TensorRT, no ONNX Runtime).

Two caches use this: ONNX Runtime activation ranges (JSON, :mod:`aeb_app.inference.build.quantize`)
and TensorRT's legacy calibrator table (``.trtcache``, :mod:`aeb_app.inference.build.trt_calibrator`).
A cache file ``<name>`` has a sidecar ``<name>.key.json`` holding the :class:`CalibrationKey`
it was made for and the sha256 of the cache bytes. The file name carries a digest of the key,
so a change of model weights, image content, method, seed or count selects another file;
:func:`read_cache` still compares the whole key and the hash, so a renamed, copied or edited
cache is refused instead of silently deciding the INT8 scales.
"""

from __future__ import annotations

import hashlib
import json
import logging
from dataclasses import asdict, dataclass, field
from pathlib import Path

from aeb_app.atomic import write_bytes, write_json
from aeb_app.errors import CalibrationError

log = logging.getLogger(__name__)

KEY_VERSION = 1


@dataclass(frozen=True)
class CalibrationKey:
    """Everything a calibration result depends on.

    Attributes:
        kind: ``ort-ranges`` (ONNX Runtime activation ranges) or ``trt-entropy2`` (TensorRT table).
        model: model name, e.g. ``ssd_mobilenet_v1``.
        source_sha256: sha256 of the FP32 ONNX the ranges were measured on (it hashes the weights).
        images_sha256: sha256 over the calibration images' names and *contents*, in order.
        num_images: images drawn (``--num-images``).
        seed: seed of the draw (``--seed``).
        method: calibration method (``entropy``, ``minmax``, ``percentile``).
        batch_size: images per calibration batch.
        settings: further settings as sorted (name, value) pairs (tool version, op types ...).
    """

    kind: str
    model: str
    source_sha256: str
    images_sha256: str
    num_images: int
    seed: int
    method: str
    batch_size: int
    settings: tuple[tuple[str, str], ...] = field(default_factory=tuple)

    def __post_init__(self) -> None:
        # One canonical order, so a key read back from JSON compares equal.
        object.__setattr__(self, "settings", tuple(sorted((str(k), str(v)) for k, v in self.settings)))

    def digest(self) -> str:
        """Hex sha256 of the whole key (stable JSON of its fields)."""
        text = json.dumps({"v": KEY_VERSION, **asdict(self)}, sort_keys=True)
        return hashlib.sha256(text.encode()).hexdigest()

    def file_name(self, suffix: str) -> str:
        """``<model>-<kind>-<method>-n<N>-s<seed>-b<B>-<digest[:16]><suffix>``."""
        return (f"{self.model}-{self.kind}-{self.method}-n{self.num_images}-s{self.seed}-b{self.batch_size}-"
                f"{self.digest()[:16]}{suffix}")

    def to_json(self) -> dict:
        return {**asdict(self), "settings": dict(self.settings)}

    @classmethod
    def from_json(cls, data: dict) -> CalibrationKey:
        """Inverse of :meth:`to_json`. Raises ``KeyError``/``TypeError`` on a malformed dict."""
        fields = {**data, "settings": tuple(sorted((str(k), str(v)) for k, v in data["settings"].items()))}
        return cls(**fields)


def key_path(cache: str | Path) -> Path:
    """The sidecar ``<cache>.key.json``."""
    cache = Path(cache)
    return cache.with_name(cache.name + ".key.json")


def write_cache(cache: str | Path, data: bytes, key: CalibrationKey) -> None:
    """Write the cache bytes, then the sidecar with the key and the bytes' sha256 (each atomically)."""
    write_bytes(cache, data)
    write_json(key_path(cache), {"key": key.to_json(), "sha256": hashlib.sha256(data).hexdigest()})


def read_cache(cache: str | Path, key: CalibrationKey) -> bytes | None:
    """The cache's bytes when it was made for ``key`` and is unmodified; None when there is none.

    Raises:
        CalibrationError: the cache exists but has no readable sidecar, was made for another
            model or weights (both named), for other settings (the differing fields named),
            or its bytes no longer match the hash in its sidecar (edited or truncated).
    """
    cache = Path(cache)
    if not cache.is_file():
        return None
    side = key_path(cache)
    hint = "delete it or pass --rebuild"
    try:
        meta = json.loads(side.read_text(encoding="utf-8"))
        stored = CalibrationKey.from_json(meta["key"])
        stored_sha = str(meta["sha256"])
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise CalibrationError(f"{cache}: calibration cache without a valid sidecar {side.name} "
                               f"({type(exc).__name__}); {hint}") from None
    if (stored.model, stored.source_sha256) != (key.model, key.source_sha256):
        raise CalibrationError(
            f"{cache}: calibration cache made for {stored.model} (source {stored.source_sha256[:12]}), "
            f"not for {key.model} (source {key.source_sha256[:12]}); {hint}")
    if stored != key:
        differ = [k for k, v in asdict(stored).items() if v != asdict(key)[k]]
        raise CalibrationError(f"{cache}: calibration cache made with other settings ({', '.join(differ)}); {hint}")
    data = cache.read_bytes()
    if hashlib.sha256(data).hexdigest() != stored_sha:
        raise CalibrationError(f"{cache}: calibration cache does not match the hash in {side.name} "
                               f"(edited or truncated); {hint}")
    log.info("calibration cache %s matches its key", cache.name)
    return data
