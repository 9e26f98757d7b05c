"""Shared helpers for the inference tests (not a test module)."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest



def shared_engines(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One engines dir per test session, so the ONNX export cache is hit across test files."""
    path = tmp_path_factory.getbasetemp() / "engines-shared"
    path.mkdir(exist_ok=True)
    return path


def real_frames(data_dir: Path, coco_dir: Path) -> list[np.ndarray]:
    """COCO val images plus a dashcam still, BGR uint8 of different sizes."""
    files = sorted((coco_dir / "val2017").glob("*.jpg"))[::40][:4]
    frames = [cv2.imread(str(p)) for p in files]
    frames.append(cv2.imread(str(data_dir / "videos" / "udacity" / "test_images" / "solidWhiteRight.jpg")))
    assert all(f is not None for f in frames)
    return frames


def crowded_batches(seed: int):
    """Random batches that make NMS work: clusters of overlapping boxes of three classes, 1-4 images each.

    Yields ``(boxes (N, A, 4), scores (N, A, 4), class_ids (4,), PostprocessConfig)``, four batches.
    """
    import torch

    from aeb_app.model.postprocess import PostprocessConfig

    gen = torch.Generator().manual_seed(seed)
    class_ids = torch.tensor([0, 3, 1, 7])
    for n, a, thr, iou, agnostic in [(1, 300, 0.5, 0.5, False), (3, 200, 0.4, 0.3, False),
                                     (2, 250, 0.45, 0.6, True), (4, 100, 0.3, 0.45, False)]:
        centre = torch.rand(n, 8, 2, generator=gen).repeat_interleave(a // 8 + 1, dim=1)[:, :a]
        centre = centre + 0.02 * torch.randn(n, a, 2, generator=gen)
        half = 0.05 + 0.1 * torch.rand(n, a, 2, generator=gen)
        boxes = torch.cat([centre - half, centre + half], dim=-1)
        scores = torch.softmax(3 * torch.randn(n, a, 4, generator=gen), dim=-1)
        yield boxes, scores, class_ids, PostprocessConfig(score_threshold=thr, iou_threshold=iou,
                                                          class_agnostic=agnostic, max_detections=20)
