"""The run side: backends that load an artifact (or a network) and run it behind the
:class:`~aeb_app.inference.base.Detector` interface (PyTorch, ONNX Runtime, TensorRT runtime,
AOTInductor package runner, 8-bit GEMM ``lowp``), plus CUDA Graph replay and the GPU frame path.

Modules here never import :mod:`aeb_app.inference.build` (neither at module level nor inside a
function): a backend that finds no artifact asks :func:`aeb_app.inference.registry.build_artifact`,
the one door to the build side, which logs that it builds. tests/test_import_graph.py checks it.
"""
