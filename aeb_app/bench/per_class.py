"""Per-class AP and precision-recall curves from a pycocotools evaluation (pure numpy + matplotlib).

``COCOeval.eval["precision"]`` has shape (T, R, K, A, M): T = 10 IoU thresholds .50:.05:.95,
R = 101 recall points 0:.01:1, K categories (in ``params.catIds`` order), A = 4 area ranges
(all, small, medium, large), M = 3 max-detection settings (1, 10, 100); -1 marks "no ground truth".
Everything here reads area "all" and the largest max-detection setting, as the headline mAP does.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Sequence

import numpy as np
import numpy.typing as npt


@dataclass(frozen=True)
class ClassAP:
    """One category's accuracy. ``ap``/``ap50`` are None when the images hold no instance of it."""

    category_id: int
    name: str
    num_gt: int
    ap: float | None
    ap50: float | None


@dataclass(frozen=True)
class PrCurve:
    """Precision at 101 recall points, averaged over the categories that have ground truth."""

    recall: list[float]
    precision_iou50: list[float]
    precision_iou75: list[float]
    precision_iou50_95: list[float]


def _mean_valid(values: npt.NDArray[np.float64], axis: int | tuple[int, ...]) -> npt.NDArray[np.float64]:
    """Mean over ``axis`` ignoring -1 entries; NaN where all are -1."""
    valid = values > -1
    total = np.where(valid, values, 0.0).sum(axis=axis)
    count = valid.sum(axis=axis)
    return np.divide(total, count, out=np.full(np.shape(total), np.nan), where=count > 0)


def per_class_ap(precision: npt.ArrayLike, cat_ids: Sequence[int], names: dict[int, str],
                 num_gt: dict[int, int]) -> list[ClassAP]:
    """AP@[.5:.95] and AP50 of each category, in ``cat_ids`` order.

    Args:
        precision: the (T, R, K, A, M) array of ``COCOeval.eval["precision"]``.
        cat_ids: COCO category id of each K index (``COCOeval.params.catIds``).
        names: category id -> name.
        num_gt: category id -> number of non-crowd ground-truth boxes in the evaluated images.
    """
    p = np.asarray(precision, np.float64)[:, :, :, 0, -1]  # (T, R, K), area all, most detections
    ap = _mean_valid(p, axis=(0, 1))
    ap50 = _mean_valid(p[0], axis=0)
    out = []
    for k, cid in enumerate(cat_ids):
        none = num_gt.get(cid, 0) == 0 or np.isnan(ap[k])
        out.append(ClassAP(int(cid), names.get(cid, str(cid)), int(num_gt.get(cid, 0)),
                           None if none else float(ap[k]), None if none else float(ap50[k])))
    return out


def pr_curve(precision: npt.ArrayLike, recall_points: npt.ArrayLike) -> PrCurve:
    """Mean precision over categories (with ground truth) at each recall point, for IoU .50, .75, .50:.95."""
    p = np.asarray(precision, np.float64)[:, :, :, 0, -1]  # (T, R, K)
    per_iou = _mean_valid(p, axis=2)  # (T, R); NaN only when no category has ground truth
    mean = per_iou.mean(axis=0)
    clean = lambda a: [round(float(v), 5) if np.isfinite(v) else 0.0 for v in a]  # noqa: E731
    return PrCurve(clean(recall_points), clean(per_iou[0]), clean(per_iou[5]), clean(mean))


def format_table(rows: Sequence[ClassAP]) -> str:
    """A fixed-width table, best AP first; classes without ground truth last, marked ``-``."""
    ranked = sorted(rows, key=lambda r: (r.ap is None, -(r.ap or 0.0), r.category_id))
    lines = [f"{'class':<16} {'id':>3} {'GT':>5} {'AP':>7} {'AP50':>7}"]
    for r in ranked:
        ap = "-" if r.ap is None else f"{r.ap:.4f}"
        ap50 = "-" if r.ap50 is None else f"{r.ap50:.4f}"
        lines.append(f"{r.name:<16} {r.category_id:>3} {r.num_gt:>5} {ap:>7} {ap50:>7}")
    return "\n".join(lines)


def to_json(rows: Sequence[ClassAP]) -> list[dict]:
    return [asdict(r) for r in rows]


def plot_pr_curve(curve: PrCurve, path: Path, *, title: str) -> Path:
    """Write the PR curves (IoU .50, .75, mean .50:.95) as a PNG (matplotlib Agg, atomic)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from aeb_app.atomic import atomic_path

    fig, ax = plt.subplots(figsize=(5.5, 4))
    for values, label in ((curve.precision_iou50, "IoU 0.50"), (curve.precision_iou75, "IoU 0.75"),
                          (curve.precision_iou50_95, "mean IoU 0.50:0.95")):
        ax.plot(curve.recall, values, label=f"{label} (AP {np.mean(values):.3f})")
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1.02)
    ax.set_xlabel("recall")
    ax.set_ylabel("precision (mean over classes)")
    ax.set_title(title, fontsize=9)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=100)
    plt.close(fig)
    return path
