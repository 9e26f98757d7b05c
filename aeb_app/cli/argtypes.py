"""argparse ``type=`` callables: every number and path checked at the edge, before any model loads.

A bad value becomes argparse's one-line usage error (``aeb-app run: error: argument --threads:
must be >= 1, got -1``) and exit code 2, instead of a traceback after minutes of work. Checks that
involve two options (an output that would overwrite an input) are :func:`check_outputs`, called at
the top of a command's ``run``; it raises :class:`~aeb_app.errors.ConfigError` (also exit 2).
"""

from __future__ import annotations

import argparse
import math
import os
import re
from pathlib import Path
from typing import Callable, Iterable, Sequence, TypeVar

from aeb_app.errors import ConfigError

__all__ = [
    "positive_int", "non_negative_int", "probability", "finite_float", "positive_float", "non_negative_float",
    "existing_file", "existing_dir", "writable_output", "output_dir", "cache_dir", "device", "video_source",
    "weights_spec", "csv_of", "check_outputs", "check_bench_out",
]

T = TypeVar("T")
_DEVICE = re.compile(r"^(cpu|cuda|cuda:\d{1,2})$")
#: Longest option value quoted back in an error message.
_QUOTE = 60


def _q(text: str) -> str:
    text = str(text)
    return repr(text if len(text) <= _QUOTE else text[:_QUOTE - 3] + "...")


def _int(text: str) -> int:
    try:
        return int(text)
    except (TypeError, ValueError):
        raise argparse.ArgumentTypeError(f"not an integer: {_q(text)}") from None


def _float(text: str) -> float:
    try:
        value = float(text)
    except (TypeError, ValueError):
        raise argparse.ArgumentTypeError(f"not a number: {_q(text)}") from None
    if not math.isfinite(value):
        raise argparse.ArgumentTypeError(f"must be a finite number, got {_q(text)}")
    return value


def positive_int(text: str) -> int:
    """An integer >= 1."""
    value = _int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be >= 1, got {value}")
    return value


def non_negative_int(text: str) -> int:
    """An integer >= 0."""
    value = _int(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be >= 0, got {value}")
    return value


def finite_float(text: str) -> float:
    """Any finite float (no nan/inf)."""
    return _float(text)


def positive_float(text: str) -> float:
    """A finite float > 0."""
    value = _float(text)
    if not value > 0:
        raise argparse.ArgumentTypeError(f"must be > 0, got {text}")
    return value


def non_negative_float(text: str) -> float:
    """A finite float >= 0."""
    value = _float(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be >= 0, got {text}")
    return value


def probability(text: str) -> float:
    """A finite float in [0, 1] (score thresholds, probabilities)."""
    value = _float(text)
    if not 0.0 <= value <= 1.0:
        raise argparse.ArgumentTypeError(f"must be between 0 and 1, got {text}")
    return value


def existing_file(text: str) -> Path:
    """A path to an existing, readable regular file."""
    path = Path(text).expanduser()
    if not path.exists():
        raise argparse.ArgumentTypeError(f"{text}: no such file")
    if not path.is_file():
        raise argparse.ArgumentTypeError(f"{text}: not a file")
    if not os.access(path, os.R_OK):
        raise argparse.ArgumentTypeError(f"{text}: not readable (permission denied)")
    return path


def existing_dir(text: str) -> Path:
    """A path to an existing, readable folder."""
    path = Path(text).expanduser()
    if not path.is_dir():
        raise argparse.ArgumentTypeError(f"{text}: {'not a folder' if path.exists() else 'no such folder'}")
    if not os.access(path, os.R_OK | os.X_OK):
        raise argparse.ArgumentTypeError(f"{text}: folder not readable (permission denied)")
    return path


def _check_parent(path: Path, text: str) -> None:
    """The output's folder is writable, or (when missing) can be created: its nearest existing
    ancestor is a writable folder, not a file."""
    parent = path.parent if str(path.parent) else Path(".")
    existing = next((p for p in (parent, *parent.parents) if p.exists()), Path("."))
    if not existing.is_dir():
        raise argparse.ArgumentTypeError(f"{text}: {existing} is a file, not a folder")
    if not os.access(existing, os.W_OK | os.X_OK):
        raise argparse.ArgumentTypeError(f"{text}: folder {existing} is not writable")


def writable_output(*suffixes: str) -> Callable[[str], Path]:
    """Type factory: an output file whose folder is writable (or can be created), not a folder itself, and
    (when ``suffixes`` are given) with one of those extensions. An existing file must be writable."""

    def parse(text: str) -> Path:
        path = Path(text).expanduser()
        if path.is_dir():
            raise argparse.ArgumentTypeError(f"{text}: is a folder; give a file name")
        if suffixes and path.suffix.lower() not in suffixes:
            raise argparse.ArgumentTypeError(f"{text}: extension must be one of {', '.join(suffixes)}")
        _check_parent(path, text)
        if path.exists() and not os.access(path, os.W_OK):
            raise argparse.ArgumentTypeError(f"{text}: exists and is not writable")
        return path

    parse.__name__ = "output file"
    return parse


def output_dir(text: str) -> Path:
    """An output folder: an existing writable folder, or a new one whose parent is writable."""
    path = Path(text).expanduser()
    if path.exists() and not path.is_dir():
        raise argparse.ArgumentTypeError(f"{text}: exists and is not a folder")
    if path.is_dir():
        if not os.access(path, os.W_OK | os.X_OK):
            raise argparse.ArgumentTypeError(f"{text}: folder is not writable")
    else:
        _check_parent(path, text)
    return path


def cache_dir(text: str) -> Path:
    """A cache folder (e.g. ``--engines-dir``): must not be a file; created on first use."""
    path = Path(text).expanduser()
    if path.exists() and not path.is_dir():
        raise argparse.ArgumentTypeError(f"{text}: exists and is not a folder")
    return path


def device(text: str) -> str:
    """``cpu``, ``cuda`` or ``cuda:N``."""
    if not _DEVICE.match(text):
        raise argparse.ArgumentTypeError(f"{_q(text)}: expected cpu, cuda or cuda:N")
    return text


def video_source(text: str) -> str:
    """A camera index (digits), an existing video file or a folder of frames; returned as text for
    ``parse_source`` (a folder's frames and times are checked when it is opened)."""
    if text.isdigit():
        return text
    if Path(text).expanduser().is_dir():
        return str(existing_dir(text))
    return str(existing_file(text))


def weights_spec(text: str) -> str:
    """``auto``, ``random`` or an existing weights file."""
    if text in ("auto", "random"):
        return text
    return str(existing_file(text))


def csv_of(kind: Callable[[str], T]) -> Callable[[str], tuple[T, ...]]:
    """Type factory: a non-empty comma-separated list, each item parsed by ``kind``."""

    def parse(text: str) -> tuple[T, ...]:
        items = tuple(kind(x.strip()) for x in text.split(",") if x.strip())
        if not items:
            raise argparse.ArgumentTypeError(f"empty list: {_q(text)}")
        return items

    parse.__name__ = "comma-separated list"
    return parse


def _same_file(a: Path, b: Path) -> bool:
    try:
        return a.resolve() == b.resolve() or (a.exists() and b.exists() and os.path.samefile(a, b))
    except OSError:
        return False


def check_outputs(inputs: Iterable[tuple[str, Path | str | None]],
                  outputs: Sequence[tuple[str, Path | str | None]]) -> None:
    """Refuse an output that is one of the inputs or another output (before any work starts).

    Args:
        inputs: (option name, path or None) pairs; camera indices and None are ignored.
        outputs: (option name, path or None) pairs.

    Raises:
        ConfigError: naming both options, e.g. ``--out x.mp4 is the input VIDEO``.
    """
    files = [(n, Path(p)) for n, p in inputs if p is not None and not str(p).isdigit()]
    seen: list[tuple[str, Path]] = []
    for name, value in outputs:
        if value is None:
            continue
        out = Path(value)
        for other_name, other in [*files, *seen]:
            if _same_file(out, other):
                raise ConfigError(f"{name} {out} is the same file as {other_name}; refusing to overwrite it")
        seen.append((name, out))


def check_bench_out(path: Path) -> None:
    """``bench --out`` is replaced as a whole at the end: refuse a non-empty folder that is not a
    previous bench output (so a typo like ``--out ~`` cannot delete anything).

    Raises:
        ConfigError: the folder has files and no ``results.json``.
    """
    path = Path(path)
    if path.is_dir() and any(path.iterdir()) and not (path / "results.json").is_file():
        raise ConfigError(f"--out {path}: folder has other files and is not a previous bench output; "
                          "bench replaces its output folder as a whole, so give a new or empty folder")
