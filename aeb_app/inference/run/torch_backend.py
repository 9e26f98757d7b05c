"""PyTorch backend: FP32 on CPU/CUDA, FP16/BF16 on CUDA, channels-last, optional CUDA Graphs,
inference rewrites (:mod:`aeb_app.model.fuse`) and ``torch.compile`` (Inductor)."""

from __future__ import annotations

import copy
import logging
from typing import Callable

import numpy as np
import numpy.typing as npt

from aeb_app.errors import BackendUnavailableError
from aeb_app.inference.base import Detector, DetectorInfo
from aeb_app.model.preprocess import normalize
from aeb_app.model.registry import DetectionNet, LoadedModel

log = logging.getLogger(__name__)

DTYPE_NAMES = {"fp32": "float32", "fp16": "float16", "bf16": "bfloat16"}


class TorchDetector(Detector):
    """Eager PyTorch. The model moves to the device once, in :meth:`activate`.

    Args:
        loaded: the model and its spec (CPU, eval mode).
        precision: "fp32", "fp16" or "bf16" (the last two need CUDA).
        device: "cpu", "cuda" or "cuda:N".
        channels_last: NHWC memory format (faster convolutions on tensor cores).
        cuda_graph: capture the network once per batch size and replay it (removes launch overhead).
        rewrites: :data:`aeb_app.model.fuse.REWRITES` to apply to a copy of the network.
        compile: ``torch.compile`` the network with Inductor (BatchNorm frozen into the weights);
            each new batch size compiles once, in the first call (tens of seconds), with Inductor's
            caches under ``engines_dir/inductor`` so later runs reuse the generated kernels.
        engines_dir: where the Inductor cache lives (compile only).
    """

    def __init__(
        self,
        loaded: LoadedModel,
        *,
        precision: str = "fp32",
        device: str = "cpu",
        channels_last: bool = True,
        cuda_graph: bool = False,
        rewrites: tuple[str, ...] = (),
        compile: bool = False,
        engines_dir=None,
        mode: str | None = None,
    ) -> None:
        import torch

        if precision not in DTYPE_NAMES:
            raise BackendUnavailableError(f"unknown precision {precision!r}; choose fp32, fp16 or bf16")
        if device.startswith("cuda") and not torch.cuda.is_available():
            raise BackendUnavailableError(f"PyTorch {precision} on {device}: no CUDA device on this machine")
        if precision != "fp32" and not device.startswith("cuda"):
            raise BackendUnavailableError(f"PyTorch {precision} needs a CUDA device; this one is {device}")
        name = mode or (precision if not cuda_graph else f"{precision}_graph")
        super().__init__(
            loaded.spec,
            DetectorInfo(name, "pytorch", precision, device, loaded.spec.name,
                         notes={"channels_last": channels_last, "cuda_graph": cuda_graph,
                                "weights": loaded.weights, "rewrites": list(rewrites), "compile": compile}),
        )
        self._loaded = loaded
        self._dtype = getattr(torch, DTYPE_NAMES[precision])
        self._device = torch.device(device)
        self._channels_last = channels_last
        self._cuda_graph = cuda_graph
        self._rewrites = tuple(rewrites)
        self._compile = compile
        self._engines_dir = engines_dir
        self._graph: Callable | None = None
        self._fn: Callable | None = None
        self._staging: tuple | None = None
        self._frame_graphs: dict[tuple, object] = {}
        self._frame_graphs_full = False
        self.net: DetectionNet | None = None

    def activate(self) -> None:
        import torch

        # Work on a copy: the loaded model is shared (other detectors, ONNX export and the engine
        # caches key on its weights), and moving/casting it in place changed those keys.
        if self._rewrites:
            from aeb_app.model.fuse import optimize_for_inference

            network, applied = optimize_for_inference(self._loaded.network, self._rewrites)
            self.info.notes["rewrites"] = applied
        else:
            network = copy.deepcopy(self._loaded.network)
        net = DetectionNet(network, self.spec).eval()
        net.network.to(self._device, dtype=self._dtype)
        net.decode.to(self._device)
        if self._channels_last:
            net.network.to(memory_format=torch.channels_last)
        self.net = net
        if "cudnn_fused" in self._rewrites and self._device.type == "cuda":
            self._probe(net, 1, (RuntimeError,), "cuDNN cannot run the fused convolutions here")
        self._ready(net)

    def _ready(self, net) -> None:
        """The activated network's call: compiled if asked, cuDNN autotuning and a CUDA Graph on a GPU."""
        import torch

        self._fn = self._compiled(net) if self._compile else net
        if self._device.type == "cuda":
            torch.backends.cudnn.benchmark = True
            if self._cuda_graph:
                from aeb_app.inference.run.cuda_graph import CudaGraphRunner

                fn = self._fn
                self._graph = CudaGraphRunner(lambda x: tuple(fn(x)))

    def _probe(self, net, batch: int, errors: tuple[type[BaseException], ...], why: str) -> None:
        """One small forward pass; one of ``errors`` makes the mode unavailable (``why``, then the error)."""
        import torch

        x = torch.zeros(batch, 3, *self.spec.input_hw, device=self._device, dtype=self._dtype)
        try:
            with torch.inference_mode():
                net(x.contiguous(memory_format=torch.channels_last) if self._channels_last else x)
        except errors as exc:
            self.net = None
            raise BackendUnavailableError(f"{self.info.mode}: {why} ({str(exc).splitlines()[0][:200]})") from exc

    def _compiled(self, net):
        import os
        from pathlib import Path

        import torch

        if self._engines_dir is not None and "TORCHINDUCTOR_CACHE_DIR" not in os.environ:
            # Process-wide, read by Inductor when it compiles; an explicit setting wins.
            os.environ["TORCHINDUCTOR_CACHE_DIR"] = str(Path(self._engines_dir).resolve() / "inductor")
        self.info.notes["inductor_cache"] = os.environ.get("TORCHINDUCTOR_CACHE_DIR", "default")
        return torch.compile(net, dynamic=False, options={"freezing": True})

    def deactivate(self) -> None:
        self.net = None
        self._fn = None
        self._graph = None
        self._frame_graphs.clear()
        self._frame_graphs_full = False

    def _prepare(self, batch_nhwc_u8: npt.NDArray[np.uint8]):
        import torch

        x = torch.from_numpy(np.ascontiguousarray(batch_nhwc_u8))
        if self._device.type == "cuda":
            x = self._upload(x)
        x = normalize(x, self.spec, dtype=self._dtype)
        return x.contiguous(memory_format=torch.channels_last) if self._channels_last else x

    def _upload(self, x):
        """Host uint8 batch -> device, through a pinned staging buffer allocated once per shape
        (allocating pinned memory per frame costs more than the copy itself)."""
        import torch

        if self._staging is None or self._staging[0].shape != x.shape:
            self._staging = (torch.empty(x.shape, dtype=torch.uint8, pin_memory=True), torch.cuda.Event())
        pinned, copied = self._staging
        copied.synchronize()  # the previous upload from this buffer has finished
        pinned.copy_(x)
        out = pinned.to(self._device, non_blocking=True)
        copied.record()
        return out

    def forward_normalized(self, x):
        """Decoded outputs for an already normalised device tensor (used by benchmarks)."""
        import torch

        with torch.inference_mode():
            if self._graph is not None:
                return self._graph(x)
            return self._fn(x)

    def network_fn(self, batch_nhwc_u8: npt.NDArray[np.uint8]):
        x = self._prepare(batch_nhwc_u8)
        return (lambda: self.forward_normalized(x)), "network + box decoding (input already normalised on the device)"

    def run_decoded(self, batch_nhwc_u8: npt.NDArray[np.uint8]):
        return self.forward_normalized(self._prepare(batch_nhwc_u8))

    def frame_graph(self, shapes, config):
        """With ``cuda_graph`` on a GPU: the whole frame captured in one graph per shapes and thresholds
        (:mod:`aeb_app.inference.run.frame_graph`), at most ``MAX_FRAME_GRAPHS`` of them; a capture that fails
        is logged once and not retried. ``AEB_APP_FRAME_GRAPH=0`` in the environment turns it off (for
        comparisons)."""
        import os

        from aeb_app.inference.run.frame_graph import MAX_FRAME_GRAPHS

        if not self._cuda_graph or self._device.type != "cuda" or self._fn is None \
                or os.environ.get("AEB_APP_FRAME_GRAPH", "1") == "0":
            return None
        key = (tuple(tuple(s) for s in shapes), config)
        if key not in self._frame_graphs:
            if len(self._frame_graphs) >= MAX_FRAME_GRAPHS:  # frames of ever new sizes: no capture for each
                if not self._frame_graphs_full:
                    log.info("%s: %d frame shapes captured already; frames of new shapes take the ordinary path",
                             self.info.mode, MAX_FRAME_GRAPHS)
                    self._frame_graphs_full = True
                return None
            self._frame_graphs[key] = self._capture_frame_graph(key[0], config)
        return self._frame_graphs[key]

    def _capture_frame_graph(self, shapes, config):
        from aeb_app.inference.run.frame_graph import FrameGraph

        try:
            return FrameGraph(self, self._fn, shapes, config)
        except RuntimeError as exc:
            log.warning("%s: the whole-frame CUDA graph could not be captured (%s); frames take the ordinary path",
                        self.info.mode, str(exc).splitlines()[0][:200] if str(exc) else type(exc).__name__)
            return None

    def device_input(self):
        return (self._dtype, self._channels_last) if self._device.type == "cuda" else None

    def synchronize(self) -> None:
        if self._device.type == "cuda":
            import torch

            torch.cuda.synchronize(self._device)
