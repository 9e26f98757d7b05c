"""Bounded YAML reading for small hand-edited files (calibration, settings).

``yaml.safe_load`` builds whatever the document describes: a 1 KB "billion laughs" chain of
anchors and aliases expands to gigabytes, a 5,000-deep nesting hits Python's recursion limit, a
400-digit integer overflows later arithmetic. :func:`load_bounded_yaml` refuses those *before*
constructing any object:

- the file is read with a size limit and decoded as strict UTF-8;
- anchors (``&name``) and aliases (``*name``) are rejected while composing (so no expansion);
- nesting deeper than ``max_depth`` is rejected while composing;
- the number of nodes is capped;
- only the standard safe tags are constructed (``yaml.SafeLoader``).

Every failure is a :class:`YamlLimitError` (a ``ValueError``) whose message is one line.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import yaml

__all__ = ["YamlLimitError", "load_bounded_yaml", "short_repr", "MAX_BYTES", "MAX_DEPTH", "MAX_NODES"]

#: Largest file read, bytes (a calibration file is about 2 KB).
MAX_BYTES = 256 * 1024
#: Deepest nesting of mappings/sequences accepted.
MAX_DEPTH = 16
#: Most nodes (scalars + collections) in one document.
MAX_NODES = 50_000


class YamlLimitError(ValueError):
    """The file is unreadable, not UTF-8, malformed, or breaks a size/structure limit."""


def short_repr(value: Any, limit: int = 60) -> str:
    """``repr(value)`` cut to ``limit`` characters, so messages never quote huge objects."""
    try:
        text = repr(value)
    except (ValueError, RecursionError):  # e.g. an int too large to print
        text = f"<{type(value).__name__}>"
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 3] + "..."


class _BoundedLoader(yaml.SafeLoader):
    """A SafeLoader whose composer rejects anchors, aliases, deep nesting and too many nodes."""

    def __init__(self, stream: str, *, max_depth: int, max_nodes: int) -> None:
        super().__init__(stream)
        self._depth = 0
        self._nodes = 0
        self._max_depth = max_depth
        self._max_nodes = max_nodes

    def compose_node(self, parent: Any, index: Any) -> Any:  # noqa: D102 (PyYAML hook)
        event = self.peek_event()
        line = event.start_mark.line + 1 if event.start_mark is not None else "?"
        if isinstance(event, yaml.AliasEvent):
            raise YamlLimitError(f"line {line}: aliases (*{event.anchor}) are not allowed")
        if getattr(event, "anchor", None) is not None:
            raise YamlLimitError(f"line {line}: anchors (&{event.anchor}) are not allowed")
        self._nodes += 1
        if self._nodes > self._max_nodes:
            raise YamlLimitError(f"line {line}: more than {self._max_nodes} values")
        self._depth += 1
        if self._depth > self._max_depth:
            raise YamlLimitError(f"line {line}: nested deeper than {self._max_depth} levels")
        try:
            return super().compose_node(parent, index)
        finally:
            self._depth -= 1


def _read_text(path: Path, max_bytes: int) -> str:
    try:
        with path.open("rb") as fh:
            data = fh.read(max_bytes + 1)
    except OSError as exc:
        raise YamlLimitError(f"cannot read ({exc.strerror or exc})") from exc
    if len(data) > max_bytes:
        raise YamlLimitError(f"larger than {max_bytes // 1024} KiB; not a calibration/settings file")
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise YamlLimitError(f"not UTF-8 text (byte 0x{data[exc.start]:02x} at offset {exc.start})") from None


def load_bounded_yaml(path: str | os.PathLike[str], *, max_bytes: int = MAX_BYTES, max_depth: int = MAX_DEPTH,
                      max_nodes: int = MAX_NODES) -> Any:
    """Read ``path`` as one YAML document within the limits; returns plain Python objects.

    Args:
        path: the file.
        max_bytes: size limit, bytes.
        max_depth: nesting limit, levels.
        max_nodes: node-count limit.

    Raises:
        YamlLimitError: unreadable, too large, not UTF-8, malformed YAML, anchors/aliases, too deep,
            too many nodes, or a value Python cannot build (e.g. an integer of more than 4,300 digits).
            The message is one line and does not include the path (the caller adds it).
    """
    text = _read_text(Path(path), max_bytes)
    loader = _BoundedLoader(text, max_depth=max_depth, max_nodes=max_nodes)
    try:
        return loader.get_single_data()
    except YamlLimitError:
        raise
    except yaml.YAMLError as exc:
        raise YamlLimitError(f"malformed YAML ({' '.join(str(exc).split())[:200]})") from None
    except (ValueError, OverflowError, RecursionError, MemoryError) as exc:
        raise YamlLimitError(f"value cannot be read ({type(exc).__name__}: {short_repr(str(exc), 120)})") from None
    finally:
        loader.dispose()
