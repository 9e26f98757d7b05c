"""The replay report: ``report.md``, ``report.json`` and two plots in the replay's folder.

What a team reads after a replay: how many recordings, hours and frames; warnings per hour by level and by
class of the critical object; the recordings with the most warnings; a link to every recording's events;
the failures with their reasons; and, with ``--compare``, the warnings added and removed since an earlier
replay. Plots use matplotlib's Agg canvas directly (no pyplot, no global backend change).
"""

from __future__ import annotations

import json
import logging
from dataclasses import asdict, dataclass, field
from pathlib import Path

from aeb_app.atomic import atomic_path, write_text
from aeb_app.replay.compare import Comparison
from aeb_app.replay.executor import ReplayRun
from aeb_app.replay.types import EVENTS_NAME, SUMMARY_NAME, RecordingResult, ReplayOptions

__all__ = ["ReplayTotals", "ReportPaths", "summarize", "write_report", "TOP_N"]

log = logging.getLogger(__name__)

#: Recordings listed (and plotted) under "top recordings by warnings".
TOP_N = 10
LEVELS = ("CAUTION", "BRAKE", "UNAVAILABLE")


@dataclass
class ReplayTotals:
    """Fleet totals over the finished recordings.

    Attributes:
        recordings: recordings planned.
        finished: recordings with a result (replayed now or skipped as already finished).
        skipped: finished recordings this run did not replay.
        failed: recordings that failed.
        frames: frames processed.
        failed_frames: frames that could not be decoded or inferred.
        hours: recorded time, hours.
        events: onsets per level.
        per_hour: onsets per hour of recording, per level.
        by_class: CAUTION/BRAKE onsets per ``level/class``.
        per_hour_by_class: the same per hour.
        warnings: CAUTION + BRAKE onsets.
        warnings_per_hour: their rate, per hour.
    """

    recordings: int = 0
    finished: int = 0
    skipped: int = 0
    failed: int = 0
    frames: int = 0
    failed_frames: int = 0
    hours: float = 0.0
    events: dict[str, int] = field(default_factory=dict)
    per_hour: dict[str, float] = field(default_factory=dict)
    by_class: dict[str, int] = field(default_factory=dict)
    per_hour_by_class: dict[str, float] = field(default_factory=dict)
    warnings: int = 0
    warnings_per_hour: float = 0.0


def _add(into: dict[str, int], counts: dict[str, int]) -> None:
    for key, value in counts.items():
        into[key] = into.get(key, 0) + value


def summarize(results: list[RecordingResult]) -> ReplayTotals:
    """Totals and rates over ``results`` (failed recordings count only as failures)."""
    totals = ReplayTotals(recordings=len(results))
    for result in results:
        if not result.ok:
            totals.failed += 1
            continue
        totals.finished += 1
        totals.skipped += result.skipped
        totals.frames += result.frames
        totals.failed_frames += result.failed_frames
        totals.hours += result.duration_s / 3600.0
        _add(totals.events, result.events)
        _add(totals.by_class, result.warnings_by_class)
    rate = (lambda n: round(n / totals.hours, 3)) if totals.hours > 0 else (lambda n: 0.0)
    totals.per_hour = {level: rate(totals.events.get(level, 0)) for level in LEVELS}
    totals.per_hour_by_class = {k: rate(v) for k, v in sorted(totals.by_class.items())}
    totals.warnings = totals.events.get("CAUTION", 0) + totals.events.get("BRAKE", 0)
    totals.warnings_per_hour = rate(totals.warnings)
    totals.hours = round(totals.hours, 6)
    return totals


def top_recordings(results: list[RecordingResult], n: int = TOP_N) -> list[RecordingResult]:
    """The ``n`` finished recordings with the most warnings (ties: most BRAKE, then id)."""
    ranked = [r for r in results if r.ok and r.warnings > 0]
    return sorted(ranked, key=lambda r: (-r.warnings, -r.events.get("BRAKE", 0), r.recording_id))[:n]


@dataclass(frozen=True)
class ReportPaths:
    markdown: Path
    json: Path
    plots: tuple[Path, ...]


def _save_figure(fig, path: Path) -> None:
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    FigureCanvasAgg(fig)
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=100)


def _plot_rates(totals: ReplayTotals, path: Path) -> None:
    from matplotlib.figure import Figure

    fig = Figure(figsize=(8, 4), layout="constrained")
    left, right = fig.subplots(1, 2)
    left.bar(list(totals.per_hour), list(totals.per_hour.values()), color=["#e0a000", "#d02020", "#808080"])
    left.set_title("onsets per hour, by level")
    left.set_ylabel("per hour of recording")
    classes = totals.per_hour_by_class or {"(none)": 0.0}
    right.barh(list(classes), list(classes.values()), color="#3060c0")
    right.set_title("warnings per hour, by level/class")
    fig.suptitle(f"{totals.finished} recordings, {totals.hours:.3f} h, {totals.frames} frames")
    _save_figure(fig, path)


def _plot_top(top: list[RecordingResult], path: Path) -> None:
    from matplotlib.figure import Figure

    fig = Figure(figsize=(8, 0.4 * max(len(top), 3) + 1.2), layout="constrained")
    ax = fig.subplots()
    ids = [r.recording_id for r in reversed(top)] or ["(no warnings)"]
    ax.barh(ids, [r.events.get("CAUTION", 0) for r in reversed(top)] or [0], color="#e0a000", label="CAUTION")
    ax.barh(ids, [r.events.get("BRAKE", 0) for r in reversed(top)] or [0],
            left=[r.events.get("CAUTION", 0) for r in reversed(top)] or [0], color="#d02020", label="BRAKE")
    ax.set_xlabel("warning onsets")
    ax.set_title(f"top {len(top)} recordings by warnings")
    ax.legend(loc="lower right")
    _save_figure(fig, path)


def _table(header: list[str], rows: list[list[object]]) -> list[str]:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    cell = lambda value: str(value).replace("|", "\\|")  # noqa: E731 - a '|' in a reason must not split the row
    return lines + ["| " + " | ".join(cell(c) for c in row) + " |" for row in rows]


def _recording_rows(results: list[RecordingResult]) -> list[list[object]]:
    rows = []
    for r in results:
        if r.ok:
            links = " ".join(f"[{name}]({r.recording_id}/{file})" for name, file in sorted(r.files.items()))
            state = "skipped (finished earlier)" if r.skipped else "replayed"
            rows.append([r.recording_id, state, r.frames, f"{r.duration_s:.1f}", r.events.get("CAUTION", 0),
                         r.events.get("BRAKE", 0), r.events.get("UNAVAILABLE", 0), links, r.detector, r.worker])
        else:
            summary = f"[summary]({r.recording_id}/{SUMMARY_NAME})"
            rows.append([r.recording_id, "**failed**", "", "", "", "", "", summary, "", r.worker])
    return rows


def _unavailable_lines(results: list[RecordingResult]) -> list[str]:
    """Recordings with UNAVAILABLE frames and why, most first: a wrong calibration or a damaged file shows here
    (a recording that is never judged has no warnings either, and must not read as a quiet one)."""
    rows = [[r.recording_id, f"{r.levels.get('UNAVAILABLE', 0)} of {r.frames}",
             "; ".join(f"{why}: {n}" for why, n in sorted(r.unavailable_reasons.items(), key=lambda kv: -kv[1]))]
            for r in results if r.ok and r.levels.get("UNAVAILABLE", 0)]
    rows.sort(key=lambda row: -int(row[1].split()[0]))
    return _table(["recording", "frames", "why"], rows) if rows else ["None."]


def _compare_lines(comparison: Comparison) -> list[str]:
    lines = ["", f"## Compared with {comparison.old_dir}", "",
             f"Events matched by recording, level and time within {comparison.tolerance_s} s. "
             f"**{comparison.added} added, {comparison.removed} removed** over "
             f"{len(comparison.recordings)} recordings.",
             ""]
    rows = [[d.recording_id, "added", e.level, f"{e.timestamp_s:.2f}", e.frame_index, e.object]
            for d in comparison.recordings for e in d.added]
    rows += [[d.recording_id, "removed", e.level, f"{e.timestamp_s:.2f}", e.frame_index, e.object]
             for d in comparison.recordings for e in d.removed]
    lines += _table(["recording", "change", "level", "time s", "frame", "object"], rows) if rows else ["No change."]
    if comparison.not_compared:
        lines += ["", "Not compared (finished in only one replay): " + ", ".join(comparison.not_compared)]
    return lines


def _markdown(run: ReplayRun, totals: ReplayTotals, options: ReplayOptions, comparison: Comparison | None) -> str:
    lines = ["# Replay report", "",
             f"Ran on: {run.where}; {run.wall_s:.1f} s wall"
             + (f" after {run.warmup_s:.1f} s of worker warm-up" if run.warmup_s else "")
             + f". Model {options.model}, mode {options.mode or 'auto'}, score threshold {options.score_threshold}.",
             "",
             "![rates](warnings_per_hour.png)", "", "![top](top_recordings.png)", "", "## Totals", ""]
    lines += _table(["recordings", "finished", "skipped", "failed", "hours", "frames", "failed frames",
                     "warnings", "warnings per hour"],
                    [[totals.recordings, totals.finished, totals.skipped, totals.failed, f"{totals.hours:.4f}",
                      totals.frames, totals.failed_frames, totals.warnings, totals.warnings_per_hour]])
    lines += ["", "## Warnings per hour", ""]
    lines += _table(["level", "onsets", "per hour"],
                    [[lv, totals.events.get(lv, 0), totals.per_hour.get(lv, 0.0)] for lv in LEVELS])
    lines += [""] + _table(["level/class", "onsets", "per hour"],
                           [[k, totals.by_class[k], v] for k, v in totals.per_hour_by_class.items()])
    lines += ["", f"## Top recordings by warnings (at most {TOP_N})", ""]
    top = top_recordings(run.results)
    lines += _table(["recording", "warnings", "CAUTION", "BRAKE", "events"],
                    [[r.recording_id, r.warnings, r.events.get("CAUTION", 0), r.events.get("BRAKE", 0),
                      f"[events]({r.recording_id}/{EVENTS_NAME})"] for r in top]) if top else ["No warnings."]
    failures = [r for r in run.results if not r.ok]
    lines += ["", "## Failures", ""]
    lines += _table(["recording", "path", "reason"], [[r.recording_id, r.path, r.reason] for r in failures]) \
        if failures else ["None."]
    lines += ["", "## Frames without a judgement (UNAVAILABLE)", ""] + _unavailable_lines(run.results)
    lines += ["", "## Recordings", ""]
    lines += _table(["recording", "state", "frames", "seconds", "CAUTION", "BRAKE", "UNAVAILABLE", "files",
                     "detector", "worker"], _recording_rows(run.results))
    if comparison is not None:
        lines += _compare_lines(comparison)
    return "\n".join(lines) + "\n"


def write_report(out_dir: Path, run: ReplayRun, options: ReplayOptions,
                 comparison: Comparison | None = None) -> ReportPaths:
    """Write ``report.md``, ``report.json``, ``warnings_per_hour.png`` and ``top_recordings.png`` atomically."""
    totals = summarize(run.results)
    plots = (out_dir / "warnings_per_hour.png", out_dir / "top_recordings.png")
    _plot_rates(totals, plots[0])
    _plot_top(top_recordings(run.results), plots[1])
    data = {
        "where": run.where, "wall_s": round(run.wall_s, 3), "warmup_s": round(run.warmup_s, 3), "options": options.result_settings(),
        "totals": asdict(totals),
        "top_recordings": [r.recording_id for r in top_recordings(run.results)],
        "recordings": [{**r.to_json(), "skipped": r.skipped} for r in run.results],
        "failures": [{"recording_id": r.recording_id, "path": r.path, "reason": r.reason}
                     for r in run.results if not r.ok],
        "comparison": comparison.to_json() if comparison is not None else None,
    }
    json_path, md_path = out_dir / "report.json", out_dir / "report.md"
    write_text(json_path, json.dumps(data, indent=2) + "\n")
    write_text(md_path, _markdown(run, totals, options, comparison))
    log.info("wrote %s", md_path)
    return ReportPaths(md_path, json_path, plots)
