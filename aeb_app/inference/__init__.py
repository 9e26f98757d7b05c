"""Detectors behind one interface, split like Polygraphy into a build side and a run side.

Layout (dependencies point down; the run side never imports the build side)::

    registry.py    the front door: modes by name, create / create_with_fallback, and
                   build_artifact(), the one door from running to building (lazy, logged)
    base.py        the Detector interface (activate / infer / deactivate) and DetectorInfo
    artifacts.py   the one artifact cache (engines/ paths, hashes, look-ups) and the one sidecar
                   contract (Sidecar, written atomically beside every artifact, validated on read)
    trt_api.py     lazy ``import tensorrt``, versions, tensor names, machine_info (both sides)
    build/         makes artifacts: export (ONNX), quantize + qdq_placement (INT8 Q/DQ),
                   calibration + calibration_cache (calibration images and ranges cache),
                   trt_build + trt_calibrator + trt_compat (TensorRT engines), torch2trt
                   (+ torch2trt_check), compile (AOTInductor packages)
    run/           runs them: torch_backend, onnxrt_backend, tensorrt_backend, compiled_backend,
                   lowp_backend + lowp (8-bit GEMMs), cuda_graph, gpu_frames
"""
