"""Compile an AOTInductor ``.pt2`` package (``fp16_aoti``) into ``engines/``, with its sidecar.

Minutes per shape, so only an explicit command runs it (``scripts/build_compiled.py``); the runner
that loads the result is :mod:`aeb_app.inference.run.compiled_backend`.
"""

from __future__ import annotations

import copy
import time
from pathlib import Path

from aeb_app.inference import artifacts as ac
from aeb_app.inference.run.compiled_backend import package_key
from aeb_app.inference.run.torch_backend import DTYPE_NAMES as _DTYPES


def compile_package(loaded, *, precision: str = "fp16", batch: int = 1, device: str = "cuda",
                    engines_dir: str | Path = "engines", max_autotune: bool = False) -> Path:
    """Export + AOT-compile ``DetectionNet`` for one batch size; writes ``.pt2`` + sidecar atomically.

    On CUDA the network is compiled in channels-last layout (what cuDNN's tensor-core convolutions
    want) with Inductor's freezing, which folds BatchNorm into the convolutions and constant-folds
    the weights; ``max_autotune`` also benchmarks Triton kernel variants (minutes per shape).
    """
    import torch

    from aeb_app.atomic import atomic_path
    from aeb_app.model.registry import DetectionNet

    dtype = getattr(torch, _DTYPES[precision])
    # Key the package by the weights as loaded (before any cast), as create() will, and
    # compile a copy so the caller's model is left on its device and dtype.
    key = package_key(loaded, precision, batch, device)
    net = DetectionNet(copy.deepcopy(loaded.network), loaded.spec).eval()
    net.network.to(device, dtype=dtype)
    net.decode.to(device)
    example = torch.zeros(batch, 3, *loaded.spec.input_hw, device=device, dtype=dtype)
    if device.startswith("cuda"):
        net.network.to(memory_format=torch.channels_last)
        example = example.contiguous(memory_format=torch.channels_last)
    target = key.path(engines_dir)
    t0 = time.perf_counter()
    with torch.inference_mode():
        exported = torch.export.export(net, (example,))
    options = {"freezing": True, **({"max_autotune": True} if max_autotune else {})}
    with atomic_path(target) as tmp:
        torch._inductor.aoti_compile_and_package(exported, package_path=str(tmp), inductor_configs=options)
    ac.write_sidecar(target, ac.Sidecar(
        kind=ac.AOTI_PACKAGE, model=key.model, weights_sha256=key.weights_sha256, precision=precision,
        batch=ac.Profile(batch, batch, batch), sha256=ac.file_sha256(target), builder="torch._inductor.aoti",
        versions={"torch": key.torch_version}, usage=ac.usage_for(loaded.spec),
        details={"device": key.device, "compile_s": round(time.perf_counter() - t0, 1), "inductor_configs": options,
                 "channels_last": device.startswith("cuda"),
                 "input": "normalised NCHW in the package's dtype; fixed batch (pad smaller batches)"}))
    return target
