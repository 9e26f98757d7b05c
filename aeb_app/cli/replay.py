"""``aeb-app replay INPUTS... --out DIR``: the warning logic over many recordings (fleet replay).

Checks every input, calibration, option and the scheduler first (one-line error, nothing written), then
replays each recording in this process or on a Dask cluster, writes ``DIR/<recording-id>/`` per recording
and the report (``DIR/report.md``, ``report.json``, plots). Exit code 0 when every recording finished,
1 when some failed (they are in the report), 2 for bad input.
"""

from __future__ import annotations

import argparse
import dataclasses
import logging
import math
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from aeb_app.replay.executor import ClusterChoice, ReplayRun
    from aeb_app.replay.types import RecordingSpec, ReplayOptions
    from aeb_app.safety import WarningConfig, ZoneConfig

from aeb_app.cli import argtypes as at
from aeb_app.cli.common import add_tiles_arg
from aeb_app.errors import CalibrationError, ConfigError, InputError

log = logging.getLogger(__name__)


def add_parser(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    p = subparsers.add_parser("replay", help="replay the warning logic over many recordings (Dask optional)",
                              description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("inputs", nargs="+", metavar="INPUT", help="video files, folders (searched recursively for videos; a folder of frames, "
                        "e.g. KITTI's image_02, is one recording) or globs")
    p.add_argument("--fps", type=at.positive_float, default=None,
                   help="frame rate of folders of frames without a timestamps.txt (replaces video headers' rates)")
    p.add_argument("--out", type=Path, required=True, metavar="DIR", help="output folder (a re-run resumes in it)")
    cal = p.add_mutually_exclusive_group()
    cal.add_argument("--calibration", type=Path, metavar="F", help="one calibration YAML for every recording "
                     "(default: calibration/solidWhiteRight.yaml)")
    cal.add_argument("--calibrations", type=Path, metavar="MAP.yaml",
                     help="YAML mapping 'file-name pattern: calibration.yaml', first match wins")
    p.add_argument("--model", default="ssd_mobilenet_v1", help="model name (default ssd_mobilenet_v1)")
    p.add_argument("--mode", default=None, help="inference mode, e.g. fp32_ort, fp16_trt (default: fallback order)")
    p.add_argument("--device", default=None, help="cpu, cuda or cuda:N (default: the mode's choice)")
    p.add_argument("--engines-dir", default=None, metavar="DIR", help="model/engine cache (default ./engines)")
    p.add_argument("--threads", type=at.positive_int, default=None, help="CPU threads for inference per process")
    p.add_argument("--score-threshold", type=at.probability, default=0.4, help="detection score threshold")
    add_tiles_arg(p)
    p.add_argument("--speed-kmh", type=at.non_negative_float, default=None, metavar="X",
                   help="ego speed for the zone length")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", dest="overrides",
                   help="warning/zone setting, e.g. warning.caution_ttc_s=4 or zone.lane_width_m=3.5 (repeatable)")
    where = p.add_mutually_exclusive_group()
    where.add_argument("--cluster", metavar="ADDRESS", help="a running Dask scheduler, e.g. tcp://host:8786")
    where.add_argument("--gpus", type=int, metavar="N", help="local Dask cluster, one worker per GPU (dask-cuda)")
    where.add_argument("--workers", type=int, metavar="N", help="local Dask cluster of N worker processes")
    p.add_argument("--connect-timeout", type=at.positive_float, default=5.0, metavar="S",
                   help="scheduler connect timeout, s")
    p.add_argument("--retries", type=int, default=2, help="re-runs of a recording whose worker died (default 2)")
    p.add_argument("--compare", type=Path, metavar="OLD_DIR", help="an earlier replay: report added/removed warnings")
    p.add_argument("--compare-tolerance", type=at.non_negative_float, default=0.5, metavar="S",
                   help="time tolerance for matching events in --compare, seconds (default 0.5)")
    p.add_argument("--no-progress", action="store_true", help="no progress bars")
    p.add_argument("--batch", type=at.positive_int, default=1, metavar="N",
                   help="frames per network call (GPU throughput; the events do not change; default 1)")
    p.add_argument("--sequential", action="store_true",
                   help="decode, infer and decide one after the other in each task (default: overlapped threads)")
    p.set_defaults(func=run)
    return p


def _coerce(text: str, default: object, key: str) -> object:
    try:
        if isinstance(default, bool):  # bool("false") is True: parse the word
            words = {"true": True, "yes": True, "1": True, "false": False, "no": False, "0": False}
            if text.strip().lower() not in words:
                raise ValueError(text)
            return words[text.strip().lower()]
        if isinstance(default, tuple):
            return tuple(int(v) for v in text.split(",") if v.strip())
        value = type(default)(text)
        if isinstance(value, float) and not math.isfinite(value):  # nan passes every later range check
            raise ValueError(text)
        return value
    except ValueError:
        kind = "finite float" if isinstance(default, float) else type(default).__name__
        raise ConfigError(f"--set {key}={text}: expected {kind}") from None


def apply_overrides(overrides: list[str]) -> tuple[WarningConfig, ZoneConfig]:
    """``section.field=value`` texts -> ``(WarningConfig, ZoneConfig)``.

    Raises:
        ConfigError: malformed text, unknown section or field, or an invalid value (named).
    """
    from aeb_app.safety import WarningConfig, ZoneConfig

    configs = {"warning": WarningConfig(), "zone": ZoneConfig()}
    for item in overrides:
        key, sep, value = item.partition("=")
        section, _, name = key.strip().partition(".")
        if not sep or section not in configs:
            raise ConfigError(f"--set {item}: expected warning.FIELD=VALUE or zone.FIELD=VALUE")
        fields = {f.name: getattr(configs[section], f.name) for f in dataclasses.fields(configs[section])}
        if name not in fields:
            raise ConfigError(f"--set {item}: unknown field {name!r}; {section} has {', '.join(fields)}")
        configs[section] = dataclasses.replace(configs[section], **{name: _coerce(value.strip(), fields[name], key)})
    return configs["warning"], configs["zone"]


def _options(args: argparse.Namespace) -> ReplayOptions:
    from aeb_app.inference.registry import get_mode
    from aeb_app.names import MODEL_NAMES
    from aeb_app.replay.types import ReplayOptions

    if args.model not in MODEL_NAMES:
        raise ConfigError(f"--model {args.model}: unknown model; choose one of {', '.join(MODEL_NAMES)}")
    if args.mode is not None:
        get_mode(args.mode)  # raises naming the unknown mode
    if not 0.0 <= args.score_threshold <= 1.0:
        raise ConfigError(f"--score-threshold {args.score_threshold}: must be in [0, 1]")
    warning, zone = apply_overrides(args.overrides)
    engines = str(Path(args.engines_dir).resolve()) if args.engines_dir else None
    return ReplayOptions(args.model, args.mode, args.device, engines, args.threads, args.score_threshold,
                         args.speed_kmh / 3.6 if args.speed_kmh is not None else None, warning, zone,
                         progress=not args.no_progress and args.cluster is None and args.gpus is None
                         and args.workers is None, batch=args.batch, sequential=args.sequential, fps=args.fps,
                         tiles=not args.no_tiles)


def _plan(args: argparse.Namespace, options: ReplayOptions) -> list[RecordingSpec]:
    from aeb_app.geometry.calibration import shipped_calibration
    from aeb_app.replay.compare import check_replay_dir
    from aeb_app.replay.inputs import CalibrationChoice, load_calibration_map, plan_recordings

    if args.calibrations is not None:
        choice = load_calibration_map(args.calibrations)
    else:
        calibration = args.calibration or shipped_calibration()
        if not Path(calibration).is_file():
            raise CalibrationError(f"--calibration {calibration}: no such file")
        choice = CalibrationChoice.single(calibration)
    specs = plan_recordings(args.inputs, choice, options)
    if args.out.exists() and not args.out.is_dir():
        raise InputError(f"--out {args.out}: exists and is not a folder")
    if args.compare is not None:
        check_replay_dir(args.compare)
        if args.compare.resolve() == args.out.resolve():
            raise ConfigError(f"--compare {args.compare}: is the --out folder; compare with an earlier replay")
    return specs


def run(args: argparse.Namespace) -> int:
    from aeb_app.replay.executor import ClusterChoice

    options = _options(args)
    choice = ClusterChoice(args.cluster, args.gpus, args.workers, args.connect_timeout, args.retries)
    specs = _plan(args, options)
    replay = _run_specs(args, specs, options, choice)
    return _report(args, specs, replay, options)


def _run_specs(args: argparse.Namespace, specs: list[RecordingSpec], options: ReplayOptions,
               choice: ClusterChoice) -> ReplayRun:
    from aeb_app.replay import executor

    out = args.out.resolve()
    progress = not args.no_progress
    if choice.in_process:
        from aeb_app.replay.task import DETECTORS

        DETECTORS.get(options)  # an unavailable mode is one line before DIR exists; the replay reuses it
        out.mkdir(parents=True, exist_ok=True)
        return executor.run_in_process(specs, out, options, progress=progress)
    with executor.open_client(choice) as (client, where):  # connects (or fails) before DIR is created
        out.mkdir(parents=True, exist_ok=True)
        return executor.run_on_dask(client, specs, out, options, where=where, retries=choice.retries,
                                    progress=progress)


def _report(args: argparse.Namespace, specs: list[RecordingSpec], replay: ReplayRun, options: ReplayOptions) -> int:
    from aeb_app.replay.compare import compare_replays
    from aeb_app.replay.report import summarize, write_report

    out = args.out.resolve()
    comparison = None
    if args.compare is not None:
        comparison = compare_replays(args.compare, out, [s.recording_id for s in specs],
                                     tolerance_s=args.compare_tolerance)
    paths = write_report(out, replay, options, comparison)
    t = summarize(replay.results)
    print(f"replayed {t.finished - t.skipped}, skipped {t.skipped} (finished earlier), failed {t.failed} of "
          f"{t.recordings} recordings; {t.hours:.3f} h, {t.frames} frames, {t.warnings} warnings "
          f"({t.warnings_per_hour:.1f} per hour); {replay.wall_s:.1f} s on {replay.where}"
          + (f" (after {replay.warmup_s:.1f} s of worker warm-up)" if replay.warmup_s else ""))
    if comparison is not None:
        print(f"compared with {args.compare}: {comparison.added} added, {comparison.removed} removed")
    print(f"report: {paths.markdown}")
    return 1 if t.failed else 0
