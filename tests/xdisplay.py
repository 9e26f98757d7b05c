"""A real X server for tests: Xvfb on a free display, screenshots through ``xwd``, keys through ``xdotool``.

CI installs these with apt (``.ci/run``); a missing tool fails the test loudly (the real-display tier
is the only place a crash that needs a display, like the Mesa/Triton segfault, can be seen).
"""

from __future__ import annotations

import os
import shutil
import struct
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import numpy.typing as npt
import pytest

TOOLS = {"Xvfb": "xvfb", "xwd": "x11-apps", "xdotool": "xdotool"}


def require_tools() -> None:
    missing = [f"{tool} (apt package {package})" for tool, package in TOOLS.items() if shutil.which(tool) is None]
    if missing:
        pytest.fail(f"the real-display GUI tier needs {', '.join(missing)}: .ci/run installs them with apt-get")


@dataclass
class XServer:
    """A running Xvfb; ``display`` like ``:7``."""

    process: subprocess.Popen
    display: str

    @classmethod
    def start(cls, size: str = "1600x1000x24") -> "XServer":
        require_tools()
        read_fd, write_fd = os.pipe()  # -displayfd: Xvfb picks a free display and writes its number here
        process = subprocess.Popen(["Xvfb", "-displayfd", str(write_fd), "-screen", "0", size, "-nolisten", "tcp"],
                                   pass_fds=(write_fd,), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        os.close(write_fd)
        with os.fdopen(read_fd) as pipe:
            number = pipe.readline().strip()
        if not number:
            process.kill()
            pytest.fail("Xvfb did not start (no display number written)")
        return cls(process, f":{number}")

    def stop(self) -> None:
        self.process.terminate()
        try:
            self.process.wait(10)
        except subprocess.TimeoutExpired:
            self.process.kill()

    def run(self, *args: str, timeout: float = 20) -> subprocess.CompletedProcess:
        env = {**os.environ, "DISPLAY": self.display}
        return subprocess.run(list(args), env=env, capture_output=True, timeout=timeout)

    def screenshot(self) -> npt.NDArray[np.uint8]:
        """The whole screen as (h, w, 3) uint8 RGB."""
        done = self.run("xwd", "-root", "-silent")
        if done.returncode != 0:
            raise RuntimeError(f"xwd failed: {done.stderr.decode(errors='replace')}")
        return parse_xwd(done.stdout)

    def find_window(self, title: str) -> str | None:
        done = self.run("xdotool", "search", "--name", title)
        ids = done.stdout.decode().split()
        return ids[0] if ids else None

    def key(self, window_id: str, keys: str) -> None:
        self.run("xdotool", "windowfocus", "--sync", window_id)
        done = self.run("xdotool", "key", "--clearmodifiers", keys)
        if done.returncode != 0:
            raise RuntimeError(f"xdotool key failed: {done.stderr.decode(errors='replace')}")


def parse_xwd(data: bytes) -> npt.NDArray[np.uint8]:
    """Decode a 24/32-bit TrueColor XWD dump (what ``xwd`` writes for Xvfb's default visual)."""
    fields = struct.unpack(">25I", data[:100])
    header_size, width, height = fields[0], fields[4], fields[5]
    byte_order, bits_per_pixel, bytes_per_line, ncolors = fields[7], fields[11], fields[12], fields[19]
    red_mask, green_mask, blue_mask = fields[14], fields[15], fields[16]
    if bits_per_pixel not in (24, 32):
        raise ValueError(f"unsupported XWD: {bits_per_pixel} bits per pixel")
    step = bits_per_pixel // 8
    offset = header_size + 12 * ncolors
    rows = np.frombuffer(data, np.uint8, count=height * bytes_per_line, offset=offset).reshape(height, bytes_per_line)
    raw = rows[:, : width * step].reshape(height, width, step).astype(np.uint32)
    order = range(step) if byte_order == 0 else reversed(range(step))  # 0: least significant byte first
    pixels = sum(raw[..., i] << np.uint32(8 * k) for k, i in enumerate(order))

    def channel(mask: int) -> npt.NDArray[np.uint8]:
        shift = (mask & -mask).bit_length() - 1
        return ((pixels & mask) >> shift).astype(np.uint8)

    return np.stack([channel(red_mask), channel(green_mask), channel(blue_mask)], axis=-1)


def colour_pixels(image: npt.NDArray[np.uint8], hex_colour: str, tolerance: int = 6) -> int:
    """How many pixels are within ``tolerance`` of ``#rrggbb``."""
    rgb = np.array([int(hex_colour[i:i + 2], 16) for i in (1, 3, 5)], np.int16)
    return int((np.abs(image.astype(np.int16) - rgb).max(axis=-1) <= tolerance).sum())


def wait_for(predicate, timeout_s: float, what: str, poll_s: float = 0.25):
    """Poll ``predicate`` until it returns a truthy value; fail naming ``what`` on timeout."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        value = predicate()
        if value is not None and value is not False and (not hasattr(value, '__len__') or len(value)):
            return value
        time.sleep(poll_s)
    pytest.fail(f"timed out after {timeout_s:.0f} s waiting for {what}")


def app_env(display: str, home: Path, repo_root: Path) -> dict[str, str]:
    """Environment for the app under the X server: real xcb platform, settings and caches in ``home``."""
    env = {k: v for k, v in os.environ.items() if k not in ("QT_QPA_PLATFORM",)}
    home.mkdir(parents=True, exist_ok=True)
    home.chmod(0o700)  # XDG_RUNTIME_DIR must be private
    env.update(DISPLAY=display, QT_QPA_PLATFORM="xcb", HOME=str(home), XDG_CONFIG_HOME=str(home / ".config"),
               XDG_CACHE_HOME=str(home / ".cache"), XDG_RUNTIME_DIR=str(home),
               PYTHONPATH=os.pathsep.join(filter(None, [str(repo_root), env.get("PYTHONPATH")])))
    return env
