"""COCO mAP of the 8-bit GPU modes' arithmetic (simulated on any device) against FP32.

Calibration images (the seeded draw ``aeb-app quantize`` makes) are disjoint from the held-out
images that the headline figure is scored on, as in docs/int8.md.

Usage: ``python -m aeb_app.bench.lowp_accuracy --model M --coco-dir DIR [--engines-dir engines]
[--num-images 100] [--modes fp8_sim,int8_sim] [--device cpu] --json OUT``
"""

from __future__ import annotations

import argparse
import json
import logging
import tempfile
from dataclasses import dataclass
from pathlib import Path

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class LowpAccuracy:
    """mAP@[.5:.95] (and AP50) per mode, on all images and on the held-out ones."""

    model: str
    calibration: str
    num_images_all: int
    num_images_held_out: int
    map_all: dict[str, tuple[float, float]]
    map_held_out: dict[str, tuple[float, float]]

    def delta_points(self, mode: str, reference: str = "fp32", held_out: bool = True) -> float:
        table = self.map_held_out if held_out else self.map_all
        return round(100 * (table[mode][0] - table[reference][0]), 2)


def evaluate_lowp(loaded, coco_dir: Path, *, engines_dir: Path, config, modes=("fp8_sim", "int8_sim"),
                  device: str = "cpu", qdq_path: Path | None = None,
                  subsets: tuple[str, ...] = ("all", "held_out")) -> LowpAccuracy:
    """FP32 and each 8-bit mode on all images and on the images not used for calibration.

    Args:
        loaded: a real-weight model.
        coco_dir: COCO folder (images + annotations).
        engines_dir: where the Q/DQ calibration is (made by ``quantize_model`` if missing).
        config: :class:`~aeb_app.inference.build.quantize.QuantizeConfig` (images, seed, method).
        modes: modes to score next to ``fp32``.
        device: ``cpu`` for the simulations; ``cuda`` for ``fp8_gpu``/``int8_gpu``.
        qdq_path: a Q/DQ model to use instead of making/finding one.
        subsets: ``all`` and/or ``held_out`` (the images not used for calibration).
    """
    from aeb_app.bench.coco_eval import evaluate_detector, find_annotations
    from aeb_app.bench.coco_eval import held_out_annotations
    from aeb_app.inference.build.calibration import select_images
    from aeb_app.inference.build.quantize import quantize_model
    from aeb_app.inference.registry import create

    qdq_path = qdq_path or _existing_calibration(loaded, engines_dir, config) or \
        quantize_model(loaded, coco_dir, engines_dir=engines_dir, config=config)
    annotations = find_annotations(Path(coco_dir))
    calib_names = {p.name for p in select_images(coco_dir, config.num_images, config.seed)}
    tables: dict[str, dict[str, tuple[float, float]]] = {"all": {}, "held_out": {}}
    counts = {}
    with tempfile.TemporaryDirectory(prefix="aeb-lowp-") as tmp:
        held_out = held_out_annotations(annotations, calib_names, Path(tmp) / "held_out.json")
        for mode in ("fp32", *modes):
            extra = {} if mode == "fp32" else {"calibration": qdq_path}
            with create(loaded, mode, device=device, **extra) as det:
                for subset, ann in ((k, a) for k, a in (("all", annotations), ("held_out", held_out)) if k in subsets):
                    res = evaluate_detector(det, Path(coco_dir), annotations=ann)
                    tables[subset][mode] = (round(res["map"], 4), round(res["map50"], 4))
                    counts[subset] = res["num_images"]
            log.info("%s: %s", mode, {k: v[mode] for k, v in tables.items() if mode in v})
    return LowpAccuracy(loaded.spec.name, f"{config.tag} ({Path(qdq_path).name})", counts.get("all", 0),
                        counts.get("held_out", 0), tables["all"], tables["held_out"])


def _existing_calibration(loaded, engines_dir: Path, config) -> Path | None:
    """A Q/DQ model already in ``engines_dir`` made from the same image draw (no ONNX export needed:
    a GPU machine can score with a calibration made elsewhere)."""
    from aeb_app.inference.artifacts import cached_sidecar, find_qdq_model

    found = find_qdq_model(loaded, engines_dir)
    side = cached_sidecar(found) if found else None
    calib = side.details.get("calibration", {}) if side else {}
    same = all(calib.get(k) == v for k, v in (("num_images", config.num_images), ("seed", config.seed),
                                                ("method", config.method)))
    return found if found and same else None


def main(argv: list[str] | None = None) -> None:
    from dataclasses import asdict

    from aeb_app.atomic import write_text
    from aeb_app.inference.build.quantize import QuantizeConfig
    from aeb_app.model.registry import load_model

    p = argparse.ArgumentParser(prog="python -m aeb_app.bench.lowp_accuracy", description=__doc__.split("\n")[0])
    p.add_argument("--model", required=True)
    p.add_argument("--coco-dir", type=Path, required=True)
    p.add_argument("--engines-dir", type=Path, default=Path("engines"))
    p.add_argument("--num-images", type=int, default=100)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--modes", default="fp8_sim,int8_sim")
    p.add_argument("--device", default="cpu")
    p.add_argument("--json", type=Path, required=True)
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    modes = tuple(m.strip() for m in args.modes.split(",") if m.strip())
    result = evaluate_lowp(load_model(args.model), args.coco_dir, engines_dir=args.engines_dir,
                           config=QuantizeConfig(num_images=args.num_images, seed=args.seed), modes=modes,
                           device=args.device)
    report = {**asdict(result), "delta_points_held_out": {m: result.delta_points(m) for m in modes},
              "delta_points_all": {m: result.delta_points(m, held_out=False) for m in modes}}
    write_text(args.json, json.dumps(report, indent=1) + "\n")
    log.info("wrote %s: %s", args.json, report["delta_points_held_out"])


if __name__ == "__main__":
    main()
