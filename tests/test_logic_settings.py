"""Warning-logic settings from YAML (``aeb-app run --settings``): loaded into the logic, bad values refused
at load with the file and key named, before any model is loaded."""

from __future__ import annotations

from pathlib import Path

import pytest

from aeb_app.cli import main
from aeb_app.errors import ConfigError
from aeb_app.pipeline import Pipeline
from aeb_app.safety.settings import LogicSettings, load_logic_settings
from aeb_app.scenarios import PinholeCamera, synthetic_calibration

GOOD = """\
zone: {reaction_time_s: 1.2}
warning: {caution_ttc_s: 2.6, require_agreement: false, closing_span_s: 0.8, on_drain: 1, occlusion_hold_s: 0.4}
filter: {jerk_psd: 10}
expansion: {window_s: 0.8}
cues:
  edge_sigma_px: 3
  priors:
    car: {width_m: 1.75, tyre_offset_m: 1.0}
"""


def test_settings_file_reaches_every_config(tmp_path: Path) -> None:
    path = tmp_path / "logic.yaml"
    path.write_text(GOOD)
    s = load_logic_settings(path)
    assert (s.zone.reaction_time_s, s.warning.caution_ttc_s, s.warning.require_agreement) == (1.2, 2.6, False)
    assert (s.warning.closing_span_s, s.filter.jerk_psd, s.expansion.window_s) == (0.8, 10, 0.8)
    assert (s.warning.on_drain, s.warning.occlusion_hold_s) == (1, 0.4)
    car = s.cues.priors[3]
    assert (s.cues.edge_sigma_px, car.width_m, car.tyre_offset_m, car.width_sigma_m) == (3, 1.75, 1.0, 0.10)
    assert s.warning.brake_ttc_s == LogicSettings().warning.brake_ttc_s  # untouched keys keep their defaults
    # The pipeline builds its AEB logic from them.
    pipeline = Pipeline(detector=None, calibration=synthetic_calibration(PinholeCamera()), logic=s)
    logic = pipeline._logic
    assert logic.cue_config is s.cues and logic.tracker.filter_config is s.filter
    assert logic.tracker.expansion_config is s.expansion


@pytest.mark.parametrize(
    ("text", "key"),
    [
        ("cues:\n  priors:\n    car: {width_m: 0}\n", "cues.priors.car.width_m: must be a positive number"),
        ("cues:\n  priors:\n    truck: {tyre_offset_m: -0.5}\n", "cues.priors.truck.tyre_offset_m"),
        ("cues:\n  priors:\n    bus: {width_sigma_m: .nan}\n", "cues.priors.bus.width_sigma_m"),
        ("cues: {priors: {lorry: {width_m: 2}}}\n", "cues.priors.lorry: unknown class"),
        ("cues: {edge_sigma_px: -1}\n", "cues.edge_sigma_px"),
        ("filter: {jerk_psd: .nan}\n", "filter.jerk_psd: must be a finite number"),
        ("filter: {gate_sigmas: 0}\n", "filter.gate_sigmas: must be a positive number"),
        ("warning: {closing_span_s: -1}\n", "warning.closing_span_s"),
        ("warning: {foo: 1}\n", "warning.foo: unknown key"),
        ("warning: {on_drain: -0.5}\n", "warning.on_drain"),
        ("warning: {occlusion_hold_s: .nan}\n", "warning.occlusion_hold_s"),
        ("warning: {require_agreement: 1}\n", "warning.require_agreement: expected true or false"),
        ("zone: {decel_mps2: fast}\n", "zone.decel_mps2: expected a number"),
        ("expansion: {window_s: 0}\n", "expansion.window_s"),
        ("brakes: {}\n", "brakes: unknown section"),
        ("- 1\n- 2\n", "expected a mapping of sections"),
    ],
)
def test_bad_values_refused_at_load_naming_file_and_key(tmp_path: Path, text: str, key: str) -> None:
    path = tmp_path / "logic.yaml"
    path.write_text(text)
    with pytest.raises(ConfigError) as info:
        load_logic_settings(path)
    message = str(info.value)
    assert message.startswith(str(path)) and key in message and "\n" not in message


def test_run_refuses_a_bad_settings_file_before_work(sample_video: Path, tmp_path: Path, capsys) -> None:
    bad = tmp_path / "logic.yaml"
    bad.write_text("cues:\n  priors:\n    car: {width_m: 0}\n")
    events = tmp_path / "events.csv"
    code = main(["run", str(sample_video), "--mode", "fp32", "--no-progress", "--no-render", "--settings", str(bad),
                 "--events", str(events)])
    assert code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert "cues.priors.car.width_m" in err[-1] and str(bad) in err[-1]
    assert not events.exists()  # refused before anything was opened or written
