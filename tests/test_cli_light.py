"""Argument parsing imports no heavy library: ``aeb-app --help`` and a bad option answer without torch.

Each case runs the console script's module (``python -X importtime -m aeb_app ...``, what the ``aeb-app``
entry point calls) in a fresh process and reads the imported modules from ``-X importtime``.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from aeb_app import names

ROOT = Path(__file__).resolve().parents[1]
#: Never imported while parsing: each costs from 0.1 s (cv2) to 1.5 s (torch) before the first line of output.
HEAVY = ("torch", "torchvision", "onnxruntime", "onnx", "cv2", "PyQt5", "numpy", "tensorrt")


def _run(*argv: str) -> tuple[int, str, str, set[str]]:
    """(exit code, stdout, stderr without the import lines, top-level names of every imported module)."""
    env = {**os.environ, "PYTHONPATH": str(ROOT), "QT_QPA_PLATFORM": "offscreen"}
    proc = subprocess.run([sys.executable, "-X", "importtime", "-m", "aeb_app", *argv], capture_output=True,
                          text=True, env=env, cwd=ROOT, timeout=120)
    imported, err = set(), []
    for line in proc.stderr.splitlines():
        if line.startswith("import time:"):
            name = line.rsplit("|", 1)[1].strip()
            imported.add(name.split(".")[0])
        else:
            err.append(line)
    assert "aeb_app" in imported  # the importtime parse worked
    return proc.returncode, proc.stdout, "\n".join(err), imported


@pytest.mark.parametrize("argv", [["--help"], ["run", "--help"], ["detect", "--help"], ["bench", "--help"],
                                  ["quantize", "--help"], ["build-engine", "--help"], ["gui", "--help"],
                                  ["replay", "--help"], ["eval", "--help"], ["calibrate", "--help"]])
def test_help_imports_no_heavy_library(argv: list[str]) -> None:
    code, out, err, imported = _run(*argv)
    assert code == 0 and "usage: aeb-app" in out, err[-2000:]
    assert not imported & set(HEAVY), f"aeb-app {' '.join(argv)} imported {sorted(imported & set(HEAVY))}"


def test_run_help_still_lists_every_mode_and_model() -> None:
    _, out, _, _ = _run("run", "--help")
    flat = " ".join(out.split())
    for name in (*names.MODE_NAMES, *names.MODEL_NAMES, names.AUTO):
        assert name in flat


@pytest.mark.parametrize("argv, message", [
    (["run", "0", "--bad"], "unrecognized arguments: --bad"),
    (["--bad"], "unrecognized arguments: --bad"),
    (["run", "0", "--mode", "warp_drive"], "--mode: invalid choice: 'warp_drive'"),
    (["detect", "x.jpg", "--model", "nope"], "--model: invalid choice: 'nope'"),
    (["quantize", "--method", "guess"], "--method: invalid choice: 'guess'"),
])
def test_bad_option_is_exit_2_and_one_line_without_torch(argv: list[str], message: str) -> None:
    code, out, err, imported = _run(*argv)
    errors = [ln for ln in err.splitlines() if ln.startswith("aeb-app") and "error:" in ln]
    assert code == 2 and len(errors) == 1 and message in errors[0], err[-2000:]
    assert "Traceback" not in err and not out
    assert not imported & set(HEAVY), f"aeb-app {' '.join(argv)} imported {sorted(imported & set(HEAVY))}"


def test_static_tables_equal_the_registries() -> None:
    from aeb_app.bench import sweep
    from aeb_app.inference import registry as modes
    from aeb_app.inference.build import quantize
    from aeb_app.model import registry as models

    assert tuple(models._LOADERS) == names.MODEL_NAMES == models.MODEL_NAMES
    assert tuple(modes.MODES) == names.MODE_NAMES
    assert quantize.METHODS == names.CALIBRATION_METHODS
    assert set(sweep.DEFAULT_CANDIDATES) <= set(names.MODE_NAMES)
    assert set(modes.DEFAULT_FALLBACK) | set(modes.CPU_FALLBACK) <= set(names.MODE_NAMES)


def test_a_registry_that_drifts_from_its_table_refuses_to_import() -> None:
    with pytest.raises(ImportError, match="the mode table .* differs from the registry's .*update aeb_app/names.py"):
        names.check_registry("mode", names.MODE_NAMES, [*names.MODE_NAMES, "fp4_magic"])
    names.check_registry("mode", names.MODE_NAMES, list(names.MODE_NAMES))  # equal: no error
