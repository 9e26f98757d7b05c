"""Command-line logging: third-party noise off unless -v, install hints once per process."""

from __future__ import annotations

import logging

import pytest

from aeb_app.cli.logsetup import NOISY_LOGGERS, QuietFilter, setup_logging


def _record(name: str, msg: str, level: int = logging.WARNING) -> logging.LogRecord:
    return logging.LogRecord(name, level, __file__, 1, msg, None, None)


def test_ort_preprocessing_advice_is_dropped():
    f = QuietFilter()
    assert not f.filter(_record("root", "Please consider to run pre-processing before quantization. Refer to ..."))
    assert f.filter(_record("aeb_app.inference.build.quantize", "wrote model.onnx in 3.0 s"))


def test_tensorrt_hint_in_full_once_then_short():
    from aeb_app.inference.run.tensorrt_backend import INSTALL_HINT

    f = QuietFilter()
    first, second = (_record("aeb_app.x", "mode %s unavailable: %s", logging.INFO) for _ in range(2))
    first.args, second.args = ("int8_trt", INSTALL_HINT), ("fp16_trt", INSTALL_HINT)
    assert f.filter(first) and f.filter(second)
    assert "pip install" in first.getMessage()
    assert second.getMessage() == "mode fp16_trt unavailable: TensorRT is not installed (install hint above)"


@pytest.fixture
def restore_logging():
    levels = {n: logging.getLogger(n).level for n in NOISY_LOGGERS}
    handlers = logging.getLogger().handlers
    filters = {h: list(h.filters) for h in handlers}
    yield
    for n, level in levels.items():
        logging.getLogger(n).setLevel(level)
    for h in handlers:
        h.filters[:] = filters[h]


def test_third_party_info_only_with_verbose(restore_logging):
    setup_logging(verbose=False)
    assert not logging.getLogger("onnxscript.optimizer").isEnabledFor(logging.INFO)
    assert logging.getLogger("onnxscript.optimizer").isEnabledFor(logging.WARNING)
    assert all(any(isinstance(f, QuietFilter) for f in h.filters) for h in logging.getLogger().handlers)
    setup_logging(verbose=False)  # idempotent: one filter per handler
    assert all(sum(isinstance(f, QuietFilter) for f in h.filters) <= 1 for h in logging.getLogger().handlers)
    setup_logging(verbose=True)
    assert logging.getLogger("onnxscript").level == logging.NOTSET
    assert not any(isinstance(f, QuietFilter) for h in logging.getLogger().handlers for f in h.filters)
