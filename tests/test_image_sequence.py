"""A folder of frames as a source (KITTI raw's ``image_02/data`` + ``timestamps.txt``): frame order, each frame's
time from the timestamps file, the same decisions as the video it was cut from, replay, and the bad-input lines."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest

from aeb_app.cli import main
from aeb_app.errors import InputError
from aeb_app.replay.executor import run_in_process
from aeb_app.replay.inputs import CalibrationChoice, find_videos, plan_recordings
from aeb_app.replay.task import DETECTORS
from aeb_app.video import VideoSource
from tests._replay_helpers import CALIBRATION, clips, reference, sensitive_options  # noqa: F401 - fixtures


def _frames(video: Path, count: int) -> list[np.ndarray]:
    cap = cv2.VideoCapture(str(video))
    frames = [cap.read()[1] for _ in range(count)]
    cap.release()
    assert all(f is not None for f in frames)
    return frames


def _kitti(folder: Path, frames: list[np.ndarray], times: list[str] | None) -> Path:
    """KITTI raw's layout: ``folder/data/0000000000.png`` ... and ``folder/timestamps.txt``."""
    (folder / "data").mkdir(parents=True)
    for i, frame in enumerate(frames):
        cv2.imwrite(str(folder / "data" / f"{i:010d}.png"), frame)
    if times is not None:
        (folder / "timestamps.txt").write_text("\n".join(times) + "\n")
    return folder


def _kitti_times(seconds: list[float]) -> list[str]:
    return [f"2011-09-26 13:02:{25 + s:012.9f}" for s in seconds]


def test_frames_come_in_order_with_the_times_of_the_timestamps_file(sample_video: Path, tmp_path: Path) -> None:
    # KITTI's camera: ~10 Hz with jitter, and one frame dropped (0.4 -> 0.6 s)
    seconds = [0.0, 0.1037, 0.2071, 0.3104, 0.4139, 0.6212, 0.7245]
    frames = _frames(sample_video, len(seconds))
    seq = _kitti(tmp_path / "image_02", frames, _kitti_times(seconds))
    for given in (seq, seq / "data"):  # the camera folder or its data folder
        with VideoSource(given) as src:
            got = list(src.frames())
            assert src.info.frame_count == len(seconds) and src.info.size_wh == (960, 540)
            assert src.info.fps == pytest.approx(1 / 0.10345, rel=1e-3)  # the median interval
        assert [f.timestamp_s for f in got] == pytest.approx(seconds, abs=1e-6)
        assert all(np.array_equal(f.image, frame) for f, frame in zip(got, frames))


def test_natural_name_order_and_seconds_timestamps(tmp_path: Path) -> None:
    folder = tmp_path / "burst"
    folder.mkdir()
    for n in (10, 2, 1):  # written out of order; "frame_10" sorts after "frame_2" by number
        image = np.full((48, 64, 3), n * 20, np.uint8)
        image[::4] = 0  # texture: not a blank frame
        cv2.imwrite(str(folder / f"frame_{n}.jpg"), image)
    (folder / "notes.txt").write_text("ignored")
    (folder / "timestamps.txt").write_text("100.0\n100.05\n100.2\n")
    with VideoSource(folder) as src:
        got = list(src.frames())
    assert [f.timestamp_s for f in got] == pytest.approx([0.0, 0.05, 0.2])
    assert [int(np.median(f.image[1::4])) for f in got] == pytest.approx([20, 40, 200], abs=3)


def test_grey_and_16_bit_frames_are_read_as_8_bit_colour(tmp_path: Path) -> None:
    grey = np.tile(np.arange(64, dtype=np.uint8) * 4, (48, 1))
    cv2.imwrite(str(tmp_path / "0.png"), grey)
    cv2.imwrite(str(tmp_path / "1.png"), grey.astype(np.uint16) * 257)  # 16-bit: as cameras' raw exports
    with VideoSource(tmp_path, fps=10.0) as src:
        got = list(src.frames())
    assert [f.image.shape for f in got] == [(48, 64, 3)] * 2 and all(f.image.dtype == np.uint8 for f in got)
    assert np.array_equal(got[0].image[..., 0], grey) and np.abs(got[1].image[..., 0].astype(int) - grey).max() <= 1


def test_a_corrupt_or_resized_frame_is_a_failed_frame_and_the_rest_is_read(sample_video: Path, tmp_path: Path) -> None:
    frames = _frames(sample_video, 5)
    seq = _kitti(tmp_path / "cam", frames, _kitti_times([0.0, 0.1, 0.2, 0.3, 0.4]))
    (seq / "data" / "0000000001.png").write_bytes(b"\x89PNG not really")
    cv2.imwrite(str(seq / "data" / "0000000003.png"), cv2.resize(frames[3], (480, 270)))
    with VideoSource(seq) as src:
        got = list(src.frames())
    assert [f.ok for f in got] == [True, False, True, False, True]
    assert [f.timestamp_s for f in got] == pytest.approx([0.0, 0.1, 0.2, 0.3, 0.4])  # failed frames keep their time
    assert [f.error.split(": frame ")[1] for f in got if not f.ok] == [
        "1: cannot be read (0000000001.png cannot be decoded)",
        "3: cannot be read (0000000003.png is 480x270, not the sequence's 960x540)"]


@pytest.mark.parametrize(("times", "message"), [
    (["0.0", "0.1", "0.1"], r"timestamps.txt:3: time '0.1' is not after the previous line's"),
    (["0.0", "zero point one", "0.2"], r"timestamps.txt:2: 'zero point one' is not a time"),
    (["0.0", "nan", "0.2"], r"timestamps.txt:2: 'nan' is not a time"),
    (["0.0", "0.1"], r"timestamps.txt: 2 times for 3 images"),
    (["0.0", "1e400", "2e400"], r"timestamps.txt: times span more than a float can hold"),
    (["2011-09-26 13:02:25.0", "2011-13-40 13:02:25.1", "2011-09-26 13:02:25.2"], r"timestamps.txt:2: .* is not a time"),
    (None, r"needs its frame times: a timestamps.txt .* or the frame rate \(--fps\)"),
])
def test_bad_frame_times_are_refused_with_the_file_and_line(sample_video: Path, tmp_path: Path,
                                                            times: list[str] | None, message: str) -> None:
    seq = _kitti(tmp_path / "cam", _frames(sample_video, 3), times)
    with pytest.raises(InputError, match=message) as info:
        VideoSource(seq).open()
    assert "\n" not in str(info.value)


def test_fps_replaces_a_video_headers_rate_and_is_checked(sample_video: Path) -> None:
    with VideoSource(sample_video, fps=10.0) as src:
        assert src.info.fps == 10.0 and [f.timestamp_s for f in src.frames(max_frames=3)] == [0.0, 0.1, 0.2]
    for bad in (0.0, 1000.0, float("nan")):
        with pytest.raises(InputError, match=r"--fps must be in \[1, 240\] \(a camera's frame rate\), got "):
            VideoSource(sample_video, fps=bad)


def test_run_on_frames_decides_as_on_the_video_they_came_from(sample_video: Path, tmp_path: Path, capsys) -> None:
    """PNG is lossless: the frames of the first 40 decoded video frames, at the video's 25 fps, give the same
    tracks CSV byte for byte, through the folder's timestamps.txt or through --fps."""
    frames = _frames(sample_video, 40)
    _kitti(tmp_path / "stamped", frames, [f"{i / 25:.6f}" for i in range(40)])
    _kitti(tmp_path / "plain", frames, None)
    runs = {"video": [str(sample_video), "--max-frames", "40"], "stamped": [str(tmp_path / "stamped")],
            "plain": [str(tmp_path / "plain"), "--fps", "25"]}
    for name, source in runs.items():
        code = main(["run", *source, "--mode", "fp32_ort", "--tracks", str(tmp_path / f"{name}.csv"), "--no-progress"])
        assert code == 0
        assert "frames 40 (failed 0)" in capsys.readouterr().out
    video = (tmp_path / "video.csv").read_bytes()
    assert len(video.splitlines()) > 40
    assert (tmp_path / "stamped.csv").read_bytes() == video == (tmp_path / "plain.csv").read_bytes()


def test_run_without_frame_times_fails_before_loading_the_model(sample_video: Path, tmp_path: Path, capsys) -> None:
    seq = _kitti(tmp_path / "cam", _frames(sample_video, 3), None)
    assert main(["run", str(seq), "--mode", "fp32_ort", "--no-progress"]) != 0
    err = capsys.readouterr().err
    assert f"{seq / 'data'}: an image sequence needs its frame times" in err and "Traceback" not in err


def test_replay_takes_a_folder_of_frames_as_one_recording(clips: Path, sensitive_options, reference,  # noqa: F811
                                                          tmp_path: Path, request) -> None:
    """clip_c (a car in the next lane warns with the sensitive settings) as KITTI frames: one recording named after
    its folders, the same events as the video's, and a re-run skips it."""
    seq = _kitti(tmp_path / "drive_0001_sync" / "image_02", _frames(clips / "clip_c.mp4", 30),
                 _kitti_times([i / 25 for i in range(30)]))
    assert find_videos([str(tmp_path / "*" / "image_02")]) == [seq.resolve()]
    specs = plan_recordings([str(seq)], CalibrationChoice.single(CALIBRATION), sensitive_options)
    assert [s.recording_id for s in specs] == ["drive_0001_sync_image_02"]
    out = tmp_path / "out"
    request.addfinalizer(DETECTORS.clear)  # this process's cached replay detector: not left to later tests
    run = run_in_process(specs, out, sensitive_options)
    assert [(r.ok, r.skipped, r.frames, r.failed_frames) for r in run.results] == [(True, False, 30, 0)]
    events = (out / "drive_0001_sync_image_02" / "events.csv").read_text()
    ref_dir, _ = reference
    assert events == (ref_dir / "clip_c" / "events.csv").read_text() and "CAUTION" in events
    again = run_in_process(plan_recordings([str(seq)], CalibrationChoice.single(CALIBRATION), sensitive_options),
                           out, sensitive_options)
    assert [r.skipped for r in again.results] == [True]
    (seq / "data" / "0000000029.png").unlink()  # a changed recording is not "finished": it runs again
    (seq / "timestamps.txt").write_text("\n".join(_kitti_times([i / 25 for i in range(29)])) + "\n")
    third = run_in_process(plan_recordings([str(seq)], CalibrationChoice.single(CALIBRATION), sensitive_options),
                           out, sensitive_options)
    assert [(r.skipped, r.frames) for r in third.results] == [(False, 29)]


KITTI_SPEED = Path(__file__).resolve().parents[1] / "scripts" / "kitti_speed.py"


def _oxts(drive: Path, seconds: list[float], speeds: list[float]) -> None:
    (drive / "oxts" / "data").mkdir(parents=True)
    for i, v in enumerate(speeds):  # 30 fields: lat lon alt roll pitch yaw vn ve vf vl vu ...
        fields = [49.0, 8.4, 110.0, 0.0, 0.0, 1.0, v, 0.0, v, 0.01, 0.0] + [0.0] * 19
        (drive / "oxts" / "data" / f"{i:010d}.txt").write_text(" ".join(map(str, fields)) + "\n")
    (drive / "oxts" / "timestamps.txt").write_text("\n".join(_kitti_times(seconds)) + "\n")


def test_kitti_oxts_speed_becomes_an_ego_speed_csv_on_the_cameras_clock(sample_video: Path, tmp_path: Path) -> None:
    import subprocess
    import sys

    drive = tmp_path / "2011_09_26_drive_0001_sync"
    cam_s = [0.05 + i * 0.1 for i in range(12)]  # the camera starts 50 ms after the first OXTS packet
    _kitti(drive / "image_02", _frames(sample_video, 12), _kitti_times(cam_s))
    _oxts(drive, [i * 0.1 for i in range(13)], [-0.02] + [10.0 + i for i in range(12)])  # standing noise first
    out = tmp_path / "speed.csv"
    done = subprocess.run([sys.executable, str(KITTI_SPEED), str(drive), "--out", str(out)], capture_output=True,
                          text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    lines = out.read_text().splitlines()
    assert lines[0] == "time_s,speed_mps" and len(lines) == 14
    assert lines[1:3] == ["-0.050000,0.0000", "0.050000,10.0000"]  # the noise clipped to 0
    assert main(["run", str(drive / "image_02"), "--mode", "fp32_ort", "--ego-speed", str(out), "--no-progress",
                 "--tracks", str(tmp_path / "t.csv")]) == 0
    (drive / "oxts" / "data" / "0000000005.txt").write_text("0 0 0 0 0 0 0 0 -3.0 0 0\n")  # reversing
    bad = subprocess.run([sys.executable, str(KITTI_SPEED), str(drive), "--out", str(tmp_path / "b.csv")],
                         capture_output=True, text=True, timeout=120)
    assert bad.returncode == 2 and "0000000005.txt: forward velocity -3.0 m/s" in bad.stderr
    assert not (tmp_path / "b.csv").exists()
