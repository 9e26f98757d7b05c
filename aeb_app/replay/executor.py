"""Where the recordings run: in this process (no Dask import at all), or on a Dask cluster.

A cluster is a local one (``distributed.LocalCluster``: worker processes with one thread each), one worker
per GPU (``dask_cuda.LocalCUDACluster``), or a running scheduler that a team already has (``Client(address)``,
with workers started by ``dask-worker``, dask-jobqueue on SLURM, or dask-kubernetes). Every recording is one
task running :func:`~aeb_app.replay.task.replay_recording`; a task whose worker died is run again
(the scheduler's ``allowed-failures``, and ``retries`` for exceptions), which is safe because the task
writes atomically and skips a recording it already finished.
"""

from __future__ import annotations

import contextlib
import logging
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterator

from aeb_app.errors import AebError, ConfigError
from aeb_app.replay.task import replay_recording
from aeb_app.replay.types import SUMMARY_NAME, RecordingResult, RecordingSpec, ReplayOptions

__all__ = ["ClusterChoice", "ReplayRun", "pending", "run_in_process", "open_client", "run_on_dask", "warm_workers"]

log = logging.getLogger(__name__)

Task = Callable[[RecordingSpec, str, ReplayOptions], RecordingResult]


@dataclass(frozen=True)
class ClusterChoice:
    """Where to run (at most one of ``address``, ``gpus``, ``workers``; none: this process).

    Attributes:
        address: a running Dask scheduler, e.g. ``tcp://10.0.0.5:8786``.
        gpus: start a local cluster with one worker per GPU (dask-cuda).
        workers: start a local cluster of this many worker processes, one thread each.
        connect_timeout_s: how long to wait for ``address`` to answer, seconds.
        retries: runs of a task after its worker died or it raised.
    """

    address: str | None = None
    gpus: int | None = None
    workers: int | None = None
    connect_timeout_s: float = 5.0
    retries: int = 2

    def __post_init__(self) -> None:
        if sum(v is not None for v in (self.address, self.gpus, self.workers)) > 1:
            raise ConfigError("--cluster, --gpus and --workers exclude each other: give one")
        for name in ("gpus", "workers"):
            value = getattr(self, name)
            if value is not None and value < 1:
                raise ConfigError(f"--{name}: must be >= 1, got {value}")
        if self.retries < 0:
            raise ConfigError(f"--retries: must be >= 0, got {self.retries}")

    @property
    def in_process(self) -> bool:
        return self.address is None and self.gpus is None and self.workers is None


@dataclass
class ReplayRun:
    """The results of one replay, in the order of the specs.

    Attributes:
        results: one per recording (skipped ones carry their saved summary).
        wall_s: wall time from the first task to the last result, seconds (cluster start and the
            workers' warm-up excluded).
        where: ``in-process``, or the cluster's description.
        warmup_s: the workers' warm-up before the first task (:func:`warm_workers`), seconds; 0 in process
            (the caller loads its detector before the replay).
    """

    results: list[RecordingResult]
    wall_s: float
    where: str
    warmup_s: float = 0.0


def pending(specs: list[RecordingSpec], out_dir: Path) -> tuple[list[RecordingSpec], dict[str, RecordingResult]]:
    """Split ``specs`` into those to run and the finished ones (by recording id), from the summaries on disk."""
    todo, done = [], {}
    for spec in specs:
        saved = RecordingResult.load(out_dir / spec.recording_id / SUMMARY_NAME)
        if saved is not None and saved.finishes(spec):
            saved.skipped = True
            done[spec.recording_id] = saved
        else:
            todo.append(spec)
    return todo, done


def _bar(total: int, progress: bool):
    from tqdm import tqdm

    return tqdm(total=total, unit="rec", desc="recordings", position=0, disable=not progress, file=sys.stderr,
                dynamic_ncols=True)


def _failure(spec: RecordingSpec, exc: BaseException) -> RecordingResult:
    log.warning("%s failed: %s: %s", spec.recording_id, type(exc).__name__, exc)
    return RecordingResult.failed(spec, f"{type(exc).__name__}: {exc}")


def run_in_process(specs: list[RecordingSpec], out_dir: Path, options: ReplayOptions, *,
                   progress: bool = False, task: Task = replay_recording) -> ReplayRun:
    """Replay ``specs`` one after the other in this process (frame progress when ``options.progress``)."""
    todo, done = pending(specs, out_dir)
    bar = _bar(len(specs), progress)
    bar.update(len(done))
    t0 = time.perf_counter()
    for spec in todo:
        try:
            done[spec.recording_id] = task(spec, str(out_dir), options)
        except Exception as exc:  # noqa: BLE001 - one recording's bug must not stop the fleet
            done[spec.recording_id] = _failure(spec, exc)
        bar.update(1)
    bar.close()
    return ReplayRun([done[s.recording_id] for s in specs], time.perf_counter() - t0, "in-process")


def _import_distributed():
    try:
        import distributed
    except ImportError as exc:
        raise AebError(f"a Dask cluster needs Dask ({exc}): pip install 'aeb_app[cluster]'") from exc
    return distributed


def _local_cluster(choice: ClusterChoice):
    distributed = _import_distributed()
    if choice.gpus is not None:
        try:
            from dask_cuda import LocalCUDACluster
        except ImportError as exc:
            raise AebError(f"--gpus needs dask-cuda ({exc}): pip install dask-cuda "
                           "(or use --workers N: worker processes sharing the visible GPUs)") from exc
        return LocalCUDACluster(n_workers=choice.gpus, threads_per_worker=1, dashboard_address=":0")
    return distributed.LocalCluster(n_workers=choice.workers, threads_per_worker=1, processes=True,
                                    dashboard_address=":0", silence_logs=logging.WARNING)


@contextlib.contextmanager
def open_client(choice: ClusterChoice) -> Iterator[tuple[object, str]]:
    """A connected ``distributed.Client`` and a description of where it runs.

    Raises:
        AebError: Dask (or dask-cuda for ``gpus``) is not installed, or the scheduler does not answer
            within ``connect_timeout_s`` (one line naming the address).
    """
    distributed = _import_distributed()
    import dask

    with dask.config.set({"distributed.scheduler.allowed-failures": choice.retries}):
        if choice.address is not None:
            try:
                client = distributed.Client(choice.address, timeout=f"{choice.connect_timeout_s}s")
            except (OSError, TimeoutError, ValueError) as exc:
                reason = " ".join(str(exc).split()) or type(exc).__name__
                raise AebError(f"--cluster {choice.address}: no Dask scheduler answers ({reason})") from exc
            with client:
                yield client, f"scheduler {choice.address}"
            return
        with _local_cluster(choice) as cluster, distributed.Client(cluster) as client:
            kind = f"{choice.gpus} GPU" if choice.gpus is not None else f"{choice.workers} CPU"
            yield client, f"local Dask cluster, {kind} worker(s)"


def _warm_worker(options: ReplayOptions) -> str:
    """On a worker (via ``Client.run``, in the worker's main thread): heavy imports, then the detector.

    Returns "" when warm, else the one-line reason (the recordings then fail with it one by one).
    """
    from aeb_app import heavy
    from aeb_app.replay.task import DETECTORS

    heavy.preload(options.mode)
    try:
        DETECTORS.get(options)
    except AebError as exc:
        return str(exc)
    return ""


def warm_workers(client, options: ReplayOptions) -> float:
    """Warm every worker the cluster has now, in parallel, before the first task; seconds taken.

    Heavy imports (torch, Triton) then happen in each worker's main thread, not in the task thread
    (:mod:`aeb_app.heavy`), and the model load, CUDA Graph capture and first-run set-up are done once
    per worker before the replay's clock starts. A worker that joins later warms on its first task.
    """
    t0 = time.perf_counter()
    reasons = client.run(_warm_worker, options)
    for worker, reason in sorted(reasons.items()):
        if reason:
            log.warning("worker %s: %s", worker, reason)
    return time.perf_counter() - t0


def run_on_dask(client, specs: list[RecordingSpec], out_dir: Path, options: ReplayOptions, *,
                where: str = "Dask", retries: int = 2, progress: bool = False,
                task: Task = replay_recording) -> ReplayRun:
    """Submit one task per unfinished recording to ``client`` and gather the results as they complete.

    A task that raised ``retries + 1`` times, or whose workers kept dying (``KilledWorker``), becomes a
    failed result with that reason; the others go on.
    """
    from distributed import as_completed

    todo, done = pending(specs, out_dir)
    workers = len(client.scheduler_info().get("workers", {}))
    if workers == 0:
        log.warning("%s has no workers yet: tasks wait until one joins", where)
    warmup_s = warm_workers(client, options) if todo and workers else 0.0
    bar = _bar(len(specs), progress)
    bar.update(len(done))
    t0 = time.perf_counter()
    futures = {client.submit(task, spec, str(out_dir), options, key=f"replay-{spec.recording_id}-{spec.settings_hash}",
                             retries=retries, pure=False): spec for spec in todo}
    for future in as_completed(futures):
        spec = futures[future]
        try:
            done[spec.recording_id] = future.result()
        except Exception as exc:  # noqa: BLE001 - KilledWorker, or the task's own exception after retries
            done[spec.recording_id] = _failure(spec, exc)
        bar.update(1)
    bar.close()
    return ReplayRun([done[s.recording_id] for s in specs], time.perf_counter() - t0, where, warmup_s)
