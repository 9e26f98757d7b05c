"""NVDEC video source (aeb_app.video.nvdec): the front door's choice, and frames against OpenCV's."""

from __future__ import annotations

import contextlib
import importlib.util
import logging
from pathlib import Path

import numpy as np
import pytest
import torch

from aeb_app.video import VideoSource
from aeb_app.video.nvdec import NvdecVideoSource, nvdec_module, prefer_nvdec

HAVE_NVDEC = importlib.util.find_spec("PyNvVideoCodec") is not None and torch.cuda.is_available()


def test_cpu_detector_keeps_the_opencv_source(sample_video: Path) -> None:
    with contextlib.ExitStack() as stack:
        source = stack.enter_context(VideoSource(sample_video))
        assert prefer_nvdec(source, "cpu", stack) is source
        assert source.read().image is not None  # still open


@pytest.mark.skipif(importlib.util.find_spec("PyNvVideoCodec") is not None,
                    reason="PyNvVideoCodec installed: the GPU tests cover it")
def test_without_pynvvideocodec_opencv_decodes_with_one_info_line(sample_video: Path, caplog) -> None:
    nvdec_module.cache_clear()
    with caplog.at_level(logging.INFO, logger="aeb_app.video.nvdec"), contextlib.ExitStack() as stack:
        source = stack.enter_context(VideoSource(sample_video))
        assert prefer_nvdec(source, "cuda", stack) is source
        assert prefer_nvdec(source, "cuda", stack) is source
        assert source.read().image is not None
    lines = [r.getMessage() for r in caplog.records]
    assert len(lines) == 1 and "PyNvVideoCodec unavailable" in lines[0] and "OpenCV" in lines[0]


@pytest.mark.skipif(not HAVE_NVDEC, reason="needs a CUDA GPU and PyNvVideoCodec")
def test_nvdec_frames_match_opencv_and_seek(sample_video: Path) -> None:
    """NVDEC and FFmpeg decode the same H.264 stream; only the YUV->RGB conversion may differ:
    mean |diff| <= 3 levels per frame (BT.601 vs BT.709 rounding), same frame count and timestamps."""
    with VideoSource(sample_video) as cpu, NvdecVideoSource(sample_video) as gpu:
        ref = list(cpu.frames(max_frames=30))
        got = list(gpu.frames(max_frames=30))
        assert [f.timestamp_s for f in got] == [f.timestamp_s for f in ref]
        for r, g in zip(ref, got):
            diff = np.abs(g.image.astype(int) - r.image.astype(int))
            assert diff.mean() <= 3.0, (g.index, diff.mean())
            rgb = g.device_image.permute(1, 2, 0).cpu().numpy()
            np.testing.assert_array_equal(rgb[:, :, ::-1], g.image)
        gpu.seek(100)
        cpu.seek(100)
        assert np.abs(gpu.read().image.astype(int) - cpu.read().image.astype(int)).mean() <= 3.0
        assert sum(1 for _ in gpu.frames()) == 221 - 101


@pytest.mark.skipif(not HAVE_NVDEC, reason="needs a CUDA GPU and PyNvVideoCodec")
def test_cuda_detector_gets_the_nvdec_source(sample_video: Path) -> None:
    with contextlib.ExitStack() as stack:
        source = stack.enter_context(VideoSource(sample_video))
        chosen = prefer_nvdec(source, "cuda", stack)
        assert isinstance(chosen, NvdecVideoSource) and chosen.info.size_wh == (960, 540)
