"""8-bit convolutions on the GPU without TensorRT: FP8 (torch._scaled_mm) and INT8 (torch._int_mm)
1x1 GEMMs against FP16/BF16, on all three models, in one device call.

    PYTHONUNBUFFERED=1 python3 scripts/int8_gpu_lab.py --quick --out $OUT/lab [--coco-dir DIR] [--budget-s 300]
    python scripts/int8_gpu_lab.py --quick --device cpu --models ssd_mobilenet_v1 --out /tmp/lab  # script check

Routes (aeb_app.inference.run.lowp; eligible 1x1 convs in 8 bits, 3x3/depthwise in BF16):
  A. fp8_gpu: e4m3 activations per tensor, weights per output channel, torch._scaled_mm with row-wise
     scales (BF16 out), eager + CUDA Graph; A+compile: the same network through torch.compile (Inductor
     fuses the quantise/bias/ReLU6 passes around the GEMMs) + CUDA Graph.
  B. int8_gpu: the same with int8 and torch._int_mm (int32 out, dequantised in the epilogue); B+compile.
Baselines in the same process: fp16_graph, bf16 (+ CUDA Graph), fp16_fused, fp16_compiled (project modes).

Writes OUT/int8_gpu_lab.json (one file). Per model:
  * ``agreement``: the GPU GEMM network vs the same network with kernel="sim" (the CPU simulation CI
    scores), same input: max/mean |difference| of probabilities and boxes, next to the FP32-vs-8-bit error;
  * ``network``: per variant and batch, p50 / p99 ms per batch and img/s (CUDA events, median), compile s;
  * ``layers`` (batch 64): every quantised 1x1 conv: M, K, N, GFLOP, FP16 cuDNN conv ms, FP8 layer ms
    (quantise + GEMM + epilogue) and GEMM-only ms, the same for INT8, achieved TFLOP/s and % of the H200's
    dense 8-bit roof (1,979 TFLOP/s; FP16 989);
  * ``profile`` (batch 64, eager, no graph): the top CUDA kernels of the FP8 and INT8 networks.
Jobs run cheapest first; once --budget-s is spent, the remaining ones are recorded as skipped.
Ranges: the Q/DQ calibration in --engines-dir when present (real-weight models), else the max |x| of
one random batch (speed does not depend on scale values). Inputs are random unless --coco-dir is given.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import time
import traceback
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

ROOF_8BIT_TFLOPS = 1979.0
ROOF_FP16_TFLOPS = 989.0
MODELS = ("ssd300_resnet50", "ssd_mobilenet_v1", "ssdlite_mobilenet_v2")
log = logging.getLogger("int8_gpu_lab")


class Lab:
    def __init__(self, args) -> None:
        import torch

        self.args, self.torch = args, torch
        self.cuda = args.device.startswith("cuda")
        self.t0 = time.monotonic()
        self.batches = (1, 64) if self.cuda else (1, 2)
        self.result: dict = {"machine": self._machine(), "args": vars(args) | {"out": str(args.out)}, "models": {}}
        self._frames: dict = {}

    def over_budget(self) -> bool:
        return time.monotonic() - self.t0 > self.args.budget_s

    def _machine(self) -> dict:
        import torch

        info = {"torch": torch.__version__, "cuda": torch.version.cuda, "cudnn": torch.backends.cudnn.version()}
        if torch.cuda.is_available():
            info |= {"gpu": torch.cuda.get_device_name(0), "capability": list(torch.cuda.get_device_capability(0))}
        return info

    def save(self) -> None:
        out = Path(self.args.out) / "int8_gpu_lab.json"
        out.parent.mkdir(parents=True, exist_ok=True)
        tmp = out.with_suffix(".tmp")
        tmp.write_text(json.dumps(self.result, indent=1, default=str))
        tmp.replace(out)

    # -- building blocks ------------------------------------------------------------------------
    def ranges(self, loaded) -> tuple[dict[str, float], str]:
        from aeb_app.inference.run.lowp import activation_ranges, observed_ranges

        if loaded.weights != "random":
            try:
                return activation_ranges(loaded, self.args.engines_dir), "qdq calibration"
            except Exception as exc:  # noqa: BLE001 - recorded, then the speed-only fallback
                log.info("%s: %s; using one random batch", loaded.spec.name, exc)
        x = self.torch.rand(2, 3, *loaded.spec.input_hw) * 2 - 1
        return observed_ranges(loaded.network, x), "max |x| of one random batch (speed only)"

    def detector(self, loaded, variant: str, ranges):
        from aeb_app.inference.run.lowp_backend import LowpDetector
        from aeb_app.inference.registry import create

        dev = self.args.device
        if variant.startswith(("fp8", "int8")):
            fmt, _, rest = variant.partition("_")
            kernel = "sim" if rest.startswith("sim") else "gemm"
            return LowpDetector(loaded, fmt=fmt, kernel=kernel, ranges=ranges, device=dev, mode=variant,
                                cuda_graph=self.cuda, compile="compile" in rest)
        if not self.cuda:  # script check on a CPU: FP32 stands in for the 16-bit baselines
            return create(loaded, "fp32", device=dev)
        return create(loaded, variant, device=dev, engines_dir=Path("/tmp/engines"))

    def frames(self, spec, batch: int):
        """(batch, H, W, 3) uint8 RGB input, made once per (model, batch)."""
        key = (spec.name, batch)
        if key not in self._frames:
            self._frames[key] = self._make_frames(spec, batch)
        return self._frames[key]

    def _make_frames(self, spec, batch: int):
        import numpy as np

        from aeb_app.model.preprocess import resize_batch

        if self.args.coco_dir:
            import cv2

            paths = sorted(Path(self.args.coco_dir).rglob("*.jpg"))[: max(batch, 1)]
            frames = [cv2.imread(str(p)) for p in paths]
            frames = (frames * (batch // len(frames) + 1))[:batch]
            return resize_batch(frames, spec)
        rng = np.random.default_rng(0)
        return rng.integers(0, 256, (batch, *spec.input_hw, 3), dtype=np.uint8)

    def time_fn(self, fn, *, quick_time: float = 0.3):
        from aeb_app.bench.timing import measure

        return measure(fn, cuda=self.cuda, warmup_iters=3 if self.cuda else 1, min_iters=20 if self.cuda else 2,
                       max_iters=2000, min_time_s=quick_time if self.args.quick else 1.0)

    # -- jobs -------------------------------------------------------------------------------------
    def network_row(self, loaded, variant: str, batch: int, ranges) -> dict:
        row: dict = {"variant": variant, "batch": batch}
        if "compile" in variant:
            # Each compiled variant starts from a clean Dynamo cache: the networks share code objects, and
            # past the cache size limit Dynamo would silently run them eagerly.
            self.torch._dynamo.reset()
        try:
            with self.detector(loaded, variant, ranges) as det:
                fn, includes = det.network_fn(self.frames(loaded.spec, batch))
                t = time.monotonic()
                fn()
                det.synchronize()
                row["first_call_s"] = round(time.monotonic() - t, 2)  # compile / graph capture
                stats = self.time_fn(fn)
                row |= {"p50_ms": round(stats.p50_ms, 4), "p99_ms": round(stats.p99_ms, 4),
                        "img_s": round(batch * 1e3 / stats.p50_ms, 1), "iters": stats.iters, "includes": includes,
                        "notes": {k: v for k, v in det.info.notes.items() if k in ("quantized", "kept_16bit")}}
        except Exception as exc:  # noqa: BLE001 - one failing variant must not end the run
            row["error"] = f"{type(exc).__name__}: {str(exc).splitlines()[0][:300]}" if str(exc) else type(exc).__name__
            row["trace"] = traceback.format_exc(limit=4)[-1500:]
        log.info("%s %s b%d: %s", loaded.spec.name, variant, batch,
                 row.get("img_s", row.get("error")))
        return row

    def agreement(self, loaded, ranges) -> dict:
        """GEMM kernels vs the simulated arithmetic, and 8-bit vs FP32, on the same batch."""
        out: dict = {}
        batch = self.frames(loaded.spec, 8)
        with self.detector(loaded, "fp32", ranges) as ref:
            ref_out = [t.float().cpu() for t in ref.run_decoded(batch)]
        for fmt in ("fp8", "int8"):
            try:
                with self.detector(loaded, f"{fmt}_gemm", ranges) as gemm, \
                        self.detector(loaded, f"{fmt}_sim", ranges) as sim:
                    g = [t.float().cpu() for t in gemm.run_decoded(batch)]
                    s = [t.float().cpu() for t in sim.run_decoded(batch)]
                out[fmt] = {
                    "gemm_vs_sim_max_abs": {"boxes": float((g[0] - s[0]).abs().max()),
                                            "probs": float((g[1] - s[1]).abs().max())},
                    "gemm_vs_sim_mean_abs_probs": float((g[1] - s[1]).abs().mean()),
                    "sim_vs_fp32_max_abs": {"boxes": float((s[0] - ref_out[0]).abs().max()),
                                            "probs": float((s[1] - ref_out[1]).abs().max())},
                    "sim_vs_fp32_mean_abs_probs": float((s[1] - ref_out[1]).abs().mean()),
                }
            except Exception as exc:  # noqa: BLE001
                out[fmt] = {"error": f"{type(exc).__name__}: {str(exc)[:300]}"}
            log.info("%s agreement %s: %s", loaded.spec.name, fmt, out[fmt])
        return out

    def layers(self, loaded, ranges, batch: int) -> list[dict]:
        """Per quantised 1x1 conv at ``batch``: 16-bit conv vs 8-bit layer vs 8-bit GEMM alone."""
        from aeb_app.inference.run.lowp import FORMATS, QuantConv1x1, quantize_network

        torch = self.torch
        dev = torch.device(self.args.device)
        act = torch.float16 if self.cuda else torch.float32
        nets = {f: quantize_network(loaded.network, ranges, f, "gemm")[0] for f in ("fp8", "int8")}
        q_modules_fp8 = dict(nets["fp8"].named_modules())
        from aeb_app.model.fuse import optimize_for_inference

        float_net, _ = optimize_for_inference(loaded.network, ("fold_bn",))
        shapes: dict[str, tuple] = {}
        macs: dict[str, float] = {}

        def hook(mod, args, out, name):
            shapes[name] = tuple(args[0].shape)
            macs[name] = out.numel() * mod.weight[0].numel()  # per image: outputs x (C_in/groups x kH x kW)

        hooks = [m.register_forward_hook(lambda mod, a, o, n=n: hook(mod, a, o, n))
                 for n, m in float_net.named_modules() if isinstance(m, torch.nn.Conv2d)]
        with torch.no_grad():
            float_net(torch.zeros(1, 3, *loaded.spec.input_hw))
        for h in hooks:
            h.remove()
        quantized = [n for n, m in q_modules_fp8.items() if isinstance(m, QuantConv1x1)]
        self.result["models"][loaded.spec.name]["conv_gmac_per_image"] = {
            "all": round(sum(macs.values()) / 1e9, 3), "quantized_1x1_fp8": round(sum(macs[n] for n in quantized) / 1e9, 3)}
        rows = []
        q_modules = {f: dict(n.named_modules()) for f, n in nets.items()}
        for name, conv in float_net.named_modules():
            if not isinstance(conv, torch.nn.Conv2d) or not isinstance(q_modules["fp8"].get(name), QuantConv1x1):
                continue
            if self.over_budget():
                rows.append({"layer": name, "skipped": "budget"})
                break
            _, k, h, w = shapes[name]
            x16 = torch.randn(batch, k, h, w, device=dev, dtype=act).relu().contiguous(memory_format=torch.channels_last)
            c16 = conv.to(dev, act).to(memory_format=torch.channels_last)
            s = conv.stride[0]
            m_rows = batch * (-(-h // s)) * (-(-w // s))
            flops = 2.0 * m_rows * k * conv.out_channels
            row = {"layer": name, "M": m_rows, "K": k, "N": conv.out_channels, "gflop": round(flops / 1e9, 3)}
            with torch.inference_mode():
                row["fp16_conv_ms"] = round(self.time_fn(lambda: c16(x16), quick_time=0.05).p50_ms, 5)
                for fmt in ("fp8", "int8"):
                    q = q_modules[fmt][name].to(dev)
                    xb = x16.to(FORMATS[fmt].act_dtype) if self.cuda else x16
                    row[f"{fmt}_layer_ms"] = round(self.time_fn(lambda: q(xb), quick_time=0.05).p50_ms, 5)
                    a = xb[:, :, ::s, ::s].permute(0, 2, 3, 1).reshape(-1, k)
                    aq = FORMATS[fmt].quantize(a.float() * (1.0 / q.a_scale))
                    gemm = (lambda: torch._int_mm(aq, q.weight_8bit.t())) if fmt == "int8" and m_rows > 16 \
                        else (lambda: q._accumulate(aq))  # FP8: _scaled_mm alone (scales applied inside)
                    row[f"{fmt}_gemm_ms"] = round(self.time_fn(gemm, quick_time=0.05).p50_ms, 5)
            for key in ("fp16_conv", "fp8_layer", "fp8_gemm", "int8_layer", "int8_gemm"):
                tflops = flops / (row[f"{key}_ms"] * 1e-3) / 1e12
                roof = ROOF_FP16_TFLOPS if key.startswith("fp16") else ROOF_8BIT_TFLOPS
                row[f"{key}_tflops"] = round(tflops, 1)
                row[f"{key}_pct_roof"] = round(100 * tflops / roof, 1)
            rows.append(row)
        return rows

    def profile(self, loaded, ranges, batch: int) -> dict:
        """Top CUDA kernels of the eager FP8/INT8 networks (no CUDA Graph, so kernels are visible)."""
        from torch.profiler import ProfilerActivity, profile

        torch = self.torch
        out = {}
        for fmt in ("fp8", "int8"):
            try:
                det = self.detector(loaded, f"{fmt}_gemm", ranges)
                det._cuda_graph = False
                with det:
                    fn, _ = det.network_fn(self.frames(loaded.spec, batch))
                    for _ in range(3):
                        fn()
                    torch.cuda.synchronize()
                    with profile(activities=[ProfilerActivity.CUDA]) as prof:
                        for _ in range(5):
                            fn()
                        torch.cuda.synchronize()
                events = sorted(prof.key_averages(), key=lambda e: -e.self_device_time_total)[:15]
                total = sum(e.self_device_time_total for e in prof.key_averages())
                out[fmt] = {"total_ms_per_call": round(total / 5e3, 4), "top": [
                    {"kernel": e.key[:120], "ms_per_call": round(e.self_device_time_total / 5e3, 4),
                     "calls_per_call": e.count // 5, "pct": round(100 * e.self_device_time_total / max(total, 1), 1)}
                    for e in events]}
            except Exception as exc:  # noqa: BLE001
                out[fmt] = {"error": f"{type(exc).__name__}: {str(exc)[:300]}"}
        return out

    # -- plan -----------------------------------------------------------------------------------
    def run(self) -> None:
        from aeb_app.model.registry import load_model

        loaded = {}
        for name in self.args.models:
            weights = "random" if name == "ssd300_resnet50" else "auto"
            try:
                model = load_model(name, weights=weights)
            except Exception as exc:  # noqa: BLE001 - e.g. the tflite wheel missing: the other models go on
                self.result["models"][name] = {"error": f"{type(exc).__name__}: {str(exc)[:300]}"}
                log.error("%s: %s", name, exc)
                continue
            ranges, source = self.ranges(model)
            self.result["models"][name] = {"weights": model.weights, "ranges": source, "network": [],
                                           "agreement": {}, "layers": [], "profile": {}, "skipped": []}
            loaded[name] = (model, ranges)
        cheap = ("fp16_graph", "bf16_graph", "fp8_gemm", "int8_gemm") if self.cuda else ("fp32", "fp8_gemm", "int8_gemm")
        jobs = [("agreement", n, None, None) for n in loaded]
        jobs += [("network", n, v, b) for n in loaded for b in self.batches for v in cheap]
        jobs += [("layers", n, None, self.batches[-1]) for n in loaded]
        if self.cuda:
            jobs += [("network", n, "fp16_fused", b) for n in loaded for b in self.batches]
            jobs += [("profile", n, None, 64) for n in loaded if n != "ssd_mobilenet_v1"]
            # Compiles take 20-60 s each: the targets first (SSD300, then the float-weight SSDLite).
            compiled = ("fp16_compiled", "fp8_gemm_compile", "int8_gemm_compile")
            order = sorted(loaded, key=lambda n: ("ssd300_resnet50", "ssdlite_mobilenet_v2").index(n)
                           if n in ("ssd300_resnet50", "ssdlite_mobilenet_v2") else 2)
            jobs += [("network", n, v, 64) for n in order for v in compiled]
            jobs += [("network", n, v, 1) for n in order for v in compiled]
        for kind, name, variant, batch in jobs:
            entry, (model, ranges) = self.result["models"][name], loaded[name]
            if self.over_budget():
                entry["skipped"].append(f"{kind} {variant or ''} b{batch}: budget {self.args.budget_s} s spent")
                continue
            if kind == "agreement":
                entry["agreement"] = self.agreement(model, ranges)
            elif kind == "network":
                entry["network"].append(self.network_row(model, variant, batch, ranges))
            elif kind == "layers":
                entry["layers"] = self.layers(model, ranges, batch)
            else:
                entry["profile"] = self.profile(model, ranges, batch)
            self.result["elapsed_s"] = round(time.monotonic() - self.t0, 1)
            self.save()


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--out", type=Path, required=True)
    p.add_argument("--quick", action="store_true", help="short timing windows (0.3 s per network, 0.05 s per layer)")
    p.add_argument("--device", default="cuda")
    p.add_argument("--models", type=lambda s: tuple(s.split(",")), default=MODELS)
    p.add_argument("--engines-dir", type=Path, default=Path("engines"), help="Q/DQ calibrations")
    p.add_argument("--coco-dir", default=None, help="COCO images for the inputs (default random)")
    p.add_argument("--budget-s", type=float, default=270.0, help="stop starting jobs after this many seconds")
    args = p.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    lab = Lab(args)
    # bf16_graph is not a registered mode; the 8-bit networks' 16-bit layers run in BF16.
    from aeb_app.inference import registry

    if "bf16_graph" not in registry.MODES:
        registry.MODES["bf16_graph"] = registry.Mode("bf16_graph", "pytorch", "bf16", "aeb_app.inference.registry:_torch",
                                                     options=(("cuda_graph", True),))
    try:
        lab.run()
    finally:
        lab.result["elapsed_s"] = round(time.monotonic() - lab.t0, 1)
        lab.save()
        log.info("wrote %s/int8_gpu_lab.json in %.0f s", args.out, lab.result["elapsed_s"])


if __name__ == "__main__":
    main()
