"""Small validated value types shared by every layer (no torch, no Qt)."""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Sequence

import numpy as np
import numpy.typing as npt

if TYPE_CHECKING:  # types is the bottom layer: the AEB state type is only named, never imported at run time
    from aeb_app.safety.logic import AebFrameState

__all__ = ["Detections", "WarningLevel", "FrameResult", "StageTimes"]


@dataclass(frozen=True)
class Detections:
    """Detections of one image, as parallel arrays.

    Attributes:
        xyxy_px: (n, 4) float32 boxes ``x1, y1, x2, y2`` in pixels of the original frame.
        scores: (n,) float32 confidences in [0, 1].
        category_ids: (n,) int64 COCO category ids (1..90, the official ids).
        names: tuple of n class names, aligned with ``category_ids``.
    """

    xyxy_px: npt.NDArray[np.float32]
    scores: npt.NDArray[np.float32]
    category_ids: npt.NDArray[np.int64]
    names: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        xyxy = np.asarray(self.xyxy_px, dtype=np.float32).reshape(-1, 4)
        scores = np.asarray(self.scores, dtype=np.float32).reshape(-1)
        ids = np.asarray(self.category_ids, dtype=np.int64).reshape(-1)
        n = len(xyxy)
        names = tuple(self.names) if self.names else ()
        if len(scores) != n or len(ids) != n or (names and len(names) != n):
            raise ValueError(
                f"Detections arrays disagree in length: boxes {n}, scores {len(scores)}, "
                f"ids {len(ids)}, names {len(names)}"
            )
        if not np.isfinite(xyxy).all() or not np.isfinite(scores).all():
            raise ValueError("Detections contain NaN or infinite values")
        if n and ((xyxy[:, 2] < xyxy[:, 0]).any() or (xyxy[:, 3] < xyxy[:, 1]).any()):
            raise ValueError("Detections boxes must satisfy x2 >= x1 and y2 >= y1")
        object.__setattr__(self, "xyxy_px", xyxy)
        object.__setattr__(self, "scores", scores)
        object.__setattr__(self, "category_ids", ids)
        object.__setattr__(self, "names", names if names else tuple("" for _ in range(n)))

    @classmethod
    def empty(cls) -> "Detections":
        return cls(np.zeros((0, 4), np.float32), np.zeros(0, np.float32), np.zeros(0, np.int64))

    def __len__(self) -> int:
        return len(self.scores)

    def __getitem__(self, index: npt.NDArray[np.bool_] | npt.NDArray[np.integer] | slice) -> "Detections":
        """Boolean-mask or integer-array indexing, like numpy."""
        idx = np.arange(len(self))[index]
        return Detections(
            self.xyxy_px[idx], self.scores[idx], self.category_ids[idx], tuple(self.names[i] for i in idx)
        )

    @property
    def ground_points_px(self) -> npt.NDArray[np.float32]:
        """(n, 2) bottom-centre of each box: where the object touches the road."""
        x = (self.xyxy_px[:, 0] + self.xyxy_px[:, 2]) / 2
        return np.stack([x, self.xyxy_px[:, 3]], axis=1).astype(np.float32)

    def to_json(self) -> list[dict]:
        """A JSON-ready list of ``{bbox_xyxy, score, category_id, name}``."""
        return [
            {
                "bbox_xyxy": [round(float(v), 2) for v in box],
                "score": round(float(s), 4),
                "category_id": int(c),
                "name": n,
            }
            for box, s, c, n in zip(self.xyxy_px, self.scores, self.category_ids, self.names)
        ]


class WarningLevel(enum.IntEnum):
    """Warning levels, ordered by priority (highest wins)."""

    NONE = 0
    CAUTION = 1
    BRAKE = 2
    UNAVAILABLE = 3  # stale/failed frame: never treated as "all clear"


@dataclass
class StageTimes:
    """Per-stage latency of one frame, in milliseconds."""

    decode_ms: float = 0.0
    preprocess_ms: float = 0.0
    inference_ms: float = 0.0
    postprocess_ms: float = 0.0
    geometry_ms: float = 0.0
    render_ms: float = 0.0

    @property
    def total_ms(self) -> float:
        return (
            self.decode_ms + self.preprocess_ms + self.inference_ms
            + self.postprocess_ms + self.geometry_ms + self.render_ms
        )

    @property
    def decision_ms(self) -> float:
        """From "frame decoded" to "warning decided" when the steps run one after the other (the window's
        worker): pre-processing, inference, post-processing and the AEB logic; decoding and drawing excluded."""
        return self.preprocess_ms + self.inference_ms + self.postprocess_ms + self.geometry_ms


@dataclass
class FrameResult:
    """Everything the pipeline knows about one frame, from decoding to the warning decision.

    Attributes:
        frame_index: index in the stream.
        timestamp_s: frame time, seconds.
        detections: the detector's output, or None when the frame failed (decode, validity, inference).
        times: per-stage latency.
        error: why the frame failed, or None.
        level: the frame's debounced warning level; UNAVAILABLE unless the AEB logic decided one.
        reason: why the level is UNAVAILABLE, else "".
        state: the AEB logic's state for this frame (tracks, zone, TTCs), or None without calibration.
        frame: the decoded BGR frame (h, w, 3) uint8, or None when it failed.
        annotated: the frame with overlays (BGR uint8), when the pipeline renders.
        bev: the bird's-eye-view panel (BGR uint8), when the pipeline renders.
    """

    frame_index: int
    timestamp_s: float
    detections: Detections | None
    times: StageTimes = field(default_factory=StageTimes)
    error: str | None = None
    level: WarningLevel = WarningLevel.UNAVAILABLE
    reason: str = ""
    state: "AebFrameState | None" = None
    frame: npt.NDArray[np.uint8] | None = None
    annotated: npt.NDArray[np.uint8] | None = None
    bev: npt.NDArray[np.uint8] | None = None

    @property
    def ok(self) -> bool:
        return self.error is None and self.detections is not None


def as_float_array(values: Sequence[float] | npt.ArrayLike, *, name: str) -> npt.NDArray[np.float64]:
    """Convert to a finite float64 array or raise ``ValueError`` naming ``name``."""
    arr = np.asarray(values, dtype=np.float64)
    if not np.isfinite(arr).all():
        raise ValueError(f"{name} contains NaN or infinite values: {arr.tolist()}")
    return arr
