"""Model registry: name -> (ModelSpec, network with loaded weights).

Every network's ``forward(x)`` takes a normalised float NCHW batch and returns
``(encoded boxes (N, A, 4), logits (N, A, C))``; :class:`DetectionNet` appends the shared
:class:`~aeb_app.model.postprocess.DecodeHead` so a backend (or an ONNX export) returns
decoded ``(boxes xyxy normalised, probabilities)``.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

from torch import nn

from aeb_app import names
from aeb_app.errors import ModelLoadError
from aeb_app.model.postprocess import DecodeHead
from aeb_app.model.spec import ModelSpec

log = logging.getLogger(__name__)

#: The static table the CLI parses with (checked against :data:`_LOADERS` below).
MODEL_NAMES = names.MODEL_NAMES

#: Weights: "auto" (the asset from mirror/cache), "random" (speed work only), or a file path.
RANDOM = "random"


@dataclass
class LoadedModel:
    spec: ModelSpec
    network: nn.Module
    weights: str  # where the weights came from: a path, or "random"


class DetectionNet(nn.Module):
    """Network + decoding: normalised NCHW -> (boxes (N, A, 4) xyxy in [0, 1], scores (N, A, C))."""

    def __init__(self, network: nn.Module, spec: ModelSpec) -> None:
        super().__init__()
        self.network = network
        self.decode = DecodeHead(spec)

    def forward(self, x):
        encoded, logits = self.network(x)
        return self.decode(encoded, logits)


def load_model(name: str, weights: str | Path = "auto") -> LoadedModel:
    """Build a model in eval mode on the CPU with its weights.

    Raises:
        ModelLoadError: unknown name, or missing/corrupt weights (never silently random).
    """
    loader = _LOADERS.get(name)
    if loader is None:
        raise ModelLoadError(f"unknown model {name!r}; choose one of {', '.join(MODEL_NAMES)}")
    return loader(weights)


def _load_mobilenet_v1(weights: str | Path) -> LoadedModel:
    from aeb_app.model.mobilenet_v1 import build_ssd_mobilenet_v1

    name = "ssd_mobilenet_v1"
    if weights == RANDOM:
        raise ModelLoadError(f"{name}: weights come from its TFLite file; 'random' is not offered")
    path = _weights_path(name, weights)
    spec, network = build_ssd_mobilenet_v1(path)
    return LoadedModel(spec, network.eval(), str(path))


def _load_ssd300(weights: str | Path) -> LoadedModel:
    import torch

    from aeb_app.model.ssd300 import SSD300, init_random_like_trained, load_nvidia_checkpoint, ssd300_spec

    with torch.random.fork_rng():
        # Seeded: "random" weights are the same in every process, so packages and engines
        # built from them keep one cache key.
        torch.manual_seed(0)
        ssd = SSD300()
    if weights == RANDOM:
        log.warning("ssd300_resnet50 with RANDOM weights: for speed measurements only")
        init_random_like_trained(ssd.eval())
        return LoadedModel(ssd300_spec(), ssd.eval(), RANDOM)
    path = _weights_path("ssd300_resnet50", weights)
    load_nvidia_checkpoint(ssd, path)
    return LoadedModel(ssd300_spec(), ssd.eval(), str(path))


def _load_ssdlite(weights: str | Path) -> LoadedModel:
    """The TF.js graph model: ``weights`` is its model.json (shards beside it) or "auto"."""
    from aeb_app.model.ssdlite_mobilenet_v2 import build_ssdlite_mobilenet_v2

    name = "ssdlite_mobilenet_v2"
    if weights == RANDOM:
        raise ModelLoadError(f"{name}: weights come from its TF.js graph model; 'random' is not offered")
    if weights == "auto":
        from aeb_app import assets
        from aeb_app.errors import AssetError

        try:
            # Resolve (and so verify) every shard, not only model.json.
            paths = [assets.resolve(name, Path(f.path).name) for f in assets.get_asset(name).files]
        except AssetError as exc:
            raise ModelLoadError(f"{name}: {exc}") from exc
        if len({p.parent for p in paths}) != 1:
            raise ModelLoadError(f"{name}: model.json and its shards are in different folders {sorted({str(p.parent) for p in paths})}")
        path = paths[0]
    else:
        path = _weights_path(name, weights)
    spec, network = build_ssdlite_mobilenet_v2(path)
    return LoadedModel(spec, network.eval(), str(path))


def _weights_path(name: str, weights: str | Path) -> Path:
    if weights != "auto":
        path = Path(weights)
        if not path.is_file():
            raise ModelLoadError(f"{path}: weights file for {name} not found")
        return path
    from aeb_app import assets
    from aeb_app.errors import AssetError

    try:
        return assets.resolve(name)
    except AssetError as exc:
        hint = " (or --weights random for speed work)" if name == "ssd300_resnet50" else ""
        raise ModelLoadError(f"{name}: {exc}{hint}") from exc


#: Model name -> loader taking ``weights`` ("auto", "random" or a path).
_LOADERS = {"ssd_mobilenet_v1": _load_mobilenet_v1, "ssd300_resnet50": _load_ssd300,
            "ssdlite_mobilenet_v2": _load_ssdlite}
names.check_registry("model", MODEL_NAMES, _LOADERS)
