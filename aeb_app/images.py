"""Reading still images with one-line errors that name the file and the cause.

OpenCV decodes a damaged JPEG (truncated, even with an end-of-image marker appended; or with
zeroed data) into a partly flat image and only prints libjpeg's "Corrupt JPEG data" warning on the
process's stderr. :func:`read_image` captures that warning while decoding and refuses the file.
"""

from __future__ import annotations

import os
import sys
import tempfile
import threading
from pathlib import Path

import cv2
import numpy as np
import numpy.typing as npt

from aeb_app.errors import InputError
from aeb_app.names import IMAGE_SUFFIXES



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
    is_jpeg = data[:2].tobytes() == b"\xff\xd8"
    image, warnings = _decode_jpeg_with_warnings(data) if is_jpeg else (cv2.imdecode(data, cv2.IMREAD_COLOR), "")
    if "Corrupt JPEG data" in warnings:
        raise InputError(f"{path}: JPEG data is corrupt or truncated ({warnings.splitlines()[0].strip()})")
    if image is None:
        raise InputError(f"{path}: not a decodable image ({data.size} bytes)")
    return np.asarray(image, dtype=np.uint8)


_STDERR_LOCK = threading.Lock()


def _decode_jpeg_with_warnings(data: npt.NDArray[np.uint8]) -> tuple[npt.NDArray[np.uint8] | None, str]:
    """``cv2.imdecode`` with file descriptor 2 captured: returns (image or None, libjpeg's warnings).

    Lines that are not libjpeg's are written back to stderr (another thread may have logged meanwhile).
    """
    with _STDERR_LOCK, tempfile.TemporaryFile() as capture:
        sys.stderr.flush()
        saved = os.dup(2)
        os.dup2(capture.fileno(), 2)
        try:
            image = cv2.imdecode(data, cv2.IMREAD_COLOR)
        finally:
            os.dup2(saved, 2)
            os.close(saved)
        capture.seek(0)
        text = capture.read().decode("utf-8", "replace")
    others = [line for line in text.splitlines(keepends=True) if "JPEG" not in line]
    if others:
        sys.stderr.write("".join(others))
    return image, text
