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
