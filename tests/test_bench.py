"""The benchmark sweep on the CPU: every output file, consistent numbers, honest unavailability."""

from __future__ import annotations

import csv
import json
import re
from pathlib import Path

import pytest

from aeb_app.bench.machine import count_flops, peak_tflops, sanity_check
from aeb_app.bench.report import markdown
from aeb_app.bench.sweep import Row, add_acceleration
from aeb_app.bench.timing import TimingStats, measure
from aeb_app.cli import main


@pytest.fixture(scope="module")
def bench_out(tmp_path_factory: pytest.TempPathFactory, coco_dir: Path) -> Path:
    out = tmp_path_factory.mktemp("bench")
    rc = main(["bench", "--model", "ssd_mobilenet_v1", "--modes", "fp32,fp32_ort,fp16,fp16_trt",
               "--batches", "1,2", "--coco-dir", str(coco_dir), "--limit", "6", "--map-at", "first",
               "--warmup", "1", "--min-iters", "3", "--min-time", "0.05", "--device", "cpu", "--out", str(out)])
    assert rc == 0
    return out


def test_all_outputs_written(bench_out: Path) -> None:
    names = {p.name for p in bench_out.iterdir()}
    assert {"results.json", "results.csv", "tables.md", "map.png", "time_per_sample.png",
            "throughput.png", "acceleration.png"} <= names
    assert not [n for n in names if n.startswith(".")], "no temp files left behind"
    for png in bench_out.glob("*.png"):
        assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_rows_are_consistent(bench_out: Path) -> None:
    rows = json.loads((bench_out / "results.json").read_text())
    assert len(rows) == 8  # 4 modes x 2 batches, unavailable ones included
    by = {(r["mode"], r["batch"]): r for r in rows}
    for r in rows:
        assert {"mode", "batch", "map", "ms_per_sample", "fps", "acceleration", "p99_ms", "machine"} <= set(r)
        assert {"gpu", "driver", "cuda", "torch", "tensorrt"} <= set(r["machine"])
        if not r["available"]:
            assert r["reason"] and r["fps"] is None
            continue
        assert r["ms_per_sample"] == pytest.approx(r["p50_ms"] / r["batch"])
        assert r["fps"] == pytest.approx(1000.0 * r["batch"] / r["p50_ms"])
        assert r["p99_ms"] >= r["p50_ms"]
        ref = by[(r["reference_mode"], r["batch"])]
        assert r["acceleration"] == pytest.approx(r["fps"] / ref["fps"])
        assert 0.05 < r["map"] < 0.6 and r["map_images"] == 6  # 6 images: a noisy but real mAP
    assert "CUDA" in by[("fp16", 1)]["reason"]
    assert "tensorrt" in by[("fp16_trt", 1)]["reason"].lower()
    # On the CPU the fp16 reference is unavailable: acceleration is stated against fp32.
    assert by[("fp32", 1)]["reference_mode"] == "fp32" and by[("fp32", 1)]["acceleration"] == pytest.approx(1.0)
    # ONNX Runtime and PyTorch run the same network: same accuracy.
    assert by[("fp32_ort", 1)]["map"] == pytest.approx(by[("fp32", 1)]["map"], abs=0.005)


def test_csv_and_markdown_agree_with_json(bench_out: Path) -> None:
    rows = json.loads((bench_out / "results.json").read_text())
    with (bench_out / "results.csv").open() as fh:
        table = list(csv.DictReader(fh))
    assert [(r["mode"], int(r["batch"])) for r in table] == [(r["mode"], r["batch"]) for r in rows]
    md = (bench_out / "tables.md").read_text()
    for title in ("Table 1. Accuracy", "Table 2. Time per sample", "Table 3. Throughput", "Table 4. Acceleration"):
        assert title in md
    assert "fp16_trt" in md and "n/a" in md and "Unavailable modes" in md
    fps = next(r["fps"] for r in rows if r["mode"] == "fp32_ort" and r["batch"] == 2)
    assert f"{fps:,.0f}" in md


def test_sanity_check_flags_the_seeds_impossible_row() -> None:
    """The seed's 12,500 img/s SSD300 INT8 on a GTX 1050 Ti needs ~504 TOPS; the card has ~8.5."""
    flops = count_flops("ssd300_resnet50")
    assert flops == pytest.approx(40.3e9, rel=0.01)  # gpu-notes: 20.2 GMAC
    peak = peak_tflops("NVIDIA GeForce GTX 1050 Ti", "int8", tf32=False)
    assert sanity_check(flops, 12500, peak).startswith("IMPOSSIBLE")
    assert sanity_check(flops, 100, peak) == "ok"
    assert sanity_check(flops, 100, None) == "unknown"
    row = Row("ssd300_resnet50", "int8_trt", 16, True, fps=12500.0, sanity=sanity_check(flops, 12500, peak))
    assert "IMPOSSIBLE" in markdown([row], {"gpu": "GTX 1050 Ti"})


def test_peaks_and_tf32() -> None:
    assert peak_tflops("NVIDIA H200", "fp16", tf32=False) == 989.0
    assert peak_tflops("NVIDIA H200", "fp32", tf32=True) == 495.0
    assert peak_tflops("NVIDIA H200", "fp32", tf32=False) == 67.0
    assert peak_tflops("Some CPU", "fp32", tf32=False) is None


def test_acceleration_falls_back_to_fp32_reference() -> None:
    rows = [Row("m", "fp32", 1, True, fps=10.0), Row("m", "fp32_ort", 1, True, fps=25.0),
            Row("m", "fp16", 4, True, fps=100.0), Row("m", "fp32", 4, True, fps=50.0),
            Row("m", "fp16", 1, False, reason="no CUDA")]
    add_acceleration(rows, "fp16")
    assert rows[1].acceleration == pytest.approx(2.5) and rows[1].reference_mode == "fp32"
    assert rows[3].acceleration == pytest.approx(0.5) and rows[3].reference_mode == "fp16"
    assert rows[4].acceleration is None


def test_measure_counts_and_orders_stats() -> None:
    calls = []
    stats = measure(lambda: calls.append(1), cuda=False, warmup_iters=3, min_iters=7, min_time_s=0.0)
    assert stats.iters == 7 and len(calls) == 10 and stats.clock == "perf_counter"
    assert stats.min_ms <= stats.p50_ms <= stats.p99_ms
    assert TimingStats.from_samples([1.0, 2.0, 3.0], "x").p50_ms == 2.0
    stopped = measure(lambda: None, cuda=False, warmup_iters=0, min_iters=100, min_time_s=10.0,
                      should_stop=lambda: True)
    assert stopped.iters == 1


def test_default_modes_are_the_runnable_ones_and_unavailable_listed_once(tmp_path: Path,
                                                                       capsys: pytest.CaptureFixture[str]) -> None:
    """No --modes on a CPU: only what runs here is timed; TensorRT's install hint is printed once."""
    from aeb_app.bench.sweep import DEFAULT_CANDIDATES

    rc = main(["bench", "--batches", "1,2", "--no-e2e", "--warmup", "1", "--min-iters", "3", "--min-time", "0.05",
               "--device", "cpu", "--out", str(tmp_path)])
    assert rc == 0
    out = capsys.readouterr().out
    rows = json.loads((tmp_path / "results.json").read_text())
    ran = list(dict.fromkeys(r["mode"] for r in rows))
    assert "fp32" in ran and "fp32_ort" in ran and all(r["available"] for r in rows)
    assert not {"fp16", "fp16_trt", "int8_trt"} & set(ran)
    assert f"modes: {', '.join(ran)}" in out
    assert out.count("TensorRT is not installed") == 1  # one line for the three TensorRT modes
    assert re.search(r"not run here: int8_trt, fp16_trt, fp32_trt: TensorRT is not installed", out)
    md = (tmp_path / "tables.md").read_text()
    assert "n/a" not in md and md.count("TensorRT is not installed") == 1
    skipped = [m for m in DEFAULT_CANDIDATES if m not in ran]
    assert all(m in md.split("## Unavailable modes")[1] for m in skipped)


def test_unstable_figures_are_flagged() -> None:
    from aeb_app.bench.sweep import is_unstable
    from aeb_app.defaults import UNSTABLE_P99_OVER_P50

    steady = Row("m", "fp32", 1, True, ms_per_sample=21.6, fps=46.3, p50_ms=21.6, p99_ms=25.0)
    noisy = Row("m", "fp32", 2, True, ms_per_sample=10.8, fps=92.6, p50_ms=21.6, p99_ms=895.0, unstable=True)
    assert is_unstable(21.6, 895.0) and not is_unstable(21.6, 21.6 * UNSTABLE_P99_OVER_P50)
    md = markdown([steady, noisy], {})
    table2 = md.split("## Table 2")[1].split("## Table 3")[0]
    assert "| 1 | 21.6000 |" in table2 and "| 2 | 10.8000 † |" in table2
    assert f"above {UNSTABLE_P99_OVER_P50:g}x the median" in md
    assert "†" not in markdown([steady], {})


def test_batch_axis_reads_1_2_4_8() -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from aeb_app.bench.report import batch_axis

    fig, ax = plt.subplots()
    ax.plot([1, 2, 4, 8], [1, 2, 3, 4])
    batch_axis(ax, [1, 2, 4, 8])
    fig.canvas.draw()
    assert [t.get_text() for t in ax.get_xticklabels()] == ["1", "2", "4", "8"]
    plt.close(fig)
