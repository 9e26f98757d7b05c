"""The package's import structure, read from the source with ``ast`` (nothing is imported).

- No cycles among module-level imports (imports inside functions are the lazy ones: allowed to point
  anywhere, since they run after every module is loaded).
- Pure logic (geometry, safety, scenarios, the monitor, the value types) imports no Qt and no GPU or
  inference library at any level, so it runs and is testable anywhere.
- Layers point one way: nothing outside ``gui`` imports ``gui``; ``cli`` is imported by nobody.
- ``inference`` is split like Polygraphy: the run side (``inference.run``, the shared ``base``, ``artifacts``
  and ``trt_api``) never imports the build side (``inference.build``) at module level, nor inside a
  function: the one door from running to building is ``inference.registry.build_artifact``.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "aeb_app"
PURE = ("aeb_app.geometry", "aeb_app.safety", "aeb_app.scenarios", "aeb_app.monitor", "aeb_app.types",
        "aeb_app.model.tiling", "aeb_app.model.boxes")
FORBIDDEN_IN_PURE = ("PyQt5", "torch", "torchvision", "tensorrt", "torch2trt", "onnxruntime", "pycuda", "cupy")


def _module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _resolve(module: str, node: ast.ImportFrom) -> str:
    if node.level == 0:
        return node.module or ""
    base = module.split(".")[: len(module.split(".")) - node.level + (1 if _is_package(module) else 0)]
    return ".".join([*base, node.module] if node.module else base)


def _is_package(module: str) -> bool:
    return (PACKAGE.parent / Path(*module.split(".")) / "__init__.py").is_file()


def _imports(path: Path, *, top_level_only: bool) -> set[str]:
    """Absolute names imported by ``path`` (``from a import b`` gives ``a`` and ``a.b``)."""
    module = _module_name(path)
    tree = ast.parse(path.read_text(), str(path))
    nodes = tree.body if top_level_only else list(ast.walk(tree))
    names: set[str] = set()
    for node in nodes:
        if isinstance(node, ast.If) and top_level_only:  # `if TYPE_CHECKING:` imports never run
            continue
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = _resolve(module, node)
            names.add(base)
            names.update(f"{base}.{alias.name}" for alias in node.names)
    return names


def _graph() -> dict[str, set[str]]:
    modules = {_module_name(p): p for p in PACKAGE.rglob("*.py")}
    graph = {}
    for name, path in modules.items():
        targets = {t for t in _imports(path, top_level_only=True) if t in modules and t != name}
        graph[name] = targets
    return graph


def _find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    state: dict[str, int] = {}  # 1 visiting, 2 done
    stack: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        stack.append(node)
        for nxt in sorted(graph[node]):
            if state.get(nxt) == 1:
                return stack[stack.index(nxt):] + [nxt]
            if nxt not in state and (cycle := visit(nxt)):
                return cycle
        stack.pop()
        state[node] = 2
        return None

    for node in sorted(graph):
        if node not in state and (cycle := visit(node)):
            return cycle
    return None


def test_no_import_cycles() -> None:
    graph = _graph()
    assert len(graph) > 60  # the walk found the package
    cycle = _find_cycle(graph)
    assert cycle is None, "import cycle: " + " -> ".join(cycle)


def test_the_cycle_finder_finds_a_cycle() -> None:
    assert _find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert _find_cycle({"a": {"b"}, "b": set()}) is None


@pytest.mark.parametrize("package", PURE)
def test_pure_logic_imports_no_qt_or_gpu_library(package: str) -> None:
    base = PACKAGE.parent / Path(*package.split("."))
    files = list(base.rglob("*.py")) if base.is_dir() else [base.with_suffix(".py")]
    assert files
    for path in files:
        bad = {n for n in _imports(path, top_level_only=False) if n.split(".")[0] in FORBIDDEN_IN_PURE}
        assert not bad, f"{path.relative_to(PACKAGE.parent)} imports {sorted(bad)}"


def test_layers_point_one_way() -> None:
    for path in PACKAGE.rglob("*.py"):
        name = _module_name(path)
        imported = _imports(path, top_level_only=False)
        if not name.startswith(("aeb_app.gui", "aeb_app.cli")):
            assert not any(i.startswith("aeb_app.gui") for i in imported), f"{name} imports the GUI"
        if not name.startswith("aeb_app.cli") and name != "aeb_app.__main__":
            assert not any(i.startswith("aeb_app.cli") for i in imported), f"{name} imports the CLI"


BUILD = "aeb_app.inference.build"
RUN_SIDE = ("aeb_app.inference.run", "aeb_app.inference.base", "aeb_app.inference.artifacts", "aeb_app.inference.trt_api")


def _run_side_files() -> list[Path]:
    files = [p for p in (PACKAGE / "inference").rglob("*.py") if _module_name(p).startswith(RUN_SIDE)]
    assert len(files) >= 10 and any(p.parent.name == "run" for p in files)
    return files


@pytest.mark.parametrize("top_level_only", [True, False], ids=["module-level", "any-level"])
def test_run_side_never_imports_the_build_side(top_level_only: bool) -> None:
    for path in _run_side_files():
        bad = {n for n in _imports(path, top_level_only=top_level_only) if n == BUILD or n.startswith(BUILD + ".")}
        assert not bad, f"{path.relative_to(PACKAGE.parent)} imports the build side: {sorted(bad)}"


def test_shared_inference_modules_import_neither_side() -> None:
    for name in ("base", "artifacts", "trt_api"):
        imported = _imports(PACKAGE / "inference" / f"{name}.py", top_level_only=True)
        assert not any(i.startswith(("aeb_app.inference.run", BUILD)) for i in imported), name


def test_the_split_checker_sees_a_violation(tmp_path: Path) -> None:
    bad = tmp_path / "x.py"
    bad.write_text("def f():\n    from aeb_app.inference.build.export import export_onnx\n")
    assert "aeb_app.inference.build.export" in _imports_of_file(bad, top_level_only=False)
    assert "aeb_app.inference.build.export" not in _imports_of_file(bad, top_level_only=True)


def _imports_of_file(path: Path, *, top_level_only: bool) -> set[str]:
    tree = ast.parse(path.read_text(), str(path))
    nodes = tree.body if top_level_only else list(ast.walk(tree))
    return {n.module for n in nodes if isinstance(n, ast.ImportFrom) and n.module}
