"""``aeb-app run``'s staged frame loop on the real sample video: same results as the sequential loop,
latency in the summary, a failing stage ends the run with its error and leaves no thread behind."""

from __future__ import annotations

import re
import threading
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

from aeb_app.cli import main
from aeb_app.errors import InputError
from aeb_app.video import VideoWriter


def _run(video: Path, out_dir: Path, *extra: str) -> int:
    out_dir.mkdir()
    return main(["run", str(video), "--mode", "fp32", "--max-frames", "24", "--speed-kmh", "100",
                 "--out", str(out_dir / "a.mp4"), "--tracks", str(out_dir / "tracks.csv"),
                 "--events", str(out_dir / "events.csv"), "--no-progress", *extra])


def test_staged_loop_gives_the_sequential_results_in_order(sample_video: Path, tmp_path: Path, capsys) -> None:
    assert _run(sample_video, tmp_path / "staged") == 0
    staged_summary = capsys.readouterr().out
    assert _run(sample_video, tmp_path / "seq", "--sequential") == 0
    tracks_staged = (tmp_path / "staged" / "tracks.csv").read_text()
    _assert_same_tracks(tmp_path / "staged" / "tracks.csv", tmp_path / "seq" / "tracks.csv")
    frames = [int(line.split(",")[0]) for line in tracks_staged.splitlines()[1:]]
    assert frames and frames == sorted(frames)  # rows in frame order
    assert (tmp_path / "staged" / "events.csv").read_text() == (tmp_path / "seq" / "events.csv").read_text()
    cap = cv2.VideoCapture(str(tmp_path / "staged" / "a.mp4"))
    assert int(cap.get(cv2.CAP_PROP_FRAME_COUNT)) == 24
    cap.release()
    match = re.search(r"latency p50 ([\d.]+) ms, p99 ([\d.]+) ms", staged_summary)
    assert match and 0 < float(match.group(1)) <= float(match.group(2))
    assert "frames 24 (failed 0)" in staged_summary
    assert not [t for t in threading.enumerate() if t.name.startswith("stage-")]


def test_failing_encoder_ends_the_run_with_its_error(sample_video: Path, tmp_path: Path, capsys,
                                                     monkeypatch) -> None:
    real_write = VideoWriter.write

    def write(self, frame):
        if self.frames_written == 5:
            raise InputError(f"{self.path}: disk full (injected)")
        real_write(self, frame)

    monkeypatch.setattr(VideoWriter, "write", write)
    code = _run(sample_video, tmp_path / "out")
    assert code != 0
    err = capsys.readouterr().err
    assert "disk full (injected)" in err
    assert not (tmp_path / "out" / "a.mp4").exists()  # atomic: no partial video at the target
    assert (tmp_path / "out" / "events.csv").exists()  # events written so far are kept
    assert not [t for t in threading.enumerate() if t.name.startswith("stage-")]


def test_inference_error_of_one_frame_is_reported_for_that_frame_only(sample_video: Path, monkeypatch) -> None:
    from aeb_app.frame_loop import staged_results
    from aeb_app.pipeline import level_of
    from aeb_app.stream import StreamConfig, open_stream
    from aeb_app.types import WarningLevel

    with open_stream(StreamConfig(str(sample_video), mode="fp32", device="cpu")) as stream:  # the host path
        detector = stream.pipeline.detector
        real_infer = detector.infer
        calls = [0]

        def infer(frames, config=None):
            calls[0] += 1
            if calls[0] == 3:
                raise RuntimeError("injected device error")
            return real_infer(frames, config)

        monkeypatch.setattr(detector, "infer", infer)
        works = list(staged_results(stream.pipeline, stream.source.frames(max_frames=6),
                                    hud_lines=lambda i, fps: []))
        assert stream.pipeline.detector is detector  # the hand-off is undone
    assert [w.frame.index for w in works] == list(range(6))
    failed = [w for w in works if w.result.error]
    assert [w.frame.index for w in failed] == [2] and "injected device error" in failed[0].result.error
    assert level_of(failed[0].result) == WarningLevel.UNAVAILABLE
    assert all(w.result.detections is not None for w in works if w.frame.index != 2)
    assert all(w.latency_ms > 0 for w in works)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_cuda_run_goes_through_the_gpu_frame_path_and_finds_the_cpu_boxes(sample_video: Path) -> None:
    """Tolerance: every confident (>= 0.5) CPU box is found on the GPU path with IoU >= 0.9 (GPU resize
    within 1 level of OpenCV's; NVDEC colour conversion within 3 levels of FFmpeg's)."""
    from aeb_app.frame_loop import staged_results
    from aeb_app.stream import StreamConfig, open_stream

    def boxes(device: str):
        with open_stream(StreamConfig(str(sample_video), mode="fp32", device=device)) as stream:
            works = list(staged_results(stream.pipeline, stream.source.frames(max_frames=10),
                                        hud_lines=lambda i, fps: []))
            return works, stream.detector.device_input()

    cpu, _ = boxes("cpu")
    gpu, layout = boxes("cuda")
    assert layout is not None  # the CUDA detector took the device path
    checked = 0
    for c, g in zip(cpu, gpu):
        d_cpu, d_gpu = c.result.detections, g.result.detections
        for box, cls in zip(d_cpu.xyxy_px[d_cpu.scores >= 0.5], d_cpu.category_ids[d_cpu.scores >= 0.5]):
            same = d_gpu.xyxy_px[d_gpu.category_ids == cls]
            assert len(same) and _iou(box[None], same).max() >= 0.9, (c.frame.index, cls, box)
            checked += 1
    assert checked > 5


def _iou(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    lt = np.maximum(a[:, None, :2], b[None, :, :2])
    rb = np.minimum(a[:, None, 2:], b[None, :, 2:])
    inter = np.prod(np.clip(rb - lt, 0, None), axis=2)
    area = lambda x: np.prod(x[:, 2:] - x[:, :2], axis=1)  # noqa: E731
    return inter / (area(a)[:, None] + area(b)[None, :] - inter)


def test_cpu_onnx_runtime_leaves_a_core_to_the_stages_unless_threads_are_given() -> None:
    """The front door's default: ORT on the CPU with all cores but one (explicit mode and the fallback walk,
    whose session is re-opened); --threads N is kept; a switch interval set for the staged loop is restored."""
    import sys

    from aeb_app.frame_loop import SWITCH_INTERVAL_S, _switch_interval
    from aeb_app.defaults import pipeline_cpu_threads
    from aeb_app.stream import create_detector

    for mode, threads, want in [("fp32_ort", None, pipeline_cpu_threads()), ("auto", None, pipeline_cpu_threads()),
                                ("fp32_ort", 2, 2)]:
        with create_detector(mode=mode, device="cpu", threads=threads) as det:
            assert det.info.mode == "fp32_ort" and det.intra_op_threads == want, mode
            assert det.session.get_session_options().intra_op_num_threads == want
            assert len(det.infer([np.zeros((54, 96, 3), np.uint8)])) == 1  # the re-opened session runs
    before = sys.getswitchinterval()
    with _switch_interval(SWITCH_INTERVAL_S):
        assert sys.getswitchinterval() == min(SWITCH_INTERVAL_S, before)
    assert sys.getswitchinterval() == before


def _track_rows(path: Path) -> list[list[str]]:
    return [line.split(",") for line in path.read_text().splitlines()]


def _assert_same_tracks(a: Path, b: Path, *, batched: bool = False) -> None:
    """The two runs' tracks CSVs hold the same decisions.

    On the CPU (what CI runs) the network is deterministic: the files are byte-identical, and a batched run's
    differ only in the last digits of the numbers (rows paired one to one). A CUDA convolution is not
    bit-reproducible from run to run or across batch sizes (cuDNN picks its algorithms per shape): measured on
    an H200 and an H100, two near-equal detections of one object (a car also scored as a person, 0.6134
    against 0.6135) swapped order and track ids, and a person box near the score threshold was tracked in one
    run only. There every frame's level must be equal, and every row that matters to a decision (in the
    zone, or with a level) must be found in the other run: same frame, class, zone and level, box within
    0.05 px.
    """
    one, two = _track_rows(a), _track_rows(b)
    header = one[0]
    assert two[0] == header and len(one) > 24 and len(two) > 24
    col = {name: i for i, name in enumerate(header)}
    if torch.cuda.is_available():
        _assert_same_decisions(one[1:], two[1:], col)
        _assert_same_decisions(two[1:], one[1:], col)
        return
    assert len(two) == len(one)
    if not batched:
        assert a.read_text() == b.read_text()
        return
    exact = {"frame", "class", "ground_valid", "in_zone", "level", "frame_level", "track_id"}
    for row_a, row_b in zip(one[1:], two[1:]):
        for name, x, y in zip(header, row_a, row_b):
            if name in exact:
                assert x == y, (name, row_a, row_b)
            elif name in ("x1", "y1", "x2", "y2"):
                assert abs(float(x) - float(y)) <= 0.05, (name, x, y)


def _assert_same_decisions(rows_a: list[list[str]], rows_b: list[list[str]], col: dict[str, int]) -> None:
    """Every frame's level in ``rows_a`` equals ``rows_b``'s, and every deciding row of ``rows_a`` is in ``rows_b``."""
    levels_b = {r[col["frame"]]: r[col["frame_level"]] for r in rows_b}
    for row in rows_a:  # a frame without rows in the other run had no track there: its level is NONE
        assert levels_b.get(row[col["frame"]], "NONE") == row[col["frame_level"]], ("frame level", row)
    decision = ("frame", "class", "in_zone", "level")
    for row in rows_a:
        if row[col["in_zone"]] == "0" and row[col["level"]] == "NONE":
            continue
        same = [r for r in rows_b if all(r[col[k]] == row[col[k]] for k in decision)]
        assert any(all(abs(float(r[col[k]]) - float(row[col[k]])) <= 0.05 for k in ("x1", "y1", "x2", "y2"))
                   for r in same), ("no matching row", row)


def test_batched_network_calls_keep_the_decisions_and_the_order(sample_video: Path, tmp_path: Path, capsys) -> None:
    """--batch 5 over 24 frames: chunks of 5, 5, 5, 5, 4 through the network; the logic still sees every frame
    in order, so levels, track ids and events equal the batch-1 run (numbers to float rounding of the batched
    convolutions: box pixels within 0.05, metres within 1 %)."""
    assert _run(sample_video, tmp_path / "one") == 0
    assert _run(sample_video, tmp_path / "five", "--batch", "5") == 0
    summary = capsys.readouterr().out
    assert "frames 24 (failed 0)" in summary
    _assert_same_tracks(tmp_path / "one" / "tracks.csv", tmp_path / "five" / "tracks.csv", batched=True)
    assert (tmp_path / "one" / "events.csv").read_text() == (tmp_path / "five" / "events.csv").read_text()


def test_a_failed_batch_marks_its_frames_only(sample_video: Path, monkeypatch) -> None:
    from aeb_app.frame_loop import staged_results
    from aeb_app.stream import StreamConfig, open_stream

    with open_stream(StreamConfig(str(sample_video), mode="fp32", device="cpu")) as stream:
        detector = stream.pipeline.detector
        real_infer, sizes = detector.infer, []

        def infer(frames, config=None):
            sizes.append(len(frames))
            if len(sizes) == 2:
                raise RuntimeError("injected batch error")
            return real_infer(frames, config)

        monkeypatch.setattr(detector, "infer", infer)
        works = list(staged_results(stream.pipeline, stream.source.frames(max_frames=7),
                                    hud_lines=lambda i, fps: [], batch=3))
    assert sizes == [3, 3, 1]
    assert [w.frame.index for w in works] == list(range(7))
    assert [w.frame.index for w in works if w.result.error] == [3, 4, 5]
    assert all("injected batch error" in w.result.error for w in works if w.result.error)


def test_batch_is_refused_for_a_camera_and_below_one(capsys) -> None:
    assert main(["run", "0", "--batch", "4", "--no-progress"]) != 0
    assert "--batch 4: camera 0 is live" in capsys.readouterr().err
    assert main(["run", "0", "--batch", "0"]) == 2
    assert "argument --batch: must be >= 1, got 0" in capsys.readouterr().err


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_a_batched_cuda_run_meets_one_network_shape_only(sample_video: Path) -> None:
    """--batch 3 over 7 frames on the GPU: the warm-up runs at 3 and the short last chunk is padded to 3, so the
    whole-frame CUDA Graph is captured once, in the warm-up (a new shape mid-run costs a capture or a compile:
    seconds), and the padding's detections are dropped (one result per frame, in order)."""
    from aeb_app.frame_loop import staged_results
    from aeb_app.stream import StreamConfig, open_stream

    with open_stream(StreamConfig(str(sample_video), mode="fp16_graph", device="cuda", batch=3)) as stream:
        detector = stream.pipeline.detector
        shapes: list[tuple] = []
        forward = detector.forward_normalized

        def spy(x):
            shapes.append(tuple(x.shape))
            return forward(x)

        detector.forward_normalized = spy
        works = list(staged_results(stream.pipeline, stream.source.frames(max_frames=7),
                                    hud_lines=lambda i, fps: [], batch=3))
        frame_graphs = dict(detector._frame_graphs)
    assert [w.frame.index for w in works] == list(range(7))
    assert all(w.result.error is None for w in works)
    assert {s[0] for s in shapes} <= {3}  # the ordinary path (a selection the graph cannot hold) at 3 only
    assert [len(key[0]) for key in frame_graphs] == [3]
    assert all(graph is not None for graph in frame_graphs.values())
