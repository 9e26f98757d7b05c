"""Shared fixtures. Tests that need the real data mirror fail loudly when it is missing."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
DEFAULT_MIRROR = REPO.parent / "shared" / "data"


def _mirror() -> Path:
    return Path(os.environ.get("AEB_APP_DATA_MIRROR", str(DEFAULT_MIRROR))).resolve()


@pytest.fixture(scope="session")
def data_dir() -> Path:
    """The asset mirror (``$AEB_APP_DATA_MIRROR``, default ``../shared/data``); fails if absent."""
    path = _mirror()
    if not (path / "SHA256SUMS").is_file():
        pytest.fail(f"data mirror not found at {path}: set AEB_APP_DATA_MIRROR to a copy of shared/data")
    return path


@pytest.fixture(scope="session")
def coco_dir(data_dir: Path) -> Path:
    return data_dir / "coco" / "val2017_subset"


@pytest.fixture(scope="session")
def sample_video(data_dir: Path) -> Path:
    return data_dir / "videos" / "udacity" / "solidWhiteRight.mp4"


@pytest.fixture(scope="session")
def tflite_path(data_dir: Path) -> Path:
    return data_dir / "models" / "coco_ssd_mobilenet_v1_1.0_quant_2018_06_29" / "detect.tflite"


@pytest.fixture(autouse=True, scope="session")
def _env(data_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> None:
    """Point the app at the mirror, a throwaway cache, and an offscreen Qt platform."""
    os.environ["AEB_APP_DATA_MIRROR"] = str(data_dir)
    # Forced, not setdefault: the suite never writes into a user's cache or the checkout's engines/.
    os.environ["AEB_APP_CACHE_DIR"] = str(tmp_path_factory.mktemp("cache"))
    os.environ.pop("AEB_APP_ENGINES_DIR", None)
    os.environ.pop("TORCHINDUCTOR_CACHE_DIR", None)
    os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")


@pytest.fixture(scope="module")
def mobilenet():
    """The real ssd_mobilenet_v1 (TFLite weights from the mirror), loaded once per test module."""
    from aeb_app.model.registry import load_model

    return load_model("ssd_mobilenet_v1")


@pytest.fixture(scope="module")
def coco_jpegs(coco_dir: Path) -> list[Path]:
    """The first 12 COCO images of the mirror's subset (real JPEGs of mixed sizes)."""
    paths = sorted((coco_dir / "val2017").glob("*.jpg"))[:12]
    assert len(paths) == 12, f"{coco_dir}: expected COCO images"
    return paths


@pytest.fixture(scope="session")
def clip_outputs(data_dir, coco_dir):
    """(spec, [(boxes, scores)]): decoded network outputs of real frames (COCO photos, a dashcam still, clip frames)."""
    import cv2

    from aeb_app.inference import registry
    from aeb_app.model.preprocess import resize_batch
    from aeb_app.model.registry import load_model
    from tests._inference_helpers import real_frames

    frames = real_frames(data_dir, coco_dir)
    cap = cv2.VideoCapture(str(data_dir / "videos" / "udacity" / "solidWhiteRight.mp4"))
    for _ in range(3):
        ok, frame = cap.read()
        assert ok, "cannot read the sample clip"
        frames.append(frame)
    cap.release()
    with registry.create(load_model("ssd_mobilenet_v1"), "fp32", device="cpu") as det:
        return det.spec, [det.run_decoded(resize_batch([f], det.spec)) for f in frames]
