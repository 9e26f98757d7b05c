"""Video input and output (the only place OpenCV capture/writer objects live)."""

from __future__ import annotations

from aeb_app.video.reader import MAX_CONSECUTIVE_FAILURES, VideoFrame, VideoInfo, VideoSource, parse_source
from aeb_app.video.writer import VideoWriter

__all__ = ["MAX_CONSECUTIVE_FAILURES", "VideoFrame", "VideoInfo", "VideoSource", "VideoWriter", "parse_source"]
