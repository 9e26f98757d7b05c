"""Google's COCO SSD MobileNet v1, rebuilt in float PyTorch from its TFLite file.

The network is the TF Object Detection API's ``ssd_mobilenet_v1`` (here with the file's
channel widths): a MobileNet v1 backbone (a 3x3 stride-2 conv, then 13 depthwise/pointwise
pairs), four extra 1x1 + 3x3/s2 blocks, and six 1x1 box/class predictors on the
19/10/5/3/2/1 feature maps (3 anchors per cell on the first map, 6 on the others: 1917).
BatchNorm is already folded into the file's weights. Every conv uses TF "SAME" padding; on
stride-2 convs with an odd padding total TF pads one more pixel right/bottom, which a
symmetric ``Conv2d(padding=...)`` cannot express directly. Those layers pad symmetrically by
the next amount that keeps TF's stride grid (2 instead of (0, 1)) and slice off the extra
leading output row/column (:func:`symmetric_same_padding`, computed once for the fixed
300x300 input): every output is the same sum of the same products as TF's, and the graph
holds only ``Conv`` + ``Slice`` (no ``Pad``/``ZeroPad2d``, which torch2trt maps to
``add_padding``, removed in TensorRT 10).

:func:`build_ssd_mobilenet_v1` reads the file (:mod:`aeb_app.model.tflite_import`), takes
the anchors, box coder scales, input quantisation and class channels from it into a
:class:`~aeb_app.model.spec.ModelSpec`, and loads the dequantised weights layer by layer.
"""

from __future__ import annotations

import logging
import re
from collections import OrderedDict
from pathlib import Path
from typing import Sequence

import numpy as np
import torch
from torch import nn

from aeb_app.errors import ModelLoadError
from aeb_app.model.coco import COCO_NAMES
from aeb_app.model.spec import ModelSpec
from aeb_app.model.tflite_import import TfliteGraph, TfliteOp, load_tflite

__all__ = ["SSDMobileNetV1", "build_ssd_mobilenet_v1", "symmetric_same_padding", "tf_same_padding"]

_LOG = logging.getLogger(__name__)

#: Stride of depthwise conv i (1..13) of MobileNet v1.
_DW_STRIDES = (1, 2, 1, 2, 1, 2, 1, 1, 1, 1, 1, 2, 1)
#: Channel widths of the published file (MobileNet v1 at depth multiplier 0.75).
_BACKBONE_WIDTHS = (24, 48, 96, 96, 192, 192, 384, 384, 384, 384, 384, 384, 768, 768)
_EXTRA_WIDTHS = ((192, 384), (96, 192), (96, 192), (48, 96))
_ANCHORS_PER_CELL = (3, 6, 6, 6, 6, 6)


def tf_same_padding(size: int, kernel: int, stride: int) -> tuple[int, int]:
    """TF "SAME" padding (before, after) of one spatial axis; the odd pixel goes after."""
    out = -(-size // stride)
    total = max((out - 1) * stride + kernel - size, 0)
    return total // 2, total - total // 2


def symmetric_same_padding(before: int, after: int, stride: int) -> tuple[int, int]:
    """(symmetric pad, leading outputs to drop) equal to TF's (before, after) padding of one axis.

    A symmetric pad ``p >= max(before, after)`` with ``(p - before) % stride == 0`` puts the
    windows on TF's grid shifted by ``(p - before) // stride`` outputs; dropping those leading
    outputs (and keeping TF's output count) gives TF's result exactly.
    """
    if before == after:
        return before, 0
    pad = max(before, after)
    while (pad - before) % stride:
        pad += 1
    return pad, (pad - before) // stride


class ConvAct(nn.Module):
    """TF-SAME padded conv (+ ReLU6). Padding is fixed at construction for the input size.

    Args:
        in_ch / out_ch: channels.
        kernel / stride: square kernel size and stride.
        in_hw: spatial (H, W) of the layer's input, to compute SAME padding once.
        depthwise: groups = in_ch (TF DEPTHWISE_CONV_2D with depth multiplier out_ch / in_ch).
        relu6: apply ReLU6 after the conv.
    """

    def __init__(
        self, in_ch: int, out_ch: int, *, kernel: int, stride: int, in_hw: tuple[int, int],
        depthwise: bool = False, relu6: bool = True,
    ) -> None:
        super().__init__()
        (pad_h, crop_h), (pad_w, crop_w) = (symmetric_same_padding(*tf_same_padding(s, kernel, stride), stride)
                                            for s in in_hw)
        self.conv = nn.Conv2d(
            in_ch, out_ch, kernel, stride, padding=(pad_h, pad_w), groups=in_ch if depthwise else 1, bias=True,
        )
        #: Leading output rows/columns the symmetric pad adds in front of TF's first window.
        self.crop = (crop_h, crop_w)
        # Not in place on a cropped (sliced) output: an in-place op on a view exports as a scatter.
        self.act = nn.ReLU6(inplace=self.crop == (0, 0)) if relu6 else nn.Identity()
        self.stride = stride
        self.depthwise = depthwise
        self.out_hw = (-(-in_hw[0] // stride), -(-in_hw[1] // stride))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.conv(x)
        if self.crop != (0, 0):
            (ch, cw), (oh, ow) = self.crop, self.out_hw
            y = y[:, :, ch:ch + oh, cw:cw + ow]
        return self.act(y)


class SSDMobileNetV1(nn.Module):
    """SSD MobileNet v1 feature extractor + box predictors, float.

    ``forward(x)``: x is the normalised float (N, 3, H, W) batch (``(rgb - 128) / 128`` for the
    published file), any N. Returns ``(encoded, logits)``: (N, A, 4) box encodings in the file's
    (ty, tx, th, tw) layout and (N, A, C) raw class logits (channel 0 = background); A = 1917
    and C = 91 for the published file. Anchor order is feature map, then row, column, anchor,
    as TF reshapes its NHWC predictor outputs.

    Args:
        input_hw: fixed input size (SAME padding is computed for it once).
        num_channels: score channels C, background included.
        backbone_widths: output channels of Conv2d_0 and of pointwise convs 1..13.
        extra_widths: (1x1 channels, 3x3/s2 channels) of the four extra blocks.
        anchors_per_cell: anchors per cell on each of the six feature maps.
    """

    def __init__(
        self, input_hw: tuple[int, int] = (300, 300), num_channels: int = 91,
        backbone_widths: Sequence[int] = _BACKBONE_WIDTHS,
        extra_widths: Sequence[tuple[int, int]] = _EXTRA_WIDTHS,
        anchors_per_cell: Sequence[int] = _ANCHORS_PER_CELL,
    ) -> None:
        super().__init__()
        self.input_hw = tuple(input_hw)
        self.num_channels = num_channels
        conv0 = ConvAct(3, backbone_widths[0], kernel=3, stride=2, in_hw=self.input_hw)
        layers: list[tuple[str, ConvAct]] = [("conv0", conv0)]
        hw, ch = conv0.out_hw, backbone_widths[0]
        for i, (stride, width) in enumerate(zip(_DW_STRIDES, backbone_widths[1:]), start=1):
            dw = ConvAct(ch, ch, kernel=3, stride=stride, in_hw=hw, depthwise=True)
            hw = dw.out_hw
            layers += [(f"conv{i}_dw", dw), (f"conv{i}_pw", ConvAct(ch, width, kernel=1, stride=1, in_hw=hw))]
            ch = width
        # Feature map 0 is Conv2d_11_pointwise (19x19), map 1 is Conv2d_13_pointwise (10x10).
        split = [name for name, _ in layers].index("conv11_pw") + 1
        self.stage1 = nn.Sequential(OrderedDict(layers[:split]))
        self.stage2 = nn.Sequential(OrderedDict(layers[split:]))
        map_channels = [layers[split - 1][1].conv.out_channels, ch]
        map_hws = [layers[split - 1][1].out_hw, hw]
        self.extras = nn.ModuleList()
        for mid, out in extra_widths:
            reduce = ConvAct(ch, mid, kernel=1, stride=1, in_hw=hw)
            down = ConvAct(mid, out, kernel=3, stride=2, in_hw=hw)
            self.extras.append(nn.Sequential(OrderedDict(reduce=reduce, down=down)))
            hw, ch = down.out_hw, out
            map_channels.append(out)
            map_hws.append(hw)
        #: Anchors the predictors emit: sum over maps of H * W * anchors per cell.
        self.num_anchors = sum(h * w * k for (h, w), k in zip(map_hws, anchors_per_cell))
        self.box_heads = nn.ModuleList(
            nn.Conv2d(c, k * 4, 1) for c, k in zip(map_channels, anchors_per_cell)
        )
        self.class_heads = nn.ModuleList(
            nn.Conv2d(c, k * num_channels, 1) for c, k in zip(map_channels, anchors_per_cell)
        )

    def feature_maps(self, x: torch.Tensor) -> list[torch.Tensor]:
        """The six (N, C_i, H_i, W_i) maps the predictors read."""
        f0 = self.stage1(x)
        maps = [f0, self.stage2(f0)]
        for block in self.extras:
            maps.append(block(maps[-1]))
        return maps

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(N, 3, H, W) float -> (encoded (N, A, 4), logits (N, A, C)), x's dtype."""
        return predict_tf_order(self.feature_maps(x), self.box_heads, self.class_heads, self.num_channels)


def predict_tf_order(maps: Sequence[torch.Tensor], box_heads: nn.ModuleList, class_heads: nn.ModuleList,
                     num_channels: int) -> tuple[torch.Tensor, torch.Tensor]:
    """The predictor heads over the feature maps, flattened in TensorFlow's anchor order.

    Returns:
        (encoded boxes (N, A, 4), logits (N, A, num_channels)).
    """
    n = maps[0].shape[0]
    boxes, logits = [], []
    for fmap, box_head, cls_head in zip(maps, box_heads, class_heads):
        # NCHW -> NHWC before flattening: TF orders anchors row, column, anchor.
        boxes.append(box_head(fmap).permute(0, 2, 3, 1).reshape(n, -1, 4))
        logits.append(cls_head(fmap).permute(0, 2, 3, 1).reshape(n, -1, num_channels))
    return torch.cat(boxes, dim=1), torch.cat(logits, dim=1)


def _module_for(model: SSDMobileNetV1, weight_name: str) -> tuple[nn.Conv2d, bool | None, int]:
    """Map a TF weight tensor name to (torch conv, expects ReLU6 (None: head), stride)."""
    m = re.search(r"MobilenetV1/Conv2d_(\d+)(?:_(depthwise|pointwise))?/", weight_name)
    if m:
        key = "conv0" if m.group(1) == "0" else f"conv{m.group(1)}_{'dw' if m.group(2) == 'depthwise' else 'pw'}"
        layer = getattr(model.stage1, key, None) or getattr(model.stage2, key)
        return layer.conv, True, layer.stride
    m = re.search(r"Conv2d_13_pointwise_(1|2)_Conv2d_(\d+)_", weight_name)
    if m:
        block = model.extras[int(m.group(2)) - 2]
        layer = block.reduce if m.group(1) == "1" else block.down
        return layer.conv, True, layer.stride
    m = re.search(r"BoxPredictor_(\d+)/(BoxEncodingPredictor|ClassPredictor)/", weight_name)
    if m:
        heads = model.box_heads if m.group(2) == "BoxEncodingPredictor" else model.class_heads
        return heads[int(m.group(1))], None, 1
    raise KeyError(weight_name)


def _effective_relu6(graph: TfliteGraph, op: TfliteOp) -> bool:
    """Whether the op clamps to [0, 6]: a fused RELU6, or (TOCO) an output range of [0, 6]."""
    if op.options.get("activation") == "RELU6":
        return True
    out = graph.tensors[op.outputs[0]]
    if op.options.get("activation") != "NONE" or not out.quantized or out.scales.size != 1:
        return False
    lo = float((0 - out.zero_points[0]) * out.scales[0])
    hi = float((255 - out.zero_points[0]) * out.scales[0])
    return lo == 0.0 and abs(hi - 6.0) < 0.06


def _load_conv(graph: TfliteGraph, op: TfliteOp, model: SSDMobileNetV1) -> str:
    """Copy one CONV_2D / DEPTHWISE_CONV_2D op's dequantised weights into its torch layer."""
    w_t, b_t = graph.tensors[op.inputs[1]], graph.tensors[op.inputs[2]]
    try:
        conv, relu6, stride = _module_for(model, w_t.name)
    except (KeyError, IndexError, AttributeError):
        raise ModelLoadError(f"{graph.path}: unexpected layer {w_t.name!r} for SSD MobileNet v1") from None
    w = w_t.dequantize()
    # OHWI -> OIHW; depthwise 1HWC -> C1HW.
    w = w.transpose(3, 0, 1, 2) if op.kind == "DEPTHWISE_CONV_2D" else w.transpose(0, 3, 1, 2)
    got = (tuple(w.shape), op.options.get("stride", (0, 0))[0], _effective_relu6(graph, op) if relu6 else None)
    want = (tuple(conv.weight.shape), stride, relu6)
    if got != want or op.options.get("padding") != "SAME" or op.options.get("dilation") != (1, 1):
        raise ModelLoadError(
            f"{graph.path}: layer {w_t.name!r} (shape, stride, relu6) {got} does not fit the architecture {want}"
        )
    with torch.no_grad():
        conv.weight.copy_(torch.from_numpy(np.ascontiguousarray(w)))
        conv.bias.copy_(torch.from_numpy(b_t.dequantize().reshape(-1)))
    return w_t.name


def _widths_from_graph(graph: TfliteGraph) -> dict:
    """Constructor arguments of :class:`SSDMobileNetV1` read from the file's weight shapes."""
    out_ch: dict[str, int] = {}
    for op in graph.ops:
        if op.kind in ("CONV_2D", "DEPTHWISE_CONV_2D") and len(op.inputs) == 3:
            w = graph.tensors[op.inputs[1]]
            out_ch[w.name] = w.shape[0] if op.kind == "CONV_2D" else w.shape[3]

    def find(pattern: str) -> list[tuple[int, int]]:
        hits = [(int(m.group(1)), c) for n, c in out_ch.items() if (m := re.search(pattern, n))]
        return sorted(hits)

    backbone = find(r"MobilenetV1/Conv2d_(\d+)(?:_pointwise)?/weights")
    reduce, down = find(r"Conv2d_13_pointwise_1_Conv2d_(\d+)_"), find(r"Conv2d_13_pointwise_2_Conv2d_(\d+)_")
    boxes, classes = find(r"BoxPredictor_(\d+)/BoxEncodingPredictor/"), find(r"BoxPredictor_(\d+)/ClassPredictor/")
    if [i for i, _ in backbone] != list(range(14)) or len(reduce) != len(down) or len(boxes) != len(reduce) + 2:
        raise ModelLoadError(f"{graph.path}: layers do not form an SSD MobileNet v1 (backbone {len(backbone)}, "
                             f"extras {len(reduce)}/{len(down)}, predictors {len(boxes)})")
    anchors = [c // 4 for _, c in boxes]
    return dict(
        num_channels=classes[0][1] // anchors[0],
        backbone_widths=[c for _, c in backbone],
        extra_widths=[(r, d) for (_, r), (_, d) in zip(reduce, down)],
        anchors_per_cell=anchors,
    )


def _spec_from_graph(graph: TfliteGraph, num_channels: int) -> ModelSpec:
    """Input size/normalisation, anchors, box coder and class ids from the file."""
    inp = graph.tensors[graph.inputs[0]]
    post = graph.ops_of("TFLite_Detection_PostProcess")
    if len(inp.shape) != 4 or inp.shape[3] != 3 or not post or not graph.ops_of("LOGISTIC"):
        raise ModelLoadError(f"{graph.path}: not an SSD detector (input {inp.shape}, "
                             f"post-process ops {len(post)}, logistic ops {len(graph.ops_of('LOGISTIC'))})")
    opts = post[0].options
    if opts.get("y_scale") != opts.get("x_scale") or opts.get("h_scale") != opts.get("w_scale"):
        raise ModelLoadError(f"{graph.path}: box coder scales {opts} differ between y/x or h/w")
    # Real input = scale * (q - zero_point), i.e. (x - mean) / std on the 0..255 scale.
    scale, zero = float(inp.scales[0]), float(inp.zero_points[0])
    anchors_yxhw = graph.tensors[post[0].inputs[2]].dequantize()
    return ModelSpec(
        name="ssd_mobilenet_v1",
        input_hw=(int(inp.shape[1]), int(inp.shape[2])),
        mean_rgb=(zero, zero, zero),
        std_rgb=(1.0 / scale,) * 3,
        resize="bilinear",
        anchors_cxcywh=anchors_yxhw[:, [1, 0, 3, 2]].copy(),
        box_layout="yxhw",
        variances=(1.0 / float(opts["y_scale"]), 1.0 / float(opts["h_scale"])),
        score_fn="sigmoid",
        class_ids=tuple(j if j in COCO_NAMES else 0 for j in range(num_channels)),
    )


def build_ssd_mobilenet_v1(tflite_path: str | Path) -> tuple[ModelSpec, SSDMobileNetV1]:
    """Rebuild the TFLite COCO SSD MobileNet v1 as a float PyTorch model.

    Args:
        tflite_path: ``detect.tflite`` of ``coco_ssd_mobilenet_v1_1.0_quant_2018_06_29``.

    Returns:
        ``(spec, model)``: the spec (anchors (1917, 4) cx,cy,w,h normalised, variances 0.1/0.2,
        mean/std 128/128, sigmoid scores, 91 class channels) and the float32 model on the
        CPU in eval mode, with all 47 convolutions loaded from the file.

    Raises:
        ModelLoadError: the file is missing/truncated/corrupt or is not this architecture.
    """
    graph = load_tflite(tflite_path)
    config = _widths_from_graph(graph)
    spec = _spec_from_graph(graph, config["num_channels"])
    model = SSDMobileNetV1(spec.input_hw, **config)
    if model.num_anchors != spec.num_anchors:
        raise ModelLoadError(f"{graph.path}: {spec.num_anchors} anchors, the network emits {model.num_anchors}")
    loaded = [_load_conv(graph, op, model) for op in graph.ops if op.kind in ("CONV_2D", "DEPTHWISE_CONV_2D")]
    n_convs = sum(isinstance(m, nn.Conv2d) for m in model.modules())
    if len(set(loaded)) != n_convs or len(loaded) != n_convs:
        raise ModelLoadError(f"{graph.path}: {len(loaded)} conv ops for {n_convs} layers of the network")
    _LOG.info("loaded SSD MobileNet v1 (%d convs, %d anchors) from %s", n_convs, spec.num_anchors, graph.path)
    return spec, model.eval()
