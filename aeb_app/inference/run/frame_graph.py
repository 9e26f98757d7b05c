"""A whole frame as one CUDA Graph: resize, normalise, network, box decoding, selection; then one copy.

:func:`aeb_app.inference.run.gpu_frames.infer_device_frames` launches each of these steps from Python and
waits for the device twice in the middle of the frame (the score-threshold compaction and
``batched_nms``'s sort both need sizes the device computes). At batch 1 that host work, not the GPU,
is most of a frame's detection time. :class:`FrameGraph` captures the steps once per set of input
shapes, with the fixed-shape selection of :mod:`aeb_app.model.fixed_select`, and then each call is:
copy the frames into the graph's input, replay, copy the packed selection to pinned host memory, wait
once. The host drops the empty slots (:func:`unpack_selection`).

A batch whose selection overflowed its slots or whose NMS iteration did not converge is selected the
ordinary way (:func:`~aeb_app.inference.run.gpu_frames.kept_to_host`) from the network outputs the replay
left in the graph, so the graph never changes what is detected and the network never runs twice.
Detectors offer it through :meth:`aeb_app.inference.base.Detector.frame_graph`.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Callable, Sequence

import numpy as np

from aeb_app.model.fixed_select import DEFAULT_CAPACITY, DEFAULT_ROUNDS, select_fixed
from aeb_app.model.postprocess import PostprocessConfig, to_detections
from aeb_app.types import Detections

if TYPE_CHECKING:
    import torch

    from aeb_app.inference.base import Detector

__all__ = ["FrameGraph", "unpack_selection", "MAX_FRAME_GRAPHS"]

log = logging.getLogger(__name__)

#: Graphs a detector keeps (one per set of frame shapes and thresholds): a video has one frame size, a folder
#: of mixed photos many; past this, new shapes take the ordinary path instead of a capture each (~0.3 s).
MAX_FRAME_GRAPHS = 8


def unpack_selection(packed: np.ndarray, frame_hws: Sequence[tuple[int, int]]) -> list[Detections] | None:
    """:meth:`FixedSelection.packed` on the host -> one :class:`Detections` per frame, in its pixels;
    None when an image overflowed its slots or did not converge (the caller must select another way)."""
    flags = packed[:, -1, :2]
    if (flags[:, 0] != 0).any() or (flags[:, 1] == 0).any():
        return None
    out = []
    for rows, hw in zip(packed[:, :-1], frame_hws):
        mine = rows[rows[:, 6] > 0]
        out.append(to_detections(mine[:, :4], mine[:, 4], mine[:, 5].astype(np.int64), hw))
    return out


class FrameGraph:
    """One captured graph for frames of fixed shapes (see the module).

    Args:
        detector: an active CUDA detector with a device path (:meth:`Detector.device_input`).
        network: the detector's network call on a normalised batch (``x -> (boxes, scores)``), capturable.
        shapes: (3, H, W) of each frame of the batch, in order.
        config: the selection's thresholds.
        resize: one of :data:`aeb_app.inference.run.gpu_frames.RESIZE_METHODS`.

    Raises:
        RuntimeError: the capture failed (the caller keeps the ordinary path).
    """

    def __init__(self, detector: "Detector", network: Callable, shapes: Sequence[tuple[int, int, int]],
                 config: PostprocessConfig, *, resize: str = "interpolate", warmup: int = 3) -> None:
        import torch

        from aeb_app.model.postprocess import _class_ids

        self.shapes = tuple(tuple(s) for s in shapes)
        self.frame_hws = [(s[1], s[2]) for s in self.shapes]
        device = torch.device(detector.info.device)
        self._inputs = [torch.zeros(s, dtype=torch.uint8, device=device) for s in self.shapes]
        class_ids = _class_ids(detector.spec, device)

        def body() -> "torch.Tensor":
            from aeb_app.inference.run.gpu_frames import device_batch_from_u8, resize_to_input

            x = device_batch_from_u8(detector, resize_to_input(self._inputs, detector.spec, method=resize),
                                     self.frame_hws).x
            boxes, scores = network(x)
            return boxes, scores, select_fixed(
                boxes, scores, class_ids, score_threshold=config.score_threshold, iou_threshold=config.iou_threshold,
                max_detections=config.max_detections, class_agnostic=config.class_agnostic,
                pre_nms_top_k=config.pre_nms_top_k, capacity=DEFAULT_CAPACITY, rounds=DEFAULT_ROUNDS).packed()

        self._detector, self._config = detector, config
        self._graph, (self._boxes, self._scores, self._packed) = _capture(body, device, warmup)
        self._host = torch.empty(self._packed.shape, dtype=self._packed.dtype, pin_memory=True)
        self._copied = torch.cuda.Event()
        self.fell_back = False  # the last call's selection did not fit the graph's (see the module)

    def __call__(self, images: Sequence["torch.Tensor"]) -> list[Detections]:
        """RGB uint8 (3, H, W) CUDA tensors of the captured shapes -> detections per frame."""
        import torch

        from aeb_app.inference.run.gpu_frames import kept_to_host

        if tuple(tuple(im.shape) for im in images) != self.shapes:
            raise ValueError(f"frame graph captured for shapes {self.shapes}, got {[tuple(im.shape) for im in images]}")
        with torch.inference_mode():
            for static, image in zip(self._inputs, images):
                static.copy_(image)
            self._graph.replay()
            self._host.copy_(self._packed, non_blocking=True)
            self._copied.record()
        self._copied.synchronize()
        dets = unpack_selection(self._host.numpy(), self.frame_hws)
        self.fell_back = dets is None
        if dets is None:  # the network outputs of this replay are still in the graph's buffers
            with torch.inference_mode():
                dets = kept_to_host(self._boxes, self._scores, self._detector.spec, self.frame_hws, self._config)
        return dets


def _capture(body: Callable[[], tuple], device: "torch.device", warmup: int):
    """Warm ``body`` up on a side stream (autotuning, allocations, cached constants), then capture it."""
    import torch

    with torch.cuda.device(device), torch.inference_mode():
        stream = torch.cuda.Stream(device)
        stream.wait_stream(torch.cuda.current_stream(device))
        with torch.cuda.stream(stream):
            for _ in range(warmup):
                body()
        torch.cuda.current_stream(device).wait_stream(stream)
        graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(graph):
            outputs = body()
    log.debug("captured a whole-frame CUDA graph, selection %s", tuple(outputs[-1].shape))
    return graph, outputs
