"""Fleet replay: the warning logic over many recordings, in this process or on a Dask cluster.

``aeb-app replay`` (:mod:`aeb_app.cli.replay`) plans the recordings (:mod:`.inputs`), runs
:func:`~aeb_app.replay.task.replay_recording` for each (:mod:`.executor`), and writes the report
(:mod:`.report`, with :mod:`.compare` for the before/after view). Dask is imported only for a cluster run.
"""

from __future__ import annotations

from aeb_app.replay.types import RecordingResult, RecordingSpec, ReplayOptions

__all__ = ["RecordingResult", "RecordingSpec", "ReplayOptions"]
