"""NVIDIA's SSD300 with a ResNet-50 backbone, in DeepLearningExamples' layout.

Layer names match NVIDIA's published checkpoint (``nvidia_ssdpyt_amp_200703.pt``), so its
state dict loads as is. Architecture: ResNet-50 up to layer3 with stride 1 in layer3's first
block (38x38x1024), five extra blocks (19, 10, 5, 3, 1), and 3x3 loc/conf heads with
4/6/6/6/4/4 default boxes per cell: 8732 boxes, 81 classes (background + 80 COCO classes).
Preprocessing and decoding follow NVIDIA's reference: PIL bilinear resize to 300x300,
ImageNet mean/std, softmax scores, xywh offsets with scale_xy 0.1 and scale_wh 0.2.
"""

from __future__ import annotations

import itertools
import logging
from math import sqrt
from pathlib import Path

import numpy as np
import torch
from torch import nn

from aeb_app.errors import ModelLoadError
from aeb_app.model.coco import COCO_IDS_80
from aeb_app.model.spec import ModelSpec

log = logging.getLogger(__name__)

FEATURE_SIZES = (38, 19, 10, 5, 3, 1)
STEPS = (8, 16, 32, 64, 100, 300)
SCALES = (21, 45, 99, 153, 207, 261, 315)
ASPECT_RATIOS = ((2,), (2, 3), (2, 3), (2, 3), (2,), (2,))
BOXES_PER_CELL = (4, 6, 6, 6, 4, 4)
NUM_CLASSES = 81


def default_boxes_300() -> np.ndarray:
    """NVIDIA's ``dboxes300_coco()``: (8732, 4) float32 cx, cy, w, h clamped to [0, 1].

    Order: per feature map, per box size, per cell (row-major); this is the order in which
    the heads' outputs are flattened (``reshape(N, 4, -1)`` of an (N, nd*4, H, W) map).
    """
    boxes = []
    for idx, size in enumerate(FEATURE_SIZES):
        fk = 300 / STEPS[idx]
        sk1, sk2 = SCALES[idx] / 300, SCALES[idx + 1] / 300
        sizes = [(sk1, sk1), (sqrt(sk1 * sk2), sqrt(sk1 * sk2))]
        for alpha in ASPECT_RATIOS[idx]:
            sizes += [(sk1 * sqrt(alpha), sk1 / sqrt(alpha)), (sk1 / sqrt(alpha), sk1 * sqrt(alpha))]
        for w, h in sizes:
            for i, j in itertools.product(range(size), repeat=2):
                boxes.append(((j + 0.5) / fk, (i + 0.5) / fk, w, h))
    return np.clip(np.asarray(boxes, dtype=np.float32), 0.0, 1.0)


def ssd300_spec() -> ModelSpec:
    return ModelSpec(
        name="ssd300_resnet50",
        input_hw=(300, 300),
        mean_rgb=(0.485 * 255, 0.456 * 255, 0.406 * 255),
        std_rgb=(0.229 * 255, 0.224 * 255, 0.225 * 255),
        resize="bilinear_antialias",
        anchors_cxcywh=default_boxes_300(),
        box_layout="xywh",
        variances=(0.1, 0.2),
        score_fn="softmax",
        class_ids=(0, *COCO_IDS_80),
    )


class ResNetBackbone(nn.Module):
    """ResNet-50 conv1..layer3, with layer3's first block at stride 1 (38x38 output)."""

    out_channels = (1024, 512, 512, 256, 256, 256)

    def __init__(self) -> None:
        super().__init__()
        from torchvision.models import resnet50

        backbone = resnet50(weights=None)
        self.feature_extractor = nn.Sequential(*list(backbone.children())[:7])
        block = self.feature_extractor[-1][0]
        block.conv1.stride = (1, 1)
        block.conv2.stride = (1, 1)
        block.downsample[0].stride = (1, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.feature_extractor(x)


def _extra_block(c_in: int, c_mid: int, c_out: int, *, downsample: bool) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(c_in, c_mid, kernel_size=1, bias=False),
        nn.BatchNorm2d(c_mid),
        nn.ReLU(inplace=True),
        nn.Conv2d(c_mid, c_out, kernel_size=3, padding=1 if downsample else 0,
                  stride=2 if downsample else 1, bias=False),
        nn.BatchNorm2d(c_out),
        nn.ReLU(inplace=True),
    )


class SSD300(nn.Module):
    """SSD300-ResNet50. ``forward(x)`` -> (encoded (N, 8732, 4) xywh, logits (N, 8732, 81)).

    ``raw_forward`` gives NVIDIA's native (N, 4, 8732), (N, 81, 8732) layout.
    """

    def __init__(self) -> None:
        super().__init__()
        self.feature_extractor = ResNetBackbone()
        channels = self.feature_extractor.out_channels
        mids = (256, 256, 128, 128, 128)
        self.additional_blocks = nn.ModuleList(
            _extra_block(c_in, mid, c_out, downsample=i < 3)
            for i, (c_in, c_out, mid) in enumerate(zip(channels[:-1], channels[1:], mids))
        )
        self.loc = nn.ModuleList(
            nn.Conv2d(c, nd * 4, kernel_size=3, padding=1) for nd, c in zip(BOXES_PER_CELL, channels)
        )
        self.conf = nn.ModuleList(
            nn.Conv2d(c, nd * NUM_CLASSES, kernel_size=3, padding=1) for nd, c in zip(BOXES_PER_CELL, channels)
        )
        for layer in [*self.additional_blocks.modules(), *self.loc, *self.conf]:
            if isinstance(layer, nn.Conv2d):
                nn.init.xavier_uniform_(layer.weight)
        # Set by aeb_app.model.fuse.fuse_heads for inference (replaces loc/conf).
        self.fused_heads: nn.Module | None = None

    def raw_forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        feature = self.feature_extractor(x)
        features = [feature]
        for block in self.additional_blocks:
            feature = block(feature)
            features.append(feature)
        if self.fused_heads is not None:
            return self.fused_heads(features)
        n = x.shape[0]
        locs = torch.cat([head(f).reshape(n, 4, -1) for f, head in zip(features, self.loc)], 2)
        confs = torch.cat([head(f).reshape(n, NUM_CLASSES, -1) for f, head in zip(features, self.conf)], 2)
        return locs, confs

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        locs, confs = self.raw_forward(x)
        return locs.permute(0, 2, 1), confs.permute(0, 2, 1)


#: Probability of "some object" per anchor that :func:`init_random_like_trained` gives the class head.
RANDOM_OBJECT_PRIOR = 0.01


def init_random_like_trained(model: SSD300, seed: int = 0, prior: float = RANDOM_OBJECT_PRIOR) -> None:
    """Give seeded random weights a trained detector's score statistics (speed work only).

    With plain random weights every anchor scores some class above any threshold (thousands of
    candidates per image), so timing the post-processing would time NMS over garbage that no
    trained detector produces. Instead the class head gets RetinaNet's prior initialisation
    (Lin et al. 2017, "Focal Loss for Dense Object Detection", sec. 4.1: bias so that every anchor
    starts at P(object) = ``prior``) over the softmax: background logit log((1 - prior) * 80 /
    prior), class logits 0; its weights are random with a standard deviation chosen per feature
    map so the logits vary by about 1 (data-dependent scaling as in LSUV, Mishkin & Matas 2016,
    measured on one seeded noise image). The network's cost is unchanged (same layers, dense
    weights); on real images almost no anchor passes the app's 0.3 threshold, i.e. the
    post-processing load of an empty road (tests/test_ssd300.py).
    """
    from math import log as ln

    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        x = torch.rand(1, 3, 300, 300, generator=gen) * 4 - 2  # roughly a normalised image's range
        features = [model.feature_extractor(x)]
        for block in model.additional_blocks:
            features.append(block(features[-1]))
        for conv, feature in zip(model.conf, features):
            rms = float(feature.pow(2).mean().sqrt())
            conv.weight.normal_(0.0, 1.0 / (sqrt(conv.in_channels * 9) * max(rms, 1e-6)), generator=gen)
            conv.bias.zero_()
            # Channels are laid out class-major (reshape(N, 81, -1)): the first block is background.
            conv.bias.view(NUM_CLASSES, -1)[0] = ln((1 - prior) * (NUM_CLASSES - 1) / prior)


def load_nvidia_checkpoint(model: SSD300, path: Path) -> None:
    """Load NVIDIA's published SSD300 checkpoint (state dict under ``model``, maybe ``module.``-prefixed).

    Raises:
        ModelLoadError: the file is missing, truncated, not a checkpoint, or does not fit.
    """
    if not path.is_file():
        raise ModelLoadError(f"{path}: SSD300 checkpoint not found")
    import collections

    try:
        # weights_only: never execute code from a downloaded file. NVIDIA's training script also
        # saves the LR scheduler's state, whose milestones are a collections.Counter (allowed by
        # recent torch releases already; listed for the older ones this package supports).
        with torch.serialization.safe_globals([collections.Counter, collections.OrderedDict]):
            ckpt = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # torch raises many types for bad pickles/zips
        raise ModelLoadError(f"{path}: not a readable PyTorch checkpoint ({type(exc).__name__}: {exc})".splitlines()[0]) from exc
    state = ckpt.get("model", ckpt) if isinstance(ckpt, dict) else None
    if not isinstance(state, dict):
        raise ModelLoadError(f"{path}: checkpoint holds no state dict under 'model'")
    state = {k.removeprefix("module."): v for k, v in state.items()}
    result = model.load_state_dict(state, strict=False)
    missing = [k for k in result.missing_keys if not k.endswith("num_batches_tracked")]
    if missing or result.unexpected_keys:
        raise ModelLoadError(
            f"{path}: checkpoint does not fit SSD300-ResNet50 "
            f"(missing {missing[:3]}..., unexpected {result.unexpected_keys[:3]}...)"
        )
    log.info("loaded SSD300 weights from %s", path)
