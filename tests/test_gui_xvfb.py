"""The real window under a real X server (Xvfb): what the offscreen platform cannot show.

Launches ``python -m aeb_app gui VIDEO`` as a user would, on the xcb platform (Qt's real X11
backend, which loads the GL/xcb libraries the offscreen platform never touches). Checks it stays
alive and paints changing frames with the green banner while the video plays, turns the banner grey
("not monitoring") at the end of the video, and quits cleanly on Ctrl+Q with exit code 0.
Before the Mesa/Triton import-order fix this process died with SIGSEGV a few seconds in.
"""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import cv2
import numpy as np
import pytest

from xdisplay import XServer, app_env, colour_pixels, wait_for

REPO = Path(__file__).resolve().parents[1]
GREEN, GREY = "#2e7d32", "#616161"  # the banner's "ready" and "unavailable/not monitoring" colours
CLIP_FRAMES = 75  # 3 s of the sample footage
BANNER_MIN_PX = 4000  # the banner is ~800 x 36 px; a few thousand pixels of its colour mean it is shown


@pytest.fixture
def xserver():
    server = XServer.start()
    yield server
    server.stop()


def _alive(app: subprocess.Popen, log: Path) -> None:
    code = app.poll()
    if code is not None:
        tail = log.read_text(errors="replace")[-3000:]
        verdict = "crashed with SIGSEGV" if code in (-11, 139) else f"exited with {code}"
        pytest.fail(f"aeb-app gui {verdict}; log tail:\n{tail}")


def _cut(video: Path, out: Path, frames: int) -> Path:
    """The first ``frames`` frames of the real footage (a short clip ends quickly on a busy machine)."""
    cap = cv2.VideoCapture(str(video))
    fps = cap.get(cv2.CAP_PROP_FPS)
    writer = None
    for _ in range(frames):
        ok, image = cap.read()
        assert ok, f"{video}: fewer than {frames} frames"
        if writer is None:
            writer = cv2.VideoWriter(str(out), cv2.VideoWriter_fourcc(*"mp4v"), fps, image.shape[1::-1])
        writer.write(image)
    writer.release()
    cap.release()
    return out


def test_window_plays_paints_and_quits_cleanly(xserver: XServer, sample_video: Path, tmp_path: Path) -> None:
    clip = _cut(sample_video, tmp_path / "clip.mp4", CLIP_FRAMES)
    log = tmp_path / "gui.log"
    with log.open("w") as out:
        app = subprocess.Popen([sys.executable, "-X", "faulthandler", "-m", "aeb_app", "gui", str(clip),
                                "--mode", "fp32"], cwd=tmp_path, stdout=out, stderr=subprocess.STDOUT,
                               env=app_env(xserver.display, tmp_path / "home", REPO))
    try:
        window = wait_for(lambda: _alive(app, log) or xserver.find_window("forward collision warning"), 90,
                          "the main window to appear")
        # Playing: green banner on screen and the video area changing between two screenshots.
        first = wait_for(lambda: _alive(app, log) or _shot_with(xserver, GREEN), 90, "the green banner while playing")
        time.sleep(1.0)
        _alive(app, log)
        second = xserver.screenshot()
        changed = (np.abs(first.astype(np.int16) - second.astype(np.int16)).max(axis=-1) > 30).sum()
        assert changed > 20000, f"only {changed} pixels changed in 1 s: the video is not being painted"
        assert len(np.unique(second.reshape(-1, 3), axis=0)) > 2000  # real footage, not an empty window
        # End of the clip: the banner's rectangle turns grey ("not monitoring"), never green.
        box = _banner_box(first)
        end = wait_for(lambda: _alive(app, log) or _region_is(xserver.screenshot(), box, GREY), 120,
                       "the banner to turn grey at the end of the video")
        assert colour_pixels(end[box], GREEN) == 0, "green left in the banner after the video ended"
        _alive(app, log)
        xserver.key(window, "ctrl+q")
        assert app.wait(30) == 0, log.read_text(errors="replace")[-3000:]
    finally:
        if app.poll() is None:
            app.kill()
            app.wait(10)
    assert "Traceback" not in log.read_text(errors="replace")


def _banner_box(shot: np.ndarray) -> tuple[slice, slice]:
    """The green banner's rectangle: rows where over 300 px are that exact green (trees are not)."""
    green = np.abs(shot.astype(np.int16) - (0x2E, 0x7D, 0x32)).max(axis=-1) <= 4
    rows = np.nonzero(green.sum(axis=1) > 300)[0]
    assert len(rows) >= 20, "no banner-sized green area"
    cols = np.nonzero(green[rows].mean(axis=0) > 0.9)[0]
    return slice(rows.min() + 3, rows.max() - 2), slice(cols.min() + 3, cols.min() + 60)


def _region_is(shot: np.ndarray, box: tuple[slice, slice], colour: str):
    region = shot[box]
    return shot if colour_pixels(region, colour) >= 0.9 * region.shape[0] * region.shape[1] else None


def _shot_with(xserver: XServer, colour: str):
    shot = xserver.screenshot()
    return shot if colour_pixels(shot, colour) >= BANNER_MIN_PX else None
