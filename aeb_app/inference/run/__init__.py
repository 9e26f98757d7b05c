"""The run side: backends that load an artifact (or a network) and run it behind the
:class:`~aeb_app.inference.base.Detector` interface (PyTorch, ONNX Runtime, TensorRT runtime,
AOTInductor package runner, 8-bit GEMM ``lowp``), plus CUDA Graph replay and the GPU frame path.

Modules here import :mod:`aeb_app.inference.build` only inside functions, never at module level
(tests/test_import_graph.py checks it).
"""
