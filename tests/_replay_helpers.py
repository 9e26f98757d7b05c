"""Shared fixtures of the replay tests (not a test module): six short clips cut from the sample video,
the replay options that give warnings on them, and the in-process replay every other run is checked against."""

from __future__ import annotations

import shutil
from pathlib import Path

import cv2
import pytest

from aeb_app.geometry.calibration import shipped_calibration
from aeb_app.replay.executor import ReplayRun, run_in_process
from aeb_app.replay.inputs import CalibrationChoice, plan_recordings
from aeb_app.replay.types import ReplayOptions
from aeb_app.safety import WarningConfig, ZoneConfig
from tests._inference_helpers import shared_engines

#: (name, first frame, frames) of the cuts; clip_a_copy is a byte copy of clip_a. With SENSITIVE
#: below every cut warns (slowly closing cars up to 100 m ahead in a 12 m wide zone).
CUTS = (("clip_a", 0, 30), ("clip_b", 75, 30), ("clip_c", 90, 30), ("clip_d", 120, 30), ("clip_e", 150, 30))
#: Deliberately sensitive settings (the defaults warn on none of the cuts): a 12 m wide, 100 m long zone, a 100 s
#: CAUTION threshold, and the warning logic's confirmations off (cue agreement, closing trend, track age, debounce).
SENSITIVE = {"warning.caution_ttc_s": "100", "warning.min_closing_mps": "0.01", "warning.min_track_age_s": "0.04",
             "warning.on_s": "0", "warning.require_agreement": "false", "warning.agree_ttc_s": "1000",
             "warning.closing_sigmas": "0", "warning.require_closing_trend": "false", "zone.lane_width_m": "12",
             "zone.fixed_length_m": "100"}
CALIBRATION = shipped_calibration()


def cli_overrides(settings: dict[str, str]) -> list[str]:
    return [arg for key, value in settings.items() for arg in ("--set", f"{key}={value}")]


def make_clips(video: Path, folder: Path) -> list[Path]:
    """Cut :data:`CUTS` out of ``video`` (mp4v) into ``folder``, plus a byte copy of the first."""
    folder.mkdir(parents=True, exist_ok=True)
    cap = cv2.VideoCapture(str(video))
    frames = []
    while len(frames) < max(start + n for _, start, n in CUTS):
        ok, frame = cap.read()
        assert ok, f"{video}: could not read frame {len(frames)}"
        frames.append(frame)
    cap.release()
    paths = []
    for name, start, count in CUTS:
        path = folder / f"{name}.mp4"
        writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), 25.0, (960, 540))
        for frame in frames[start:start + count]:
            writer.write(frame)
        writer.release()
        paths.append(path)
    paths.insert(1, Path(shutil.copy(paths[0], folder / "clip_a_copy.mp4")))
    return paths


@pytest.fixture(scope="session")
def clips(sample_video: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A folder of six short recordings."""
    folder = tmp_path_factory.mktemp("clips")
    make_clips(sample_video, folder)
    return folder


@pytest.fixture(scope="session")
def sensitive_options(tmp_path_factory: pytest.TempPathFactory) -> ReplayOptions:
    return ReplayOptions(mode="fp32_ort", engines_dir=str(shared_engines(tmp_path_factory)),
                         warning=WarningConfig(caution_ttc_s=100.0, min_closing_mps=0.01, min_track_age_s=0.04,
                                               on_s=0.0, require_agreement=False, agree_ttc_s=1000.0,
                                               closing_sigmas=0.0, require_closing_trend=False),
                         zone=ZoneConfig(lane_width_m=12.0, fixed_length_m=100.0))


@pytest.fixture(scope="session")
def reference(clips: Path, sensitive_options: ReplayOptions,
              tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, ReplayRun]:
    """The in-process replay of the six clips with the sensitive settings: (its folder, its run)."""
    out = tmp_path_factory.mktemp("replay-reference")
    specs = plan_recordings([str(clips)], CalibrationChoice.single(CALIBRATION), sensitive_options)
    return out, run_in_process(specs, out, sensitive_options)
