"""INT8 Q/DQ quantisation and calibration data (16 seeded images here; the full run uses 200)."""

from __future__ import annotations

import shutil

import numpy as np
import onnx
import pytest
from onnx import numpy_helper

from aeb_app.errors import CalibrationError, InputError
from aeb_app.inference.build import calibration as cd
from aeb_app.inference.build.calibration_cache import key_path
from aeb_app.inference.artifacts import file_sha256, find_qdq_model, read_sidecar, weights_sha256
from aeb_app.inference.build.quantize import QuantizeConfig, activation_ranges, decode_head_nodes, quantize_model
from aeb_app.model.registry import load_model
from tests._inference_helpers import shared_engines

CONFIG = QuantizeConfig(num_images=16, seed=0)



@pytest.fixture(scope="module")
def qdq(mobilenet, coco_dir, tmp_path_factory):
    return quantize_model(mobilenet, coco_dir, engines_dir=shared_engines(tmp_path_factory), config=CONFIG)


def test_selection_is_seeded_and_random(coco_dir):
    a = cd.select_images(coco_dir, 16, seed=0)
    assert a == cd.select_images(coco_dir, 16, seed=0)
    assert a != cd.select_images(coco_dir, 16, seed=1)
    assert a != sorted((coco_dir / "val2017").glob("*.jpg"))[:16]


def test_too_few_images_names_folder_and_counts(coco_dir):
    with pytest.raises(InputError, match=r"val2017: 155 images found, 200 needed"):
        cd.select_images(coco_dir, 200)


def test_unreadable_image_is_named(coco_dir, tmp_path):
    for p in sorted((coco_dir / "val2017").glob("*.jpg"))[:3]:
        shutil.copy(p, tmp_path / p.name)
    (tmp_path / "broken.jpg").write_bytes(b"\xff\xd8\xff garbage")
    spec = load_model("ssd_mobilenet_v1").spec
    with pytest.raises(InputError, match="broken.jpg: cannot decode calibration image"):
        cd.calibration_batch(tmp_path, spec, num_images=4, cache_dir=tmp_path / "calib")
    assert not (tmp_path / "calib").exists() or list((tmp_path / "calib").iterdir()) == []


def test_calibration_batch_matches_inference_preprocessing(coco_dir, tmp_path, mobilenet):
    from aeb_app.model.preprocess import resize_batch

    batch, key = cd.calibration_batch(coco_dir, mobilenet.spec, num_images=4, cache_dir=tmp_path)
    frames = cd.read_images(cd.select_images(coco_dir, 4))
    np.testing.assert_array_equal(batch, resize_batch(frames, mobilenet.spec))
    again, key2 = cd.calibration_batch(coco_dir, mobilenet.spec, num_images=4, cache_dir=tmp_path)
    assert key == key2 and len(list(tmp_path.glob("calib-*.npy"))) == 1
    np.testing.assert_array_equal(again, batch)


def test_qdq_model_is_symmetric_int8_with_float_decode_head(qdq, mobilenet, tmp_path_factory):
    model = onnx.load(str(qdq))
    onnx.checker.check_model(model)
    inits = {i.name: numpy_helper.to_array(i) for i in model.graph.initializer}
    q_nodes = [n for n in model.graph.node if n.op_type == "QuantizeLinear"]
    assert q_nodes
    for node in q_nodes:  # TensorRT needs int8, zero point 0
        zp = inits[node.input[2]]
        assert zp.dtype == np.int8 and not zp.any()
    weight_dq = [n for n in model.graph.node if n.op_type == "DequantizeLinear" and inits.get(n.input[0]) is not None
                 and inits[n.input[0]].ndim == 4]
    assert weight_dq and all(inits[n.input[1]].ndim == 1 for n in weight_dq)  # per-channel
    for node in model.graph.node:
        if node.op_type in ("Exp", "Sigmoid", "Softmax"):
            assert not any(i.endswith("_DequantizeLinear_Output") for i in node.input)
    side = read_sidecar(qdq)
    meta = side.details
    assert side.kind == "onnx-int8-qdq" and side.precision == "int8" and side.usage.class_names[1] == "person"
    assert side.weights_sha256 == weights_sha256(mobilenet) and side.sha256 == file_sha256(qdq)
    assert meta["calibration"]["num_images"] == 16 and meta["calibration"]["method"] == "entropy"
    assert find_qdq_model(mobilenet, shared_engines(tmp_path_factory)) is not None


def test_decode_head_nodes_are_after_last_conv(mobilenet, tmp_path_factory):
    from aeb_app.inference.build.export import export_onnx

    model = onnx.load(str(export_onnx(mobilenet, engines_dir=shared_engines(tmp_path_factory))))
    head = set(decode_head_nodes(model))
    ops = {n.op_type for n in model.graph.node if n.name in head}
    assert {"Exp", "Sigmoid", "Concat"} <= ops and "Conv" not in ops and "Clip" not in ops


def test_int8_close_to_fp32_on_held_in_images(qdq, mobilenet, coco_dir, tmp_path_factory):
    from aeb_app.inference.registry import create

    frames = cd.read_images(cd.select_images(coco_dir, 4, seed=7))
    engines = shared_engines(tmp_path_factory)
    with create(mobilenet, "fp32_ort", engines_dir=engines) as f, create(mobilenet, "int8_ort", onnx_path=qdq) as q:
        _, s32 = f.run_decoded(cd.resize_batch(frames, mobilenet.spec))
        _, s8 = q.run_decoded(cd.resize_batch(frames, mobilenet.spec))
    # Probabilities after a float sigmoid: INT8 noise on the logits moves them a little, not a lot.
    assert float((s8 - s32).abs().mean()) < 0.01


def test_second_run_reuses_the_intact_model_and_a_corrupt_one_is_ignored(qdq, mobilenet, coco_dir, tmp_path_factory):
    engines = shared_engines(tmp_path_factory)
    mtime = qdq.stat().st_mtime_ns
    assert quantize_model(mobilenet, coco_dir, engines_dir=engines, config=CONFIG) == qdq
    assert qdq.stat().st_mtime_ns == mtime  # not quantised again
    copy = qdq.with_name(qdq.name.replace("-n16-", "-n99-"))
    copy.write_bytes(qdq.read_bytes()[:5000])  # truncated, with a copied (now wrong) sidecar
    shutil.copy(qdq.with_name(qdq.name + ".json"), copy.with_name(copy.name + ".json"))
    try:
        assert find_qdq_model(mobilenet, engines) == qdq
    finally:
        copy.unlink()
        copy.with_name(copy.name + ".json").unlink()


def test_bad_quantize_config_is_a_clear_error():
    with pytest.raises(ValueError, match="num_images and batch_size must be >= 1, got 16 and 0"):
        QuantizeConfig(num_images=16, batch_size=0)


@pytest.fixture(scope="module")
def ssd300_qdq(coco_dir, tmp_path_factory):
    loaded = load_model("ssd300_resnet50", weights="random")
    return quantize_model(loaded, coco_dir, engines_dir=shared_engines(tmp_path_factory),
                          config=QuantizeConfig(num_images=4, seed=0))


def _graph(path):
    model = onnx.load(str(path))
    inits = {i.name: numpy_helper.to_array(i) for i in model.graph.initializer}
    producers = {out: n for n in model.graph.node for out in n.output}
    return model, inits, producers


@pytest.mark.parametrize("which", ["qdq", "ssd300_qdq"])
def test_every_dequantize_input_is_int8(which, request):
    """TensorRT's parser takes DequantizeLinear inputs of INT8 (not ONNX Runtime's INT32 biases)."""
    model, inits, producers = _graph(request.getfixturevalue(which))
    dq = [n for n in model.graph.node if n.op_type == "DequantizeLinear"]
    assert dq
    for node in dq:
        x = node.input[0]
        if x in inits:
            assert inits[x].dtype == np.int8, f"{node.name}: {x} is {inits[x].dtype}"
        else:
            assert producers[x].op_type == "QuantizeLinear", node.name


@pytest.mark.parametrize("which", ["qdq", "ssd300_qdq"])
def test_placement_is_tensorrt_style(which, request):
    """Q/DQ on Conv inputs (weights per-channel on axis 0), none on Conv outputs except residual inputs."""
    model, inits, producers = _graph(request.getfixturevalue(which))
    consumers = {}
    for node in model.graph.node:
        for name in node.input:
            consumers.setdefault(name, []).append(node)
    for node in model.graph.node:
        if node.op_type == "Conv":
            assert all(producers[i].op_type == "DequantizeLinear" for i in node.input[:2]), node.name
            if len(node.input) > 2:  # the bias stays a float initializer
                assert node.input[2] in inits and inits[node.input[2]].dtype == np.float32, node.name
            w_dq = producers[node.input[1]]
            axis = next((a.i for a in w_dq.attribute if a.name == "axis"), 1)
            assert axis == 0 and inits[w_dq.input[1]].shape == (inits[w_dq.input[0]].shape[0],)
        if node.op_type == "QuantizeLinear" and node.input[0] in producers:
            parent = producers[node.input[0]]
            if parent.op_type == "Conv":  # only a downsample conv feeding a residual Add
                users = [c for dq in consumers[node.output[0]] for c in consumers[dq.output[0]]]
                assert users and {u.op_type for u in users} == {"Add"}, node.name
    adds = [n for n in model.graph.node if n.op_type == "Add" and all(i in producers for i in n.input)
            and {producers[i].op_type for i in n.input} & {"Conv", "DequantizeLinear"} == {"Conv", "DequantizeLinear"}]
    if which == "ssd300_qdq":
        assert len(adds) == 13  # every bottleneck: conv branch float, residual input through Q/DQ


def test_activation_ranges_are_public_cached_and_checked(mobilenet, coco_dir, tmp_path_factory):
    engines = shared_engines(tmp_path_factory)
    ranges = activation_ranges(mobilenet, coco_dir, engines_dir=engines, config=CONFIG)
    assert "images" in ranges.ranges and len(ranges.ranges) > 40
    assert ranges.scale("images") == pytest.approx(ranges.amax("images") / 127) and 0.9 < ranges.amax("images") <= 1.0
    cache = next((engines / "calib").glob(f"ssd_mobilenet_v1-ort-ranges-entropy-n16-s0-*.ranges.json"))
    assert activation_ranges(mobilenet, coco_dir, engines_dir=engines, config=CONFIG) == ranges  # from the cache
    saved = cache.read_bytes()
    try:
        cache.write_bytes(saved.replace(b'"images": [', b'"images": [-50.0, 50.0, '))  # edited ranges
        with pytest.raises(CalibrationError, match="does not match the hash"):
            activation_ranges(mobilenet, coco_dir, engines_dir=engines, config=CONFIG)
        fresh = activation_ranges(mobilenet, coco_dir, engines_dir=engines, config=CONFIG, rebuild=True)
        assert fresh.ranges == ranges.ranges and cache.read_bytes() == saved
    finally:
        cache.write_bytes(saved)


def test_ranges_cache_of_another_model_is_refused_with_both_names(mobilenet, coco_dir, tmp_path_factory):
    import json as _json

    engines = shared_engines(tmp_path_factory)
    ranges = activation_ranges(mobilenet, coco_dir, engines_dir=engines, config=CONFIG)
    cache = next((engines / "calib").glob("ssd_mobilenet_v1-ort-ranges-entropy-n16-s0-*.ranges.json"))
    side = key_path(cache)
    saved = side.read_text()
    meta = _json.loads(saved)
    meta["key"].update(model="ssd300_resnet50", source_sha256="f" * 64)
    side.write_text(_json.dumps(meta))
    try:
        with pytest.raises(CalibrationError, match=r"made for ssd300_resnet50 \(source ffffffffffff\), not for "
                                                   r"ssd_mobilenet_v1 \(source " + ranges.key.source_sha256[:12]):
            activation_ranges(mobilenet, coco_dir, engines_dir=engines, config=CONFIG)
    finally:
        side.write_text(saved)
