"""The build side: everything that *makes* an artifact in ``engines/`` (ONNX export, INT8 quantisation
and its calibration data/cache, TensorRT engines, torch2trt conversion, AOTInductor packages).

Nothing here is needed to run a detector once its artifact exists; the run side
(:mod:`aeb_app.inference.run`) never imports this package. A backend that finds no
artifact asks for one through :func:`aeb_app.inference.registry.build_artifact`, which logs it.
"""
