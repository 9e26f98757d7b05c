"""What a real detector does to the boxes of the synthetic scene (seeded, pure).

* Gaussian jitter of every box edge (``noise_px``), plus heavy-tailed jumps: with ``outlier_prob`` per
  edge per frame the edge moves by ``outlier_px`` (uniform in that range, random sign), like the
  20-40 px jumps of a box bottom seen on real footage;
* missed detections (``miss_prob`` per object per frame) and false positives (``false_positive_rate``
  per frame: a car-sized box somewhere on the road for one frame);
* class flips (``class_flip_prob`` per object per frame): a car reported as "truck" or "person", as a
  COCO detector does with far or partly seen cars (on the shared dashcam clip 39 of 81 tracks change
  class at least once). They are drawn from a stream of their own, so switching them on or off leaves
  every other artefact of a run as it was;
* a taller vehicle behind the lead is seen only above the lead's roof: its box bottom is the lead's
  roof line (an occlusion edge), whether or not the lead itself was detected in that frame;
* boxes are clipped to the image (truncation at the bottom and the sides).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
import numpy.typing as npt

from aeb_app.errors import ConfigError
from aeb_app.scenarios.synthetic import PinholeCamera, VehicleShape, vehicle_box_px
from aeb_app.types import Detections

if TYPE_CHECKING:
    from aeb_app.scenarios.runner import Scenario

__all__ = ["Artefacts", "detector_view", "VAN"]

CAR_ID = 3
#: What a flipped car is reported as (COCO ids and names).
FLIP_CLASSES = ((8, "truck"), (1, "person"))
#: The vehicle behind the lead: a van, taller than the camera and the lead.
VAN = VehicleShape(width_m=2.0, height_m=2.5, length_m=5.5, rear_overhang_m=1.0)


#: Class flips per detected car and frame in the realistic set.
REALISTIC_CLASS_FLIP_PROB = 0.1


@dataclass(frozen=True)
class Artefacts:
    """Detector artefacts of a scenario run.

    Attributes:
        noise_px: standard deviation of the Gaussian jitter of each box edge, pixels.
        outlier_prob: probability per edge per frame of a heavy-tailed jump.
        outlier_px: (low, high) magnitude of a jump, pixels.
        miss_prob: probability that an object is not detected in a frame.
        false_positive_rate: probability per frame of one spurious car box.
        vehicle_spread: draw the lead's width and rear overhang from typical ranges (per seed) instead
            of the class prior's nominal values, so the prior is never exactly right.
        class_flip_prob: probability that a detected car is reported as another class in a frame.
    """

    noise_px: float = 0.0
    outlier_prob: float = 0.0
    outlier_px: tuple[float, float] = (10.0, 30.0)
    miss_prob: float = 0.0
    false_positive_rate: float = 0.0
    vehicle_spread: bool = False
    class_flip_prob: float = 0.0

    def __post_init__(self) -> None:
        if not self.noise_px >= 0:
            raise ConfigError(f"--noise-px must be >= 0, got {self.noise_px}")
        for name in ("outlier_prob", "miss_prob", "false_positive_rate", "class_flip_prob"):
            if not 0 <= getattr(self, name) < 1:
                raise ConfigError(f"{name} must be in [0, 1), got {getattr(self, name)}")
        low, high = self.outlier_px
        if not 0 <= low <= high:
            raise ConfigError(f"outlier_px must be 0 <= low <= high, got {self.outlier_px}")

    @classmethod
    def realistic(cls, noise_px: float = 2.0, miss_prob: float = 0.1) -> "Artefacts":
        """The issue's acceptance setting: Gaussian + heavy-tailed jitter, misses, false positives,
        vehicle sizes that differ from the prior, class flips."""
        return cls(noise_px=noise_px, outlier_prob=0.03, miss_prob=miss_prob, false_positive_rate=0.05,
                   vehicle_spread=True, class_flip_prob=REALISTIC_CLASS_FLIP_PROB)


def _jitter(box: npt.NDArray[np.float64], a: Artefacts, rng: np.random.Generator,
            camera: PinholeCamera) -> npt.NDArray[np.float64]:
    noisy = box + (rng.normal(0.0, a.noise_px, 4) if a.noise_px > 0 else 0.0)
    if a.outlier_prob > 0:
        jump = rng.random(4) < a.outlier_prob
        noisy = noisy + jump * rng.choice([-1.0, 1.0], 4) * rng.uniform(*a.outlier_px, 4)
    noisy[[0, 2]] = np.clip(np.sort(noisy[[0, 2]]), 0, camera.width_px)
    noisy[[1, 3]] = np.clip(np.sort(noisy[[1, 3]]), 0, camera.height_px)
    return noisy


def _behind(camera: PinholeCamera, scenario: "Scenario", gap_m: float, lead_box: npt.NDArray[np.float64] | None
            ) -> npt.NDArray[np.float64] | None:
    """The visible part of the van behind the lead (above the lead's roof), or None."""
    if scenario.second_gap_m is None:
        return None
    box = vehicle_box_px(camera, lateral_m=scenario.lead_lateral_m,
                         ahead_cam_m=gap_m + camera.setback_m + scenario.second_gap_m, shape=VAN)
    if box is None or lead_box is None:
        return box
    overlap = min(box[2], lead_box[2]) - max(box[0], lead_box[0])
    if overlap > 0 and box[3] > lead_box[1]:
        box = box.copy()
        box[3] = lead_box[1]  # hidden below the lead's roof line
    return box if box[3] - box[1] >= 3 else None


def _false_positive(camera: PinholeCamera, rng: np.random.Generator) -> npt.NDArray[np.float64] | None:
    return vehicle_box_px(camera, lateral_m=float(rng.uniform(-8, 8)), ahead_cam_m=float(rng.uniform(6, 60)))


def detector_view(camera: PinholeCamera, scenario: "Scenario", gap_m: float, lead: VehicleShape,
                  artefacts: Artefacts, rng: np.random.Generator,
                  labels_rng: np.random.Generator | None = None) -> tuple[Detections, int | None]:
    """One frame's detections and the index of the lead's detection in them (None when missed).

    ``labels_rng``: the stream of the class flips (needed when ``artefacts.class_flip_prob`` > 0).
    """
    lead_box = vehicle_box_px(camera, lateral_m=scenario.lead_lateral_m, ahead_cam_m=gap_m + camera.setback_m,
                              shape=lead)
    boxes, scores, lead_index = [], [], None
    candidates = [(lead_box, 0.9, True), (_behind(camera, scenario, gap_m, lead_box), 0.7, False)]
    if artefacts.false_positive_rate > 0 and rng.random() < artefacts.false_positive_rate:
        candidates.append((_false_positive(camera, rng), 0.5, False))
    for box, score, is_lead in candidates:
        if box is None or rng.random() < artefacts.miss_prob:
            continue
        if is_lead:
            lead_index = len(boxes)
        boxes.append(_jitter(box, artefacts, rng, camera))
        scores.append(score)
    if not boxes:
        return Detections.empty(), None
    labels = [_label(artefacts, labels_rng) for _ in boxes]
    return (Detections(np.array(boxes, np.float32), np.array(scores, np.float32),
                       np.array([c for c, _ in labels]), tuple(name for _, name in labels)), lead_index)


def _label(artefacts: Artefacts, labels_rng: np.random.Generator | None) -> tuple[int, str]:
    """A car's reported (COCO id, name): usually "car", another class with ``class_flip_prob``."""
    if artefacts.class_flip_prob > 0 and labels_rng is None:
        raise ValueError("class_flip_prob > 0 needs labels_rng (the class flips' own random stream)")
    if artefacts.class_flip_prob > 0 and labels_rng.random() < artefacts.class_flip_prob:
        return FLIP_CLASSES[int(labels_rng.integers(len(FLIP_CLASSES)))]
    return CAR_ID, "car"
