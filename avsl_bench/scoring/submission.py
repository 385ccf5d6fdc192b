"""Untrusted prediction archives (`preds.npz`, protocol §7): validate, stream in chunks, write.

A submission is a zip of ``.npy`` members in one of two layouts:

(a) ``ids`` (1-D unicode array) + ``maps`` (N×H×W float16/32/64) [+ ``scores`` (N,) float]
    [+ ``audio_embeddings`` and ``image_embeddings``, both or neither: (N, D) float16/32/64, 1 ≤ D ≤ 4096,
    row i belonging to ids[i]; used only by cross-modal retrieval, `score --retrieval`];
(b) one 2-D float array per sample, the member name being ``<id>.npy``.

Nothing is ever unpickled and nothing is loaded whole: every member's ``.npy`` header is parsed
here (``numpy.lib.format.read_magic`` + ``read_array_header_*``) and only float maps / unicode ids /
float scores are accepted; the maps are read straight from the zip member stream in chunks of rows,
so memory stays bounded by a few chunks whatever N is. A background thread decompresses (zlib and
CRC release the GIL) and converts the next chunks while the caller scores the current one.

Every problem raises `SubmissionError` with a one-line message naming the file, the sample when
there is one, and the problem.

Example:
    >>> import numpy as np, tempfile, os
    >>> path = os.path.join(tempfile.mkdtemp(), "preds.npz")
    >>> write_submission(path, ["a", "b"], np.zeros((2, 8, 8), np.float16))
    >>> with open_submission(path) as sub:
    ...     print(sub.layout, sub.ids, sub.shape, sub.dtype)
    ...     print([(ids, maps.dtype, maps.shape) for ids, maps in sub.iter_chunks(chunk_size=1)])
    a ['a', 'b'] (8, 8) float16
    [(['a'], dtype('float32'), (1, 8, 8)), (['b'], dtype('float32'), (1, 8, 8))]
"""

from __future__ import annotations

import contextlib
import math
import os
import queue
import struct
import threading
import zipfile
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator, NamedTuple, Sequence

import numpy as np
from numpy.lib import format as npy_format

from avsl_bench.errors import SubmissionError
from avsl_bench.files import atomic_write, sha256_file

__all__ = [
    "EMBEDDING_MEMBERS",
    "Embeddings",
    "MAX_EMBEDDING_DIM",
    "MAX_UNCOMPRESSED_BYTES",
    "MAX_MEMBERS",
    "MAX_ID_LENGTH",
    "Submission",
    "open_submission",
    "validate_ids",
    "write_submission",
]

MAX_UNCOMPRESSED_BYTES = 8 << 30
"""Default bound on the declared uncompressed size of an archive (sum of its members' sizes)."""

MAX_MEMBERS = 100_000
"""Default bound on the number of zip members, and on the number of samples (10× the largest benchmark)."""

_MAX_CD_BYTES_PER_MEMBER = 512
"""The central directory may hold at most this many bytes per allowed member (checked before parsing)."""

MAX_ID_LENGTH = 200
"""Longest sample id accepted, in characters."""

MAX_CHUNK_BYTES = 256 << 20
"""A chunk never holds more than this many bytes of float32 maps (fewer rows for large maps)."""

MAX_EMBEDDING_DIM = 4096
"""Widest accepted embedding (D of the optional ``audio_embeddings`` / ``image_embeddings``)."""

EMBEDDING_MEMBERS = ("image_embeddings", "audio_embeddings")
"""The optional layout-(a) embedding arrays (names without ``.npy``); an archive carries both or neither."""

_LAYOUT_A = {"ids.npy", "maps.npy", "scores.npy"} | {f"{name}.npy" for name in EMBEDDING_MEMBERS}
_MAX_HEADER_SIZE = 10_000  # numpy's own default for untrusted headers
_READ_ERRORS = (zipfile.BadZipFile, zipfile.LargeZipFile, zlib.error, EOFError, OSError, struct.error,
                ValueError, NotImplementedError, RuntimeError)
_FLOAT_SIZES = (2, 4, 8)
_FIXED_DATE = (1980, 1, 1, 0, 0, 0)
_RawChunk = tuple[list[str], np.ndarray, np.dtype]  # ids, maps as stored (unchecked), stored dtype


class Embeddings(NamedTuple):
    """Row-aligned float32 (N, D) embeddings read from a submission (image first, as models return them)."""

    image: np.ndarray
    audio: np.ndarray


# --------------------------------------------------------------------------------------------------
# .npy headers


@dataclass(frozen=True)
class _Header:
    """What a member's .npy header declares; `offset` is where the data starts in the member."""

    shape: tuple[int, ...]
    dtype: np.dtype
    fortran_order: bool
    offset: int

    @property
    def nbytes(self) -> int:
        return math.prod(self.shape) * self.dtype.itemsize


class _CountingReader:
    """File-like wrapper that counts the bytes read (numpy's header readers only call read)."""

    def __init__(self, raw: Any) -> None:
        self.raw = raw
        self.count = 0

    def read(self, size: int = -1) -> bytes:
        data = self.raw.read(size)
        self.count += len(data)
        return data


def _parse_header(fp: _CountingReader, path: Path, member: str, sample: str | None) -> _Header:
    """Parse the magic and header of a .npy stream; never touches the data, never unpickles."""
    try:
        version = npy_format.read_magic(fp)
        if version == (1, 0):
            shape, fortran, dtype = npy_format.read_array_header_1_0(fp, max_header_size=_MAX_HEADER_SIZE)
        elif version == (2, 0):
            shape, fortran, dtype = npy_format.read_array_header_2_0(fp, max_header_size=_MAX_HEADER_SIZE)
        else:
            raise SubmissionError(path, f"member {member!r}: unsupported .npy format version {version}", sample)
    except SubmissionError:
        raise
    except (zipfile.BadZipFile, zlib.error, EOFError, OSError) as err:
        raise SubmissionError(path, f"member {member!r} is corrupt: {_reason(err)}", sample) from None
    except Exception as err:  # numpy raises ValueError/TypeError/SyntaxError... for bad headers
        raise SubmissionError(path, f"member {member!r} is not a valid .npy array: {_reason(err)}", sample) from None
    if not all(isinstance(d, int) and d >= 0 for d in shape):
        raise SubmissionError(path, f"member {member!r} declares an invalid shape {shape!r}", sample)
    return _Header(tuple(shape), dtype, bool(fortran), fp.count)


def _reason(err: BaseException) -> str:
    text = " ".join(str(err).split()) or type(err).__name__
    return text if len(text) <= 160 else text[:157] + "..."


def _describe(dtype: np.dtype) -> str:
    if dtype.hasobject:
        return "object (pickled) arrays are not accepted"
    if dtype.fields is not None or dtype.subdtype is not None:
        return f"structured dtype {dtype} is not accepted"
    return f"dtype {dtype} is not accepted"


def _is_float(dtype: np.dtype) -> bool:
    return dtype.kind == "f" and dtype.itemsize in _FLOAT_SIZES and dtype.fields is None and not dtype.hasobject


# --------------------------------------------------------------------------------------------------
# the submission object


class Submission:
    """An opened, header-validated prediction archive. Use `open_submission` to make one.

    Attributes:
        path: the archive.
        layout: ``"a"`` (ids + maps [+ scores]) or ``"b"`` (one member per sample).
        ids: sample ids in archive order.
        shape: (H, W) of every map.
        dtype: stored dtype of the maps (layout b: of the first member; members may differ).
        scores: explicit per-sample confidences as float64 (layout a only), or None.
        embedding_dim: D of the (validated) ``audio_embeddings`` / ``image_embeddings`` (layout a only), or
            None when the archive carries none; read them with `read_embeddings`.

    The archive stays open until `close()` (or the end of a ``with`` block).
    """

    def __init__(self, path: Path, zf: zipfile.ZipFile, layout: str, ids: list[str], shape: tuple[int, int],
                 dtype: np.dtype, scores: np.ndarray | None, members: list[zipfile.ZipInfo],
                 maps_header: _Header | None,
                 embeddings: dict[str, tuple[zipfile.ZipInfo, _Header]] | None = None) -> None:
        self.path = path
        self.layout = layout
        self.ids = ids
        self.shape = shape
        self.dtype = dtype
        self.scores = scores
        self._embeddings = embeddings
        self.embedding_dim = None if embeddings is None else embeddings["audio_embeddings"][1].shape[1]
        self._zf = zf
        self._members = members  # layout a: [maps.npy]; layout b: one per sample, archive order
        self._maps_header = maps_header
        self._hash_thread: threading.Thread | None = None
        self._hash: str | BaseException | None = None

    def __len__(self) -> int:
        return len(self.ids)

    def __repr__(self) -> str:
        return (f"Submission({str(self.path)!r}, layout={self.layout!r}, n={len(self.ids)}, "
                f"shape={self.shape}, dtype={self.dtype})")

    def __enter__(self) -> Submission:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        """Close the archive (idempotent)."""
        self._zf.close()

    # -- digest -----------------------------------------------------------------------------------

    def start_hashing(self) -> None:
        """Start computing `sha256` in a background thread (hashlib releases the GIL)."""
        if self._hash_thread is None and self._hash is None:
            self._hash_thread = threading.Thread(target=self._compute_hash, name="avsl-sha256", daemon=True)
            self._hash_thread.start()

    def _compute_hash(self) -> None:
        try:
            self._hash = sha256_file(self.path)
        except BaseException as err:  # re-raised by the property
            self._hash = err

    @property
    def sha256(self) -> str:
        """Hex sha256 of the archive file (one pass; runs in the background from `open_submission`)."""
        if self._hash is None and self._hash_thread is None:
            self._compute_hash()
        if self._hash_thread is not None:
            self._hash_thread.join()
            self._hash_thread = None
        if isinstance(self._hash, BaseException):
            raise SubmissionError(self.path, f"cannot read file: {_reason(self._hash)}")
        return self._hash

    # -- embeddings -------------------------------------------------------------------------------

    def require_embeddings(self) -> int:
        """D of the archive's embeddings; `SubmissionError` when it carries none."""
        if self._embeddings is None:
            where = "layout (b) cannot carry them" if self.layout == "b" else "this archive has none"
            raise SubmissionError(self.path, f"no embeddings: cross-modal retrieval needs the optional "
                                             f"{' and '.join(repr(m) for m in EMBEDDING_MEMBERS)} arrays ({where})")
        return self.embedding_dim

    def read_embeddings(self, rows: Sequence[int] | np.ndarray | None = None) -> Embeddings:
        """The embeddings of the samples at archive positions `rows` (default all), in that order, as float32.

        Read in bounded chunks and checked again (finite, no all-zero row); raises `SubmissionError` when the
        archive carries no embeddings.
        """
        self.require_embeddings()
        if self._zf.fp is None:
            raise ValueError(f"submission {str(self.path)!r} is closed")
        n = len(self.ids)
        rows = np.arange(n) if rows is None else np.asarray(rows, dtype=np.int64).reshape(-1)
        if rows.size and (rows.min() < 0 or rows.max() >= n):
            raise ValueError(f"rows must be archive positions in [0, {n})")
        out = {}
        for name in EMBEDDING_MEMBERS:
            info, header = self._embeddings[name]
            out[name] = _scan_embeddings(self.path, self._zf, info, header, self.ids, name, rows)
        return Embeddings(out["image_embeddings"], out["audio_embeddings"])

    # -- streaming --------------------------------------------------------------------------------

    def rows_per_chunk(self, chunk_size: int = 256) -> int:
        """Maps per chunk: `chunk_size`, fewer when a chunk would exceed MAX_CHUNK_BYTES of float32."""
        if not isinstance(chunk_size, int) or chunk_size < 1:
            raise ValueError(f"chunk_size must be a positive integer, got {chunk_size!r}")
        row = self.shape[0] * self.shape[1] * 4
        return max(1, min(chunk_size, MAX_CHUNK_BYTES // row))

    def iter_chunks(self, chunk_size: int = 256, prefetch: int = 2) -> Iterator[tuple[list[str], np.ndarray]]:
        """Yield ``(ids, maps)`` chunks in archive order; maps are fresh float32 (B, H, W) arrays.

        With ``prefetch > 0`` two background threads run ahead, each by at most `prefetch` chunks
        (bounded queues): one reads and decompresses (zlib and the CRC release the GIL), the next
        converts to float32 and checks the values, so decompression, the bottleneck of deflated
        archives, never waits for the conversion; with 0 everything runs in the caller's thread.
        Errors found while streaming (corrupt data, bad CRC, NaN/inf, ragged or non-float
        members) raise `SubmissionError` in the caller, possibly after earlier chunks were yielded.
        Peak memory ≈ (2 × prefetch + 3) chunks.
        """
        rows = self.rows_per_chunk(chunk_size)
        if self._zf.fp is None:
            raise ValueError(f"submission {str(self.path)!r} is closed")
        if not isinstance(prefetch, int) or prefetch < 0:
            raise ValueError(f"prefetch must be a non-negative integer, got {prefetch!r}")
        if prefetch == 0:
            return self._checked(self._read_chunks(rows))
        return _prefetched(self._checked(_prefetched(self._read_chunks(rows), prefetch)), prefetch)

    def _read_chunks(self, rows: int) -> Iterator[_RawChunk]:
        """Chunks ``(ids, maps, stored dtype)`` as read: maps in the stored dtype, not yet checked."""
        if self.layout == "a":
            return self._read_chunks_a(rows)
        return self._read_chunks_b(rows)

    def _checked(self, chunks: Iterator[_RawChunk]) -> Iterator[tuple[list[str], np.ndarray]]:
        """Convert read chunks to fresh float32 arrays and reject non-finite maps, naming the sample."""
        try:
            for ids, arr, stored in chunks:
                with np.errstate(over="ignore"):  # float64 beyond float32 → inf, reported below
                    maps = arr if arr.dtype == np.float32 and arr.flags.writeable else arr.astype(np.float32)
                del arr
                try:
                    self._check_finite(maps, ids, stored)
                except SubmissionError:
                    if self.layout == "a":
                        # Garbage from a damaged member often looks like NaN: read to the end of the
                        # member first, so that a bad CRC is what gets reported.
                        for _ in chunks:
                            pass
                    raise
                yield ids, maps
        finally:
            close = getattr(chunks, "close", None)
            if close is not None:
                close()

    def _open_member(self, info: zipfile.ZipInfo, sample: str | None = None):
        try:
            return self._zf.open(info)
        except _READ_ERRORS as err:
            raise SubmissionError(self.path, f"member {info.filename!r} is corrupt: {_reason(err)}", sample) from None

    def _read_exact(self, fp: _CountingReader, nbytes: int, member: str, sample: str | None) -> bytes:
        try:
            data = fp.read(nbytes)
        except _READ_ERRORS as err:
            raise SubmissionError(self.path, f"member {member!r} is corrupt: {_reason(err)}", sample) from None
        if len(data) != nbytes:
            raise SubmissionError(self.path, f"member {member!r} is truncated", sample)
        return data

    def _read_chunks_a(self, rows: int) -> Iterator[_RawChunk]:
        info = self._members[0]
        expected = self._maps_header
        n = len(self.ids)
        h, w = self.shape
        row_bytes = h * w * expected.dtype.itemsize
        with self._open_member(info) as raw:
            fp = _CountingReader(raw)
            if _parse_header(fp, self.path, info.filename, None) != expected:
                raise SubmissionError(self.path, "the maps header changed while reading (file modified?)")
            for start in range(0, n, rows):
                ids = self.ids[start : start + rows]
                data = self._read_exact(fp, len(ids) * row_bytes, info.filename, None)
                yield ids, np.frombuffer(data, dtype=expected.dtype).reshape(len(ids), h, w), expected.dtype
                del data
            self._check_eof(fp, info.filename)

    def _read_chunks_b(self, rows: int) -> Iterator[_RawChunk]:
        h, w = self.shape
        for start in range(0, len(self.ids), rows):
            ids = self.ids[start : start + rows]
            maps = np.empty((len(ids), h, w), np.float32)
            dtypes = set()
            for j, (sample, info) in enumerate(zip(ids, self._members[start : start + rows])):
                with self._open_member(info, sample) as raw:
                    fp = _CountingReader(raw)
                    header = _parse_header(fp, self.path, info.filename, sample)
                    self._check_b_header(header, info, sample)
                    data = self._read_exact(fp, header.nbytes, info.filename, sample)
                    self._check_eof(fp, info.filename, sample)
                arr = np.frombuffer(data, dtype=header.dtype)
                with np.errstate(over="ignore"):  # float64 beyond float32 → inf, reported below
                    maps[j] = arr.reshape((w, h)).T if header.fortran_order else arr.reshape(h, w)
                dtypes.add(header.dtype)
            yield ids, maps, max(dtypes, key=lambda d: d.itemsize)

    def _check_b_header(self, header: _Header, info: zipfile.ZipInfo, sample: str) -> None:
        if not _is_float(header.dtype):
            raise SubmissionError(self.path, f"map {_describe(header.dtype)} (need float16/32/64)", sample)
        if len(header.shape) != 2:
            raise SubmissionError(self.path, f"map must be 2-D (H, W) in layout (b), got shape {header.shape}", sample)
        if header.shape != self.shape:
            raise SubmissionError(self.path, f"ragged maps: shape {header.shape}, but the first map "
                                             f"({self.ids[0]!r}) is {self.shape}", sample)
        _check_member_size(self.path, info, header, sample)

    def _check_eof(self, fp: _CountingReader, member: str, sample: str | None = None) -> None:
        """Read past the end so zipfile verifies the CRC (no-op when it already has)."""
        try:
            extra = fp.read(1)
        except _READ_ERRORS as err:
            raise SubmissionError(self.path, f"member {member!r} is corrupt: {_reason(err)}", sample) from None
        if extra:
            raise SubmissionError(self.path, f"member {member!r} has data beyond its declared array", sample)

    def _check_finite(self, maps: np.ndarray, ids: list[str], stored: np.dtype) -> None:
        finite = np.isfinite(maps.reshape(len(ids), -1)).all(axis=1)
        if finite.all():
            return
        j = int(np.argmin(finite))
        if np.isnan(maps[j]).any():
            problem = "map contains NaN"
        elif stored.itemsize > 4:
            problem = "map contains inf (or a value beyond the float32 range)"
        else:
            problem = "map contains inf"
        raise SubmissionError(self.path, problem, ids[j])


_DONE = object()


class _Failure:
    def __init__(self, err: BaseException) -> None:
        self.err = err


def _prefetched(source: Iterator[Any], depth: int) -> Iterator[Any]:
    """Run `source` in a background thread, at most `depth` items ahead; re-raise its errors here."""
    slots: queue.Queue = queue.Queue(maxsize=depth)
    stop = threading.Event()

    def put(item: Any) -> bool:
        while not stop.is_set():
            try:
                slots.put(item, timeout=0.05)
                return True
            except queue.Full:
                continue
        return False

    def work() -> None:
        try:
            for item in source:
                if not put(item):
                    return
            put(_DONE)
        except BaseException as err:  # handed to the consumer
            put(_Failure(err))
        finally:
            with contextlib.suppress(Exception):
                source.close()

    thread = threading.Thread(target=work, name="avsl-submission-reader", daemon=True)
    thread.start()
    try:
        while True:
            item = slots.get()
            if item is _DONE:
                return
            if isinstance(item, _Failure):
                raise item.err
            yield item
            del item
    finally:
        stop.set()
        thread.join()


# --------------------------------------------------------------------------------------------------
# opening


def open_submission(
    path: str | os.PathLike,
    *,
    max_uncompressed_bytes: int = MAX_UNCOMPRESSED_BYTES,
    max_members: int = MAX_MEMBERS,
    hash_in_background: bool = True,
) -> Submission:
    """Open `path` and validate everything that can be checked without reading the maps.

    Checks: a readable zip; at most `max_members` members (and samples); declared uncompressed size
    at most `max_uncompressed_bytes`; stored or deflated, unencrypted ``.npy`` members; one layout,
    not both; layout (a): ``ids`` 1-D unicode, ids non-empty and at most 200 characters, ``maps``
    3-D float16/32/64 in C order with as many rows as ids, member sizes matching their headers,
    ``scores`` (N,) finite floats, ``audio_embeddings`` / ``image_embeddings`` both or neither, (N, D) float
    in C order with the same 1 ≤ D ≤ 4096, every row finite and not all zero (streamed once here);
    layout (b): member names are valid ids, the first member is a
    2-D float map (the others are checked while streaming). The archive's sha256 starts computing
    in a background thread unless `hash_in_background` is False.
    """
    path = Path(path)
    _check_central_directory(path, max_members)
    try:
        zf = zipfile.ZipFile(path)
    except FileNotFoundError:
        raise SubmissionError(path, "file not found") from None
    except IsADirectoryError:
        raise SubmissionError(path, "is a directory, not a .npz file") from None
    except zipfile.BadZipFile as err:
        raise SubmissionError(path, f"not a valid zip/.npz archive (truncated or corrupt?): {_reason(err)}") from None
    except _READ_ERRORS as err:
        raise SubmissionError(path, f"cannot read archive: {_reason(err)}") from None
    try:
        sub = _open(path, zf, max_uncompressed_bytes, max_members)
    except BaseException:
        zf.close()
        raise
    if hash_in_background:
        sub.start_hashing()
    return sub


def _check_central_directory(path: Path, max_members: int) -> None:
    """Refuse a central directory too large for `max_members` before zipfile parses all of it.

    Uses zipfile's own end-of-central-directory reader; when that is unavailable or fails, the
    check is left to zipfile (which then reports a bad zip) and to the member count after opening.
    """
    try:
        with open(path, "rb") as handle:
            endrec = zipfile._EndRecData(handle)  # noqa: SLF001 -- stable since Python 2
        if not endrec:
            return
        entries, cd_bytes = int(endrec[zipfile._ECD_ENTRIES_TOTAL]), int(endrec[zipfile._ECD_SIZE])  # noqa: SLF001
    except Exception:  # noqa: BLE001 -- best effort; zipfile.ZipFile below reports real problems
        return
    if entries > max_members:
        raise SubmissionError(path, f"archive has {entries:,} members, more than the limit of {max_members:,}")
    if cd_bytes > max_members * _MAX_CD_BYTES_PER_MEMBER:
        raise SubmissionError(path, f"zip central directory of {cd_bytes:,} bytes is too large for "
                                    f"at most {max_members:,} members")


def _open(path: Path, zf: zipfile.ZipFile, max_bytes: int, max_members: int) -> Submission:
    infos = zf.infolist()
    if not infos:
        raise SubmissionError(path, "empty archive (no members)")
    if len(infos) > max_members:
        raise SubmissionError(path, f"archive has {len(infos):,} members, more than the limit of {max_members:,}")
    declared = sum(info.file_size for info in infos)
    if declared > max_bytes:
        raise SubmissionError(path, f"declared uncompressed size {declared:,} bytes exceeds the limit of {max_bytes:,}")
    for info in infos:
        name = info.filename
        if info.is_dir() or not name.endswith(".npy"):
            raise SubmissionError(path, f"member {name!r} is not a .npy array")
        if info.flag_bits & 0x1:
            raise SubmissionError(path, f"member {name!r} is encrypted")
        if info.compress_type not in (zipfile.ZIP_STORED, zipfile.ZIP_DEFLATED):
            raise SubmissionError(path, f"member {name!r} uses unsupported compression method {info.compress_type}"
                                        " (use np.savez or np.savez_compressed)")
    names = [info.filename for info in infos]
    if "ids.npy" in names or "maps.npy" in names:
        return _open_a(path, zf, infos, max_members)
    return _open_b(path, zf, infos)


def _read_member_header(path: Path, zf: zipfile.ZipFile, info: zipfile.ZipInfo) -> tuple[Any, _CountingReader, _Header]:
    try:
        raw = zf.open(info)
    except _READ_ERRORS as err:
        raise SubmissionError(path, f"member {info.filename!r} is corrupt: {_reason(err)}") from None
    fp = _CountingReader(raw)
    try:
        return raw, fp, _parse_header(fp, path, info.filename, None)
    except BaseException:
        raw.close()
        raise


def _check_member_size(path: Path, info: zipfile.ZipInfo, header: _Header, sample: str | None = None) -> None:
    held = info.file_size - header.offset
    if held != header.nbytes:
        what = "is truncated" if held < header.nbytes else "has data beyond its declared array"
        raise SubmissionError(path, f"member {info.filename!r} {what}: header {header.shape} {header.dtype} "
                                    f"needs {header.nbytes:,} data bytes, member holds {held:,}", sample)


def _float_array_header(path: Path, zf: zipfile.ZipFile, info: zipfile.ZipInfo, name: str, axes: str) -> _Header:
    """The header of a float16/32/64 C-order member `name` with as many dimensions as `axes` names, e.g. "(N, D)"."""
    raw, _, header = _read_member_header(path, zf, info)
    raw.close()
    if not _is_float(header.dtype):
        raise SubmissionError(path, f"{name}: {_describe(header.dtype)} (need float16/32/64)")
    ndim = axes.count(",") + 1
    if len(header.shape) != ndim:
        raise SubmissionError(path, f"{name} must be {ndim}-D {axes}, got shape {header.shape}")
    if header.fortran_order:
        raise SubmissionError(path, f"{name}: stored in Fortran order; save np.ascontiguousarray({name})")
    return header


def _open_a(path: Path, zf: zipfile.ZipFile, infos: list[zipfile.ZipInfo], max_members: int) -> Submission:
    by_name: dict[str, zipfile.ZipInfo] = {}
    for info in infos:
        if info.filename not in _LAYOUT_A:
            raise SubmissionError(path, f"mixes layout (a) ('ids' + 'maps') with per-sample member {info.filename!r}")
        if info.filename in by_name:
            raise SubmissionError(path, f"duplicate member {info.filename!r}")
        by_name[info.filename] = info
    for need in ("maps.npy", "ids.npy"):
        if need not in by_name:
            raise SubmissionError(path, f"layout (a) needs both 'ids' and 'maps'; {need[:-4]!r} is missing")

    maps_info = by_name["maps.npy"]
    header = _float_array_header(path, zf, maps_info, "maps", "(N, H, W)")
    n, h, w = header.shape
    if n == 0:
        raise SubmissionError(path, "maps is empty (0 samples)")
    if h == 0 or w == 0:
        raise SubmissionError(path, f"maps have an empty grid, shape {header.shape}")
    if n > max_members:
        raise SubmissionError(path, f"{n:,} samples, more than the limit of {max_members:,}")
    _check_member_size(path, maps_info, header)

    ids = _read_ids(path, zf, by_name["ids.npy"], n)
    scores = _read_scores(path, zf, by_name["scores.npy"], ids) if "scores.npy" in by_name else None
    embeddings = _open_embeddings(path, zf, by_name, ids)
    return Submission(path, zf, "a", ids, (h, w), header.dtype, scores, [maps_info], header, embeddings)


def _read_ids(path: Path, zf: zipfile.ZipFile, info: zipfile.ZipInfo, n: int) -> list[str]:
    raw, fp, header = _read_member_header(path, zf, info)
    with raw:
        if header.dtype.kind != "U":
            raise SubmissionError(path, f"ids: {_describe(header.dtype)} "
                                        "(need a 1-D unicode array, e.g. np.array(ids, dtype=str))")
        if len(header.shape) != 1:
            raise SubmissionError(path, f"ids must be 1-D, got shape {header.shape}")
        if header.fortran_order:
            raise SubmissionError(path, "ids are stored in Fortran order")
        if header.shape[0] != n:
            raise SubmissionError(path, f"maps/ids length mismatch: {n:,} maps but {header.shape[0]:,} ids")
        _check_member_size(path, info, header)
        ids: list[str] = []
        itemsize = header.dtype.itemsize
        step = max(1, (16 << 20) // max(itemsize, 1))
        for start in range(0, n, step):
            count = min(step, n - start)
            data = _read_or_fail(path, fp, count * itemsize, info.filename)
            for value in np.frombuffer(data, dtype=header.dtype).tolist():
                ids.append(_check_id(path, value, f"ids[{len(ids)}]"))
        _read_or_fail(path, fp, 1, info.filename, at_end=True)
    return ids


def _read_or_fail(path: Path, fp: _CountingReader, nbytes: int, member: str, *, at_end: bool = False) -> bytes:
    try:
        data = fp.read(nbytes)
    except _READ_ERRORS as err:
        raise SubmissionError(path, f"member {member!r} is corrupt: {_reason(err)}") from None
    if at_end:
        if data:
            raise SubmissionError(path, f"member {member!r} has data beyond its declared array")
    elif len(data) != nbytes:
        raise SubmissionError(path, f"member {member!r} is truncated")
    return data


def _check_id(path: Path, value: str, where: str) -> str:
    if not value:
        raise SubmissionError(path, f"{where} is an empty id")
    if len(value) > MAX_ID_LENGTH:
        raise SubmissionError(path, f"{where} is {len(value)} characters long (the limit is {MAX_ID_LENGTH})",
                              value[:40] + "...")
    return value


def _read_scores(path: Path, zf: zipfile.ZipFile, info: zipfile.ZipInfo, ids: list[str]) -> np.ndarray:
    raw, fp, header = _read_member_header(path, zf, info)
    with raw:
        if not _is_float(header.dtype):
            raise SubmissionError(path, f"scores: {_describe(header.dtype)} (need float16/32/64)")
        if header.shape != (len(ids),):
            raise SubmissionError(path, f"scores must have shape ({len(ids)},), got {header.shape}")
        _check_member_size(path, info, header)
        data = _read_or_fail(path, fp, header.nbytes, info.filename)
        _read_or_fail(path, fp, 1, info.filename, at_end=True)
    scores = np.frombuffer(data, dtype=header.dtype).astype(np.float64)
    bad = ~np.isfinite(scores)
    if bad.any():
        j = int(np.argmax(bad))
        raise SubmissionError(path, f"score is not finite ({scores[j]})", ids[j])
    return scores


def _open_embeddings(path: Path, zf: zipfile.ZipFile, by_name: dict[str, zipfile.ZipInfo], ids: list[str]
                     ) -> dict[str, tuple[zipfile.ZipInfo, _Header]] | None:
    """Validate the optional embedding pair: both or neither, (N, D) float, same D, values finite and non-zero."""
    present = [name for name in EMBEDDING_MEMBERS if f"{name}.npy" in by_name]
    if not present:
        return None
    if len(present) == 1:
        other = next(name for name in EMBEDDING_MEMBERS if name not in present)
        raise SubmissionError(path, f"{present[0]!r} without {other!r}: an archive carries both embeddings or neither")
    n = len(ids)
    found: dict[str, tuple[zipfile.ZipInfo, _Header]] = {}
    for name in EMBEDDING_MEMBERS:
        info = by_name[f"{name}.npy"]
        header = _float_array_header(path, zf, info, name, "(N, D)")
        if header.shape[0] != n:
            raise SubmissionError(path, f"{name} has {header.shape[0]:,} rows but there are {n:,} ids")
        if not 1 <= header.shape[1] <= MAX_EMBEDDING_DIM:
            raise SubmissionError(path, f"{name} has dimension D = {header.shape[1]:,} (need 1 ≤ D ≤ "
                                        f"{MAX_EMBEDDING_DIM})")
        _check_member_size(path, info, header)
        found[name] = (info, header)
    dims = {name: header.shape[1] for name, (_, header) in found.items()}
    if len(set(dims.values())) != 1:
        sizes = ", ".join(f"{name} D = {dim}" for name, dim in dims.items())
        raise SubmissionError(path, f"embedding dimensions differ: {sizes}")
    for name, (info, header) in found.items():
        _scan_embeddings(path, zf, info, header, ids, name, None)
    return found


def _scan_embeddings(path: Path, zf: zipfile.ZipFile, info: zipfile.ZipInfo, header: _Header, ids: list[str],
                     name: str, rows: np.ndarray | None) -> np.ndarray | None:
    """Stream one embedding member in bounded chunks, checking every row; return float32 `rows` (None: check only)."""
    n, d = header.shape
    slot = None
    if rows is not None:
        unique, inverse = np.unique(rows, return_inverse=True)
        if len(unique) < len(rows):  # repeated rows: read each once, then expand
            return _scan_embeddings(path, zf, info, header, ids, name, unique)[inverse.reshape(-1)]
        slot = np.full(n, -1, dtype=np.int64)
        slot[rows] = np.arange(len(rows))
        out = np.empty((len(rows), d), dtype=np.float32)
    step = max(1, (16 << 20) // (d * header.dtype.itemsize))
    raw, fp, got = _read_member_header(path, zf, info)
    with raw:
        if got != header:
            raise SubmissionError(path, f"the {name} header changed while reading (file modified?)")
        for start in range(0, n, step):
            count = min(step, n - start)
            stored = np.frombuffer(_read_or_fail(path, fp, count * d * header.dtype.itemsize, info.filename),
                                   dtype=header.dtype).reshape(count, d)
            with np.errstate(over="ignore", under="ignore"):
                chunk = stored.astype(np.float32)
            _check_embedding_rows(path, name, stored, chunk, ids[start : start + count])
            if slot is not None:
                sel = slot[start : start + count]
                keep = sel >= 0
                out[sel[keep]] = chunk[keep]
        _read_or_fail(path, fp, 1, info.filename, at_end=True)
    return None if rows is None else out


def _check_embedding_rows(path: Path, name: str, stored: np.ndarray, chunk: np.ndarray, ids: list[str]) -> None:
    finite = np.isfinite(chunk).all(axis=1)
    if not finite.all():
        j = int(np.argmin(finite))
        if np.isnan(stored[j]).any():
            problem = "contains NaN"
        elif np.isinf(stored[j]).any():
            problem = "contains inf"
        else:
            problem = "has a value beyond the float32 range"
        raise SubmissionError(path, f"{name} row {problem}", ids[j])
    zero = ~chunk.any(axis=1)
    if zero.any():
        raise SubmissionError(path, f"{name} row is all zeros in float32 (cosine similarity undefined)",
                              ids[int(np.argmax(zero))])


def _open_b(path: Path, zf: zipfile.ZipFile, infos: list[zipfile.ZipInfo]) -> Submission:
    if any(info.filename == "scores.npy" for info in infos):
        raise SubmissionError(path, "'scores' is only accepted with layout (a) ('ids' + 'maps')")
    for name in EMBEDDING_MEMBERS:
        if any(info.filename == f"{name}.npy" for info in infos):
            raise SubmissionError(path, f"{name!r} is only accepted with layout (a) ('ids' + 'maps')")
    ids = [_check_id(path, info.filename[:-4], f"member {info.filename!r}") for info in infos]
    first = infos[0]
    raw, _, header = _read_member_header(path, zf, first)
    raw.close()
    if not _is_float(header.dtype):
        raise SubmissionError(path, f"map {_describe(header.dtype)} (need float16/32/64)", ids[0])
    if len(header.shape) != 2:
        raise SubmissionError(path, f"map must be 2-D (H, W) in layout (b), got shape {header.shape}", ids[0])
    if 0 in header.shape:
        raise SubmissionError(path, f"map has an empty grid, shape {header.shape}", ids[0])
    _check_member_size(path, first, header, ids[0])
    return Submission(path, zf, "b", ids, header.shape, header.dtype, None, list(infos), None)


# --------------------------------------------------------------------------------------------------
# ids


def validate_ids(submission: Submission, expected_ids: Sequence[str], allow_missing: bool = False) -> list[str]:
    """Check the submission's ids against the benchmark's; return the missing ids (benchmark order).

    Raises `SubmissionError` for the first duplicate id, for the first id not in the benchmark,
    and, unless `allow_missing`, when benchmark ids are missing (naming how many and the first few).
    """
    seen: set[str] = set()
    for sample in submission.ids:
        if sample in seen:
            raise SubmissionError(submission.path, "duplicate id (it appears more than once)", sample)
        seen.add(sample)
    expected = set(expected_ids)
    unknown = [sample for sample in submission.ids if sample not in expected]
    if unknown:
        more = f" ({len(unknown):,} unknown ids in all)" if len(unknown) > 1 else ""
        raise SubmissionError(submission.path, f"id is not part of the benchmark{more}", unknown[0])
    missing = [sample for sample in expected_ids if sample not in seen]
    if missing and not allow_missing:
        first = ", ".join(repr(s) for s in missing[:3]) + (", ..." if len(missing) > 3 else "")
        raise SubmissionError(submission.path, f"{len(missing):,} of {len(expected):,} benchmark ids are missing "
                                               f"({first}); allow missing ids to score them as failures")
    return missing


# --------------------------------------------------------------------------------------------------
# writing


def write_submission(
    path: str | os.PathLike,
    ids: Sequence[str],
    maps: np.ndarray | Iterable[np.ndarray],
    scores: Sequence[float] | np.ndarray | None = None,
    compressed: bool = False,
    embeddings: tuple[np.ndarray, np.ndarray] | Callable[[], tuple[np.ndarray, np.ndarray] | None] | None = None,
) -> None:
    """Write a layout (a) submission atomically (temp file + rename); readable by `np.load`.

    `maps` is an (N, H, W) float16/32/64 array, or an iterable of (B, H, W) chunks of one shape and
    dtype (streamed: predictors need not hold all maps). `scores`, when given, is N finite numbers
    (stored as float64 unless already float). `embeddings`, when given, is ``(image, audio)``: two
    (N, D) float arrays written as ``image_embeddings`` / ``audio_embeddings``, or a callable returning
    that pair (or None) once all maps are written (streamed predictors collect them on the way).
    `compressed` deflates the members. Member timestamps are fixed, so the same inputs give the same bytes.
    """
    id_list = [_valid_write_id(value, i) for i, value in enumerate(ids)]
    n = len(id_list)
    if n == 0:
        raise ValueError("ids must not be empty")
    if len(set(id_list)) != n:
        dup = next(s for i, s in enumerate(id_list) if s in id_list[:i])
        raise ValueError(f"ids: duplicate id {dup!r}")
    score_arr = None
    if scores is not None:
        score_arr = np.asarray(scores)
        if score_arr.dtype.kind not in "fiu" or score_arr.shape != (n,):
            raise ValueError(f"scores must be {n} numbers, got shape {score_arr.shape} dtype {score_arr.dtype}")
        if score_arr.dtype.kind != "f":
            score_arr = score_arr.astype(np.float64)
        if not np.isfinite(score_arr).all():
            raise ValueError("scores must be finite")

    chunks = iter([maps]) if isinstance(maps, np.ndarray) else iter(maps)
    first = next(chunks, None)
    if first is None:
        raise ValueError("maps must not be empty")
    first = _valid_write_chunk(first, None)
    dtype, grid = first.dtype, first.shape[1:]

    method = zipfile.ZIP_DEFLATED if compressed else zipfile.ZIP_STORED
    with atomic_write(path, "wb") as handle, zipfile.ZipFile(handle, "w", compression=method, allowZip64=True) as zf:
        with zf.open(_zip_info("ids.npy", method), "w", force_zip64=True) as out:
            npy_format.write_array(out, np.array(id_list, dtype=np.str_), allow_pickle=False)
        with zf.open(_zip_info("maps.npy", method), "w", force_zip64=True) as out:
            header = {"descr": npy_format.dtype_to_descr(dtype), "fortran_order": False, "shape": (n, *grid)}
            npy_format.write_array_header_1_0(out, header)
            written = 0
            chunk = first
            while chunk is not None:
                written += chunk.shape[0]
                if written > n:
                    raise ValueError(f"maps: more maps than ids ({n})")
                out.write(chunk.reshape(-1).view(np.uint8))
                nxt = next(chunks, None)
                chunk = None if nxt is None else _valid_write_chunk(nxt, (dtype, grid))
            if written != n:
                raise ValueError(f"maps: {written} maps for {n} ids")
        if score_arr is not None:
            with zf.open(_zip_info("scores.npy", method), "w", force_zip64=True) as out:
                npy_format.write_array(out, score_arr, allow_pickle=False)
        pair = embeddings() if callable(embeddings) else embeddings
        if pair is not None:
            for name, arr in zip(EMBEDDING_MEMBERS, _valid_write_embeddings(pair, n)):
                with zf.open(_zip_info(f"{name}.npy", method), "w", force_zip64=True) as out:
                    npy_format.write_array(out, arr, allow_pickle=False)


def _zip_info(name: str, method: int) -> zipfile.ZipInfo:
    info = zipfile.ZipInfo(name, date_time=_FIXED_DATE)
    info.compress_type = method
    info.external_attr = 0o644 << 16
    # fastest deflate level: prediction maps are smooth and large; level 6 costs minutes per GB
    for attribute in ("compress_level", "_compresslevel"):  # Python ≥ 3.13 / older name
        if hasattr(info, attribute):
            setattr(info, attribute, 1)
    return info


def _valid_write_id(value: object, index: int) -> str:
    if not isinstance(value, str):
        raise ValueError(f"ids[{index}] must be a str, got {type(value).__name__}")
    if not value or len(value) > MAX_ID_LENGTH or "\x00" in value:
        raise ValueError(f"ids[{index}] must be 1 to {MAX_ID_LENGTH} characters without NUL, got {value!r}")
    return value


def _valid_write_embeddings(pair: Any, n: int) -> tuple[np.ndarray, np.ndarray]:
    if not isinstance(pair, (tuple, list)) or len(pair) != 2:
        raise ValueError("embeddings must be a pair (image, audio) of (N, D) arrays")
    arrays = []
    for name, value in zip(EMBEDDING_MEMBERS, pair):
        arr = np.ascontiguousarray(value)
        if not _is_float(arr.dtype) or arr.ndim != 2 or arr.shape[0] != n:
            raise ValueError(f"{name} must be a ({n}, D) float16/32/64 array, got shape {arr.shape} dtype {arr.dtype}")
        if not 1 <= arr.shape[1] <= MAX_EMBEDDING_DIM:
            raise ValueError(f"{name}: D must be in [1, {MAX_EMBEDDING_DIM}], got {arr.shape[1]}")
        with np.errstate(over="ignore", under="ignore"):
            as32 = arr.astype(np.float32)
        if not np.isfinite(as32).all() or not as32.any(axis=1).all():
            raise ValueError(f"{name} must be finite in float32, with no all-zero row")
        arrays.append(arr)
    if arrays[0].shape != arrays[1].shape:
        raise ValueError(f"image and audio embeddings must have the same shape, got {arrays[0].shape} and "
                         f"{arrays[1].shape}")
    return arrays[0], arrays[1]


def _valid_write_chunk(chunk: Any, like: tuple[np.dtype, tuple[int, ...]] | None) -> np.ndarray:
    arr = np.asarray(chunk)
    if arr.ndim != 3:
        raise ValueError(f"maps must be (N, H, W) (chunks (B, H, W)), got shape {arr.shape}")
    if not _is_float(arr.dtype):
        raise ValueError(f"maps must be float16/32/64, got dtype {arr.dtype}")
    if 0 in arr.shape[1:]:
        raise ValueError(f"maps have an empty grid, shape {arr.shape}")
    if like is not None:
        dtype, grid = like
        if arr.shape[1:] != grid:
            raise ValueError(f"maps chunks must all be {grid}, got {arr.shape[1:]}")
        if arr.dtype != dtype:
            raise ValueError(f"maps chunks must all be {dtype}, got {arr.dtype}")
    return np.ascontiguousarray(arr)
