"""Specific exceptions. Each message names the file or value at fault, on one line.

The CLI turns any :class:`AebError` into ``aeb-app: error: <message>`` and exit code 2;
GUI workers emit them as signals. Library code never calls ``sys.exit``.
"""

from __future__ import annotations


class AebError(Exception):
    """Base of every error the application reports to a user."""


class AssetError(AebError):
    """A data asset is missing, cannot be downloaded, or fails its checksum."""


class ModelLoadError(AebError):
    """Model weights are missing, truncated, corrupt, or do not fit the architecture."""


class InputError(AebError):
    """An input image or video is missing, truncated or cannot be decoded."""


class CalibrationError(AebError):
    """A calibration file or set of calibration points is invalid."""


class EngineError(AebError):
    """An inference engine cannot be built, loaded or run."""


class EngineLoadError(EngineError):
    """A serialized engine does not match this machine, or is corrupt."""


class BackendUnavailableError(EngineError):
    """The requested backend/precision cannot run on this machine (missing library or GPU)."""


class ConfigError(AebError):
    """A configuration file or option is invalid."""
