"""Atomic file writes: write a temp file beside the target, then ``os.replace`` it.

A crash or an exception mid-write leaves the previous file (or nothing), never a partial one.

Temporary names are ``.<stem>.<pid>.<random><suffix>`` beside the target. They are removed on an
exception, at interpreter exit (``atexit``) and on SIGTERM (turned into ``SystemExit`` in the main
thread while a temp file is live); a ``kill -9`` cannot be caught, so the next write to the same
target removes temp files left by processes that no longer exist.
"""

from __future__ import annotations

import atexit
import contextlib
import json
import os
import shutil
import signal
import tempfile
import threading
from pathlib import Path
from typing import Any, Iterator

from aeb_app.errors import ConfigError

__all__ = ["atomic_path", "atomic_dir", "write_bytes", "write_text", "write_json"]

_live: set[Path] = set()
_lock = threading.Lock()
_handlers_installed = False
_handler_pid = -1  # the process that installed the SIGTERM handler (a forked child must not unwind)


def _remove(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path, ignore_errors=True)
    else:
        path.unlink(missing_ok=True)


def _cleanup_live() -> None:
    with _lock:
        paths = list(_live)
        _live.clear()
    for path in paths:
        _remove(path)


def _on_sigterm(signum: int, _frame: object) -> None:
    if os.getpid() != _handler_pid:
        # A forked child (e.g. a probe process) inherited the handler: it owns no temp file of ours,
        # and unwinding the parent's copied stack there would run the parent's code. Die as by default.
        signal.signal(signum, signal.SIG_DFL)
        os.kill(os.getpid(), signum)
        return
    # Unwind normally so every ``finally`` (and atexit) runs and removes temp files.
    raise SystemExit(128 + signum)


def _install_handlers() -> None:
    global _handlers_installed, _handler_pid
    if _handlers_installed:
        return
    _handlers_installed = True
    _handler_pid = os.getpid()
    atexit.register(_cleanup_live)
    if threading.current_thread() is threading.main_thread():
        with contextlib.suppress(ValueError, OSError):
            if signal.getsignal(signal.SIGTERM) in (signal.SIG_DFL, None):
                signal.signal(signal.SIGTERM, _on_sigterm)


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:
        return True  # exists, owned by someone else
    return True


def _sweep_stale(folder: Path, stem: str) -> None:
    """Remove ``.<stem>.<pid>.*`` temp files/folders of processes that are gone (a ``kill -9``)."""
    prefix = f".{stem}."
    with contextlib.suppress(OSError):
        for entry in folder.iterdir():
            rest = entry.name[len(prefix):] if entry.name.startswith(prefix) else ""
            pid_text, _, tail = rest.partition(".")
            if pid_text.isdigit() and tail and int(pid_text) != os.getpid() and not _pid_alive(int(pid_text)):
                _remove(entry)


def _prepare_folder(target: Path) -> None:
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
    except (FileExistsError, NotADirectoryError):
        blocker = next((p for p in reversed(target.parents) if p.exists() and not p.is_dir()), target.parent)
        raise ConfigError(f"{target}: cannot write there: {blocker} is a file, not a folder") from None
    except OSError as exc:
        raise ConfigError(f"{target}: cannot create its folder ({exc.strerror or exc})") from None


@contextlib.contextmanager
def _tracked(path: Path) -> Iterator[Path]:
    with _lock:
        _live.add(path)
    try:
        yield path
    finally:
        with _lock:
            _live.discard(path)
        _remove(path)


@contextlib.contextmanager
def atomic_path(target: str | os.PathLike[str], suffix: str | None = None) -> Iterator[Path]:
    """Yield a temp path in the target's folder; on success rename it over the target.

    The temp name keeps the target's extension (OpenCV's VideoWriter picks the container
    from it). On any exception, at exit or on SIGTERM the temp file is removed and the target is
    left untouched.

    Raises:
        ConfigError: the target's folder cannot be created or written (one line naming the target).
    """
    target = Path(target)
    _prepare_folder(target)
    _install_handlers()
    _sweep_stale(target.parent, target.stem)
    try:
        fd, tmp_name = tempfile.mkstemp(prefix=f".{target.stem}.{os.getpid()}.",
                                        suffix=suffix if suffix is not None else target.suffix, dir=target.parent)
    except OSError as exc:
        raise ConfigError(f"{target}: cannot write in {target.parent} ({exc.strerror or exc})") from None
    os.close(fd)
    tmp = Path(tmp_name)
    os.chmod(tmp, 0o666 & ~_umask())  # mkstemp makes 0600; give the file normal permissions
    with _tracked(tmp):
        yield tmp
        os.replace(tmp, target)


@contextlib.contextmanager
def atomic_dir(target: str | os.PathLike[str]) -> Iterator[Path]:
    """Yield a new temp folder beside ``target``; on success it replaces ``target`` as a whole.

    So a folder never mixes the files of two runs: a failed or killed run leaves the previous
    folder as it was. The previous folder is removed only after the new one is complete.

    Raises:
        ConfigError: ``target`` is a file, or its folder cannot be written.
    """
    target = Path(target)
    if target.exists() and not target.is_dir():
        raise ConfigError(f"{target}: exists and is not a folder")
    _prepare_folder(target)
    _install_handlers()
    _sweep_stale(target.parent, target.name)
    try:
        tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}.{os.getpid()}.", dir=target.parent))
    except OSError as exc:
        raise ConfigError(f"{target}: cannot write in {target.parent} ({exc.strerror or exc})") from None
    os.chmod(tmp, 0o777 & ~_umask())
    with _tracked(tmp):
        yield tmp
        old = target.with_name(f".{target.name}.{os.getpid()}.old")
        had_old = target.exists()
        if had_old:
            os.replace(target, old)
        try:
            os.replace(tmp, target)
        except BaseException:
            if had_old:
                os.replace(old, target)  # put the previous folder back
            raise
        if had_old:
            shutil.rmtree(old, ignore_errors=True)


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def write_bytes(target: str | os.PathLike[str], data: bytes) -> None:
    with atomic_path(target) as tmp:
        with tmp.open("wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())  # the data is on disk before the rename makes it visible


def write_text(target: str | os.PathLike[str], text: str) -> None:
    write_bytes(target, text.encode("utf-8"))


def write_json(target: str | os.PathLike[str], obj: Any) -> None:
    write_text(target, json.dumps(obj, indent=2) + "\n")
