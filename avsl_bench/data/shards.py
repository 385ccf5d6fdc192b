"""WebDataset shards: deterministic tars, the per-shard parquet and stats, the atomic commit (data spec §8).

A shard is committed as `NNNNNN.tar` (written as `.tar.tmp`, fsynced, renamed), then `NNNNNN.parquet` (its rows of
the manifest), then `NNNNNN_stats.json` last: a shard is done exactly when its stats file exists.
"""

from __future__ import annotations

import collections
import hashlib
import io
import os
import tarfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, BinaryIO, Iterable, Mapping, NamedTuple, Sequence

import pyarrow as pa

from ..files import canonical_json, fsync_dir, sha256_bytes, write_json_atomic, write_parquet_atomic
from .sources.base import Status

STATS_SCHEMA_VERSION = 1
MEMBER_EXTENSIONS = ("flac", "jpg", "json")

#: Columns of the per-shard parquet and of manifest.parquet (one row per input row).
MANIFEST_SCHEMA = pa.schema(
    [
        ("key", pa.string()),
        ("video_id", pa.string()),
        ("audio_id", pa.string()),
        ("shard", pa.int32()),
        ("index_in_shard", pa.int32()),
        ("status", pa.string()),
        ("error", pa.string()),
        ("attempts", pa.int32()),
        ("source_kind", pa.string()),
        ("ytid", pa.string()),
        ("start", pa.int32()),
        ("label", pa.string()),
        ("negative", pa.bool_()),
        ("negative_type", pa.string()),
        ("class", pa.string()),
        ("audio_class", pa.string()),
        ("jpg_sha256", pa.string()),
        ("jpg_bytes", pa.int64()),
        ("flac_sha256", pa.string()),
        ("flac_bytes", pa.int64()),
        ("json_sha256", pa.string()),
        ("json_bytes", pa.int64()),
        ("frame_width", pa.int32()),
        ("frame_height", pa.int32()),
        ("audio_samples", pa.int64()),
        ("audio_window_start", pa.float64()),
        ("audio_window_end", pa.float64()),
        ("clip_duration", pa.float64()),
    ]
)


def check_key(key: str) -> str:
    """Return `key` if it is a valid sample key (non-empty, no dot, no slash, no whitespace); else ValueError."""
    if not isinstance(key, str) or not key:
        raise ValueError(f"sample key must be a non-empty string, got {key!r}")
    if "." in key:
        raise ValueError(f"sample key {key!r} contains a dot (WebDataset splits keys at the first dot)")
    if "/" in key or any(ch.isspace() for ch in key):
        raise ValueError(f"sample key {key!r} contains a slash or whitespace")
    return key


@dataclass(frozen=True)
class SampleBlobs:
    """One sample ready for a shard: the two media blobs and its JSON record (`meta`, data spec §8)."""

    key: str
    jpg: bytes = field(repr=False)
    flac: bytes = field(repr=False)
    meta: Mapping[str, Any] = field(repr=False)

    def __post_init__(self) -> None:
        check_key(self.key)
        if self.meta.get("key", self.key) != self.key:
            raise ValueError(f"meta key {self.meta['key']!r} differs from sample key {self.key!r}")

    def json_bytes(self) -> bytes:
        """The `.json` member: canonical JSON (sorted keys, compact separators, UTF-8), `key` included."""
        return canonical_json({**self.meta, "key": self.key}).encode("utf-8")

    def members(self) -> list[tuple[str, bytes]]:
        """Tar members in shard order: `<key>.flac`, `<key>.jpg`, `<key>.json`."""
        return [(f"{self.key}.flac", self.flac), (f"{self.key}.jpg", self.jpg), (f"{self.key}.json", self.json_bytes())]


# --------------------------------------------------------------------------- tar


def _tarinfo(name: str, size: int) -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.size = size
    info.mtime = 0
    info.mode = 0o444
    info.uid = info.gid = 0
    info.uname = info.gname = ""
    info.type = tarfile.REGTYPE
    return info


def write_tar(fileobj: BinaryIO, samples: Iterable[SampleBlobs]) -> int:
    """Write a deterministic ustar archive of `samples` (in the order given) to `fileobj`; return the count."""
    count = 0
    with tarfile.open(fileobj=fileobj, mode="w", format=tarfile.USTAR_FORMAT) as tar:
        for sample in samples:
            for name, data in sample.members():
                tar.addfile(_tarinfo(name, len(data)), io.BytesIO(data))
            count += 1
    return count


def tar_bytes(samples: Iterable[SampleBlobs]) -> bytes:
    """The deterministic tar of `samples` as bytes (tests, small shards)."""
    buf = io.BytesIO()
    write_tar(buf, samples)
    return buf.getvalue()


class _HashingWriter(io.RawIOBase):
    """A write-only stream that forwards to `target` and keeps sha256 and byte count."""

    def __init__(self, target: BinaryIO) -> None:
        self._target = target
        self.digest = hashlib.sha256()
        self.size = 0

    def writable(self) -> bool:
        return True

    def tell(self) -> int:
        return self.size

    def write(self, data) -> int:  # type: ignore[override]
        view = memoryview(data)
        self._target.write(view)
        self.digest.update(view)
        self.size += view.nbytes
        return view.nbytes


class HashingReader:
    """A read-only file wrapper that hashes (sha256) everything read through it."""

    def __init__(self, raw: BinaryIO) -> None:
        self._raw = raw
        self.digest = hashlib.sha256()

    def read(self, n: int = -1) -> bytes:
        data = self._raw.read(n)
        self.digest.update(data)
        return data


def read_shard_samples(tar_path: str | os.PathLike, expected_sha256: str | None = None) -> list[SampleBlobs]:
    """The samples of a committed shard tar (one streaming read); DataFileError when it is not a shard or its
    sha256 differs from `expected_sha256` (the digest its stats recorded)."""
    import json

    from ..errors import DataFileError

    path = Path(tar_path)
    members: dict[str, dict[str, bytes]] = {}
    try:
        with open(path, "rb") as raw:
            reader = HashingReader(raw)
            with tarfile.open(fileobj=reader, mode="r|") as tar:  # type: ignore[call-overload]
                for info in tar:
                    key, _, ext = info.name.partition(".")
                    handle = tar.extractfile(info)
                    if handle is None or ext not in MEMBER_EXTENSIONS:
                        raise DataFileError(f"{path}: member {info.name!r} is not a sample file")
                    members.setdefault(key, {})[ext] = handle.read()
            while reader.read(1 << 20):
                pass
        if expected_sha256 is not None and reader.digest.hexdigest() != expected_sha256:
            raise DataFileError(f"{path}: sha256 {reader.digest.hexdigest()} differs from its stats "
                                f"({expected_sha256}): modified since its commit; delete its _stats.json to redo it")
        return [SampleBlobs(key=key, jpg=m["jpg"], flac=m["flac"], meta=json.loads(m["json"]))
                for key, m in members.items()]  # fmt: skip
    except (OSError, tarfile.TarError, KeyError, ValueError) as exc:
        raise DataFileError(f"{path}: unreadable shard: {type(exc).__name__}: {exc}") from None


# --------------------------------------------------------------------------- shard files


class ShardPaths(NamedTuple):
    tar: Path
    parquet: Path
    stats: Path


def shard_name(index: int) -> str:
    """`%06d` stem of shard `index`."""
    if index < 0:
        raise ValueError(f"shard index must be >= 0, got {index}")
    return f"{index:06d}"


def shard_paths(out_dir: str | os.PathLike, index: int) -> ShardPaths:
    """Paths of shard `index` in a split directory."""
    stem, base = shard_name(index), Path(out_dir)
    return ShardPaths(base / f"{stem}.tar", base / f"{stem}.parquet", base / f"{stem}_stats.json")


def shard_done(out_dir: str | os.PathLike, index: int) -> bool:
    """A shard is complete exactly when its stats file exists (written last)."""
    return shard_paths(out_dir, index).stats.is_file()


def read_stats(out_dir: str | os.PathLike, index: int) -> dict[str, Any]:
    """The stats dict of a committed shard."""
    import json

    return json.loads(shard_paths(out_dir, index).stats.read_text("utf-8"))


def clean_leftovers(out_dir: str | os.PathLike) -> list[Path]:
    """Delete `*.tmp` files (interrupted commits) in a split directory; return what was removed."""
    base = Path(out_dir)
    removed = []
    if base.is_dir():
        for path in sorted(base.glob("*.tmp")) + sorted(base.glob(".*.tmp")):
            if path.is_file():
                path.unlink(missing_ok=True)
                removed.append(path)
    return removed


def rows_to_table(rows: Sequence[Mapping[str, Any]]) -> pa.Table:
    """Manifest rows (dicts with MANIFEST_SCHEMA columns; absent ones are null) as a typed Arrow table."""
    names = set(MANIFEST_SCHEMA.names)
    for row in rows:
        unknown = set(row) - names
        if unknown:
            raise ValueError(f"manifest row {row.get('key')!r} has unknown columns {sorted(unknown)}")
    full = [{n: row.get(n) for n in MANIFEST_SCHEMA.names} for row in rows]
    return pa.Table.from_pylist(full, schema=MANIFEST_SCHEMA)


def error_reason(error: str | None) -> str:
    """The classified reason of a manifest `error` ("<reason>: <message>"); `unknown` when there is none."""
    return (error or "unknown").split(":", 1)[0].strip() or "unknown"


def commit_shard(
    out_dir: str | os.PathLike,
    shard_index: int,
    samples: Iterable[SampleBlobs],
    manifest_rows: Sequence[Mapping[str, Any]],
    stats: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """Atomically commit one shard: tar, then parquet, then stats (last). Return the stats written.

    `manifest_rows` are all input rows of the shard (any status); exactly the `success` rows must have a sample.
    Samples and rows are written in key order; member digests and `index_in_shard` are filled in here.
    `stats` (durations, plan hash, ffmpeg build, ...) is merged into the stats file; `durations.commit_s` is added.
    """
    t0 = time.perf_counter()
    base = Path(out_dir)
    base.mkdir(parents=True, exist_ok=True)
    paths = shard_paths(base, shard_index)
    ordered = sorted(samples, key=lambda s: s.key)
    rows = sorted((dict(r) for r in manifest_rows), key=lambda r: r["key"])
    _check_consistency(ordered, rows)

    tmp = paths.tar.with_name(paths.tar.name + ".tmp")
    with open(tmp, "wb") as raw:
        writer = _HashingWriter(raw)
        write_tar(writer, ordered)
        raw.flush()
        os.fsync(raw.fileno())
    os.replace(tmp, paths.tar)
    fsync_dir(base)

    position = {s.key: i for i, s in enumerate(ordered)}
    by_key = {s.key: s for s in ordered}
    for row in rows:
        row["shard"] = shard_index
        sample = by_key.get(row["key"])
        if sample is None:
            row["index_in_shard"] = None
            continue
        meta_json = sample.json_bytes()
        row.update(
            index_in_shard=position[row["key"]],
            jpg_sha256=sha256_bytes(sample.jpg), jpg_bytes=len(sample.jpg),
            flac_sha256=sha256_bytes(sample.flac), flac_bytes=len(sample.flac),
            json_sha256=sha256_bytes(meta_json), json_bytes=len(meta_json),
        )  # fmt: skip
    write_parquet_atomic(paths.parquet, rows_to_table(rows))

    counts = {s.value: 0 for s in Status}
    errors: collections.Counter[str] = collections.Counter()
    for row in rows:
        counts[row["status"]] = counts.get(row["status"], 0) + 1
        if row["status"] != Status.SUCCESS.value:
            errors[f"{row['status']}:{error_reason(row.get('error'))}"] += 1
    extra = dict(stats or {})
    durations = dict(extra.pop("durations", None) or {})
    durations["commit_s"] = round(time.perf_counter() - t0, 6)
    final = {
        **extra,
        "durations": durations,
        "schema_version": STATS_SCHEMA_VERSION,
        "shard": shard_index,
        "tar": paths.tar.name,
        "tar_sha256": writer.digest.hexdigest(),
        "tar_bytes": writer.size,
        "samples": len(ordered),
        "rows": len(rows),
        "counts": counts,
        "errors": dict(sorted(errors.items())),
        "member_bytes": {ext: sum(r.get(f"{ext}_bytes") or 0 for r in rows) for ext in MEMBER_EXTENSIONS},
    }
    write_json_atomic(paths.stats, final)
    return final


def _check_consistency(samples: Sequence[SampleBlobs], rows: Sequence[Mapping[str, Any]]) -> None:
    keys = [s.key for s in samples]
    if len(set(keys)) != len(keys):
        raise ValueError("duplicate sample keys in one shard")
    row_keys = [r["key"] for r in rows]
    if len(set(row_keys)) != len(row_keys):
        raise ValueError("duplicate manifest rows in one shard")
    success = {r["key"] for r in rows if r["status"] == Status.SUCCESS.value}
    if set(keys) != success:
        extra, missing = sorted(set(keys) - success), sorted(success - set(keys))
        raise ValueError(
            f"samples and success rows differ: samples without success row {extra[:5]}, "
            f"success rows without sample {missing[:5]}"
        )
