"""JPEG batches shared between host threads and nvJPEG (aeb_app.inference.run.split_decode), on real COCO images.

The sharing logic runs everywhere: on the CPU the "GPU" side is the device path's CPU fallback (OpenCV decode,
torch resize), so what is tested here is the claiming, the ordering, the sizes and the errors. Rows the host
threads decode are the CPU path's bytes exactly; rows the device side decodes are within the device resize's
tolerance (RESIZE_TOLERANCE_LSB); on the GPU, tests/test_gpu_frames.py's tolerances for nvJPEG apply and the
streamed path's detections are compared with the all-GPU path's.
"""

from __future__ import annotations

import threading
import time
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

from aeb_app.errors import InputError
from aeb_app.inference import registry
from aeb_app.inference.run.gpu_frames import RESIZE_TOLERANCE_LSB, stream_jpeg_batches
from aeb_app.inference.run.split_decode import Claims, HostDecoders, decode_split
from aeb_app.model.postprocess import PostprocessConfig
from aeb_app.model.preprocess import resize_frame

cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")




@pytest.fixture
def host():
    pool = HostDecoders(2)
    yield pool
    pool.close()


def _reference(paths: list[Path], spec) -> tuple[np.ndarray, list[tuple[int, int]]]:
    frames = [cv2.imread(str(p)) for p in paths]
    return np.stack([resize_frame(f, spec) for f in frames]), [f.shape[:2] for f in frames]


def test_claims_hand_out_every_index_once_from_both_ends_under_contention():
    claims = Claims(1000)
    got: list[list[int]] = [[] for _ in range(4)]

    def front(k):
        while (i := claims.front()) is not None:
            got[k].append(i)
            time.sleep(0)  # let the others in

    def back(k):
        while (r := claims.back(7)) is not None:
            got[k].extend(r)
            time.sleep(0)

    threads = [threading.Thread(target=f, args=(k,)) for k, f in enumerate((front, front, back, back))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    everything = sorted(i for g in got for i in g)
    assert everything == list(range(1000))
    assert claims.front() is None and claims.back(3) is None


def test_claims_back_never_crosses_the_front():
    claims = Claims(10)
    assert [claims.front() for _ in range(3)] == [0, 1, 2]
    assert claims.back(4) == range(6, 10)
    assert claims.back(4) == range(3, 6)  # only what is left, never below the front
    assert claims.front() is None


def test_host_only_rows_are_the_cpu_paths_bytes(mobilenet, coco_jpegs, host):
    ref, hws = _reference(coco_jpegs, mobilenet.spec)
    batch, got_hws, stats = decode_split([p.read_bytes() for p in coco_jpegs], [str(p) for p in coco_jpegs],
                                         mobilenet.spec, "cpu", host, use_gpu=False)
    assert (stats.host, stats.gpu) == (len(coco_jpegs), 0)
    assert got_hws == hws
    np.testing.assert_array_equal(batch.numpy(), ref)


@pytest.mark.parametrize("threads", [None, 1])
def test_shared_batches_keep_order_sizes_and_the_resize_tolerance(mobilenet, coco_jpegs, threads):
    pool = HostDecoders(threads) if threads else None
    try:
        ref, hws = _reference(coco_jpegs, mobilenet.spec)
        batch, got_hws, stats = decode_split([p.read_bytes() for p in coco_jpegs], [str(p) for p in coco_jpegs],
                                             mobilenet.spec, "cpu", pool, gpu_chunk=3)
    finally:
        if pool:
            pool.close()
    assert stats.host + stats.gpu == len(coco_jpegs)
    assert stats.gpu > 0  # the device side claims from the moment the host threads start
    assert got_hws == hws
    diff = np.abs(batch.numpy().astype(int) - ref.astype(int))
    assert diff.max() <= RESIZE_TOLERANCE_LSB[mobilenet.spec.resize]
    if pool is None:
        assert stats.host == 0


def test_an_undecodable_image_is_named_from_either_side(mobilenet, coco_jpegs, host):
    datas = [p.read_bytes() for p in coco_jpegs[:4]] + [b"not a jpeg"]
    names = [p.name for p in coco_jpegs[:4]] + ["broken.jpg"]
    for use_gpu in (False, True):
        with pytest.raises(InputError, match="broken.jpg"):
            decode_split(datas, names, mobilenet.spec, "cpu", host, use_gpu=use_gpu)


def test_zero_host_threads_are_refused():
    with pytest.raises(ValueError, match="at least 1"):
        HostDecoders(0)


def test_an_unknown_decode_place_is_refused(mobilenet, coco_jpegs):
    with registry.create(mobilenet, "fp32", device="cpu") as det:
        with pytest.raises(ValueError, match="decode place"):
            list(stream_jpeg_batches(det, [[coco_jpegs[0].read_bytes()]], PostprocessConfig(), decode="disk"))


@cuda
@pytest.mark.parametrize("decode", ["host", "split"])
def test_streamed_host_and_split_decoding_find_the_gpu_paths_boxes(mobilenet, coco_jpegs, decode):
    datas = [p.read_bytes() for p in coco_jpegs]
    batches = [datas[:5], datas[5:]]
    with registry.create(mobilenet, "fp32", device="cuda") as det:
        ref = list(stream_jpeg_batches(det, batches, PostprocessConfig()))
        got = list(stream_jpeg_batches(det, batches, PostprocessConfig(), decode=decode, host_threads=3))
    checked = 0
    for r, g in zip((d for b in ref for d in b), (d for b in got for d in b)):
        for box, cls in zip(r.xyxy_px[r.scores >= 0.5], r.category_ids[r.scores >= 0.5]):
            same = g.xyxy_px[g.category_ids == cls]
            # host rows come from libjpeg-turbo, not nvJPEG: a few LSB per pixel, IoU stays >= 0.9
            assert len(same) and _iou(box, same).max() >= 0.9, (cls, box)
            checked += 1
    assert checked > 5


@cuda
def test_split_decoding_on_the_gpu_shares_the_batch(mobilenet, coco_jpegs):
    pool = HostDecoders(2)
    try:
        datas = [p.read_bytes() for p in coco_jpegs] * 6
        batch, hws, stats = decode_split(datas, [f"i{k}" for k in range(len(datas))], mobilenet.spec, "cuda", pool)
    finally:
        pool.close()
    assert batch.is_cuda and batch.shape[0] == len(datas) and len(hws) == len(datas)
    assert stats.host + stats.gpu == len(datas) and stats.host > 0 and stats.gpu > 0


def _iou(box: np.ndarray, boxes: np.ndarray) -> np.ndarray:
    lt = np.maximum(box[:2], boxes[:, :2])
    rb = np.minimum(box[2:], boxes[:, 2:])
    inter = np.prod(np.clip(rb - lt, 0, None), axis=1)
    area = lambda x: np.prod(x[..., 2:] - x[..., :2], axis=-1)  # noqa: E731
    return inter / (area(box) + area(boxes) - inter)


def test_device_decoders_are_named_and_an_absent_nvimgcodec_says_what_to_install(coco_jpegs):
    from aeb_app.errors import BackendUnavailableError
    from aeb_app.inference.run.hardware_jpeg import device_decoder

    decode = device_decoder("nvjpeg", "cpu")  # on the CPU: the device path's OpenCV fallback
    (image,) = decode([coco_jpegs[0].read_bytes()], ["a.jpg"])
    assert image.shape[0] == 3 and image.dtype == torch.uint8
    with pytest.raises(ValueError, match="unknown device decoder"):
        device_decoder("libjpeg", "cpu")
    try:
        import nvidia.nvimgcodec  # noqa: F401
    except ImportError:
        with pytest.raises(BackendUnavailableError, match="pip install nvidia-nvimgcodec"):
            device_decoder("nvimgcodec", "cpu")


@cuda
def test_hardware_engines_decode_what_nvjpeg_decodes(coco_jpegs):
    pytest.importorskip("nvidia.nvimgcodec", reason="needs nvImageCodec")
    from aeb_app.inference.run.hardware_jpeg import device_decoder

    datas, names = [p.read_bytes() for p in coco_jpegs], [p.name for p in coco_jpegs]
    hw = device_decoder("nvimgcodec", "cuda")(datas, names)
    ref = device_decoder("nvjpeg", "cuda")(datas, names)
    for a, b in zip(hw, ref):
        assert a.shape == b.shape
        assert (a.int() - b.int()).abs().float().mean() <= 1.5  # decoders differ in IDCT / chroma upsampling
    with pytest.raises(InputError, match="broken.jpg"):
        device_decoder("nvimgcodec", "cuda")(datas[:1] + [b"not a jpeg"], ["a.jpg", "broken.jpg"])
