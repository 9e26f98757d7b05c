"""Static name tables for argument parsing and validation: no torch, numpy, OpenCV or Qt here.

``aeb-app ... --help`` or a bad option must answer at once, so the CLI's ``choices`` come from these
tables, not from the registries that build networks or backends. Each registry checks itself against
its table when imported (:mod:`aeb_app.model.registry`, :mod:`aeb_app.inference.registry`), and
tests/test_cli_light.py asserts they are equal.
"""

from __future__ import annotations

#: Detector models, in the order ``--help`` lists them (keys of ``aeb_app.model.registry``'s loaders).
MODEL_NAMES: tuple[str, ...] = ("ssd_mobilenet_v1", "ssd300_resnet50", "ssdlite_mobilenet_v2")

#: Inference modes (backend + precision), in ``aeb_app.inference.registry.MODES`` order.
MODE_NAMES: tuple[str, ...] = (
    "int8_trt", "fp16_trt", "fp32_trt",
    "fp16", "fp32", "bf16", "fp16_graph", "fp16_fused",
    "fp16_compiled", "bf16_compiled", "fp32_compiled",
    "fp16_aoti",
    "fp32_ort", "int8_ort",
    "fp8_gpu", "int8_gpu", "fp8_sim", "int8_sim",
)

#: INT8 calibration methods of ``aeb-app quantize --method`` (``aeb_app.inference.build.quantize``).
CALIBRATION_METHODS: tuple[str, ...] = ("entropy", "minmax", "percentile")

#: Where the GPU frame path decodes JPEG batches (``aeb_app.inference.run.split_decode``).
JPEG_DECODE_PLACES: tuple[str, ...] = ("gpu", "host", "split")

#: What decodes JPEGs on the GPU (``aeb_app.inference.run.hardware_jpeg``).
JPEG_DEVICE_DECODERS: tuple[str, ...] = ("nvjpeg", "nvimgcodec")

#: How the GPU frame path resizes device images (``aeb_app.inference.run.gpu_frames.RESIZE_METHODS``).
GPU_RESIZE_METHODS: tuple[str, ...] = ("interpolate", "matmul")

#: File suffixes read as still images (``aeb_app.images``), lower case.
IMAGE_SUFFIXES = frozenset({".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff"})

#: ``--mode`` also takes this: walk the fallback order (:data:`aeb_app.defaults.DEFAULT_MODE`).
AUTO = "auto"


def check_registry(kind: str, table: tuple[str, ...], keys) -> None:
    """Raise ``ImportError`` when a registry's names differ from its static table (a developer error:
    a model or mode added in one place only)."""
    if tuple(keys) != table:
        raise ImportError(f"aeb_app.names: the {kind} table {table} differs from the registry's {tuple(keys)}; "
                          "update aeb_app/names.py")
