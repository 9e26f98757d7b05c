"""Warning-logic settings from a YAML file (``aeb-app run --settings logic.yaml``).

One section per configuration, every key optional (the defaults of docs/scenarios.md otherwise)::

    zone:      {reaction_time_s: 1.5, decel_mps2: 6.0}
    warning:   {caution_ttc_s: 3.0, closing_span_s: 1.0, on_drain: 0.5}
    filter:    {jerk_psd: 20.0, max_rel_accel_mps2: 12.0}
    expansion: {window_s: 0.6}
    cues:
      edge_sigma_px: 2.0
      priors: {car: {width_m: 1.8, tyre_offset_m: 0.9}}

The file is read with :func:`aeb_app.safe_yaml.load_bounded_yaml`. A bad value (zero, negative or NaN where
it must be positive, a string for a number), an unknown section or key is refused at load with a one-line
:class:`~aeb_app.errors.ConfigError` naming the file and the key (``cues.priors.car.width_m``).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any, Mapping

from aeb_app.errors import ConfigError
from aeb_app.safety.cues import CueConfig
from aeb_app.safety.expansion import ExpansionConfig
from aeb_app.safety.kinematics import RangeFilterConfig
from aeb_app.safety.warning import WarningConfig
from aeb_app.safety.zone import ZoneConfig

__all__ = ["LogicSettings", "load_logic_settings"]

#: Keys of WarningConfig that a file may not set (they are not numbers of the logic).
_NOT_FROM_FILE = {"category_ids"}


@dataclass(frozen=True)
class LogicSettings:
    """Every configuration of :class:`~aeb_app.safety.AebLogic`."""

    zone: ZoneConfig = field(default_factory=ZoneConfig)
    warning: WarningConfig = field(default_factory=WarningConfig)
    filter: RangeFilterConfig = field(default_factory=RangeFilterConfig)
    expansion: ExpansionConfig = field(default_factory=ExpansionConfig)
    cues: CueConfig = field(default_factory=CueConfig)

    @classmethod
    def from_dict(cls, data: Any) -> "LogicSettings":
        """Settings from a parsed YAML mapping (see the module docstring).

        Raises:
            ConfigError: an unknown section or key, or a bad value (the key is named).
        """
        if data is None:
            return cls()
        if not isinstance(data, Mapping):
            raise ConfigError(f"expected a mapping of sections ({', '.join(_SECTIONS)}), got {type(data).__name__}")
        unknown = sorted(set(map(str, data)) - set(_SECTIONS))
        if unknown:
            raise ConfigError(f"{unknown[0]}: unknown section (known: {', '.join(_SECTIONS)})")
        built = {}
        for name, section in data.items():
            if section is not None and not isinstance(section, Mapping):
                raise ConfigError(f"{name}: expected a mapping of settings, got {type(section).__name__}")
            built[name] = _SECTIONS[name](dict(section or {}))
        return cls(**built)


def _numbers(cls: type, name: str, data: dict) -> Any:
    """``cls(**data)`` after checking that every key exists and every value is a finite-or-not number."""
    known = {f.name: f for f in fields(cls) if f.name not in _NOT_FROM_FILE}
    for key, value in data.items():
        if key not in known:
            raise ConfigError(f"{name}.{key}: unknown key (known: {', '.join(known)})")
        want_bool = isinstance(known[key].default, bool)
        if want_bool != isinstance(value, bool) or not isinstance(value, (int, float)):
            kind = "true or false" if want_bool else "a number"
            raise ConfigError(f"{name}.{key}: expected {kind}, got {value!r}")
        if not want_bool and not math.isfinite(value):
            raise ConfigError(f"{name}.{key}: must be a finite number, got {value!r}")
    return cls(**data)


def _cues(data: dict) -> CueConfig:
    for key, value in data.items():
        if key != "priors" and (isinstance(value, bool) or not isinstance(value, (int, float))):
            raise ConfigError(f"cues.{key}: expected a number, got {value!r}")
    if not isinstance(data.get("priors", {}) or {}, Mapping):
        raise ConfigError("cues.priors: expected a mapping of classes")
    return CueConfig.from_dict(data)


_SECTIONS = {
    "zone": lambda d: _numbers(ZoneConfig, "zone", d),
    "warning": lambda d: _numbers(WarningConfig, "warning", d),
    "filter": lambda d: _numbers(RangeFilterConfig, "filter", d),
    "expansion": lambda d: _numbers(ExpansionConfig, "expansion", d),
    "cues": _cues,
}


def load_logic_settings(path: str | Path) -> LogicSettings:
    """Read and validate a settings file.

    Raises:
        ConfigError: unreadable, malformed or too large a file, or a bad section/key/value; the message
            starts with the file's path and names the key.
    """
    from aeb_app.safe_yaml import YamlLimitError, load_bounded_yaml

    try:
        data = load_bounded_yaml(Path(path))
    except (YamlLimitError, OSError) as exc:
        raise ConfigError(f"{path}: {exc}") from None
    try:
        return LogicSettings.from_dict(data)
    except ConfigError as exc:
        raise ConfigError(f"{path}: {exc}") from None
