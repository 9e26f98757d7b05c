"""What a detector network needs around it: input format, anchors, box coder, class mapping.

A :class:`ModelSpec` is pure data (numpy only). Every backend (PyTorch, ONNX Runtime, TensorRT)
uses the same spec, so pre- and post-processing never drift apart between backends.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import numpy as np
import numpy.typing as npt

BoxLayout = Literal["xywh", "yxhw"]
ScoreFn = Literal["softmax", "sigmoid"]
ResizeMode = Literal["bilinear", "bilinear_antialias"]


@dataclass(frozen=True, eq=False)
class ModelSpec:
    """Static description of an SSD-style detector's inputs and outputs.

    Attributes:
        name: registry name, e.g. ``"ssd_mobilenet_v1"``.
        input_hw: network input (height, width) in pixels.
        mean_rgb / std_rgb: normalisation applied to 0..255 RGB values: ``(x - mean) / std``.
        resize: ``"bilinear"`` (OpenCV INTER_LINEAR, as TF's resize) or ``"bilinear_antialias"``
            (as PIL/torchvision ``Resize``, which NVIDIA's SSD300 reference uses).
        anchors_cxcywh: (A, 4) float32 default boxes, centre/size normalised to [0, 1].
        box_layout: order of the 4 encoded box values the network emits.
        variances: multipliers (centre, centre, size, size) of the encoding, e.g. 0.1, 0.2.
        score_fn: ``"softmax"`` over all channels or per-channel ``"sigmoid"``.
        class_ids: COCO category id of each score channel; 0 marks background/unused channels.
    """

    name: str
    input_hw: tuple[int, int]
    mean_rgb: tuple[float, float, float]
    std_rgb: tuple[float, float, float]
    resize: ResizeMode
    anchors_cxcywh: npt.NDArray[np.float32]
    box_layout: BoxLayout
    variances: tuple[float, float]
    score_fn: ScoreFn
    class_ids: tuple[int, ...]

    def __post_init__(self) -> None:
        anchors = np.asarray(self.anchors_cxcywh, dtype=np.float32)
        if anchors.ndim != 2 or anchors.shape[1] != 4:
            raise ValueError(f"{self.name}: anchors must be (A, 4), got {anchors.shape}")
        object.__setattr__(self, "anchors_cxcywh", anchors)

    @property
    def num_anchors(self) -> int:
        return int(self.anchors_cxcywh.shape[0])

    @property
    def num_channels(self) -> int:
        return len(self.class_ids)
