"""Annotation files from public repositories: pinned URL, local mirror or cache, sha256-verified.

Resolution order for a file: `AVSL_BENCH_UPSTREAM=DIR` (layout `<owner>__<repo>/<path>`, read in
place), else the cache `$AVSL_BENCH_CACHE` (default `~/.cache/avsl-bench`), downloading there once
from `https://raw.githubusercontent.com/<owner>/<repo>/<commit>/<path>`. Every file is checked
against its pinned sha256; a mismatch is a `ChecksumError`.
"""

from __future__ import annotations

import hashlib
import os
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path

from ..errors import ChecksumError, DataFileError, DownloadError
from ..files import atomic_write, sha256_file

RAW_URL = "https://raw.githubusercontent.com/{repo}/{commit}/{path}"


@dataclass(frozen=True)
class UpstreamFile:
    """One pinned annotation file. `sha256` may be None only when `git_blob` pins it instead."""

    file_id: str
    repo: str
    commit: str
    path: str
    sha256: str | None = None
    git_blob: str | None = None
    vendorable: bool = True

    @property
    def url(self) -> str:
        return RAW_URL.format(repo=self.repo, commit=self.commit, path=self.path)

    @property
    def mirror_relpath(self) -> Path:
        owner, name = self.repo.split("/")
        return Path(f"{owner}__{name}") / self.path


def cache_dir() -> Path:
    """The download cache (`$AVSL_BENCH_CACHE`, default `~/.cache/avsl-bench`)."""
    return Path(os.environ.get("AVSL_BENCH_CACHE", Path.home() / ".cache" / "avsl-bench"))


def upstream_dir(explicit: str | os.PathLike | None = None) -> Path | None:
    """The local mirror directory, if one is configured (argument, then `AVSL_BENCH_UPSTREAM`)."""
    value = explicit if explicit is not None else os.environ.get("AVSL_BENCH_UPSTREAM")
    return Path(value) if value else None


def git_blob_id(path: str | os.PathLike) -> str:
    """Git's blob id of a file: sha1 of `blob <size>\\0` + content."""
    data = Path(path).read_bytes()
    return hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest()


def verify(spec: UpstreamFile, path: Path) -> str:
    """Check `path` against the pinned digest; return its sha256."""
    actual = sha256_file(path)
    if spec.sha256 is not None and actual != spec.sha256:
        raise ChecksumError(f"{path}: sha256 mismatch for {spec.file_id}: expected {spec.sha256}, got {actual}")
    if spec.sha256 is None and spec.git_blob is not None:
        blob = git_blob_id(path)
        if blob != spec.git_blob:
            raise ChecksumError(f"{path}: git blob mismatch for {spec.file_id}: expected {spec.git_blob}, got {blob}")
    return actual


def _download(url: str, dest: Path, timeout: float = 60.0) -> None:
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response, atomic_write(dest) as handle:
            while block := response.read(1 << 20):
                handle.write(block)
    except (urllib.error.URLError, OSError, TimeoutError) as exc:
        raise DownloadError(f"{url}: download failed: {exc}") from exc


def resolve(spec: UpstreamFile, mirror: str | os.PathLike | None = None) -> Path:
    """Local, verified path of an upstream file (mirror dir, else cache, downloading once)."""
    base = upstream_dir(mirror)
    if base is not None:
        path = base / spec.mirror_relpath
        if not path.is_file():
            raise DataFileError(f"{path}: missing annotation file {spec.file_id} in upstream mirror {base}")
        verify(spec, path)
        return path
    path = cache_dir() / "upstream" / spec.mirror_relpath.parent / spec.commit / Path(spec.path).name
    if not path.is_file():
        _download(spec.url, path)
    try:
        verify(spec, path)
    except ChecksumError:
        path.unlink(missing_ok=True)  # never keep a bad download in the cache
        raise
    return path
