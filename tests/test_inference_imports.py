"""The calibration/quantisation/TensorRT modules import each other in one direction only (no cycle),
counting function-level (lazy) imports too, so the inference package can be split into build and run sides."""

from __future__ import annotations

import ast
from pathlib import Path

import aeb_app.inference

PACKAGE = Path(aeb_app.inference.__file__).parent
MODULES = ("calibration_data", "calibration_cache", "quantize", "qdq_placement", "tensorrt_backend", "trt_api",
           "trt_calibrator", "trt_compat", "torch2trt_backend", "torch2trt_check")


def _imports(name: str) -> set[str]:
    tree = ast.parse((PACKAGE / f"{name}.py").read_text(encoding="utf-8"))
    found = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("aeb_app.inference."):
            found.add(node.module.rsplit(".", 1)[1])
        elif isinstance(node, ast.ImportFrom) and node.module == "aeb_app.inference":
            found.update(a.name for a in node.names)
    return found & set(MODULES)


def test_no_import_cycle_between_calibration_quantize_and_tensorrt():
    graph = {m: _imports(m) for m in MODULES}
    assert "tensorrt_backend" not in graph["calibration_data"] and "quantize" not in graph["calibration_data"]
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
