"""The SIGTERM clean-up handler installed by atomic writes belongs to the process that installed it."""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path

from aeb_app import atomic


def test_a_forked_child_dies_by_sigterm_instead_of_unwinding_the_parents_stack(tmp_path: Path) -> None:
    atomic.write_text(tmp_path / "x.txt", "hi")  # installs the handler in this process
    pid = os.fork()
    if pid == 0:  # the child: if SIGTERM raised SystemExit here, it would run the parent's code
        try:
            time.sleep(10)
        except BaseException:  # noqa: BLE001
            os._exit(99)
        os._exit(0)
    time.sleep(0.3)
    os.kill(pid, signal.SIGTERM)
    _, status = os.waitpid(pid, 0)
    assert os.WIFSIGNALED(status) and os.WTERMSIG(status) == signal.SIGTERM
    assert (tmp_path / "x.txt").read_text() == "hi"
