"""TensorFlow.js COCO-SSD "lite_mobilenet_v2", rebuilt in float PyTorch from its graph model.

The network is the TF Object Detection API's ``ssdlite_mobilenet_v2_coco``: a MobileNet v2
backbone (a 3x3 stride-2 conv, 17 inverted-residual blocks, a 1x1 conv to 1280 channels), four
extra blocks (1x1 reduce, 3x3 stride-2 depthwise, 1x1), and SSDLite predictors (3x3 depthwise +
BatchNorm + ReLU6, then a 1x1 conv) on six maps: block 13's expansion (19x19x576), the last conv
(10x10x1280) and the extras (5/3/2/1). 3 anchors per cell on the first map, 6 on the others: 1917.

Everything comes from the graph (:mod:`aeb_app.model.tfjs_graph`): the layer widths, strides and
residual shortcuts, the BatchNorm scale/bias (folded into each conv), the input size and scaling
(``x * 2/255 - 1``), the 1917 anchors (a constant of the graph's post-processor), the box coder
scales (10, 10, 5, 5) and the sigmoid scores. Each conv's input tensor is checked against the
layer the PyTorch network feeds it from, so a wiring mistake fails at load time.

Not rebuilt: the graph's own resize (TF's legacy ``ResizeBilinear``, align_corners=False without
half-pixel centres); the app resizes frames with OpenCV like every other model, and the parity
fixture feeds both runtimes the same 300x300 pixels (docs/ssdlite_parity.md).
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import nn

from aeb_app.errors import ModelLoadError
from aeb_app.model.coco import COCO_NAMES
from aeb_app.model.mobilenet_v1 import ConvAct, predict_tf_order
from aeb_app.model.spec import ModelSpec
from aeb_app.model.tfjs_graph import ConvUnit, TfjsGraph, conv_units, load_tfjs_graph

__all__ = ["SSDLiteConfig", "SSDLiteMobileNetV2", "build_ssdlite_mobilenet_v2"]

_LOG = logging.getLogger(__name__)
_FE = "FeatureExtractor/MobilenetV2"


@dataclass(frozen=True)
class SSDLiteConfig:
    """Shape of the network, read from the graph.

    Attributes:
        stem_ch: output channels of the first 3x3 stride-2 conv.
        blocks: per inverted-residual block ``(expand channels or None, out channels, stride, residual)``.
        last_ch: channels of the final 1x1 conv of the backbone.
        extras: per extra block ``(1x1 channels, 3x3/s2 output channels)``.
        anchors_per_cell: anchors per cell of each of the six maps.
        num_channels: score channels C, background included.
        tap_block: the block whose expansion output is feature map 0.
    """

    stem_ch: int
    blocks: tuple[tuple[int | None, int, int, bool], ...]
    last_ch: int
    extras: tuple[tuple[int, int], ...]
    anchors_per_cell: tuple[int, ...]
    num_channels: int
    tap_block: int


class InvertedResidual(nn.Module):
    """MobileNet v2 block: [1x1 expand + ReLU6] -> 3x3 depthwise + ReLU6 -> 1x1 project (+ input)."""

    def __init__(self, in_ch: int, expand_ch: int | None, out_ch: int, stride: int, residual: bool,
                 in_hw: tuple[int, int]) -> None:
        super().__init__()
        mid = expand_ch or in_ch
        self.expand = ConvAct(in_ch, mid, kernel=1, stride=1, in_hw=in_hw) if expand_ch else None
        self.depthwise = ConvAct(mid, mid, kernel=3, stride=stride, in_hw=in_hw, depthwise=True)
        self.project = ConvAct(mid, out_ch, kernel=1, stride=1, in_hw=self.depthwise.out_hw, relu6=False)
        self.residual = residual
        self.out_hw = self.depthwise.out_hw

    def finish(self, expanded: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        """The block's output from its expansion output and its input."""
        out = self.project(self.depthwise(expanded))
        return out + x if self.residual else out

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.finish(self.expand(x) if self.expand is not None else x, x)


class SSDLiteMobileNetV2(nn.Module):
    """SSDLite MobileNet v2 feature extractor + predictors, float.

    ``forward(x)``: x is the normalised float (N, 3, H, W) batch (``rgb / 127.5 - 1`` for the
    published model). Returns ``(encoded, logits)``: (N, A, 4) box encodings (ty, tx, th, tw)
    and (N, A, C) raw class logits (channel 0 = background); A = 1917, C = 91. Anchors are
    ordered map, row, column, anchor, as TF reshapes its NHWC predictor outputs.
    """

    def __init__(self, config: SSDLiteConfig, input_hw: tuple[int, int] = (300, 300)) -> None:
        super().__init__()
        self.config = config
        self.input_hw = tuple(input_hw)
        self.num_channels = config.num_channels
        self.conv0 = ConvAct(3, config.stem_ch, kernel=3, stride=2, in_hw=self.input_hw)
        hw, ch = self.conv0.out_hw, config.stem_ch
        self.blocks = nn.ModuleList()
        map_specs: list[tuple[int, tuple[int, int]]] = []
        for i, (expand_ch, out_ch, stride, residual) in enumerate(config.blocks):
            block = InvertedResidual(ch, expand_ch, out_ch, stride, residual, hw)
            if i == config.tap_block:
                map_specs.append((expand_ch or ch, hw))
            self.blocks.append(block)
            hw, ch = block.out_hw, out_ch
        self.conv_last = ConvAct(ch, config.last_ch, kernel=1, stride=1, in_hw=hw)
        ch = config.last_ch
        map_specs.append((ch, hw))
        self.extras = nn.ModuleList()
        for mid, out in config.extras:
            down = ConvAct(mid, mid, kernel=3, stride=2, in_hw=hw, depthwise=True)
            self.extras.append(nn.Sequential(
                ConvAct(ch, mid, kernel=1, stride=1, in_hw=hw), down,
                ConvAct(mid, out, kernel=1, stride=1, in_hw=down.out_hw)))
            hw, ch = down.out_hw, out
            map_specs.append((ch, hw))
        if len(map_specs) != len(config.anchors_per_cell):
            raise ModelLoadError(f"{len(map_specs)} feature maps for {len(config.anchors_per_cell)} predictors")
        self.num_anchors = sum(h * w * k for (_, (h, w)), k in zip(map_specs, config.anchors_per_cell))
        self.box_heads = nn.ModuleList(self._head(c, hw_, k * 4) for (c, hw_), k
                                       in zip(map_specs, config.anchors_per_cell))
        self.class_heads = nn.ModuleList(self._head(c, hw_, k * config.num_channels) for (c, hw_), k
                                         in zip(map_specs, config.anchors_per_cell))

    @staticmethod
    def _head(ch: int, hw: tuple[int, int], out: int) -> nn.Sequential:
        return nn.Sequential(ConvAct(ch, ch, kernel=3, stride=1, in_hw=hw, depthwise=True), nn.Conv2d(ch, out, 1))

    def feature_maps(self, x: torch.Tensor) -> list[torch.Tensor]:
        """The six (N, C_i, H_i, W_i) maps the predictors read."""
        x = self.conv0(x)
        maps = []
        for i, block in enumerate(self.blocks):
            if i == self.config.tap_block:
                expanded = block.expand(x) if block.expand is not None else x
                maps.append(expanded)
                x = block.finish(expanded, x)
            else:
                x = block(x)
        maps.append(self.conv_last(x))
        for extra in self.extras:
            maps.append(extra(maps[-1]))
        return maps

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(N, 3, H, W) float -> (encoded (N, A, 4), logits (N, A, C)), x's dtype."""
        return predict_tf_order(self.feature_maps(x), self.box_heads, self.class_heads, self.num_channels)


def _config_from_units(graph: TfjsGraph, units: dict[str, ConvUnit]) -> SSDLiteConfig:
    """Widths, strides, shortcuts and predictor sizes from the graph's convolutions."""
    blocks = []
    for i in range(100):
        prefix = f"{_FE}/expanded_conv" + (f"_{i}" if i else "")
        if f"{prefix}/project" not in units:
            break
        expand, dw, proj = units.get(f"{prefix}/expand"), units[f"{prefix}/depthwise"], units[f"{prefix}/project"]
        blocks.append((expand.weight_oihw.shape[0] if expand else None, proj.weight_oihw.shape[0], dw.stride,
                       proj.residual_from is not None))
    extras = []
    for scope in sorted(units):
        if m := re.fullmatch(rf"{_FE}/layer_19_1_Conv2d_(\d+)_1x1_\d+", scope):
            down = next(s for s in units if re.fullmatch(rf"{_FE}/layer_19_2_Conv2d_{m.group(1)}_3x3_s2_\d+", s))
            extras.append((int(m.group(1)), units[scope].weight_oihw.shape[0], units[down].weight_oihw.shape[0]))
    boxes = sorted((int(m.group(1)), u) for s, u in units.items()
                   if (m := re.fullmatch(r"BoxPredictor_(\d+)/BoxEncodingPredictor", s)))
    tap = units.get("BoxPredictor_0/BoxEncodingPredictor_depthwise")
    tap_m = re.fullmatch(rf"{_FE}/expanded_conv_(\d+)/expand/Relu6", tap.input_name if tap else "")
    if not blocks or f"{_FE}/Conv" not in units or f"{_FE}/Conv_1" not in units or not tap_m \
            or len(boxes) != len(extras) + 2:
        raise ModelLoadError(f"{graph.path}: layers do not form an SSDLite MobileNet v2 (blocks {len(blocks)}, "
                             f"extras {len(extras)}, predictors {len(boxes)})")
    anchors = tuple(u.weight_oihw.shape[0] // 4 for _, u in boxes)
    return SSDLiteConfig(
        stem_ch=units[f"{_FE}/Conv"].weight_oihw.shape[0], blocks=tuple(blocks),
        last_ch=units[f"{_FE}/Conv_1"].weight_oihw.shape[0],
        extras=tuple((mid, out) for _, mid, out in sorted(extras)), anchors_per_cell=anchors,
        num_channels=units["BoxPredictor_0/ClassPredictor"].weight_oihw.shape[0] // anchors[0],
        tap_block=int(tap_m.group(1)),
    )


def _layer_scopes(model: SSDLiteMobileNetV2) -> list[tuple[str, nn.Module, str | None]]:
    """(graph scope, torch layer, scope whose output feeds it (None: the image)) in graph order."""
    out: list[tuple[str, nn.Module, str | None]] = [(f"{_FE}/Conv", model.conv0, None)]
    prev = f"{_FE}/Conv"
    for i, block in enumerate(model.blocks):
        prefix = f"{_FE}/expanded_conv" + (f"_{i}" if i else "")
        src = prev
        if block.expand is not None:
            out.append((f"{prefix}/expand", block.expand, src))
            src = f"{prefix}/expand"
        out += [(f"{prefix}/depthwise", block.depthwise, src), (f"{prefix}/project", block.project, f"{prefix}/depthwise")]
        prev = f"{prefix}/project"
    out.append((f"{_FE}/Conv_1", model.conv_last, prev))
    prev = f"{_FE}/Conv_1"
    map_scopes = [f"{_FE}/expanded_conv_{model.config.tap_block}/expand", prev]
    for j, ((mid, width), extra) in enumerate(zip(model.config.extras, model.extras), start=2):
        names = [f"{_FE}/layer_19_1_Conv2d_{j}_1x1_{mid}", f"{_FE}/layer_19_2_Conv2d_{j}_3x3_s2_{width}_depthwise",
                 f"{_FE}/layer_19_2_Conv2d_{j}_3x3_s2_{width}"]
        out += [(names[0], extra[0], prev), (names[1], extra[1], names[0]), (names[2], extra[2], names[1])]
        prev = names[2]
        map_scopes.append(prev)
    for k, src in enumerate(map_scopes):
        for kind, heads in (("BoxEncodingPredictor", model.box_heads), ("ClassPredictor", model.class_heads)):
            dw = f"BoxPredictor_{k}/{kind}_depthwise"
            out += [(dw, heads[k][0], src), (f"BoxPredictor_{k}/{kind}", heads[k][1], dw)]
    return out


def _load_layer(graph: TfjsGraph, unit: ConvUnit, layer: nn.Module, feeds: str) -> None:
    conv = layer.conv if isinstance(layer, ConvAct) else layer
    relu6 = isinstance(layer, ConvAct) and isinstance(layer.act, nn.ReLU6)
    stride = layer.stride if isinstance(layer, ConvAct) else 1
    got = (tuple(unit.weight_oihw.shape), unit.stride, unit.relu6, unit.depthwise, unit.input_name)
    want = (tuple(conv.weight.shape), stride, relu6, conv.groups > 1, feeds)
    if got != want:
        raise ModelLoadError(f"{graph.path}: layer {unit.scope!r} (shape, stride, relu6, depthwise, input) {got} "
                             f"does not fit the architecture {want}")
    with torch.no_grad():
        conv.weight.copy_(torch.from_numpy(unit.weight_oihw))
        conv.bias.copy_(torch.from_numpy(unit.bias))


def _load_weights(graph: TfjsGraph, units: dict[str, ConvUnit], model: SSDLiteMobileNetV2) -> None:
    """Copy every conv, checking shapes, strides, ReLU6 and which tensor feeds it."""
    layers = _layer_scopes(model)
    missing = [scope for scope, _, _ in layers if scope not in units]
    extra = sorted(set(units) - {scope for scope, _, _ in layers})
    if missing or extra:
        raise ModelLoadError(f"{graph.path}: graph and architecture differ (missing {missing[:3]}, extra {extra[:3]})")
    image_input = units[f"{_FE}/Conv"].input_name
    for scope, layer, src in layers:
        feeds = image_input if src is None else units[src].output_name
        _load_layer(graph, units[scope], layer, feeds)
    for i, block in enumerate(model.blocks):
        proj = units[f"{_FE}/expanded_conv" + (f"_{i}" if i else "") + "/project"]
        if block.residual:
            prev = f"{_FE}/expanded_conv" + (f"_{i - 1}" if i > 1 else "") + "/project" if i else f"{_FE}/Conv"
            if proj.residual_from != units[prev].output_name:
                raise ModelLoadError(f"{graph.path}: block {i} adds {proj.residual_from!r}, expected its input")


def _spec_from_graph(graph: TfjsGraph, units: dict[str, ConvUnit], num_channels: int) -> ModelSpec:
    """Input size and scaling, anchors, box coder scales and class ids from the graph."""
    sub = graph.node(units[f"{_FE}/Conv"].input_name)  # x * m - s
    mul = graph.node(sub.inputs[0])
    resize = graph.ops("ResizeBilinear")
    if sub.op != "Sub" or mul.op != "Mul" or len(resize) != 1 or not graph.ops("Sigmoid"):
        raise ModelLoadError(f"{graph.path}: no 'resize -> x * m - s' preprocessing or sigmoid scores found")
    m = float(graph.const(next(i for i in mul.inputs if graph.is_const(i))))
    s = float(graph.const(sub.inputs[1]))
    tile = [n for n in graph.ops("Tile") if graph.is_const(n.inputs[0])]
    scales = {}
    for k in range(4):
        users = graph.consumers.get("Postprocessor/Decode/unstack", [])
        mul_k = [n for n in users if n.op == "Mul" and f"Postprocessor/Decode/unstack{f':{k}' if k else ''}" in n.inputs]
        if len(mul_k) == 1:
            scales[k] = float(graph.const(_const_input(graph, mul_k[0])))
    if len(tile) != 1 or len(scales) != 4 or scales[0] != scales[1] or scales[2] != scales[3]:
        raise ModelLoadError(f"{graph.path}: anchors/box coder not found as expected (scales {scales})")
    yxyx = graph.const(tile[0].inputs[0]).reshape(-1, 4).astype(np.float32)
    cxcywh = np.stack([(yxyx[:, 1] + yxyx[:, 3]) / 2, (yxyx[:, 0] + yxyx[:, 2]) / 2,
                       yxyx[:, 3] - yxyx[:, 1], yxyx[:, 2] - yxyx[:, 0]], axis=1)
    hw = graph.const(resize[0].inputs[1])
    return ModelSpec(
        name="ssdlite_mobilenet_v2",
        input_hw=(int(hw[0]), int(hw[1])),
        mean_rgb=(s / m,) * 3,
        std_rgb=(1.0 / m,) * 3,
        resize="bilinear",
        anchors_cxcywh=cxcywh,
        box_layout="yxhw",  # TF's FasterRcnnBoxCoder: (ty, tx, th, tw), y scale on index 0
        variances=(scales[0], scales[2]),
        score_fn="sigmoid",
        class_ids=tuple(j if j in COCO_NAMES else 0 for j in range(num_channels)),
    )


def _const_input(graph: TfjsGraph, node) -> str:
    return next(i for i in node.inputs if graph.is_const(i))


def build_ssdlite_mobilenet_v2(model_json: str | Path) -> tuple[ModelSpec, SSDLiteMobileNetV2]:
    """Rebuild the TF.js COCO-SSD lite_mobilenet_v2 graph model as a float PyTorch model.

    Args:
        model_json: the graph model's ``model.json`` (its weight shards beside it).

    Returns:
        ``(spec, model)``: the spec (300x300, mean/std 127.5, 1917 anchors cx,cy,w,h normalised,
        variances 0.1/0.2, sigmoid scores, 91 class channels) and the float32 model on the CPU
        in eval mode with all 88 convolutions loaded (BatchNorm folded).

    Raises:
        ModelLoadError: missing/corrupt files, or a graph that is not this architecture.
    """
    graph = load_tfjs_graph(model_json)
    units = conv_units(graph)
    config = _config_from_units(graph, units)
    spec = _spec_from_graph(graph, units, config.num_channels)
    model = SSDLiteMobileNetV2(config, spec.input_hw)
    if model.num_anchors != spec.num_anchors:
        raise ModelLoadError(f"{graph.path}: {spec.num_anchors} anchors, the network emits {model.num_anchors}")
    _load_weights(graph, units, model)
    _LOG.info("loaded SSDLite MobileNet v2 (%d convs, %d anchors) from %s", len(units), spec.num_anchors, graph.path)
    return spec, model.eval()
