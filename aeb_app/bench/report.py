"""Benchmark outputs: results.json, results.csv, the seed's four Markdown tables, and plots."""

from __future__ import annotations

import csv
import io
import json
from dataclasses import asdict
from pathlib import Path
from typing import Callable, Sequence

from aeb_app.atomic import atomic_path, write_text
from aeb_app.bench.sweep import Row

MACHINE_KEYS = ("gpu", "driver", "cuda", "cudnn", "torch", "tensorrt", "onnxruntime", "cpu")


def _pivot(rows: Sequence[Row], value: Callable[[Row], str]) -> str:
    modes = list(dict.fromkeys(r.mode for r in rows))
    batches = sorted({r.batch for r in rows})
    cell = {(r.mode, r.batch): r for r in rows}
    lines = ["| batch | " + " | ".join(modes) + " |", "|---:|" + "---:|" * len(modes)]
    for b in batches:
        vals = []
        for m in modes:
            r = cell.get((m, b))
            vals.append("—" if r is None else ("n/a" if not r.available else value(r)))
        lines.append(f"| {b} | " + " | ".join(vals) + " |")
    return "\n".join(lines)


def _fmt(v: float | None, spec: str) -> str:
    return "—" if v is None else format(v, spec)


#: Marks a figure whose p99 latency is above the stated multiple of its p50 (see :func:`unstable_note`).
UNSTABLE_MARK = " †"


def unstable_note() -> str:
    from aeb_app.defaults import UNSTABLE_P99_OVER_P50

    return (f"†: unstable figure, p99 latency above {UNSTABLE_P99_OVER_P50:g}x the median (machine busy or "
            "throttling); the median is reported but should be re-measured.")


def _net(text: str, r: Row) -> str:
    return text + (UNSTABLE_MARK if r.unstable else "")


def group_reasons(unavailable: dict[str, str]) -> list[str]:
    """``["int8_trt, fp16_trt: TensorRT is not installed ...", ...]``: each distinct reason once."""
    by_reason: dict[str, list[str]] = {}
    for mode, why in unavailable.items():
        by_reason.setdefault(why, []).append(mode)
    return [f"{', '.join(modes)}: {why}" for why, modes in by_reason.items()]


def markdown(rows: Sequence[Row], machine: dict, command: str = "", unavailable: dict[str, str] | None = None) -> str:
    """The seed's four tables (mAP, time per sample, throughput, acceleration) plus latency,
    end-to-end, compute and sanity tables, headed by the machine and what each figure includes.

    ``unavailable``: modes left out of the sweep because this machine cannot run them, with why."""
    out = io.StringIO()
    model = rows[0].model if rows else "?"
    out.write(f"# Benchmark: {model}\n\n")
    if command:
        out.write(f"Command: `{command}`\n\n")
    out.write("Machine: " + ", ".join(f"{k} {machine.get(k)}" for k in MACHINE_KEYS if machine.get(k)) + "\n\n")
    avail = [r for r in rows if r.available]
    if avail:
        out.write(f"- Network-only figures (Tables 2-5) include: {avail[0].includes}; clock: {avail[0].clock}; "
                  "median of repeated calls after warm-up.\n")
        out.write(f"- End-to-end figures (Table 6) include: {avail[0].e2e_includes or 'not measured'}.\n")
        tf32 = {r.tf32 for r in avail if r.tf32 is not None}
        if tf32:
            out.write(f"- FP32 rows: TF32 {'ON' if True in tf32 else 'OFF'}.\n")
        refs = {r.reference_mode for r in avail if r.reference_mode}
        out.write(f"- Acceleration: throughput over mode {', '.join(sorted(refs)) or '—'} at the same batch.\n")
    out.write("\n## Table 1. Accuracy, COCO mAP@[.5:.95] (AP50)\n\n")
    out.write(_pivot(rows, lambda r: "—" if r.map is None else f"{r.map:.4f} ({r.map50:.3f})") + "\n")
    out.write("\n## Table 2. Time per sample, ms (network-only)\n\n")
    out.write(_pivot(rows, lambda r: _net(_fmt(r.ms_per_sample, ".4f"), r)) + "\n")
    out.write("\n## Table 3. Throughput, images/s (network-only)\n\n")
    out.write(_pivot(rows, lambda r: _net(_fmt(r.fps, ",.0f"), r)) + "\n")
    out.write("\n## Table 4. Acceleration over the reference mode\n\n")
    out.write(_pivot(rows, lambda r: _fmt(r.acceleration, ".2f")) + "\n")
    out.write("\n## Table 5. Batch latency p50 / p99, ms (network-only)\n\n")
    out.write(_pivot(rows, lambda r: _net(f"{_fmt(r.p50_ms, '.3f')} / {_fmt(r.p99_ms, '.3f')}", r)) + "\n")
    out.write("\n## Table 6. End-to-end: time per sample ms (images/s)\n\n")
    out.write(_pivot(rows, lambda r: f"{_fmt(r.e2e_ms_per_sample, '.3f')} ({_fmt(r.e2e_fps, ',.0f')})"
                                     + (UNSTABLE_MARK if r.e2e_unstable else "")) + "\n")
    if any(r.e2e_stream_fps is not None for r in rows):
        out.write("\nEnd-to-end throughput with the GPU path pipelined over batches (decoding and resizing the "
                  "next batch overlap the network), images/s:\n\n")
        out.write(_pivot(rows, lambda r: _fmt(r.e2e_stream_fps, ",.0f")) + "\n")
    if any(r.unstable or r.e2e_unstable for r in rows):
        out.write("\n" + unstable_note() + "\n")
    out.write("\n## Table 7. Achieved TFLOP/s (% of device peak), peak GPU memory MB\n\n")
    out.write(_pivot(rows, lambda r: f"{_fmt(r.achieved_tflops, '.2f')} ({_fmt(r.pct_of_peak, '.1f')}%), "
                                     f"{_fmt(r.gpu_mem_mb, ',.0f')}") + "\n")
    flagged = [r for r in rows if r.sanity.startswith("IMPOSSIBLE")]
    out.write("\n## Sanity check\n\n")
    out.write("\n".join(f"- {r.mode} batch {r.batch}: {r.sanity}" for r in flagged) or
              "No row exceeds the device's peak arithmetic rate (rows without a known peak are not checked).")
    missing = {**(unavailable or {}), **{r.mode: r.reason for r in rows if not r.available}}
    if missing:
        out.write("\n\n## Unavailable modes\n\n")
        out.write("\n".join(f"- {line}" for line in group_reasons(missing)))
    return out.getvalue() + "\n"


def write_csv(path: Path, rows: Sequence[Row], machine: dict) -> None:
    fields = [k for k in asdict(rows[0]) if k != "extra"] + [f"machine_{k}" for k in MACHINE_KEYS]
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=fields)
    writer.writeheader()
    for r in rows:
        d = {k: v for k, v in asdict(r).items() if k != "extra"}
        writer.writerow({**d, **{f"machine_{k}": machine.get(k) for k in MACHINE_KEYS}})
    write_text(path, buf.getvalue())


def plot(rows: Sequence[Row], out_dir: Path) -> list[Path]:
    """The seed's figures: mAP per mode, time per sample (log), FPS, acceleration vs batch."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    avail = [r for r in rows if r.available]
    modes = list(dict.fromkeys(r.mode for r in avail))
    paths = []
    fig, ax = plt.subplots(figsize=(6, 3.5))
    maps = {m: next((r.map for r in avail if r.mode == m and r.map is not None), None) for m in modes}
    shown = {m: v for m, v in maps.items() if v is not None}
    ax.bar(list(shown), list(shown.values()), color="tab:blue")
    if shown:
        lo, hi = min(shown.values()), max(shown.values())
        ax.set_ylim(max(0.0, lo - 0.02), hi + 0.01)
    ax.set_ylabel("mAP@[.5:.95]")
    ax.set_title(f"{rows[0].model}: accuracy per mode" + ("" if shown else " (no accuracy measured)"))
    paths.append(_save(fig, out_dir / "map.png"))
    for name, attr, ylabel, log in (("time_per_sample.png", "ms_per_sample", "ms per image (log)", True),
                                    ("throughput.png", "fps", "images/s", False),
                                    ("acceleration.png", "acceleration", "x over reference", False)):
        fig, ax = plt.subplots(figsize=(6, 3.5))
        for m in modes:
            pts = sorted((r.batch, getattr(r, attr)) for r in avail if r.mode == m and getattr(r, attr))
            if pts:
                ax.plot(*zip(*pts), marker="o", label=m)
        batch_axis(ax, sorted({r.batch for r in avail}))
        if log:
            ax.set_yscale("log")
        ax.set_xlabel("batch size")
        ax.set_ylabel(ylabel)
        ax.set_title(f"{rows[0].model}: {ylabel}")
        if ax.lines:
            ax.legend(fontsize=7)
        ax.grid(alpha=0.3)
        paths.append(_save(fig, out_dir / name))
    return paths


def batch_axis(ax, batches: Sequence[int]) -> None:
    """A log2 batch axis ticked at the measured sizes, labelled 1, 2, 4, 8 (not 2^0, 2^1 ...)."""
    import matplotlib.ticker

    ax.set_xscale("log", base=2)
    if batches:
        ax.set_xticks(list(batches), [str(b) for b in batches])
    ax.xaxis.set_minor_locator(matplotlib.ticker.NullLocator())


def _save(fig, path: Path) -> Path:
    import matplotlib.pyplot as plt

    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=100)
    plt.close(fig)
    return path


def write_all(out_dir: Path, rows: Sequence[Row], machine: dict, command: str = "",
              unavailable: dict[str, str] | None = None) -> list[Path]:
    """Write every output into ``out_dir``; returns the paths. ``unavailable``: see :func:`markdown`."""
    out_dir.mkdir(parents=True, exist_ok=True)
    from aeb_app.bench.sweep import row_dicts

    write_text(out_dir / "results.json", json.dumps(row_dicts(list(rows), machine), indent=1) + "\n")
    write_csv(out_dir / "results.csv", rows, machine)
    write_text(out_dir / "tables.md", markdown(rows, machine, command, unavailable))
    return [out_dir / "results.json", out_dir / "results.csv", out_dir / "tables.md", *plot(rows, out_dir)]
