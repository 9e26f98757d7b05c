"""Inference-time rewrites of a network that keep its function: fewer kernels, same outputs.

* :func:`fold_batchnorm` folds every eval-mode BatchNorm into the convolution before it
  (``w' = w * g / sqrt(v + eps)``, ``b' = (b - m) * g / sqrt(v + eps) + beta``): one kernel and
  one pass over the activations fewer per convolution.
* :func:`fuse_heads` merges SSD300's box and class predictors of each feature map into one
  3x3 convolution (``4A + 81A`` output channels): the 38x38x1024 map is read once instead of
  twice, and the 16-channel box convolution, a poor fit for tensor cores, disappears.
* :func:`fuse_conv_activations` (after folding) runs convolution + bias + ReLU, and a ResNet
  bottleneck's last convolution + bias + residual + ReLU, as single cuDNN calls
  (``torch.cudnn_convolution_relu`` / ``torch.cudnn_convolution_add_relu``) on CUDA: the
  separate bias, add and ReLU passes over the activations were half of eager FP16's time at
  batch 64 on an H200 (docs/benchmarks/h200/speed_notes.md). On the CPU the same modules compute
  the unfused expression.

The rewrites work on a copy (:func:`optimize_for_inference`); the loaded model is left as it was.
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


class ConvReLU(nn.Module):
    """``relu(conv(x) + bias)``, one cuDNN call on CUDA."""

    def __init__(self, conv: nn.Conv2d) -> None:
        super().__init__()
        self.conv = conv

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        c = self.conv
        if x.is_cuda:
            return torch.cudnn_convolution_relu(x, c.weight, c.bias, c.stride, c.padding, c.dilation, c.groups)
        return torch.relu(c(x))


class FusedBottleneck(nn.Module):
    """torchvision's ``Bottleneck`` (BatchNorm folded) as three cuDNN calls on CUDA."""

    def __init__(self, block: nn.Module) -> None:
        super().__init__()
        self.conv1, self.conv2, self.conv3 = ConvReLU(block.conv1), ConvReLU(block.conv2), block.conv3
        self.downsample = block.downsample
        ds = self.downsample
        if (isinstance(ds, nn.Sequential) and isinstance(ds[0], nn.Conv2d) and ds[0].bias is not None
                and all(isinstance(m, nn.Identity) for m in ds[1:])):
            # The shortcut's bias joins conv3's (both are added before the ReLU): no separate bias pass.
            with torch.no_grad():
                self.conv3.bias += ds[0].bias
            ds[0].bias = None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        identity = x if self.downsample is None else self.downsample(x)
        out = self.conv2(self.conv1(x))
        c = self.conv3
        if out.is_cuda:
            return torch.cudnn_convolution_add_relu(out, c.weight, identity, 1.0, c.bias, c.stride, c.padding,
                                                    c.dilation, c.groups)
        return torch.relu(c(out) + identity)


def fuse_conv_activations(module: nn.Module) -> int:
    """Replace folded conv(+Identity)+ReLU runs in ``nn.Sequential`` containers, and folded ResNet bottlenecks.

    Returns:
        How many convolutions now carry their activation.
    """
    from torchvision.models.resnet import Bottleneck

    fused = 0
    for parent in list(module.modules()):
        for name, child in list(parent._modules.items()):
            if isinstance(child, Bottleneck) and all(isinstance(getattr(child, f"bn{i}"), nn.Identity)
                                                     for i in (1, 2, 3)):
                parent._modules[name] = FusedBottleneck(child)
                fused += 3
        if not isinstance(parent, nn.Sequential):
            continue
        names = list(parent._modules)
        for i, name in enumerate(names):
            rest = [parent._modules[n] for n in names[i + 1:i + 3]]
            if not isinstance(parent._modules[name], nn.Conv2d) or not rest:
                continue
            relu_at = 1 if isinstance(rest[0], nn.ReLU) else (
                2 if len(rest) == 2 and isinstance(rest[0], nn.Identity) and isinstance(rest[1], nn.ReLU) else 0)
            if relu_at:
                parent._modules[name] = ConvReLU(parent._modules[name])
                parent._modules[names[i + relu_at]] = nn.Identity()
                fused += 1
    return fused


REWRITES = ("fold_bn", "fused_heads", "cudnn_fused")


def optimize_for_inference(network: nn.Module, rewrites: tuple[str, ...] = ("fold_bn", "fused_heads")
                           ) -> tuple[nn.Module, list[str]]:
    """A copy of an eval-mode ``network`` with the named rewrites (see :data:`REWRITES`) applied.

    ``cudnn_fused`` implies ``fold_bn``.

    Returns:
        The rewritten copy and the names of the rewrites that changed something (for sidecars).
    """
    unknown = set(rewrites) - set(REWRITES)
    if unknown:
        raise ValueError(f"unknown rewrites {sorted(unknown)}; choose from {REWRITES}")
    net = copy.deepcopy(network).eval()
    applied = []
    if ("fold_bn" in rewrites or "cudnn_fused" in rewrites) and fold_batchnorm(net):
        applied.append("fold_bn")
    if "fused_heads" in rewrites and fuse_heads(net):
        applied.append("fused_heads")
    if "cudnn_fused" in rewrites and fuse_conv_activations(net):
        applied.append("cudnn_fused")
    return net, applied
