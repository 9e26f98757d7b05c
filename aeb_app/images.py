"""Reading still images with one-line errors that name the file and the cause."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import numpy.typing as npt

from aeb_app.errors import InputError

IMAGE_SUFFIXES = frozenset({".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff"})


def read_image(path: str | Path) -> npt.NDArray[np.uint8]:
    """Read an image as BGR uint8 (H, W, 3).

    Raises:
        InputError: missing, empty, truncated or undecodable file.
    """
    path = Path(path)
    if not path.is_file():
        raise InputError(f"{path}: image not found")
    data = np.fromfile(path, dtype=np.uint8)
    if data.size == 0:
        raise InputError(f"{path}: image file is empty")
    if path.suffix.lower() in {".jpg", ".jpeg"} and data[-2:].tobytes() != b"\xff\xd9":
        # OpenCV decodes a truncated JPEG into a partly grey image with only a warning.
        raise InputError(f"{path}: JPEG is truncated (no end-of-image marker)")
    image = cv2.imdecode(data, cv2.IMREAD_COLOR)
    if image is None:
        raise InputError(f"{path}: not a decodable image ({data.size} bytes)")
    return np.asarray(image, dtype=np.uint8)
