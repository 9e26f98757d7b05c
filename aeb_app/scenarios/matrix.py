"""Every scenario over many seeds and frame rates: pass rates and range-error statistics (pure).

``run_matrix`` is what ``aeb-app scenarios --seeds N --fps 10,25`` runs. Each (scenario, seed, fps) run
gets its own random stream, so adding a frame rate does not change the runs of the others.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Sequence

import numpy as np

from aeb_app.scenarios.artefacts import Artefacts
from aeb_app.scenarios.runner import SCENARIOS, Scenario, ScenarioResult, run_scenario

__all__ = ["MatrixRow", "RangeErrorStats", "matrix_stream", "run_matrix", "range_error_stats"]


@dataclass
class MatrixRow:
    """One scenario at one frame rate over all seeds.

    Attributes:
        name: scenario name.
        source: "NHTSA", "Euro NCAP" or "no-threat".
        fps: frame rate, Hz.
        required_ttc_s: the criterion (None: no-threat).
        runs: number of seeds run.
        passed: runs that passed.
        false_warnings: false warning onsets over all runs.
        warning_ttc_s: the true TTC at the warning of each threat run (None: never warned).
        results: the individual results (not written to JSON).
    """

    name: str
    source: str
    fps: float
    required_ttc_s: float | None
    runs: int = 0
    passed: int = 0
    false_warnings: int = 0
    warning_ttc_s: list[float | None] = field(default_factory=list)
    results: list[ScenarioResult] = field(default_factory=list, repr=False)

    def to_json(self) -> dict:
        warned = [v for v in self.warning_ttc_s if v is not None]
        return {"name": self.name, "source": self.source, "fps": self.fps, "required_ttc_s": self.required_ttc_s,
                "runs": self.runs, "passed": self.passed, "false_warnings": self.false_warnings,
                "min_warning_ttc_s": round(min(warned), 3) if warned else None,
                "median_warning_ttc_s": round(float(np.median(warned)), 3) if warned else None}


@dataclass(frozen=True)
class RangeErrorStats:
    """|relative range error| of the lead over frames with a true gap of 5-40 m.

    Attributes:
        n: frames.
        median: median |error| / gap.
        p95: 95th percentile.
        measured_median: the same for the per-frame fused measurement (before the filter).
        measured_p95: its 95th percentile.
    """

    n: int
    median: float
    p95: float
    measured_median: float
    measured_p95: float

    def to_json(self) -> dict:
        return {k: (round(v, 4) if isinstance(v, float) else v) for k, v in self.__dict__.items()}


def range_error_stats(results: Sequence[ScenarioResult]) -> RangeErrorStats:
    """Pool the lead's relative range errors of ``results``."""
    filt = np.abs(np.concatenate([r.range_rel_errors for r in results] or [np.zeros(0)]))
    meas = np.abs(np.concatenate([r.measured_rel_errors for r in results] or [np.zeros(0)]))
    meas = meas[np.isfinite(meas)]
    pct = lambda a, q: float(np.percentile(a, q)) if len(a) else float("nan")  # noqa: E731
    return RangeErrorStats(int(len(filt)), pct(filt, 50), pct(filt, 95), pct(meas, 50), pct(meas, 95))


def matrix_stream(seed: int, scenario_index: int, fps: float) -> int:
    """The random stream of run (seed, scenario ``SCENARIOS[scenario_index]``, fps) of :func:`run_matrix`, so
    one run of the sweep can be repeated alone."""
    return int(np.random.SeedSequence([seed, scenario_index, int(round(fps * 1000))]).generate_state(1)[0])


def run_matrix(*, seeds: int, fps_list: Sequence[float], artefacts: Artefacts, seed: int = 0,
               scenarios: Sequence[Scenario] = SCENARIOS) -> list[MatrixRow]:
    """Run every scenario ``seeds`` times at every frame rate.

    Args:
        seeds: runs per scenario and frame rate.
        fps_list: frame rates, Hz.
        artefacts: detector artefacts of every run.
        seed: base seed; run (scenario i, seed s, fps f) uses the stream ``[seed + s, i, round(f * 1000)]``.
        scenarios: the scenarios.
    """
    rows = []
    for i, scenario in enumerate(scenarios):
        for fps in fps_list:
            row = MatrixRow(scenario.name, scenario.source, float(fps), scenario.required_ttc_s)
            for s in range(seeds):
                stream = matrix_stream(seed + s, i, fps)
                result = run_scenario(scenario, seed=stream, fps=fps, artefacts=artefacts)
                row.runs += 1
                row.passed += result.passed
                row.false_warnings += result.false_warnings
                row.warning_ttc_s.append(result.warning_ttc_s)
                row.results.append(result)
            rows.append(row)
    return rows
