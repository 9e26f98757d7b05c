"""Heavy, optional imports done once, in the main thread, before the first window is shown.

Why: under a real X server (and Xvfb) showing a Qt window makes Qt's GLX integration load Mesa,
which maps its own ``libLLVM``; importing Triton afterwards (``torchvision.ops`` ->
``torch._dynamo`` -> ``triton.knobs`` -> ``libtriton.so``, which carries another LLVM) then kills
the process with a segmentation fault, in any thread (bisected: Triton imported before the window
is shown works; after, it crashes; the offscreen platform loads no Mesa and hides it). So the GUI
imports everything a session may need here, before it creates a window, and never lazily from a
worker thread. :func:`qt_environment` also keeps Mesa out of the process (the app draws no OpenGL).

Modules that are not installed are skipped (the backend that needs them reports itself as
unavailable later, with its reason); nothing here raises.
"""

from __future__ import annotations

import importlib
import logging
import threading
import time

__all__ = ["preload", "modules_for_mode", "qt_environment"]

log = logging.getLogger(__name__)

#: Always needed by a session: the detector stack and the shared pre/post-processing.
_CORE = (
    "torch", "triton", "torchvision", "torchvision.ops", "torch._dynamo",
    "aeb_app.model.registry", "aeb_app.inference.registry", "aeb_app.model.postprocess",
)
#: Extra modules per backend family (matched on the mode name).
_BY_FAMILY = {
    "_ort": ("onnxruntime", "onnx", "aeb_app.inference.run.onnxrt_backend"),
    "_compiled": ("torch._inductor", "torch._inductor.compile_fx"),
    "_aoti": ("torch._inductor", "torch._export"),
}
_done: set[str] = set()
_lock = threading.Lock()


def modules_for_mode(mode: str | None) -> tuple[str, ...]:
    """Module names a session in ``mode`` may import (``None`` or ``"auto"``: every family)."""
    names = list(_CORE)
    for suffix, extra in _BY_FAMILY.items():
        if mode in (None, "auto") or mode.endswith(suffix):
            names.extend(extra)
    return tuple(dict.fromkeys(names))


def preload(mode: str | None = None) -> list[str]:
    """Import what a session in ``mode`` needs; returns the names imported by this call.

    Call it from the main thread before starting a worker. Cheap after the first call.
    """
    if threading.current_thread() is not threading.main_thread():
        log.warning("preload() called outside the main thread: imports may crash under a real display")
    imported: list[str] = []
    t0 = time.perf_counter()
    with _lock:
        for name in modules_for_mode(mode):
            if name in _done:
                continue
            _done.add(name)
            try:
                importlib.import_module(name)
            except ImportError as exc:  # optional: its backend says "unavailable" later
                log.debug("preload: %s not importable (%s)", name, exc)
                continue
            imported.append(name)
    if imported:
        log.debug("preloaded %d modules in %.1f s", len(imported), time.perf_counter() - t0)
    return imported


def qt_environment() -> None:
    """Environment defaults for the window, set before ``QApplication`` (a user's own values win).

    ``QT_XCB_GL_INTEGRATION=none``: the window uses no OpenGL, and without a GL integration Qt's
    xcb plugin loads no Mesa (no second LLVM next to Triton's; see the module docstring).
    """
    import os

    os.environ.setdefault("QT_XCB_GL_INTEGRATION", "none")
