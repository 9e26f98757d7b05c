"""Inference rewrites (BatchNorm folding, fused SSD300 heads, cuDNN conv+activation modules) keep the network's function."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from aeb_app.model.fuse import fold_batchnorm, optimize_for_inference
from aeb_app.model.registry import load_model


def _randomise_batchnorm(net: nn.Module, seed: int = 1) -> int:
    """Give every BatchNorm non-trivial statistics, so that folding them is really tested."""
    g = torch.Generator().manual_seed(seed)
    count = 0
    for m in net.modules():
        if isinstance(m, nn.BatchNorm2d):
            c = m.num_features
            m.running_mean.copy_(torch.randn(c, generator=g) * 0.1)
            m.running_var.copy_(torch.rand(c, generator=g) + 0.5)
            m.weight.data.copy_(torch.rand(c, generator=g) + 0.5)
            m.bias.data.copy_(torch.randn(c, generator=g) * 0.1)
            count += 1
    return count


@pytest.fixture(scope="module")
def ssd300():
    net = load_model("ssd300_resnet50", "random").network
    assert _randomise_batchnorm(net) > 50
    return net


def test_ssd300_rewrites_keep_outputs(ssd300) -> None:
    x = torch.randn(2, 3, 300, 300, generator=torch.Generator().manual_seed(2))
    fast, applied = optimize_for_inference(ssd300)
    assert applied == ["fold_bn", "fused_heads"]
    with torch.inference_mode():
        ref_boxes, ref_logits = ssd300(x)
        boxes, logits = fast(x)
    assert boxes.shape == ref_boxes.shape and logits.shape == ref_logits.shape
    for got, ref in ((boxes, ref_boxes), (logits, ref_logits)):
        rel = (got - ref).norm() / ref.norm()
        assert rel < 1e-5, rel


def test_rewrites_leave_the_original_alone(ssd300) -> None:
    fast, _ = optimize_for_inference(ssd300)
    assert hasattr(ssd300, "loc") and ssd300.fused_heads is None
    assert any(isinstance(m, nn.BatchNorm2d) for m in ssd300.modules())
    assert not any(isinstance(m, nn.BatchNorm2d) for m in fast.modules())
    assert not hasattr(fast, "loc") and len(fast.fused_heads.heads) == 6
    # 4 box + 81 class channels per default box, in one convolution per feature map
    assert [h.out_channels for h in fast.fused_heads.heads] == [n * 85 for n in (4, 6, 6, 6, 4, 4)]


def test_fold_needs_eval_mode_and_adjacency() -> None:
    seq = nn.Sequential(nn.Conv2d(3, 4, 3), nn.ReLU(), nn.BatchNorm2d(4))
    assert fold_batchnorm(seq.eval()) == 0  # BatchNorm not right after the conv
    train = nn.Sequential(nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4)).train()
    assert fold_batchnorm(train) == 0  # training-mode statistics cannot be folded
    assert fold_batchnorm(train.eval()) == 1 and isinstance(train[1], nn.Identity)


def test_mobilenet_has_nothing_to_fold() -> None:
    net = load_model("ssd_mobilenet_v1").network
    fast, applied = optimize_for_inference(net)
    assert applied == []  # BatchNorm is already folded into the TFLite weights; no SSD300 heads
    x = torch.rand(1, 3, 300, 300)
    with torch.inference_mode():
        assert all(torch.equal(a, b) for a, b in zip(net(x), fast(x)))


def test_cudnn_fused_modules_compute_the_same_function(ssd300) -> None:
    """On the CPU the fused modules run their unfused expression: the rewrite's wiring is checked here,
    the cuDNN calls themselves on the GPU (scripts/speed_lab.py compares them with FP32)."""
    from aeb_app.model.fuse import ConvReLU, FusedBottleneck

    fast, applied = optimize_for_inference(ssd300, ("cudnn_fused", "fused_heads"))
    assert applied == ["fold_bn", "fused_heads", "cudnn_fused"]
    assert sum(isinstance(m, FusedBottleneck) for m in fast.modules()) == 3 + 4 + 6
    # stem conv + 2 per bottleneck + 2 per extra block
    assert sum(isinstance(m, ConvReLU) for m in fast.modules()) == 1 + 2 * 13 + 2 * 5
    assert not any(isinstance(m, nn.ReLU) for m in fast.modules() if not isinstance(m, nn.Identity))
    x = torch.randn(1, 3, 300, 300, generator=torch.Generator().manual_seed(3))
    with torch.inference_mode():
        for got, ref in zip(fast(x), ssd300(x)):
            assert (got - ref).norm() / ref.norm() < 1e-5


def test_unknown_rewrite_is_refused(ssd300) -> None:
    with pytest.raises(ValueError, match="unknown rewrites"):
        optimize_for_inference(ssd300, ("fold_bn", "magic"))
