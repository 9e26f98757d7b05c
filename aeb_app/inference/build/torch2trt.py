"""Optional torch2trt converter: same engine file + sidecar as the ONNX path.

Written for torch2trt 0.5.0 (NVIDIA-AI-IOT master, installed from git; it is not on PyPI) with
TensorRT 10.13.2+; never run here (neither installs on these machines), only checked by
:mod:`aeb_app.inference.build.torch2trt_check` against the converter list read from torch2trt's sources.

Before converting, :func:`preflight` traces the network and refuses a call without a
torch2trt converter (torch2trt would freeze its output into a constant) or one whose
converter needs a network method TensorRT 10 removed (``add_padding``), naming the node.
Any error during conversion becomes one :class:`EngineError` line.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

from aeb_app.errors import BackendUnavailableError, EngineError
from aeb_app.inference import artifacts as ac

#: One line for the docs and the sidecar.
WRITTEN_FOR = "torch2trt 0.5.0 (git master) with TensorRT 10.13.2+ (never run here)"


def preflight(net, example) -> None:
    """Refuse a network torch2trt would convert wrongly or not at all (no torch2trt needed).

    Raises:
        EngineError: calls without a converter, or converters needing removed TensorRT methods.
    """
    from aeb_app.inference.build.torch2trt_check import plan_conversion, removed_layers

    try:
        plan = plan_conversion(net, example)
    except Exception as exc:  # torch.fx cannot trace data-dependent Python control flow
        raise EngineError(f"torch2trt preflight: cannot trace the network ({type(exc).__name__}: {exc})") from exc
    problems = [f"no converter: {m}" for m in plan.missing] + [f"removed in TensorRT 10: {r}"
                                                               for r in removed_layers(plan)]
    if problems:
        raise EngineError("torch2trt cannot convert this network correctly: " + "; ".join(problems[:4]))


def build_engine_torch2trt(loaded, *, precision: str, profile: ac.Profile, engines_dir: str | Path = "engines") -> Path:
    """Convert ``DetectionNet`` with torch2trt and store ``engine + sidecar`` in ``engines_dir``.

    Raises:
        BackendUnavailableError: torch2trt, TensorRT or a GPU is missing; INT8 requested (use the ONNX path).
        EngineError: the preflight or the conversion failed (one line).
    """
    try:
        from torch2trt import torch2trt
    except ImportError as exc:
        raise BackendUnavailableError(
            "torch2trt is not installed: pip install 'git+https://github.com/NVIDIA-AI-IOT/torch2trt' "
            f"(needs TensorRT; see docs/nvidia-setup.md) ({exc})") from exc
    import torch

    from aeb_app.atomic import write_bytes
    from aeb_app.inference.trt_api import import_trt, machine_info, trt_major
    from aeb_app.model.registry import DetectionNet

    if precision == "int8":
        raise BackendUnavailableError("torch2trt INT8 is not wired up: use --converter onnx --int8-method qdq")
    if precision == "fp16" and trt_major(import_trt()) >= 11:
        raise BackendUnavailableError("torch2trt FP16 uses BuilderFlag.FP16, which TensorRT 11 removed; "
                                      "use TensorRT 10 or --precision fp32")
    machine = machine_info()
    chw = (3, *loaded.spec.input_hw)
    preflight(DetectionNet(loaded.network, loaded.spec).eval(), torch.zeros(profile.opt_batch, *chw))
    net = DetectionNet(loaded.network, loaded.spec).eval().cuda()
    x = torch.zeros(profile.opt_batch, *chw, device="cuda")
    try:
        # Explicit min/opt/max shapes so the engine's profile is the one the sidecar records
        # (torch2trt's legacy max_batch_size would force min batch 1).
        trt_module = torch2trt(net, [x], fp16_mode=precision == "fp16", input_names=["images"],
                               output_names=["boxes", "scores"], min_shapes=[(profile.min_batch, *chw)],
                               opt_shapes=[(profile.opt_batch, *chw)], max_shapes=[(profile.max_batch, *chw)])
        data = bytes(trt_module.engine.serialize())
    except Exception as exc:  # torch2trt raises AttributeError/TypeError/RuntimeError from deep inside
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
        raise EngineError(f"torch2trt conversion of {loaded.spec.name} failed ({type(exc).__name__}: {first}); "
                          f"written for {WRITTEN_FOR}") from exc
    source = ac.weights_sha256(loaded)
    key = ac.engine_key(model=loaded.spec.name, precision=precision, profile=profile, source_sha256=source,
                        machine=machine, kind="t2t")
    target = ac.engine_path(engines_dir, key)
    write_bytes(target, data)
    ac.write_sidecar(target, ac.Sidecar(
        kind=ac.TRT_ENGINE, model=loaded.spec.name, weights_sha256=source, precision=precision, batch=profile,
        sha256=hashlib.sha256(data).hexdigest(), builder="torch2trt", versions={"tensorrt": machine.runtime_version},
        machine=machine, usage=ac.usage_for(loaded.spec),
        details={"source": "the network's weights (torch2trt converts the network, not an ONNX)",
                 "written_for": WRITTEN_FOR, "tf32": True}))  # torch2trt leaves TensorRT's default TF32 flag on
    return target
