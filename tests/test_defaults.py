"""One place for defaults: cache folders, fallback order, thresholds shown by --help, global options."""

from __future__ import annotations

import os

import pytest

from aeb_app import assets, defaults
from aeb_app.cli import build_parser


def test_cache_root_honours_env_then_xdg_then_home(monkeypatch, tmp_path):
    monkeypatch.setenv("AEB_APP_CACHE_DIR", str(tmp_path / "mine"))
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert defaults.cache_root() == tmp_path / "mine" == assets.cache_dir()
    monkeypatch.delenv("AEB_APP_CACHE_DIR")
    assert defaults.cache_root() == tmp_path / "xdg" / "aeb_app"
    monkeypatch.setenv("XDG_CACHE_HOME", "relative/ignored")  # XDG spec: relative paths are invalid
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert defaults.cache_root() == tmp_path / "home" / ".cache" / "aeb_app"


def test_engines_dir_is_in_the_user_cache_not_the_current_folder(monkeypatch, tmp_path):
    monkeypatch.setenv("AEB_APP_CACHE_DIR", str(tmp_path))
    monkeypatch.chdir(tmp_path / "..")
    assert defaults.engines_dir() == tmp_path / "engines"
    assert defaults.engines_dir().is_absolute()
    monkeypatch.setenv("AEB_APP_ENGINES_DIR", str(tmp_path / "elsewhere"))
    assert defaults.engines_dir() == tmp_path / "elsewhere"


def test_registry_default_engines_dir_is_the_cache(monkeypatch, tmp_path):
    """A mode created without engines_dir looks in the user cache, not in ./engines."""
    from aeb_app.errors import BackendUnavailableError
    from aeb_app.inference import registry
    from aeb_app.model.registry import load_model

    monkeypatch.setenv("AEB_APP_ENGINES_DIR", str(tmp_path / "cache-engines"))
    monkeypatch.chdir(tmp_path)
    with pytest.raises(BackendUnavailableError, match=f"{tmp_path}/cache-engines/ssd_mobilenet_v1-"):
        registry.create(load_model("ssd_mobilenet_v1"), "fp32_ort", device="cpu", export_if_missing=False)
    assert list(tmp_path.iterdir()) == []  # nothing written into the current folder


def test_fallback_order_per_device():
    assert defaults.fallback_order("cpu") == defaults.CPU_FALLBACK
    assert defaults.CPU_FALLBACK[0] == "fp32_ort"  # measured faster on the CPU (docs/benchmarks/headless_cpu.md)
    assert defaults.fallback_order("cuda:0") == defaults.GPU_FALLBACK


@pytest.mark.parametrize("argv", [
    ["-v", "--data-mirror", "M", "detect", "x.jpg"],
    ["detect", "x.jpg", "-v", "--data-mirror", "M"],
    ["--data-mirror", "M", "detect", "-v", "x.jpg"],
])
def test_global_options_anywhere(argv):
    args = build_parser().parse_args(argv)
    assert args.verbose is True and args.data_mirror == "M" and args.command == "detect"


def test_global_options_after_the_command_do_not_reset_those_before(tmp_path):
    coco, json_out = str(tmp_path), str(tmp_path / "j.json")  # checked by argparse: must exist / be writable
    args = build_parser().parse_args(["-v", "--data-mirror", "M", "eval", "--coco-dir", coco, "--json", json_out])
    assert args.verbose is True and args.data_mirror == "M"
    args = build_parser().parse_args(["eval", "--coco-dir", coco, "--json", json_out])
    assert args.verbose is False and args.data_mirror is None


@pytest.mark.parametrize("command, shown", [
    ("detect", [f"(default: {defaults.DISPLAY_SCORE_THRESHOLD})", "runs/detect"]),
    ("eval", [f"(default: {defaults.EVAL_SCORE_THRESHOLD})", "(default: fp32)"]),
    ("bench", ["(default: 1,4,8,16,32,64)", "(default: the modes this machine can run"]),
    ("export-onnx", ["AEB_APP_CACHE_DIR/engines"]),
])
def test_help_shows_the_defaults(command, shown, capsys):
    with pytest.raises(SystemExit):
        build_parser().parse_args([command, "--help"])
    out = capsys.readouterr().out
    text = " ".join(out.split())
    # argparse wraps long paths at hyphens: compare them with all whitespace removed.
    flat = "".join(out.split()).replace(os.environ["AEB_APP_CACHE_DIR"], "AEB_APP_CACHE_DIR")
    for s in shown:
        assert s in text or s in flat, f"{command} --help lacks {s!r}"
    assert "--data-mirror" in text and "--verbose" in text


def test_cpu_cores_is_what_this_process_may_use():
    assert 1 <= defaults.cpu_cores() <= len(os.sched_getaffinity(0))


def test_pytorch_cpu_modes_cap_their_threads_like_ort():
    """tune_cpu_threads caps torch at the usable cores but one for PyTorch modes; never raises a lower setting."""
    import torch

    from aeb_app.inference import registry
    from aeb_app.model.registry import load_model
    from aeb_app.pipeline import tune_cpu_threads

    before = torch.get_num_threads()
    det = registry.create(load_model("ssd_mobilenet_v1"), "fp32", device="cpu")
    try:
        torch.set_num_threads(64)
        tune_cpu_threads(det)
        assert torch.get_num_threads() == defaults.pipeline_cpu_threads() == max(1, defaults.cpu_cores() - 1)
        torch.set_num_threads(1)  # e.g. run --threads 1
        tune_cpu_threads(det)
        assert torch.get_num_threads() == 1
    finally:
        torch.set_num_threads(before)
