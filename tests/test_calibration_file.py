"""Calibration YAML: load/validate/save, and the shipped calibration measured on real footage."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest
import yaml

from aeb_app.errors import CalibrationError
from aeb_app.geometry import Calibration, load_calibration, save_calibration

SHIPPED = Path(__file__).resolve().parents[1] / "calibration" / "solidWhiteRight.yaml"
DASH_PERIOD_M = 3.05 + 9.14
PAINT_GRAY = 170


@pytest.fixture(scope="module")
def shipped() -> Calibration:
    return load_calibration(SHIPPED)


def _write(tmp_path: Path, data) -> Path:
    path = tmp_path / "cal.yaml"
    path.write_text(data if isinstance(data, str) else yaml.safe_dump(data), encoding="utf-8")
    return path


def test_shipped_calibration_loads(shipped: Calibration) -> None:
    assert shipped.image_size_wh == (960, 540)
    assert shipped.k_x_m_per_px == pytest.approx(0.05, rel=1e-3)  # lane of 74 BEV px is 3.7 m
    assert 0.04 < shipped.k_y_m_per_px < 0.065
    assert shipped.fit_residual_m < 0.6


def test_save_load_roundtrip(shipped: Calibration, tmp_path: Path) -> None:
    path = tmp_path / "out.yaml"
    save_calibration(shipped, path)
    again = load_calibration(path)
    assert again.k_y_m_per_px == pytest.approx(shipped.k_y_m_per_px, rel=1e-6)
    np.testing.assert_allclose(again.view.matrix, shipped.view.matrix, rtol=1e-4)
    assert [p.name for p in tmp_path.iterdir()] == ["out.yaml"]  # no temp file left behind


def test_save_is_atomic_on_failure(shipped: Calibration, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "cal.yaml"
    path.write_text("previous", encoding="utf-8")

    def boom(*_a, **_k):
        raise OSError("disk full")

    monkeypatch.setattr("aeb_app.atomic.os.replace", boom)
    with pytest.raises(OSError):
        save_calibration(shipped, path)
    assert path.read_text(encoding="utf-8") == "previous"
    assert [p.name for p in tmp_path.iterdir()] == ["cal.yaml"]


def _good() -> dict:
    return yaml.safe_load(SHIPPED.read_text(encoding="utf-8"))


def _edit(**changes) -> dict:
    data = _good()
    for key, value in changes.items():
        if value is None:
            del data[key]
        else:
            data[key] = value
    return data


@pytest.mark.parametrize(
    ("data", "match"),
    [
        (_edit(schema_version=2), "schema_version is 2"),
        (_edit(schema_version=None), "schema_version is None"),
        (_edit(k_x_m_per_px=None), "missing field.*k_x_m_per_px"),
        (_edit(bev_points_px=None), "missing field.*bev_points_px"),
        (_edit(colour="red"), "unknown field.*colour"),
        (_edit(image_size=[960]), "image_size"),
        (_edit(image_size=[960, -540]), "image_size"),
        (_edit(k_y_m_per_px=0.1), "k_y_m_per_px.*disagrees"),
        (_edit(k_x_m_per_px="abc"), "k_x_m_per_px.*finite number"),
        (_edit(source_points_px=[[0, 0], [10, 0], [20, 0], [5, 50]]), "source_points_px.*collinear"),
        (_edit(source_points_px=[[0, 0], [2000, 0], [20, 100], [0, 100]]), "source_points_px.*outside"),
        (_edit(origin_ahead_m=float("nan")), "origin_ahead_m"),
        ("- just\n- a list\n", "mapping"),
        ("schema_version: [1\n", "malformed YAML"),
    ],
)
def test_bad_files_raise_naming_the_problem(tmp_path: Path, data, match: str) -> None:
    path = _write(tmp_path, data)
    with pytest.raises(CalibrationError, match=match) as info:
        load_calibration(path)
    assert str(path) in str(info.value)
    assert "\n" not in str(info.value)


def test_bad_reference_distance_names_pair(tmp_path: Path) -> None:
    data = _good()
    data["reference_pairs"][1]["distance_m"] = -12.19
    with pytest.raises(CalibrationError, match=r"reference_pairs\[1\]\.distance_m"):
        load_calibration(_write(tmp_path, data))


def test_missing_file_raises(tmp_path: Path) -> None:
    with pytest.raises(CalibrationError, match="cannot read"):
        load_calibration(tmp_path / "nope.yaml")


def _read_frames(video: Path, indices: list[int]) -> dict[int, np.ndarray]:
    cap = cv2.VideoCapture(str(video))
    frames, i = {}, 0
    try:
        while len(frames) < len(indices):
            ok, frame = cap.read()
            if not ok:
                break
            if i in indices:
                frames[i] = frame
            i += 1
    finally:
        cap.release()
    assert len(frames) == len(indices), f"could only read {sorted(frames)} of {indices} from {video}"
    return frames


def measure_dash_period_m(cal: Calibration, frame: np.ndarray, *, max_range_m: float = 40.0) -> float:
    """Median start-to-start (and end-to-end) distance of the left-line dashes in the BEV-warped frame."""
    gray = cv2.cvtColor(cal.view.warp(frame), cv2.COLOR_BGR2GRAY)
    ky = cal.k_y_m_per_px
    origin_y = int(cal.origin_bev_px[1])
    rows = slice(max(0, int(origin_y - max_range_m / ky)), origin_y)
    paint = gray[rows] > PAINT_GRAY
    left_x = int(cal.view.bev_points_px[0, 0])  # the dashed line is the left edge of the lane rectangle
    cols = np.arange(left_x - 25, left_x + 26)
    column = cols[int(np.argmax([paint[:, c - 2:c + 3].any(axis=1).mean() for c in cols]))]
    on = np.r_[False, paint[:, column - 3:column + 4].any(axis=1), False].astype(int)
    starts, ends = np.flatnonzero(np.diff(on) == 1), np.flatnonzero(np.diff(on) == -1)
    dash = (ends - starts) * ky >= 1.5  # drop seams and reflectors; dashes are 3.05 m
    periods = np.r_[np.diff(starts[dash]), np.diff(ends[dash])] * ky
    assert len(periods) >= 2, f"found only {dash.sum()} dashes"
    return float(np.median(periods))


def test_shipped_calibration_measures_dash_period(shipped: Calibration, sample_video: Path) -> None:
    # Frame 0 was used to pick the calibration points; measure on other frames. The camera pitches on
    # road bumps (+-15% scale between frames), so require the median and most single frames within 10%.
    indices = list(range(10, 221, 20))
    frames = _read_frames(sample_video, indices)
    measured = np.array([measure_dash_period_m(shipped, frames[i]) for i in indices])
    rel = np.abs(measured / DASH_PERIOD_M - 1)
    assert abs(np.median(measured) / DASH_PERIOD_M - 1) < 0.10, measured.round(2).tolist()
    assert (rel < 0.10).mean() >= 2 / 3, measured.round(2).tolist()
    assert rel[indices.index(70)] < 0.10  # a steady-road frame, the single-frame check


def test_shipped_lane_width_on_real_frame(shipped: Calibration) -> None:
    # The two lane lines at rows 345 and 520 are 3.7 m apart laterally in metric coordinates.
    pts = shipped.image_to_metric(shipped.view.image_points_px)
    assert pts[1, 0] - pts[0, 0] == pytest.approx(3.7, rel=0.01)
    assert pts[2, 0] - pts[3, 0] == pytest.approx(3.7, rel=0.01)


def test_shipped_calibration_lookup(tmp_path, monkeypatch) -> None:
    from aeb_app.geometry.calibration import load_calibration, shipped_calibration

    path = shipped_calibration()
    assert path.name == "solidWhiteRight.yaml" and path.is_file()
    assert load_calibration(path).image_size_wh == (960, 540)
    (tmp_path / "calibration").mkdir()
    local = tmp_path / "calibration" / "solidWhiteRight.yaml"
    local.write_bytes(path.read_bytes())
    monkeypatch.chdir(tmp_path)
    assert shipped_calibration() == local  # the working folder's copy wins
    assert shipped_calibration("nope.yaml").name == "nope.yaml"


# -- hostile and malformed files: one-line CalibrationError naming the key, never another exception ------------

BILLION_LAUGHS = "\n".join(
    ['schema_version: 1', 'l0: &l0 ["lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol"]']
    + [f"l{i}: &l{i} [{', '.join([f'*l{i - 1}'] * 9)}]" for i in range(1, 9)]
    + ["reference_pairs: [*l8]"]
)


def _with(key_path: tuple, value) -> dict:
    """The shipped calibration with one (possibly nested) value replaced."""
    data = _good()
    node = data
    for key in key_path[:-1]:
        node = node[key]
    node[key_path[-1]] = value
    return data


HOSTILE_TEXT = [
    ("billion_laughs", BILLION_LAUGHS, "anchors"),
    ("alias_only", "schema_version: 1\na: *x\n", "alias|malformed"),
    ("deep_nesting", "schema_version: 1\norigin_px: " + "[" * 5000 + "]" * 5000 + "\n", "nested deeper"),
    ("huge_file", "camera_notes: '" + "x" * 300_000 + "'\n", "larger than"),
    ("python_tag", "schema_version: !!python/object/apply:os.system ['true']\n", "malformed YAML"),
    ("huge_int_literal", "schema_version: 1" + "0" * 5000 + "\n", "cannot be read|schema_version"),
    ("empty", "", "mapping"),
    ("scalar", "42\n", "mapping"),
]


@pytest.mark.parametrize(("name", "text", "match"), HOSTILE_TEXT, ids=[c[0] for c in HOSTILE_TEXT])
def test_hostile_yaml_refused_before_building(tmp_path: Path, name: str, text: str, match: str) -> None:
    import resource
    import time

    path = _write(tmp_path, text)
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    t0 = time.perf_counter()
    with pytest.raises(CalibrationError, match=match) as info:
        load_calibration(path)
    assert time.perf_counter() - t0 < 2.0
    assert resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before < 200_000  # KiB: no expansion
    message = str(info.value)
    assert message.startswith(str(path)) and "\n" not in message and len(message) < 400


def test_non_utf8_file_is_one_line_error(tmp_path: Path) -> None:
    path = tmp_path / "latin1.yaml"
    path.write_bytes("camera_notes: 'caf\u00e9'\n".encode("latin-1"))
    with pytest.raises(CalibrationError, match=r"not UTF-8 text \(byte 0xe9 at offset 18\)"):
        load_calibration(path)


def test_directory_is_one_line_error(tmp_path: Path) -> None:
    with pytest.raises(CalibrationError, match="cannot read"):
        load_calibration(tmp_path)


BIG = 10**400
BAD_FIELDS = [
    (("origin_px",), "ab", r"origin_px: expected \[x, y\], got 'ab'"),
    (("origin_px",), [480], r"origin_px: expected \[x, y\]"),
    (("origin_px",), [480, BIG], r"origin_px\[1\]: 1000000.* out of range"),
    (("origin_px",), [480.0, 100.0], "origin_px.*above the horizon"),
    (("origin_px",), [float("nan"), 540], r"origin_px\[0\].*finite"),
    (("origin_ahead_m",), BIG, "origin_ahead_m.*out of range"),
    (("origin_ahead_m",), 1e308, r"origin_ahead_m: 1e\+308 outside"),
    (("origin_ahead_m",), True, "origin_ahead_m: expected a finite number, got True"),
    (("image_size",), [BIG, 540], "image_size: expected"),
    (("image_size",), [960.5, 540], "image_size: expected"),
    (("bev_size",), [0, 1400], "bev_size: expected"),
    (("k_x_m_per_px",), -0.05, r"k_x_m_per_px: -0.05 outside \(0"),
    (("k_x_m_per_px",), float("inf"), "k_x_m_per_px: expected a finite number"),
    (("schema_version",), True, "schema_version is True"),
    (("source_points_px",), [[422.4, 345.0]] * 3, "source_points_px: expected a list of 4"),
    (("source_points_px",), [[422.4, 345.0]] * 4, "source_points_px: points 0 and 1 are repeated"),
    (("source_points_px",), "abc", "source_points_px: expected a list of 4"),
    (("source_points_px", 2), ["ab", 1], r"source_points_px\[2\]\[0\]: expected a finite number, got 'ab'"),
    (("source_points_px", 2), [1e308, -1e308], r"source_points_px\[2\]\[0\]: 1e\+308 outside"),
    (("source_points_px",), [[300, 300], [600, 300], [620, 520], [280, 520]], "horizon lies outside"),
    (("bev_points_px",), [[0, 0], [10, 10], [20, 20], [30, 30]], "bev_points_px: three points are collinear"),
    (("reference_pairs",), [], r"reference_pairs: expected a list of 2\.\.1000 pairs, got 0 items"),
    (("reference_pairs",), "lol" * 10_000, "reference_pairs: expected a list"),
    (("reference_pairs", 0, "a_bev_px"), [-1e308, 0], r"reference_pairs\[0\]\.a_bev_px\[0\]"),
    (("reference_pairs", 0, "distance_m"), float("nan"), r"reference_pairs\[0\]\.distance_m"),
    (("reference_pairs", 0, "distance_m"), "3.7", r"reference_pairs\[0\]\.distance_m: expected a finite"),
    (("reference_pairs", 0, "colour"), "red", r"reference_pairs\[0\]: unknown field"),
    (("reference_pairs", 0), ["x" * 10_000], r"reference_pairs\[0\]: needs"),
    (("camera_notes",), ["a", "list"], "camera_notes: expected text"),
]


class _NoAliasDumper(yaml.SafeDumper):
    def ignore_aliases(self, data) -> bool:  # repeated test values must not become anchors
        return True


@pytest.mark.parametrize(("key_path", "value", "match"), BAD_FIELDS,
                         ids=[f"{'.'.join(map(str, c[0]))}-{i}" for i, c in enumerate(BAD_FIELDS)])
def test_bad_field_names_the_key(tmp_path: Path, key_path: tuple, value, match: str) -> None:
    path = tmp_path / "cal.yaml"
    path.write_text(yaml.dump(_with(key_path, value), Dumper=_NoAliasDumper, width=10**6), encoding="utf-8")
    with pytest.raises(CalibrationError, match=match) as info:
        load_calibration(path)
    message = str(info.value)
    assert message.startswith(str(path)) and "\n" not in message and len(message) < 400


def test_reference_pairs_along_one_axis_is_calibration_error(tmp_path: Path) -> None:
    data = _good()
    data["reference_pairs"] = [{"a_bev_px": [113, y], "b_bev_px": [113, y - 230], "distance_m": 12.19}
                               for y in (1300, 1000, 700)]
    with pytest.raises(CalibrationError, match="reference_pairs: pairs must include one across"):
        load_calibration(_write(tmp_path, data))


def test_origin_above_horizon_refused_by_from_points(shipped: Calibration) -> None:
    with pytest.raises(CalibrationError, match="origin_px.*above the horizon"):
        Calibration.from_points(
            image_size_wh=shipped.image_size_wh, source_points_px=shipped.view.image_points_px,
            bev_points_px=shipped.view.bev_points_px, bev_size_wh=shipped.view.bev_size_wh,
            reference_pairs=shipped.reference_pairs, origin_px=(480.0, 50.0))
