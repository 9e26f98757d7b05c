"""Thin PyQt5 widgets over the pipeline (import this package only where Qt is wanted)."""

from __future__ import annotations
