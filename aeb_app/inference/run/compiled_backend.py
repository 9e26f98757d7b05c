"""``fp16_aoti``: an AOTInductor ``.pt2`` package, compiled once and cached in ``engines/``.

Compiling (``torch._inductor.aoti_compile_and_package``) takes minutes per shape, so it is
done by :func:`aeb_app.inference.build.compile.compile_package` (an explicit command), never at app
start; :func:`create`
only loads a cached package (``torch._inductor.aoti_load_package``) whose sidecar matches the
model, precision, batch, device and torch version. Packages are compiled for a fixed batch.
"""

from __future__ import annotations

import json
import logging
import subprocess
import sys
from pathlib import Path

import numpy as np

from aeb_app.atomic import write_json
from aeb_app.errors import BackendUnavailableError, EngineLoadError
from aeb_app.inference import artifacts as ac
from aeb_app.inference.base import Detector, DetectorInfo
from aeb_app.inference.run.torch_backend import DTYPE_NAMES as _DTYPES

log = logging.getLogger(__name__)



def package_key(loaded, precision: str, batch: int, device: str) -> ac.PackageKey:
    """What the package for these settings must have been compiled from (the weights as loaded)."""
    import torch

    return ac.PackageKey(loaded.spec.name, ac.weights_sha256(loaded), precision, batch, device.split(":")[0],
                         torch.__version__)


def check_package(path: Path, key: ac.PackageKey) -> None:
    """Raise :class:`EngineLoadError` unless ``path`` and a sidecar matching ``key`` exist."""
    side = ac.cached_sidecar(path)
    if not path.is_file() or side is None or side.kind != ac.AOTI_PACKAGE:
        raise EngineLoadError(f"{path}: no compiled package; compile it with compile_package() first")
    if diff := key.differences(side):
        raise EngineLoadError(f"{path.name}: sidecar does not match (have, want): {diff}; recompile it")


_PROBE = """
import sys, torch
path, device, dtype, batch, h, w = sys.argv[1:7]
runner = torch._inductor.aoti_load_package(path)
x = torch.zeros(int(batch), 3, int(h), int(w), device=device, dtype=getattr(torch, dtype))
if device.startswith("cuda"):
    x = x.contiguous(memory_format=torch.channels_last)
out = runner(x)
if device.startswith("cuda"):
    torch.cuda.synchronize()
print([tuple(t.shape) for t in out])
"""


def probe_package(path: Path, *, device: str, precision: str, batch: int, input_hw: tuple[int, int],
                  timeout_s: float = 300.0) -> None:
    """Load and run a package once in a child process; the verdict is cached beside it.

    A package that takes its process down (seen with FP16 CUDA packages on an H200: the process
    ended without a message) then gives a clear error instead of killing the app or a benchmark.

    Raises:
        EngineLoadError: the child process failed, crashed or timed out.
    """
    stat = path.stat()
    stamp = {"size": stat.st_size, "mtime_ns": stat.st_mtime_ns}
    verdict_path = Path(str(path) + ".probe.json")
    try:
        cached = json.loads(verdict_path.read_text())
    except (OSError, ValueError):
        cached = None
    if not (isinstance(cached, dict) and cached.get("stamp") == stamp):
        cmd = [sys.executable, "-c", _PROBE, str(path), device, _DTYPES[precision], str(batch), *map(str, input_hw)]
        try:
            proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout_s)
            ok, detail = proc.returncode == 0, (proc.stderr.strip().splitlines() or [""])[-1][:200]
            reason = "" if ok else f"exit code {proc.returncode}{': ' + detail if detail else ''}"
        except subprocess.TimeoutExpired:
            ok, reason = False, f"no answer within {timeout_s:.0f} s"
        cached = {"stamp": stamp, "ok": ok, "reason": reason}
        write_json(verdict_path, cached)
    if not cached["ok"]:
        raise EngineLoadError(f"{path.name}: the package fails when loaded and run ({cached['reason']}); "
                              "rebuild it or choose another mode")


class CompiledDetector(Detector):
    """Runs a loaded AOTInductor package (fixed batch: smaller batches are padded)."""

    def __init__(self, path: Path, spec, *, mode: str, precision: str, device: str, batch: int) -> None:
        super().__init__(spec, DetectorInfo(mode, "pytorch-aoti", precision, device, spec.name,
                                            max_batch=batch, notes={"package": str(path)}))
        self.path, self.batch, self.runner = path, batch, None
        self._call = None

    def activate(self) -> None:
        import torch

        self.runner = torch._inductor.aoti_load_package(str(self.path))
        self._call = self.runner
        if self.info.device.startswith("cuda"):
            # Replay the package's kernels as one CUDA graph: at batch 1 the launch cost of
            # ~200 kernels otherwise dominates.
            from aeb_app.inference.run.cuda_graph import CudaGraphRunner

            self._call = CudaGraphRunner(lambda x: tuple(self.runner(x)))
            self.info.notes["cuda_graph"] = True

    def deactivate(self) -> None:
        self.runner = None
        self._call = None

    def forward_normalized(self, x):
        """Decoded tensors for a normalised NCHW device tensor of the package's dtype (benchmarks)."""
        import torch

        n = x.shape[0]
        if n < self.batch:
            x = torch.cat([x, x.new_zeros(self.batch - n, *x.shape[1:])])
        # The package assumes the example input's strides (channels-last on CUDA, contiguous NCHW
        # on the CPU); a runner given other strides would silently misread the input.
        cuda = self.info.device.startswith("cuda")
        x = x.contiguous(memory_format=torch.channels_last) if cuda else x.contiguous()
        try:
            boxes, scores = self._call(x)
        except RuntimeError as exc:
            if self._call is self.runner:
                raise
            log.warning("CUDA graph capture of %s failed (%s); running the package directly", self.path, exc)
            self._call = self.runner
            self.info.notes["cuda_graph"] = False
            boxes, scores = self._call(x)
        return boxes[:n], scores[:n]

    def network_fn(self, batch_nhwc_u8):
        import torch

        from aeb_app.model.preprocess import normalize

        x = torch.from_numpy(np.ascontiguousarray(batch_nhwc_u8)).to(self.info.device)
        x = normalize(x, self.spec, dtype=getattr(torch, _DTYPES[self.info.precision]))
        return (lambda: self.forward_normalized(x)), "network + box decoding (input already normalised on the device)"

    def run_decoded(self, batch_nhwc_u8):
        import torch

        from aeb_app.model.preprocess import normalize

        x = torch.from_numpy(np.ascontiguousarray(batch_nhwc_u8)).to(self.info.device)
        return self.forward_normalized(normalize(x, self.spec, dtype=getattr(torch, _DTYPES[self.info.precision])))

    def synchronize(self) -> None:
        if self.info.device.startswith("cuda"):
            import torch

            torch.cuda.synchronize()


def create(loaded, mode, *, device: str | None = None, engines_dir: str | Path | None = None, batch: int = 1,
           precision: str | None = None, **options) -> CompiledDetector:
    """Load the cached package for ``mode`` (never compiles).

    Raises:
        BackendUnavailableError: FP16/BF16 without CUDA, or no package compiled yet.
    """
    import torch

    precision = precision or mode.precision
    device = device or ("cuda" if torch.cuda.is_available() else "cpu")
    if precision != "fp32" and not device.startswith("cuda"):
        raise BackendUnavailableError(f"{mode.name}: {precision} AOTInductor package needs a CUDA device; this is {device}")
    key = package_key(loaded, precision, batch, device)
    path = key.path(engines_dir or "engines")
    try:
        check_package(path, key)
        probe_package(path, device=device, precision=precision, batch=batch, input_hw=loaded.spec.input_hw)
    except EngineLoadError as exc:
        raise BackendUnavailableError(f"{mode.name}: {exc}") from exc
    return CompiledDetector(path, loaded.spec, mode=mode.name, precision=precision, device=device, batch=batch)
