"""Optional torch2trt converter (the seed's tool): same engine file + sidecar as the ONNX path.

``torch2trt`` is imported lazily; without it (or TensorRT) this raises
:class:`BackendUnavailableError`. Not exercised here (neither is installable).
"""

from __future__ import annotations

import hashlib
from pathlib import Path

from aeb_app.errors import BackendUnavailableError
from aeb_app.inference import engine_cache as ec


def build_engine_torch2trt(loaded, *, precision: str, profile: ec.Profile, engines_dir: str | Path = "engines") -> Path:
    """Convert ``DetectionNet`` with torch2trt and store ``engine + sidecar`` in ``engines_dir``.

    Raises:
        BackendUnavailableError: torch2trt, TensorRT or a GPU is missing; INT8 requested (use the ONNX path).
    """
    try:
        from torch2trt import torch2trt
    except ImportError as exc:
        raise BackendUnavailableError(
            "torch2trt is not installed: pip install 'git+https://github.com/NVIDIA-AI-IOT/torch2trt' "
            f"(needs TensorRT; see docs/nvidia-setup.md) ({exc})") from exc
    import torch

    from aeb_app.atomic import write_bytes, write_json
    from aeb_app.inference.onnx_export import weights_sha256
    from aeb_app.inference.tensorrt_backend import import_trt, machine_info, trt_major
    from aeb_app.model.registry import DetectionNet

    if precision == "int8":
        raise BackendUnavailableError("torch2trt INT8 is not wired up: use --converter onnx --int8-method qdq")
    if precision == "fp16" and trt_major(import_trt()) >= 11:
        raise BackendUnavailableError("torch2trt FP16 uses BuilderFlag.FP16, which TensorRT 11 removed; "
                                      "use TensorRT 10 or --precision fp32")
    machine = machine_info()
    net = DetectionNet(loaded.network, loaded.spec).eval().cuda()
    chw = (3, *loaded.spec.input_hw)
    x = torch.zeros(profile.opt_batch, *chw, device="cuda")
    # Explicit min/opt/max shapes so the engine's profile is the one the sidecar records
    # (torch2trt's legacy max_batch_size would force min batch 1).
    trt_module = torch2trt(net, [x], fp16_mode=precision == "fp16", input_names=["images"],
                           output_names=["boxes", "scores"], min_shapes=[(profile.min_batch, *chw)],
                           opt_shapes=[(profile.opt_batch, *chw)], max_shapes=[(profile.max_batch, *chw)])
    data = bytes(trt_module.engine.serialize())
    source = weights_sha256(loaded)
    key = ec.engine_key(model=loaded.spec.name, precision=precision, profile=profile, source_sha256=source,
                        machine=machine, kind="t2t")
    target = ec.engine_path(engines_dir, key)
    write_bytes(target, data)
    write_json(ec.sidecar_path(target), ec.make_sidecar(
        model=loaded.spec.name, precision=precision, profile=profile, machine=machine, onnx_sha256=source,
        engine_sha256=hashlib.sha256(data).hexdigest(), builder="torch2trt",
        extra={"source": "weights_sha256 (torch2trt converts the network, not an ONNX)",
               "tf32": True}))  # torch2trt leaves TensorRT's default TF32 flag on
    return target
