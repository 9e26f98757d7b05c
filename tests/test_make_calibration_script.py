"""scripts/make_calibration.py: reproduces the shipped calibration; --help is help, not a file name."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
SCRIPT = REPO / "scripts" / "make_calibration.py"


def _run(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(SCRIPT), *args], cwd=cwd, capture_output=True, text=True, timeout=120)


def test_help_writes_nothing(tmp_path: Path) -> None:
    done = _run("--help", cwd=tmp_path)
    assert done.returncode == 0 and "usage:" in done.stdout
    assert list(tmp_path.iterdir()) == []


def test_rebuilds_the_shipped_file_byte_for_byte(tmp_path: Path) -> None:
    out = tmp_path / "cal.yaml"
    done = _run(str(out), cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert out.read_bytes() == (REPO / "calibration" / "solidWhiteRight.yaml").read_bytes()


def test_wrong_extension_is_one_line(tmp_path: Path) -> None:
    done = _run("x.txt", cwd=tmp_path)
    assert done.returncode == 2 and "x.txt" in done.stderr.strip().splitlines()[-1]
    assert list(tmp_path.iterdir()) == []
