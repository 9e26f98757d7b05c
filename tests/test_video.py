"""Video reader and writer on the real sample footage and on broken copies of it."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest

from aeb_app.errors import InputError
from aeb_app.video import MAX_CONSECUTIVE_FAILURES, VideoSource, VideoWriter, parse_source
from aeb_app.video.reader import AFTER_LOSS_S


def truncated_copy(sample: Path, tmp_path: Path, fraction: float = 0.5) -> Path:
    """The first ``fraction`` of the sample's bytes (the mp4 index is at the front: it still opens)."""
    data = sample.read_bytes()
    out = tmp_path / "truncated.mp4"
    out.write_bytes(data[: int(len(data) * fraction)])
    return out


def test_sample_info_and_frames(sample_video: Path) -> None:
    with VideoSource(sample_video) as src:
        info = src.info
        assert (info.width, info.height, info.fps, info.frame_count) == (960, 540, 25.0, 221)
        assert not info.is_camera
        frames = list(src.frames(max_frames=5))
    assert [f.index for f in frames] == [0, 1, 2, 3, 4]
    assert [f.timestamp_s for f in frames] == pytest.approx([0.0, 0.04, 0.08, 0.12, 0.16])
    assert all(f.ok and f.image.shape == (540, 960, 3) and f.image.dtype == np.uint8 for f in frames)


def test_reads_to_the_end_and_loops(sample_video: Path) -> None:
    with VideoSource(sample_video) as src:
        src.seek(218)
        assert [f.index for f in src.frames()] == [218, 219, 220]
    with VideoSource(sample_video, loop=True) as src:
        src.seek(219)
        assert [f.index for f in src.frames(max_frames=4)] == [219, 220, 0, 1]


def test_seek_returns_the_same_frame_as_sequential_reading(sample_video: Path) -> None:
    with VideoSource(sample_video) as src:
        sequential = [f.image for f in src.frames(max_frames=31)]
        src.seek(30)
        frame = src.read()
    assert frame is not None and frame.index == 30 and frame.timestamp_s == pytest.approx(1.2)
    assert np.abs(frame.image.astype(int) - sequential[30].astype(int)).mean() < 2.0
    with VideoSource(sample_video) as src, pytest.raises(InputError, match="seek to frame 500"):
        src.seek(500)


def _bad_file(kind: str, folder: Path) -> Path:
    if kind == "folder":
        return folder
    path = folder / f"{kind}.mp4"
    if kind == "empty":
        path.write_bytes(b"")
    elif kind == "junk":
        path.write_bytes(b"not a video " * 200)
    return path


@pytest.mark.parametrize(
    ("kind", "message"),
    [("missing", "no such file"), ("empty", "empty file"), ("junk", "not a readable video"),
     ("folder", "folder holds no video frames")],
)
def test_bad_files_raise_one_line_input_error(tmp_path: Path, kind: str, message: str) -> None:
    path = _bad_file(kind, tmp_path)
    with pytest.raises(InputError) as info:
        VideoSource(path).open()
    text = str(info.value)
    assert message in text and str(path) in text and "\n" not in text


def test_truncated_video_gives_failed_frames_then_ends(sample_video: Path, tmp_path: Path) -> None:
    path = truncated_copy(sample_video, tmp_path)
    with VideoSource(path) as src:
        frames = list(src.frames())
    good = [f for f in frames if f.ok]
    bad = [f for f in frames if not f.ok]
    assert 50 < len(good) < 221
    assert 1 <= len(bad) <= MAX_CONSECUTIVE_FAILURES
    assert all(f.image is None and "cannot be decoded" in f.error and str(path) in f.error for f in bad)
    assert [f.index for f in frames] == list(range(len(frames)))  # indices stay aligned


def test_camera_that_does_not_open() -> None:
    with pytest.raises(InputError, match="camera 97: cannot open"):
        VideoSource(97).open()
    assert parse_source("3") == 3 and parse_source("a.mp4") == "a.mp4"


def test_writer_is_atomic_and_readable(sample_video: Path, tmp_path: Path) -> None:
    out = tmp_path / "out.mp4"
    with VideoSource(sample_video) as src, VideoWriter(out, fps=25) as writer:
        for frame in src.frames(max_frames=6):
            assert not out.exists()  # nothing at the target until the writer closes
            writer.write(frame.image)
    cap = cv2.VideoCapture(str(out))
    assert cap.isOpened() and int(cap.get(cv2.CAP_PROP_FRAME_COUNT)) == 6
    assert int(cap.get(cv2.CAP_PROP_FRAME_WIDTH)) == 960
    cap.release()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.mp4"]


def test_writer_leaves_nothing_on_error(tmp_path: Path) -> None:
    out = tmp_path / "fail.mp4"
    with pytest.raises(RuntimeError):
        with VideoWriter(out, fps=25) as writer:
            writer.write(np.zeros((64, 64, 3), np.uint8))
            raise RuntimeError("boom")
    with pytest.raises(InputError, match="frame size"):
        with VideoWriter(out, fps=25) as writer:
            writer.write(np.zeros((64, 64, 3), np.uint8))
            writer.write(np.zeros((32, 64, 3), np.uint8))
    with pytest.raises(InputError, match="no frames"):
        with VideoWriter(out, fps=25):
            pass
    assert list(tmp_path.iterdir()) == []
    with pytest.raises(InputError, match="unsupported video extension"):
        VideoWriter(tmp_path / "x.gif", fps=25)


def test_loop_over_a_truncated_video_wraps_after_the_failures(sample_video: Path, tmp_path: Path) -> None:
    path = truncated_copy(sample_video, tmp_path)
    with VideoSource(path, loop=True) as src:
        frames = list(src.frames(max_frames=300))
    wrap = next(i for i in range(1, len(frames)) if frames[i].index == 0)
    failed = [f for f in frames[:wrap] if not f.ok]
    assert len(frames) == 300 and 1 <= len(failed) <= MAX_CONSECUTIVE_FAILURES
    assert all(f.ok for f in frames[wrap:wrap + 50])  # decoding resumes at frame 0
    assert [f.index for f in frames[wrap:wrap + 3]] == [0, 1, 2]


def test_unopened_source_and_negative_seek_are_input_errors(sample_video: Path) -> None:
    src = VideoSource(sample_video)
    with pytest.raises(InputError, match="source not opened"):
        src.read()
    with src:
        with pytest.raises(InputError, match="seek to frame -1"):
            src.seek(-1)


# -- frame validity: decoded but implausible frames (frozen, blank, torn) are marked invalid ------------------

def _real_frames(video: Path, n: int) -> list[np.ndarray]:
    cap = cv2.VideoCapture(str(video))
    try:
        frames = [cap.read()[1] for _ in range(n)]
    finally:
        cap.release()
    assert all(f is not None for f in frames)
    return frames


def _write_avi(path: Path, frames: list[np.ndarray]) -> Path:
    """MJPG: every frame coded on its own, so repeated input frames decode bit-identical."""
    h, w = frames[0].shape[:2]
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), 25, (w, h))
    for frame in frames:
        writer.write(frame)
    writer.release()
    return path


def test_one_frame_video_reads_its_frame(sample_video: Path, tmp_path: Path) -> None:
    [frame] = _real_frames(sample_video, 1)
    path = tmp_path / "one.mp4"
    with VideoWriter(path, fps=25) as writer:
        writer.write(frame)
    with VideoSource(path) as src:
        frames = list(src.frames())
        assert src.info.frame_count == 1
    assert [f.index for f in frames] == [0] and frames[0].valid


def test_real_footage_and_photos_are_all_plausible(sample_video: Path, coco_dir: Path) -> None:
    from aeb_app.video.validity import implausibility

    with VideoSource(sample_video) as src:
        frames = list(src.frames())
    assert len(frames) == 221 and all(f.valid for f in frames), [f.error for f in frames if f.error][:3]
    photos = sorted((coco_dir / "val2017").glob("*.jpg"))
    assert len(photos) == 155
    assert [p.name for p in photos if implausibility(cv2.imread(str(p))) is not None] == []


def test_a_repeat_that_differs_in_one_pixel_is_not_frozen(sample_video: Path) -> None:
    """The frozen test compares every pixel: a frame equal to the previous one but for one pixel in a row the quick
    pre-comparison skips is a new frame."""
    from aeb_app.video.validity import FROZEN_REPEATS, FrameCheck

    [frame] = _real_frames(sample_video, 1)
    check = FrameCheck()
    for _ in range(FROZEN_REPEATS):
        assert check.check(frame) is None
    assert "frozen frame" in (check.check(frame) or "")
    nudged = frame.copy()
    nudged[17, 400, 1] ^= 1  # row 17: not one of every 16th
    assert check.check(nudged) is None
    assert check.check(nudged) is None  # one repeat passes (frame-rate conversion)


def test_frozen_blank_and_torn_frames_are_invalid_with_a_reason(sample_video: Path, tmp_path: Path) -> None:
    real = _real_frames(sample_video, 8)
    torn = real[5].copy()
    torn[160:480] = (0, 135, 0)  # a decoder's flat fill over lost macroblocks
    cases = {
        "frozen": (real[:3] + [real[3]] * 6, [False] * 6 + [True] * 3, "frozen frame"),
        "blank": ([real[0], np.full_like(real[0], 90), real[1]], [False, True, False], "blank frame"),
        "torn": ([real[0], torn, real[6]], [False, True, False], "torn frame"),
    }
    for name, (images, expected_invalid, reason) in cases.items():
        path = _write_avi(tmp_path / f"{name}.avi", images)
        with VideoSource(path) as src:
            frames = list(src.frames())
        assert [not f.valid for f in frames] == expected_invalid, name
        bad = [f for f in frames if not f.valid]
        assert all(f.ok and reason in f.error and str(path) in f.error for f in bad), name
    with VideoSource(tmp_path / "frozen.avi", check_frames=False) as src:
        assert all(f.valid for f in src.frames())


def zeroed_chunks_copy(video: Path, tmp_path: Path) -> Path:
    """The sample with 3,000 zero bytes every 150 kB of its data: frames decode, some to garbage."""
    data = bytearray(video.read_bytes())
    start = data.find(b"mdat")
    for offset in range(start + 100_000, len(data) - 100_000, 150_000):
        data[offset:offset + 3000] = bytes(3000)
    path = tmp_path / "zeroed.mp4"
    path.write_bytes(bytes(data))
    return path


def test_zeroed_data_chunks_give_invalid_frames(sample_video: Path, tmp_path: Path) -> None:
    with VideoSource(zeroed_chunks_copy(sample_video, tmp_path)) as src:
        frames = list(src.frames())
    invalid = [f for f in frames if f.ok and not f.valid]
    assert any("torn frame" in f.error for f in invalid) and any("blank frame" in f.error for f in invalid)
    assert [f.index for f in frames] == list(range(221))  # frames the decoder skipped keep their place
    assert any(not f.ok and "corrupt data skipped" in f.error for f in frames)
    assert sum(f.valid for f in frames) > 60  # the intact frames away from the damage still pass


def test_seek_resets_the_frozen_count(tmp_path: Path, sample_video: Path) -> None:
    real = _real_frames(sample_video, 2)
    path = _write_avi(tmp_path / "still.avi", [real[0]] * 3 + [real[1]] * 3)
    with VideoSource(path) as src:
        assert [f.valid for f in src.frames()] == [True] * 3 + [True] * 3  # 2 repeats each: below the limit
        src.seek(0)
        assert src.read().valid and src.read().valid


def test_fast_frame_measures_equal_the_float_reference(sample_video: Path, tmp_path: Path) -> None:
    """The integer gradients and the contiguous block min/max give what the float32 NumPy versions gave
    (gradients within float32 rounding, block fractions exactly), on real and on decoder-damaged frames."""
    from aeb_app.video.validity import _constant_fraction, _mean_abs_gradients

    with VideoSource(zeroed_chunks_copy(sample_video, tmp_path)) as src:
        images = [f.image for f in src.frames() if f.image is not None][::5]
    torn = images[0].copy()
    torn[100:300] = (0, 135, 0)
    checked_flat = 0
    for image in images + [torn]:
        gray = np.ascontiguousarray(cv2.cvtColor(image, cv2.COLOR_BGR2GRAY)[::2, ::2])
        g = gray.astype(np.float32)
        want = (float(np.abs(np.diff(g, axis=1)).mean()), float(np.abs(np.diff(g, axis=0)).mean()))
        assert np.allclose(_mean_abs_gradients(gray), want, rtol=1e-6, atol=0)
        h, w = (gray.shape[0] // 8) * 8, (gray.shape[1] // 8) * 8
        blocks = gray[:h, :w].reshape(h // 8, 8, w // 8, 8)
        low, high = blocks.min(axis=(1, 3)), blocks.max(axis=(1, 3))
        assert _constant_fraction(gray) == float(((low == high) & (low != 0) & (low != 255)).mean())
        checked_flat += _constant_fraction(gray) > 0
    assert len(images) > 30 and checked_flat >= 1


# -- unseen material: damage inside a file, early ends, frame rates ----------------------------------------

def corrupt_middle_copy(sample_video: Path, tmp_path: Path, frames: int = 90) -> tuple[Path, Path]:
    """(clean, damaged): the first ``frames`` real frames as an mp4 (MPEG-4 part 2), and a copy with 40 kB of
    random bytes a third into its data (the header and index intact): FFmpeg skips the damaged packets."""
    real = _real_frames(sample_video, frames)
    clean = tmp_path / "clean.mp4"
    with VideoWriter(clean, fps=25) as writer:
        for image in real:
            writer.write(image)
    data = bytearray(clean.read_bytes())
    at = len(data) // 3
    data[at:at + 40_000] = np.random.default_rng(0).bytes(40_000)
    damaged = tmp_path / "damaged.mp4"
    damaged.write_bytes(bytes(data))
    return clean, damaged


def test_corrupt_middle_loses_only_its_frames_at_their_own_indices(sample_video: Path, tmp_path: Path) -> None:
    """The frames after a damaged stretch are read (the stream used to end there) with their own indices and
    timestamps (not those of the lost frames), and each lost frame is a failed frame that says why."""
    clean, damaged = corrupt_middle_copy(sample_video, tmp_path)
    with VideoSource(clean) as src:
        reference = [f.image for f in src.frames()]
    with VideoSource(damaged) as src:
        frames = list(src.frames())
    assert [f.index for f in frames] == list(range(90))
    assert [f.timestamp_s for f in frames] == pytest.approx([i / 25 for i in range(90)])
    lost = [f.index for f in frames if not f.ok]
    assert lost and lost == list(range(lost[0], lost[-1] + 1)) and lost[-1] < 89 - AFTER_LOSS_S * 25, lost
    assert all("corrupt data skipped" in f.error and str(damaged) in f.error for f in frames if not f.ok)
    after = [f for f in frames if f.index > lost[-1]]
    assert after and all(f.ok for f in after)
    window = round(AFTER_LOSS_S * 25)
    suspect = [f for f in after if not f.valid]  # predicted from the lost frames: invalid for AFTER_LOSS_S
    assert [f.index for f in suspect] == list(range(lost[-1] + 1, lost[-1] + 1 + window))
    assert all("follows lost frames" in f.error for f in suspect)
    for f in after[window:]:  # the same picture as the clean file's frame of that index: nothing shifted
        assert f.valid and np.abs(f.image.astype(int) - reference[f.index].astype(int)).mean() < 1.0, f.index


@pytest.mark.parametrize("fraction", [0.1, 0.5, 0.9])
def test_file_ending_early_gives_one_failed_frame_naming_the_announced_count(sample_video: Path, tmp_path: Path,
                                                                           fraction: float) -> None:
    path = truncated_copy(sample_video, tmp_path, fraction)
    with VideoSource(path) as src:
        frames = list(src.frames())
        assert src.read() is None  # ended, and stays ended
    *good, last = frames
    assert all(f.ok for f in good) and 0.7 * fraction * 221 < len(good) < 221
    assert not last.ok and last.index == len(good)
    assert "announced 221" in last.error and str(path) in last.error


@pytest.mark.parametrize(("fps", "plausible"), [(5.0, True), (59.94, True), (0.5, False), (1000.0, False)])
def test_frame_rate_outside_a_cameras_makes_every_frame_unavailable(sample_video: Path, tmp_path: Path,
                                                                    fps: float, plausible: bool) -> None:
    """5 and 59.94 fps files keep their own frame times; 0.5 and 1000 fps are not a camera's: every frame is
    invalid with a reason (it used to be read as 25 fps, with wrong frame times and no word about it)."""
    real = _real_frames(sample_video, 6)
    path = tmp_path / "rate.avi"
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), fps, (960, 540))
    for image in real:
        writer.write(image)
    writer.release()
    with VideoSource(path) as src:
        frames = list(src.frames())
        info = src.info
    assert len(frames) == 6 and all(f.ok for f in frames)
    if plausible:
        assert info.fps == pytest.approx(fps) and all(f.valid for f in frames)
        assert [f.timestamp_s for f in frames] == pytest.approx([i / fps for i in range(6)])
    else:
        assert info.fps == 25.0  # for drawing and writing only
        assert not any(f.valid for f in frames)
        assert all(f"frame rate, {fps:g} fps," in f.error and "frame times unknown" in f.error for f in frames)
        assert all("give the rate with --fps" in f.error for f in frames)
    with VideoSource(path, fps=12.5) as src:  # the user's rate: every frame valid at k / 12.5 s
        frames = list(src.frames())
    assert all(f.valid for f in frames) and [f.timestamp_s for f in frames] == pytest.approx([i / 12.5 for i in range(6)])


def _retimed_mp4(path: Path, runs: list[tuple[int, int]]) -> None:
    """Give the (single) track of an OpenCV-written mp4 (index at the end) new sample durations: ``runs`` of
    (samples, duration in ticks), as a camera that dropped frames or a variable-frame-rate phone writes."""
    import struct

    def rewrite(data: bytes) -> bytes:
        out, i = b"", 0
        while i < len(data):
            size, kind = struct.unpack(">I4s", data[i:i + 8])
            body = data[i + 8:i + size]
            if kind in (b"moov", b"trak", b"mdia", b"minf", b"stbl"):
                body = rewrite(body)
            elif kind == b"stts":
                body = struct.pack(">II", 0, len(runs)) + b"".join(struct.pack(">II", n, d) for n, d in runs)
            out += struct.pack(">I4s", len(body) + 8, kind) + body
            i += size
        return out

    path.write_bytes(rewrite(path.read_bytes()))


def test_a_recording_gap_is_unavailable_at_its_own_time_without_a_damage_window(sample_video: Path,
                                                                                tmp_path: Path) -> None:
    """Two frame slots without a frame (and four at double rate after them, so the length stays): the empty
    slots are failed frames that say why, the next frame keeps its own time, and no decoding failed, so the
    frames after the gap stay valid."""
    path = tmp_path / "gap.mp4"
    with VideoWriter(path, fps=25) as writer:
        for image in _real_frames(sample_video, 60):
            writer.write(image)
    ticks = 512  # OpenCV's mp4 time base: 12800 per second, 512 per frame at 25 fps
    _retimed_mp4(path, [(30, ticks), (1, 3 * ticks), (4, ticks // 2), (25, ticks)])
    with VideoSource(path) as src:
        frames = list(src.frames())
    assert [f.index for f in frames] == list(range(len(frames)))
    assert [f.index for f in frames if not f.valid] == [31, 32]
    assert all("no frame for its time" in f.error for f in frames if not f.valid)
    assert frames[33].ok and frames[33].timestamp_s == pytest.approx(33 / 25)
    assert sum(f.ok for f in frames) == 60
