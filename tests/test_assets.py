"""Asset manifest, mirror lookup, checksum verification and downloads (from a loopback HTTP server)."""

from __future__ import annotations

import functools
import hashlib
import http.server
import io
import json
import shutil
import threading
import zipfile
from pathlib import Path

import pytest

from aeb_app import assets
from aeb_app.errors import AssetError


def test_manifest_matches_the_mirror_checksums(data_dir: Path) -> None:
    sums = {}
    for line in (data_dir / "SHA256SUMS").read_text().splitlines():
        digest, rel = line.split(maxsplit=1)
        sums[rel.removeprefix("./")] = digest
    entries = [f for a in assets.manifest().values() for f in a.files if f.sha256]
    assert len(entries) == len(sums), "every mirrored file has a manifest entry"
    for entry in entries:
        assert sums[entry.path] == entry.sha256, entry.path
        assert entry.url.startswith(("https://", "http://"))


def test_resolve_finds_verified_mirror_file(data_dir: Path) -> None:
    path = assets.resolve("ssd_mobilenet_v1", "detect.tflite")
    assert path == data_dir / "models/coco_ssd_mobilenet_v1_1.0_quant_2018_06_29/detect.tflite"
    rows = {name: (present, total) for name, present, total, _ in assets.status()}
    assert rows["coco_val2017_subset"] == (156, 156)
    assert rows["ssd300_resnet50"][0] == 0


@pytest.fixture()
def fake_mirror(tmp_path: Path, data_dir: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A writable mirror holding a copy of the sample video, and an empty cache."""
    mirror = tmp_path / "mirror"
    rel = "videos/udacity/solidWhiteRight.mp4"
    (mirror / rel).parent.mkdir(parents=True)
    shutil.copyfile(data_dir / rel, mirror / rel)
    monkeypatch.setenv(assets.MIRROR_ENV, str(mirror))
    monkeypatch.setenv(assets.CACHE_ENV, str(tmp_path / "cache"))
    return mirror


def test_corrupt_mirror_file_is_refused(fake_mirror: Path) -> None:
    video = fake_mirror / "videos/udacity/solidWhiteRight.mp4"
    data = bytearray(video.read_bytes())
    data[1000] ^= 0xFF
    video.write_bytes(bytes(data))
    with pytest.raises(AssetError, match=r"solidWhiteRight\.mp4: sha256 .* does not match"):
        assets.resolve("sample_video", "solidWhiteRight.mp4")


def test_truncated_mirror_file_is_refused(fake_mirror: Path) -> None:
    video = fake_mirror / "videos/udacity/solidWhiteRight.mp4"
    video.write_bytes(video.read_bytes()[:5000])
    with pytest.raises(AssetError, match="size 5000 bytes, expected"):
        assets.resolve("sample_video", "solidWhiteRight.mp4")


def test_missing_asset_names_the_fetch_command(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(assets.MIRROR_ENV)
    monkeypatch.setenv(assets.CACHE_ENV, str(tmp_path))
    with pytest.raises(AssetError, match="aeb-app assets fetch ssd_mobilenet_v1"):
        assets.resolve("ssd_mobilenet_v1")


def test_offline_fetch_names_url_and_variable(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(assets.MIRROR_ENV)
    monkeypatch.setenv(assets.CACHE_ENV, str(tmp_path / "cache"))
    _point_manifest_at(monkeypatch, "http://127.0.0.1:9/")  # discard port: nothing listens
    with pytest.raises(AssetError) as err:
        assets.fetch("ssd_mobilenet_v1", progress=False)
    msg = str(err.value)
    assert "http://127.0.0.1:9/" in msg and assets.MIRROR_ENV in msg and "\n" not in msg
    assert not (tmp_path / "cache").exists() or not any((tmp_path / "cache").rglob("*.*"))


def _point_manifest_at(monkeypatch: pytest.MonkeyPatch, base: str) -> None:
    """Rewrite the model asset's URL to a zip on ``base`` (as the official one is a zip)."""
    original = assets.manifest()
    model = original["ssd_mobilenet_v1"]
    files = tuple(
        assets.AssetFile(**{**f.__dict__, "url": base + "model.zip"}) for f in model.files
    )
    patched = {**original, "ssd_mobilenet_v1": assets.Asset(model.name, model.description, files)}
    monkeypatch.setattr(assets, "manifest", lambda: patched)


@pytest.fixture()
def http_server(tmp_path: Path):
    root = tmp_path / "www"
    root.mkdir()
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(root))
    handler.log_message = lambda *a, **k: None  # type: ignore[assignment]
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield root, f"http://127.0.0.1:{server.server_address[1]}/"
    server.shutdown()


def _zip_model(data_dir: Path, *, corrupt: bool) -> bytes:
    folder = data_dir / "models/coco_ssd_mobilenet_v1_1.0_quant_2018_06_29"
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as archive:
        tflite = folder.joinpath("detect.tflite").read_bytes()
        archive.writestr("detect.tflite", tflite[:-1] + b"\x00" if corrupt else tflite)
        archive.writestr("labelmap.txt", folder.joinpath("labelmap.txt").read_bytes())
    return buf.getvalue()


def test_fetch_downloads_verifies_and_saves(http_server, data_dir: Path, tmp_path: Path,
                                            monkeypatch: pytest.MonkeyPatch) -> None:
    root, base = http_server
    (root / "model.zip").write_bytes(_zip_model(data_dir, corrupt=False))
    monkeypatch.delenv(assets.MIRROR_ENV)
    monkeypatch.setenv(assets.CACHE_ENV, str(tmp_path / "cache"))
    _point_manifest_at(monkeypatch, base)
    paths = assets.fetch("ssd_mobilenet_v1", progress=False)
    assert [p.name for p in paths] == ["detect.tflite", "labelmap.txt"]
    expected = hashlib.sha256((data_dir / "models/coco_ssd_mobilenet_v1_1.0_quant_2018_06_29/detect.tflite")
                              .read_bytes()).hexdigest()
    assert hashlib.sha256(paths[0].read_bytes()).hexdigest() == expected
    assert assets.resolve("ssd_mobilenet_v1") == paths[0]


def test_fetch_with_checksum_mismatch_keeps_nothing(http_server, data_dir: Path, tmp_path: Path,
                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    root, base = http_server
    (root / "model.zip").write_bytes(_zip_model(data_dir, corrupt=True))
    monkeypatch.delenv(assets.MIRROR_ENV)
    cache = tmp_path / "cache"
    monkeypatch.setenv(assets.CACHE_ENV, str(cache))
    _point_manifest_at(monkeypatch, base)
    with pytest.raises(AssetError, match="does not match the manifest.*nothing was saved"):
        assets.fetch("ssd_mobilenet_v1", progress=False)
    assert not cache.exists() or [p for p in cache.rglob("*") if p.is_file()] == []


def test_assets_list_cli(capsys: pytest.CaptureFixture[str]) -> None:
    from aeb_app.cli import main

    assert main(["assets", "list"]) == 0
    out = capsys.readouterr().out
    assert "coco_val2017_subset" in out and "156/156" in out and "mirror" in out


def test_manifest_json_is_valid_schema() -> None:
    from importlib import resources

    raw = json.loads(resources.files("aeb_app").joinpath("data/assets.json").read_text())
    assert raw["schema_version"] == 1
    assert set(raw["assets"]) == {"ssd_mobilenet_v1", "ssd300_resnet50", "sample_video", "coco_val2017_subset",
                                  "ssdlite_mobilenet_v2"}


def test_tar_member_extraction(data_dir: Path, tmp_path: Path) -> None:
    """The SSDLite licence comes from an npm tarball: its member is read, a missing one is named."""
    import io
    import tarfile

    lic = data_dir / "models/ssdlite_mobilenet_v2_coco_tfjs/LICENSE"
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tar:
        tar.add(lic, arcname="package/LICENSE")
    entry = next(f for f in assets.get_asset("ssdlite_mobilenet_v2").files if f.path.endswith("LICENSE"))
    assert assets._extract(buf.getvalue(), entry, ()) == lic.read_bytes()
    wrong = assets.AssetFile(entry.path, entry.url, None, None, member="package/NOPE")
    with pytest.raises(AssetError, match="no member package/NOPE"):
        assets._extract(buf.getvalue(), wrong, ())
    with pytest.raises(AssetError, match="not a valid tar.gz"):
        assets._extract(b"not a tarball", entry, ())
