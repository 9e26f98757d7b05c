"""The calibration/quantisation/TensorRT modules import each other in one direction only (no cycle),
counting function-level (lazy) imports too, so the inference package can be split into build and run sides."""

from __future__ import annotations

import ast
from pathlib import Path

import aeb_app.inference

PACKAGE = Path(aeb_app.inference.__file__).parent
MODULES = ("build.calibration", "build.calibration_cache", "build.quantize", "build.qdq_placement",
           "build.trt_build", "run.tensorrt_backend", "trt_api", "build.trt_calibrator", "build.trt_compat",
           "build.torch2trt", "build.torch2trt_check", "artifacts")


def _imports(name: str) -> set[str]:
    tree = ast.parse((PACKAGE / f"{name.replace('.', '/')}.py").read_text(encoding="utf-8"))
    found = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("aeb_app.inference."):
            found.add(node.module.removeprefix("aeb_app.inference."))
            found.update(f"{node.module.removeprefix('aeb_app.inference.')}.{a.name}" for a in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module == "aeb_app.inference":
            found.update(a.name for a in node.names)
    return found & set(MODULES)


def test_no_import_cycle_between_calibration_quantize_and_tensorrt():
    graph = {m: _imports(m) for m in MODULES}
    assert "build.trt_build" not in graph["build.calibration"] and "build.quantize" not in graph["build.calibration"]
    state: dict[str, int] = {}

    def visit(node: str, path: list[str]) -> None:
        state[node] = 1
        for nxt in graph[node]:
            assert state.get(nxt) != 1, f"import cycle: {' -> '.join(path + [node, nxt])}"
            if nxt not in state:
                visit(nxt, path + [node])
        state[node] = 2

    for module in MODULES:
        if module not in state:
            visit(module, [])
