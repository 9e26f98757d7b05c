"""Inference-time rewrites of a network that keep its function: fewer kernels, same outputs.

* :func:`fold_batchnorm` folds every eval-mode BatchNorm into the convolution before it
  (``w' = w * g / sqrt(v + eps)``, ``b' = (b - m) * g / sqrt(v + eps) + beta``): one kernel and
  one pass over the activations fewer per convolution.
* :func:`fuse_heads` merges SSD300's box and class predictors of each feature map into one
  3x3 convolution (``4A + 81A`` output channels): the 38x38x1024 map is read once instead of
  twice, and the 16-channel box convolution, a poor fit for tensor cores, disappears.

Both work on a copy (:func:`optimize_for_inference`); the loaded model is left as it was.
"""

from __future__ import annotations

import copy

import torch
from torch import nn


def fold_batchnorm(module: nn.Module) -> int:
    """Fold each ``Conv2d`` immediately followed by a ``BatchNorm2d`` sibling, in place.

    "Immediately followed" is registration order, which is call order in the networks here
    (torchvision's ResNet blocks, ``nn.Sequential`` blocks). The BatchNorm becomes ``Identity``.

    Returns:
        How many pairs were folded.
    """
    from torch.nn.utils.fusion import fuse_conv_bn_eval

    folded = 0
    for parent in list(module.modules()):
        names = list(parent._modules)
        for first, second in zip(names, names[1:]):
            conv, bn = parent._modules[first], parent._modules[second]
            if isinstance(conv, nn.Conv2d) and isinstance(bn, nn.BatchNorm2d) and not bn.training:
                parent._modules[first] = fuse_conv_bn_eval(conv, bn)
                parent._modules[second] = nn.Identity()
                folded += 1
    return folded


class FusedHeads(nn.Module):
    """One 3x3 convolution per feature map giving ``(locs, confs)`` in NVIDIA's layout."""

    def __init__(self, loc: nn.ModuleList, conf: nn.ModuleList, num_classes: int) -> None:
        super().__init__()
        self.num_classes = num_classes
        self.splits = [head.out_channels for head in loc]
        self.heads = nn.ModuleList()
        for lh, ch in zip(loc, conf):
            fused = nn.Conv2d(lh.in_channels, lh.out_channels + ch.out_channels, lh.kernel_size,
                              stride=lh.stride, padding=lh.padding, bias=True)
            with torch.no_grad():
                fused.weight.copy_(torch.cat([lh.weight, ch.weight]))
                fused.bias.copy_(torch.cat([lh.bias, ch.bias]))
            self.heads.append(fused.to(lh.weight.device, lh.weight.dtype))

    def forward(self, features: list[torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
        n = features[0].shape[0]
        locs, confs = [], []
        for f, head, split in zip(features, self.heads, self.splits):
            out = head(f)
            locs.append(out[:, :split].reshape(n, 4, -1))
            confs.append(out[:, split:].reshape(n, self.num_classes, -1))
        return torch.cat(locs, 2), torch.cat(confs, 2)


def fuse_heads(ssd: nn.Module) -> bool:
    """Give an SSD300 fused predictors, in place (its ``raw_forward`` uses them). False if not SSD300."""
    from aeb_app.model.ssd300 import NUM_CLASSES, SSD300

    if not isinstance(ssd, SSD300) or ssd.fused_heads is not None:
        return False
    ssd.fused_heads = FusedHeads(ssd.loc, ssd.conf, NUM_CLASSES)
    del ssd.loc, ssd.conf
    return True


def optimize_for_inference(network: nn.Module) -> tuple[nn.Module, list[str]]:
    """A copy of an eval-mode ``network`` with BatchNorm folded and SSD300 heads fused.

    Returns:
        The rewritten copy and the names of the rewrites applied (for sidecars and reports).
    """
    net = copy.deepcopy(network).eval()
    applied = []
    if fold_batchnorm(net):
        applied.append("fold_bn")
    if fuse_heads(net):
        applied.append("fused_heads")
    return net, applied
