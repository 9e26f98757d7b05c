"""aeb_app: COCO SSD detectors deployed on NVIDIA GPUs, and an AEB warning demo on dashcam video."""

__version__ = "0.1.0"
