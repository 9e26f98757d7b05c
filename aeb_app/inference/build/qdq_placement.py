"""TensorRT-style Q/DQ placement on an ONNX graph (pure ``onnx``; no TensorRT, no ONNX Runtime).

TensorRT's explicit-quantization guide ("Q/DQ layer-placement recommendations") asks for
Q/DQ pairs on the *inputs* of weighted layers (activation and weights), none on their
outputs, and, for a residual ``Add``, a pair on the residual (identity) input only, so the
Add fuses into the convolution that produces its other input. ONNX Runtime's quantiser,
driven with ``op_types_to_quantize=("Conv", "Add")``,
``OpTypesToExcludeOutputQuantization=("Conv", "Add")`` and ``QuantizeBias=False``, gives
the first two; it puts pairs on *both* inputs of an Add. :func:`keep_residual_qdq_only`
removes the pair on the input that comes from a convolution (the branch TensorRT fuses
the Add into), keeping the one on the residual input.
"""

from __future__ import annotations

import logging

log = logging.getLogger(__name__)


def _producers(model) -> dict:
    return {out: node for node in model.graph.node for out in node.output}


def _consumers(model, name: str) -> list:
    return [n for n in model.graph.node if name in n.input]


def _qdq_source(producers: dict, tensor: str):
    """(Q node, DQ node, float tensor) when ``tensor`` is the output of a Q -> DQ pair on an activation."""
    dq = producers.get(tensor)
    if dq is None or dq.op_type != "DequantizeLinear":
        return None
    q = producers.get(dq.input[0])
    if q is None or q.op_type != "QuantizeLinear":
        return None
    return q, dq, q.input[0]


def fused_branch_index(model, add) -> int | None:
    """Index (0/1) of the Add input TensorRT fuses into its producing Conv, or None.

    Both inputs must come through Q/DQ pairs on activations. The first input whose float
    tensor is produced by a ``Conv`` is the fused branch (torchvision's bottleneck computes
    ``conv3_out + identity``; in a downsampling block both are convolutions and the second,
    the 1x1 downsample, stays quantised as the residual).
    """
    producers = _producers(model)
    sources = [_qdq_source(producers, name) for name in add.input]
    if len(sources) != 2 or any(s is None for s in sources):
        return None
    for index, (_, _, tensor) in enumerate(sources):
        parent = producers.get(tensor)
        if parent is not None and parent.op_type == "Conv":
            return index
    return None


def keep_residual_qdq_only(model) -> int:
    """Remove the Q/DQ pair on the fused (convolution) input of every residual Add, in place.

    Returns:
        The number of Add inputs rewired to the float tensor.
    """
    removed = 0
    for add in [n for n in model.graph.node if n.op_type == "Add"]:
        index = fused_branch_index(model, add)
        if index is None:
            continue
        q, dq, tensor = _qdq_source(_producers(model), add.input[index])
        add.input[index] = tensor
        removed += 1
        if not _consumers(model, dq.output[0]):
            model.graph.node.remove(dq)
            if not _consumers(model, q.output[0]):
                model.graph.node.remove(q)
    _drop_unused_initializers(model)
    log.info("residual Adds: %d conv-side Q/DQ pairs removed", removed)
    return removed


def _drop_unused_initializers(model) -> None:
    used = {name for node in model.graph.node for name in node.input}
    for init in [i for i in model.graph.initializer if i.name not in used]:
        model.graph.initializer.remove(init)
