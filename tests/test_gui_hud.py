"""The window's HUD: decode-to-warning latency p50/p99 over recent decided frames (issue #12)."""

from __future__ import annotations

import numpy as np

from aeb_app.gui.widgets import HudPanel
from aeb_app.types import Detections, FrameResult, StageTimes


def _decided(index: int, logic_ms: float) -> FrameResult:
    empty = Detections(np.zeros((0, 4), np.float32), np.zeros(0, np.float32), np.zeros(0, np.int64), ())
    times = StageTimes(decode_ms=5.0, preprocess_ms=1.0, inference_ms=2.0, postprocess_ms=1.0,
                       geometry_ms=logic_ms, render_ms=7.0)
    return FrameResult(index, index / 25, empty, times)


def test_hud_shows_decode_to_warning_percentiles_of_decided_frames_only(qtbot) -> None:
    hud = HudPanel()
    qtbot.addWidget(hud)
    logic = [float(v) for v in range(1, 101)]  # decision = 4 + logic ms (decode and drawing excluded)
    for i, ms in enumerate(logic):
        hud.update_from(_decided(i, ms), dropped=0)
        hud.update_from(FrameResult(1000 + i, 0.0, None, StageTimes(decode_ms=500.0)), dropped=0)  # failed
    p50, p99 = np.percentile(np.asarray(logic) + 4.0, (50, 99))
    assert f"decode->warning p50 {p50:.1f} p99 {p99:.1f}" in hud.text()
    fresh = HudPanel()
    qtbot.addWidget(fresh)
    fresh.update_from(FrameResult(0, 0.0, None), dropped=3)
    assert "decode->warning" not in fresh.text() and "dropped 3" in fresh.text()
