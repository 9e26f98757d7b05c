"""Atomic video output: the only place ``cv2.VideoWriter`` lives.

Frames go to a temporary file beside the target (same extension, so OpenCV picks the same
container); :meth:`VideoWriter.close` renames it over the target. An exception inside the
``with`` block leaves the target untouched and removes the temporary file.
"""

from __future__ import annotations

import contextlib
import logging
import os
from pathlib import Path
from types import TracebackType

import cv2
import numpy as np
import numpy.typing as npt

from aeb_app.atomic import atomic_path
from aeb_app.errors import InputError

__all__ = ["VideoWriter"]

log = logging.getLogger(__name__)

_FOURCC = {".mp4": "mp4v", ".m4v": "mp4v", ".avi": "MJPG", ".mkv": "mp4v"}


class VideoWriter:
    """Write BGR uint8 frames to ``path`` atomically; the size is taken from the first frame.

    Args:
        path: target file; its extension picks the container (``.mp4``, ``.avi``, ``.mkv``).
        fps: frames per second of the output.

    Raises:
        InputError: unsupported extension, or OpenCV cannot open a writer for it.
    """

    def __init__(self, path: str | os.PathLike[str], *, fps: float) -> None:
        self.path = Path(path)
        suffix = self.path.suffix.lower()
        if suffix not in _FOURCC:
            raise InputError(f"{self.path}: unsupported video extension {suffix!r}; use {', '.join(_FOURCC)}")
        if not fps > 0:
            raise InputError(f"{self.path}: fps must be > 0, got {fps}")
        self.fps = float(fps)
        self.frames_written = 0
        self._fourcc = cv2.VideoWriter_fourcc(*_FOURCC[suffix])
        self._stack = contextlib.ExitStack()
        self._tmp: Path | None = None
        self._writer: cv2.VideoWriter | None = None
        self._size: tuple[int, int] | None = None

    def __enter__(self) -> "VideoWriter":
        self._tmp = self._stack.enter_context(atomic_path(self.path))
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        if self._writer is not None:
            self._writer.release()
            self._writer = None
        if exc_type is None and self.frames_written == 0:
            exc = InputError(f"{self.path}: no frames were written")
            self._stack.__exit__(type(exc), exc, None)
            raise exc
        self._stack.__exit__(exc_type, exc, tb)
        if exc_type is None:
            log.info("wrote %s (%d frames)", self.path, self.frames_written)

    def write(self, frame_bgr: npt.NDArray[np.uint8]) -> None:
        """Append one (h, w, 3) uint8 BGR frame; every frame must have the first frame's size."""
        if self._tmp is None:
            raise InputError(f"{self.path}: writer used outside its 'with' block")
        h, w = frame_bgr.shape[:2]
        if self._writer is None:
            self._writer = cv2.VideoWriter(str(self._tmp), self._fourcc, self.fps, (w, h))
            if not self._writer.isOpened():
                raise InputError(f"{self.path}: OpenCV cannot write this video format")
            self._size = (w, h)
        elif (w, h) != self._size:
            raise InputError(f"{self.path}: frame size {w}x{h} differs from the first frame {self._size}")
        self._writer.write(np.ascontiguousarray(frame_bgr))
        self.frames_written += 1
