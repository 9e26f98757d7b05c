"""Logging for the command line: our INFO lines, third-party chatter only with ``-v``.

The library never configures logging (no ``basicConfig`` at import); :func:`setup_logging` is
called once by :func:`aeb_app.cli.main`.
"""

from __future__ import annotations

import logging
import re

#: Third-party loggers that are chatty at INFO (onnxscript prints ~100 lines per ONNX export);
#: raised to WARNING unless ``-v``.
NOISY_LOGGERS = ("onnxscript", "onnx_ir", "torch.onnx", "torch.export", "torch._dynamo", "torch._inductor",
                 "torch.fx.experimental.symbolic_shapes")
#: Messages dropped unless ``-v``: ONNX Runtime's quantizer logs this through the root logger on
#: every quantisation; aeb_app runs ORT's shape inference itself, so it is no action for a user.
DROPPED_SUBSTRINGS = ("consider to run pre-processing before quantization",
                      "consider pre-processing before quantization")
#: Hints worth reading once per process, not once per mode or batch size.
ONCE_PER_PROCESS = ("TensorRT is not installed",)

FORMAT = "%(levelname)s %(name)s: %(message)s"
#: Characters that would break a message's line or drive the terminal (a file name may hold any of them).
_CONTROL = re.compile("[\x00-\x1f\x7f-\x9f\u2028\u2029]")


def one_line(text: str) -> str:
    """``text`` with line breaks and other control characters escaped as Python writes them (``\\n``,
    ``\\x1b``), so a message naming a hostile file name stays one line and cannot recolour the terminal."""
    return _CONTROL.sub(lambda m: repr(m.group())[1:-1], text)


class OneLineFormatter(logging.Formatter):
    """Log lines with :func:`one_line` messages (a traceback under ``-v`` still follows on its own lines)."""

    def formatMessage(self, record: logging.LogRecord) -> str:  # noqa: N802 - logging's name
        return one_line(super().formatMessage(record))


class QuietFilter(logging.Filter):
    """Drops :data:`DROPPED_SUBSTRINGS`; shortens a :data:`ONCE_PER_PROCESS` hint after its first time."""

    def __init__(self) -> None:
        super().__init__()
        self.seen: set[str] = set()

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        if any(s in message for s in DROPPED_SUBSTRINGS):
            return False
        for hint in ONCE_PER_PROCESS:
            if hint in message:
                if hint in self.seen:
                    record.msg, record.args = f"{message.split(hint, 1)[0]}{hint} (install hint above)", None
                self.seen.add(hint)
        return True


def setup_logging(verbose: bool) -> None:
    """INFO (DEBUG with ``verbose``) to stderr; third-party noise silenced unless ``verbose``."""
    logging.basicConfig(level=logging.DEBUG if verbose else logging.INFO, format=FORMAT)
    for handler in logging.getLogger().handlers:
        if type(handler) is logging.StreamHandler:  # basicConfig's own (not pytest's capture handlers)
            handler.setFormatter(OneLineFormatter(FORMAT))
    for name in NOISY_LOGGERS:
        logging.getLogger(name).setLevel(logging.NOTSET if verbose else logging.WARNING)
    for handler in logging.getLogger().handlers:
        quiet = [f for f in handler.filters if isinstance(f, QuietFilter)]
        if verbose:
            for f in quiet:
                handler.removeFilter(f)
        elif not quiet:
            handler.addFilter(QuietFilter())
