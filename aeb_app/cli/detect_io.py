"""What ``aeb-app detect`` needs around the detector: sources, run folders, one-line summaries (pure).

- Sources: files, folders (their images and videos, sorted, not recursive) and glob patterns
  (``"frames/*.jpg"``, ``"**/*.png"``), expanded and checked before any model is loaded.
- Run folders follow the ultralytics convention: ``runs/detect/predict``, then ``predict2``,
  ``predict3``... (a new folder per run, never overwriting an earlier run).
- Summaries read like ultralytics' and jetson-inference's: ``"1 person, 2 cars, 12.3 ms"``.
"""

from __future__ import annotations

import glob
from collections import Counter
from pathlib import Path
from typing import Iterable, Sequence

from aeb_app.errors import InputError
from aeb_app.names import IMAGE_SUFFIXES

#: Video containers ``detect`` accepts (what OpenCV's FFmpeg backend reads here).
VIDEO_SUFFIXES = frozenset({".mp4", ".avi", ".mov", ".mkv", ".m4v", ".webm", ".mpg", ".mpeg", ".wmv"})
#: Irregular English plurals among the COCO names (everything else gets s/es).
_PLURALS = {"person": "people", "mouse": "mice", "knife": "knives", "skis": "skis", "scissors": "scissors",
            "sheep": "sheep", "bus": "buses", "skateboard": "skateboards"}


def is_image(path: Path) -> bool:
    return path.suffix.lower() in IMAGE_SUFFIXES


def is_video(path: Path) -> bool:
    return path.suffix.lower() in VIDEO_SUFFIXES


def expand_sources(specs: Sequence[str | Path]) -> list[Path]:
    """Files, folders and globs -> the list of image/video files, in order, without duplicates.

    Raises:
        InputError: a path does not exist, a folder or a pattern holds no image/video, or a file
            is neither (each message names the argument).
    """
    found: list[Path] = []
    for spec in specs:
        found.extend(_expand_one(str(spec)))
    return list(dict.fromkeys(found))


def _expand_one(spec: str) -> list[Path]:
    path = Path(spec)
    if path.is_file():
        if not (is_image(path) or is_video(path)):
            raise InputError(f"{spec}: not an image or video file (suffix {path.suffix or 'none'})")
        return [path]
    if path.is_dir():
        files = sorted(p for p in path.iterdir() if p.is_file() and (is_image(p) or is_video(p)))
        if not files:
            raise InputError(f"{spec}: folder has no images or videos")
        return files
    if glob.has_magic(spec):
        files = sorted(Path(p) for p in glob.glob(spec, recursive=True))
        files = [p for p in files if p.is_file() and (is_image(p) or is_video(p))]
        if not files:
            raise InputError(f"{spec}: pattern matches no images or videos")
        return files
    raise InputError(f"{spec}: file not found")


def next_run_dir(project: Path, name: str) -> Path:
    """``project/name``, or ``name2``, ``name3``... : the first that does not exist (not created here)."""
    candidate = Path(project) / name
    n = 2
    while candidate.exists():
        candidate = Path(project) / f"{name}{n}"
        n += 1
    return candidate


def output_names(sources: Sequence[Path]) -> list[str]:
    """A distinct output file name per source (videos become ``.mp4``; clashes get ``_2``, ``_3``)."""
    used: set[str] = set()
    names = []
    for src in sources:
        base, suffix = src.stem, (src.suffix if is_image(src) else ".mp4")
        name, k = f"{base}{suffix}", 2
        while name in used:
            name, k = f"{base}_{k}{suffix}", k + 1
        used.add(name)
        names.append(name)
    return names


def plural(name: str, count: int) -> str:
    """``"car"`` -> ``"cars"``, ``"person"`` -> ``"people"`` when ``count != 1``."""
    if count == 1:
        return name
    head, _, last = name.rpartition(" ")
    if last in _PLURALS:
        word = _PLURALS[last]
    elif last.endswith(("s", "sh", "ch", "x")):
        word = last + "es"
    else:
        word = last + "s"
    return f"{head} {word}" if head else word


def count_summary(names: Iterable[str], order: Sequence[str] = ()) -> str:
    """``"1 person, 2 cars"`` (classes in ``order`` first, then by first appearance), or ``"no detections"``."""
    counts = Counter(names)
    if not counts:
        return "no detections"
    rank = {n: i for i, n in enumerate(order)}
    keys = sorted(counts, key=lambda n: rank.get(n, len(rank)))
    return ", ".join(f"{counts[k]} {plural(k, counts[k])}" for k in keys)
