"""Mirror source: mp4 files in a directory tree or in tar archives, matched by file stem (data spec §7).

Layout ``clip`` (default) holds 10 s clips named ``<clip_id>.mp4`` that start at ``start`` (e.g. the
``Loie/VGGSound`` mirror); layout ``full`` holds whole videos named ``<ytid>.mp4``, so the cutter must add
``start`` to both ``-ss`` (``needs_start_offset``).

The index (id → archive, member, size, sha256) is built once: loose files come from a directory walk, archive
listings are cached as JSON per archive, keyed by the archive's path, size and mtime, so an unchanged archive is
never read again for indexing. Archives (gzip tars are not seekable) are streamed front to back, extracting only the
members asked for; `acquire_many` reads each archive at most once for a whole batch, `acquire` once per clip.

Example:

    >>> src = MirrorSource("/data/vggsound-mirror", index_cache_dir="/tmp/idx")  # doctest: +SKIP
    >>> src.acquire(ClipRef("abc_000030", "abc", 30), Path("cache")).status  # doctest: +SKIP
    <Status.SUCCESS: 'success'>
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
import tarfile
import uuid
import zlib
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Iterable, Mapping

from avsl_bench.data.sources.base import AcquireResult, ClipRef, Status
from avsl_bench.errors import DataFileError, UsageError
from avsl_bench.files import fsync_dir, sha256_bytes, write_json_atomic

__all__ = ["MirrorEntry", "MirrorSource", "LAYOUTS"]

LAYOUTS = ("clip", "full")
_ARCHIVE_SUFFIXES = (".tar.gz", ".tgz", ".tar")
_INDEX_VERSION = 1
_CHUNK = 1 << 20
# Errors that mean "this archive cannot be read as a tar stream".
_ARCHIVE_ERRORS = (tarfile.TarError, zlib.error, EOFError, OSError, ValueError)


@dataclass(frozen=True)
class MirrorEntry:
    """Where one id lives: ``archive`` (absolute path; None for a loose file), ``member``, ``size``, ``sha256``.

    For a loose file ``member`` is its absolute path and ``sha256`` is None (the file is read in place).
    """

    archive: str | None
    member: str
    size: int
    sha256: str | None


def _is_archive(name: str) -> bool:
    return name.lower().endswith(_ARCHIVE_SUFFIXES)


def _mp4_stem(name: str) -> str | None:
    path = PurePosixPath(name)
    return path.stem if path.suffix.lower() == ".mp4" else None


def _default_index_cache_dir() -> Path:
    from avsl_bench.benchmarks.upstream import cache_dir

    return cache_dir() / "mirror-index"


class MirrorSource:
    """Acquire clips from a local mirror (directory tree and/or tar archives).

    Args:
        path: a directory (walked recursively for ``*.mp4`` and ``*.tar.gz``/``*.tgz``/``*.tar``) or one archive.
        layout: ``clip`` (files named by clip id) or ``full`` (files named by ytid; cut adds ``start``).
        index_cache_dir: where the archive-listing JSON is cached (default ``$AVSL_BENCH_CACHE/mirror-index``,
            ``~/.cache/avsl-bench/mirror-index`` without it).

    Attributes:
        needs_start_offset: True for layout ``full``: the cutter must add ``clip.start`` to both ``-ss``.
        archives_scanned: archives read to build the index in this construction (0 when all were cached).
        corrupt_archives: archive path → error for archives that could not be fully listed.
    """

    name = "mirror"

    def __init__(
        self,
        path: str | os.PathLike,
        layout: str = "clip",
        index_cache_dir: str | os.PathLike | None = None,
    ) -> None:
        if layout not in LAYOUTS:
            raise UsageError(f"mirror layout must be one of {', '.join(LAYOUTS)}, got {layout!r}")
        self.path = Path(path).resolve()
        if not self.path.exists():
            raise DataFileError(f"mirror path does not exist: {self.path}")
        if self.path.is_file() and not _is_archive(self.path.name):
            raise DataFileError(f"mirror path must be a directory or a .tar.gz/.tgz/.tar archive: {self.path}")
        self.layout = layout
        self.needs_start_offset = layout == "full"
        self.index_cache_dir = Path(index_cache_dir) if index_cache_dir is not None else _default_index_cache_dir()
        self.archives_scanned = 0
        self.corrupt_archives: dict[str, str] = {}
        self._index: dict[str, MirrorEntry] = {}
        self._build_index()

    # ---- index --------------------------------------------------------------------------------------------------

    @property
    def index(self) -> Mapping[str, MirrorEntry]:
        """id (clip id or ytid, by layout) → entry."""
        return self._index

    def key(self, clip: ClipRef) -> str:
        """The file stem this clip is looked up by: clip id (layout clip) or ytid (layout full)."""
        return clip.clip_id if self.layout == "clip" else clip.ytid

    def _index_cache_path(self) -> Path:
        digest = sha256_bytes(str(self.path).encode("utf-8"))[:16]
        return self.index_cache_dir / f"mirror-{digest}.json"

    def _walk(self) -> tuple[list[Path], list[Path]]:
        """(loose mp4 files, archives), each sorted by path."""
        if self.path.is_file():
            return [], [self.path]
        loose: list[Path] = []
        archives: list[Path] = []
        for root, dirs, files in os.walk(self.path):
            dirs.sort()
            for name in sorted(files):
                if name.startswith("."):
                    continue
                if _mp4_stem(name) is not None:
                    loose.append(Path(root) / name)
                elif _is_archive(name):
                    archives.append(Path(root) / name)
        return loose, archives

    def _build_index(self) -> None:
        loose, archives = self._walk()
        cache_path = self._index_cache_path()
        cached = self._read_index_cache(cache_path)
        listings: dict[str, dict] = {}
        for archive in archives:
            stat = archive.stat()
            key = str(archive)
            entry = cached.get(key)
            if entry is None or entry.get("size") != stat.st_size or entry.get("mtime_ns") != stat.st_mtime_ns:
                members, error = _list_archive(archive)
                self.archives_scanned += 1
                entry = {"size": stat.st_size, "mtime_ns": stat.st_mtime_ns, "members": members, "error": error}
            listings[key] = entry
        if self.archives_scanned or set(listings) != set(cached):
            with contextlib.suppress(OSError):  # an unwritable cache only costs a re-scan next time
                write_json_atomic(cache_path, {"version": _INDEX_VERSION, "root": str(self.path),
                                               "archives": listings}, indent=None)
        # Loose files first, then archives, each in path order; the first occurrence of an id wins.
        for file in loose:
            stem = _mp4_stem(file.name)
            assert stem is not None
            self._index.setdefault(stem, MirrorEntry(None, str(file), file.stat().st_size, None))
        for archive, entry in listings.items():
            if entry["error"]:
                self.corrupt_archives[archive] = entry["error"]
            for member, size, digest in entry["members"]:
                stem = _mp4_stem(member)
                if stem is not None:
                    self._index.setdefault(stem, MirrorEntry(archive, member, size, digest))

    @staticmethod
    def _read_index_cache(cache_path: Path) -> dict[str, dict]:
        try:
            data = json.loads(cache_path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return {}
        if not isinstance(data, dict) or data.get("version") != _INDEX_VERSION:
            return {}
        archives = data.get("archives")
        return archives if isinstance(archives, dict) else {}

    # ---- acquisition ----------------------------------------------------------------------------------------------

    def acquire(self, clip: ClipRef, cache_dir: Path) -> AcquireResult:
        """Materialise one clip's file as ``cache_dir/<clip_id>.mp4``; never raises per clip."""
        return self.acquire_many([clip], cache_dir)[clip.clip_id]

    def acquire_many(self, clips: Iterable[ClipRef], cache_dir: Path) -> dict[str, AcquireResult]:
        """Acquire a batch, reading each archive at most once; returns clip id → result.

        Loose files are hard-linked into the cache (copied across file systems); archive members are streamed
        out, checked against the indexed size and sha256, and renamed into place.
        """
        cache_dir = Path(cache_dir)
        cache_dir.mkdir(parents=True, exist_ok=True)
        results: dict[str, AcquireResult] = {}
        wanted: dict[str, dict[str, list[ClipRef]]] = defaultdict(lambda: defaultdict(list))
        for clip in clips:
            final = cache_dir / f"{clip.clip_id}.mp4"
            if final.is_file():
                results[clip.clip_id] = AcquireResult(Status.SUCCESS, final, None, 0)
                continue
            entry = self._index.get(self.key(clip))
            if entry is None:
                results[clip.clip_id] = self._missing(clip)
            elif entry.archive is None:
                results[clip.clip_id] = _link_loose(Path(entry.member), final)
            else:
                wanted[entry.archive][entry.member].append(clip)
        for archive, members in wanted.items():
            results.update(self._extract(archive, members, cache_dir))
        return results

    def _missing(self, clip: ClipRef) -> AcquireResult:
        key = self.key(clip)
        if self.corrupt_archives:
            archive, error = next(iter(sorted(self.corrupt_archives.items())))
            return AcquireResult(
                Status.FAILED_DOWNLOAD, None,
                f"corrupt_archive: {key}.mp4 not in the readable part of the mirror; {archive}: {error}", 1)
        return AcquireResult(Status.UNAVAILABLE, None, f"not_in_mirror: no {key}.mp4 under {self.path}", 1)

    def _extract(self, archive: str, members: dict[str, list[ClipRef]], cache_dir: Path) -> dict[str, AcquireResult]:
        results: dict[str, AcquireResult] = {}
        pending = dict(members)
        try:
            with tarfile.open(archive, mode="r|*") as tar:
                for info in tar:
                    clips = pending.get(info.name)
                    if clips is None or not info.isfile():
                        continue
                    entry = self._index[self.key(clips[0])]
                    source = tar.extractfile(info)
                    assert source is not None
                    results.update(_store_member(source, entry, archive, clips, cache_dir))
                    del pending[info.name]  # only once stored: a read error part-way still marks these clips
                    if not pending:
                        break
        except _ARCHIVE_ERRORS as exc:
            message = f"corrupt_archive: {archive}: {type(exc).__name__}: {exc}"
            for clips in pending.values():
                for clip in clips:
                    results[clip.clip_id] = AcquireResult(Status.FAILED_DOWNLOAD, None, message, 1)
            pending = {}
        for member, clips in pending.items():
            for clip in clips:
                results[clip.clip_id] = AcquireResult(
                    Status.FAILED_DOWNLOAD, None, f"stale_index: {member} no longer in {archive}", 1)
        return results


def _list_archive(archive: Path) -> tuple[list[list], str | None]:
    """[[member, size, sha256], ...] of the mp4 members, and an error text if the archive breaks part-way."""
    members: list[list] = []
    try:
        with tarfile.open(archive, mode="r|*") as tar:
            for info in tar:
                if not info.isfile() or _mp4_stem(info.name) is None:
                    continue
                handle = tar.extractfile(info)
                assert handle is not None
                digest = hashlib.sha256()
                for block in iter(lambda: handle.read(_CHUNK), b""):
                    digest.update(block)
                members.append([info.name, info.size, digest.hexdigest()])
    except _ARCHIVE_ERRORS as exc:
        return members, f"{type(exc).__name__}: {exc}"
    return members, None


def _tmp_name(final: Path) -> Path:
    return final.with_name(f".{final.name}.{uuid.uuid4().hex[:12]}.tmp")


def _link_loose(source: Path, final: Path) -> AcquireResult:
    tmp = _tmp_name(final)
    try:
        try:
            os.link(source, tmp)
        except OSError:
            shutil.copyfile(source, tmp)
        os.replace(tmp, final)
    except OSError as exc:
        with contextlib.suppress(OSError):
            tmp.unlink()
        return AcquireResult(Status.FAILED_DOWNLOAD, None, f"read_error: {source}: {exc}", 1)
    fsync_dir(final.parent)
    return AcquireResult(Status.SUCCESS, final, None, 1)


def _store_member(source, entry: MirrorEntry, archive: str, clips: list[ClipRef],
                  cache_dir: Path) -> dict[str, AcquireResult]:
    """Write one member to the first clip's cache file (verified), then link it for the other clips."""
    first = cache_dir / f"{clips[0].clip_id}.mp4"
    tmp = _tmp_name(first)
    digest = hashlib.sha256()
    size = 0
    try:
        with open(tmp, "wb") as out:
            for block in iter(lambda: source.read(_CHUNK), b""):
                digest.update(block)
                size += len(block)
                out.write(block)
            out.flush()
            os.fsync(out.fileno())
        if size != entry.size or (entry.sha256 is not None and digest.hexdigest() != entry.sha256):
            raise _Mismatch(f"{entry.member}: got {size} bytes sha256 {digest.hexdigest()[:12]}, "
                            f"index says {entry.size} bytes sha256 {(entry.sha256 or '')[:12]}")
        os.replace(tmp, first)
    except _Mismatch as exc:
        with contextlib.suppress(OSError):
            tmp.unlink()
        message = f"corrupt_archive: {archive}: {exc}"
        return {c.clip_id: AcquireResult(Status.FAILED_DOWNLOAD, None, message, 1) for c in clips}
    except BaseException:
        with contextlib.suppress(OSError):
            tmp.unlink()
        raise
    fsync_dir(cache_dir)
    results = {clips[0].clip_id: AcquireResult(Status.SUCCESS, first, None, 1)}
    for clip in clips[1:]:  # layout full: several clips of one video share the member
        results[clip.clip_id] = _link_loose(first, cache_dir / f"{clip.clip_id}.mp4")
    return results


class _Mismatch(Exception):
    pass
