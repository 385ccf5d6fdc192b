"""Untrusted prediction archives: round trips, chunked streaming, and every rejected input."""

from __future__ import annotations

import hashlib
import io
import re
import struct
import threading
import time
import zipfile

import numpy as np
import pytest

from avsl_bench.errors import SubmissionError
from avsl_bench.scoring import submission as S
from avsl_bench.scoring.submission import open_submission, validate_ids, write_submission

IDS = [f"vid{i:03d}_000010" for i in range(10)]


def _maps(n=10, h=8, w=8, dtype=np.float32, seed=0):
    return np.random.default_rng(seed).standard_normal((n, h, w)).astype(dtype)


def _read_all(path, **kwargs):
    with open_submission(path) as sub:
        chunks = list(sub.iter_chunks(**kwargs))
    ids = [i for c_ids, _ in chunks for i in c_ids]
    return ids, np.concatenate([m for _, m in chunks])


def _error(path, **open_kwargs) -> SubmissionError:
    """Open and stream `path`; return the SubmissionError raised on the way."""
    with pytest.raises(SubmissionError) as info:
        with open_submission(path, **open_kwargs) as sub:
            for _ in sub.iter_chunks(chunk_size=3):
                pass
    err = info.value
    assert str(path) in str(err) and "\n" not in str(err)
    return err


# ---------------------------------------------------------------------------------------------------
# round trips


@pytest.mark.parametrize("dtype", [np.float16, np.float32, np.float64, ">f4"])
@pytest.mark.parametrize("compressed", [False, True])
def test_layout_a_round_trip(tmp_path, dtype, compressed):
    maps = _maps(dtype=dtype)
    path = tmp_path / "preds.npz"
    (np.savez_compressed if compressed else np.savez)(path, ids=np.array(IDS), maps=maps)
    with open_submission(path) as sub:
        assert (sub.layout, sub.ids, sub.shape, sub.dtype, sub.scores) == ("a", IDS, (8, 8), np.dtype(dtype), None)
        assert len(sub) == 10
        assert sub.sha256 == hashlib.sha256(path.read_bytes()).hexdigest()
    expected = maps.astype(np.float32)
    for chunk_size, prefetch in [(1, 0), (3, 2), (4, 1), (256, 2)]:
        ids, got = _read_all(path, chunk_size=chunk_size, prefetch=prefetch)
        assert ids == IDS
        assert got.dtype == np.float32 and got.flags.writeable
        assert np.array_equal(got, expected)


@pytest.mark.parametrize("dtype", [np.float16, np.float32, np.float64, ">f8"])
@pytest.mark.parametrize("compressed", [False, True])
def test_layout_b_round_trip(tmp_path, dtype, compressed):
    maps = _maps(dtype=dtype)
    path = tmp_path / "preds.npz"
    members = {i: m for i, m in zip(IDS, maps)}
    members[IDS[4]] = np.asfortranarray(maps[4])  # Fortran-order member, read correctly
    members[IDS[5]] = maps[5].astype(np.float16)  # dtypes may differ between members
    (np.savez_compressed if compressed else np.savez)(path, **members)
    with open_submission(path) as sub:
        assert (sub.layout, sub.ids, sub.shape) == ("b", IDS, (8, 8))
    expected = maps.astype(np.float32)
    expected[5] = maps[5].astype(np.float16).astype(np.float32)
    for chunk_size, prefetch in [(1, 0), (3, 2), (256, 1)]:
        ids, got = _read_all(path, chunk_size=chunk_size, prefetch=prefetch)
        assert ids == IDS and np.array_equal(got, expected)


@pytest.mark.parametrize("compressed", [False, True])
def test_write_submission(tmp_path, compressed):
    maps = _maps(dtype=np.float16)
    scores = np.linspace(0, 1, 10, dtype=np.float32)
    path = tmp_path / "out" / "preds.npz"
    write_submission(path, IDS, maps, scores=scores, compressed=compressed)
    with np.load(path, allow_pickle=False) as npz:  # a plain .npz
        assert list(npz["ids"]) == IDS and np.array_equal(npz["maps"], maps)
    with open_submission(path) as sub:
        assert sub.scores.dtype == np.float64 and np.array_equal(sub.scores, scores)
        assert sub.dtype == np.float16
    digest = hashlib.sha256(path.read_bytes()).digest()
    # streamed chunks give the same bytes (fixed member timestamps)
    write_submission(path, IDS, (maps[i : i + 3] for i in range(0, 10, 3)), scores=scores, compressed=compressed)
    assert hashlib.sha256(path.read_bytes()).digest() == digest
    assert [p.name for p in path.parent.iterdir()] == ["preds.npz"]  # no temp file left


def test_write_submission_rejects_bad_input(tmp_path):
    path = tmp_path / "preds.npz"
    with pytest.raises(ValueError):
        write_submission(path, IDS, _maps().astype(np.int32))
    with pytest.raises(ValueError):
        write_submission(path, IDS[:9] + IDS[:1], _maps())
    with pytest.raises(ValueError):
        write_submission(path, IDS, (_maps()[i : i + 4] for i in range(0, 8, 4)))  # 8 maps for 10 ids
    with pytest.raises(ValueError):
        write_submission(path, IDS, _maps(), scores=[0.0] * 9)
    assert not path.exists() and list(tmp_path.iterdir()) == []


def test_chunks_are_bounded_for_large_maps(tmp_path, monkeypatch):
    monkeypatch.setattr(S, "MAX_CHUNK_BYTES", 3 * 8 * 8 * 4)
    path = tmp_path / "preds.npz"
    write_submission(path, IDS, _maps())
    with open_submission(path) as sub:
        assert sub.rows_per_chunk(256) == 3
        assert [len(ids) for ids, _ in sub.iter_chunks(256)] == [3, 3, 3, 1]


def test_prefetch_stays_bounded_and_stops_early():
    produced = []

    def source():
        for i in range(100):
            produced.append(i)
            yield i

    it = S._prefetched(source(), 2)
    assert next(it) == 0
    time.sleep(0.2)
    assert len(produced) <= 1 + 2 + 1  # the one consumed, the queue, the one waiting to be put
    it.close()  # consumer stops early: the reader thread ends
    assert not any(t.name == "avsl-submission-reader" for t in threading.enumerate())


def test_reader_errors_reach_the_consumer():
    def source():
        yield 1
        raise SubmissionError("x.npz", "boom", "s1")

    it = S._prefetched(source(), 2)
    assert next(it) == 1
    with pytest.raises(SubmissionError, match="boom"):
        next(it)


# ---------------------------------------------------------------------------------------------------
# ids


def test_validate_ids(tmp_path):
    path = tmp_path / "preds.npz"
    np.savez(path, ids=np.array(IDS[:8]), maps=_maps(8))
    with open_submission(path) as sub:
        assert validate_ids(sub, IDS[:8]) == []
        missing = r"2 of 10 benchmark ids are missing \('vid008_000010', 'vid009_000010'\)"
        with pytest.raises(SubmissionError, match=missing):
            validate_ids(sub, IDS)
        assert validate_ids(sub, IDS, allow_missing=True) == IDS[8:]
        with pytest.raises(SubmissionError, match=r"6 of 14 .* \('vid008_000010', 'vid009_000010', 'x0', \.\.\.\)"):
            validate_ids(sub, IDS + ["x0", "x1", "x2", "x3"])
        with pytest.raises(SubmissionError, match="not part of the benchmark") as info:
            validate_ids(sub, IDS[1:8])
        assert info.value.sample == IDS[0]


def test_duplicate_ids(tmp_path):
    path = tmp_path / "preds.npz"
    ids = [IDS[0], IDS[1], IDS[2], IDS[1], IDS[0]]
    np.savez(path, ids=np.array(ids), maps=_maps(5))
    with open_submission(path) as sub, pytest.raises(SubmissionError, match="duplicate") as info:
        validate_ids(sub, IDS)
    assert info.value.sample == IDS[1]  # the first id seen twice


def test_duplicate_members_in_layout_b(tmp_path):
    path = tmp_path / "preds.npz"
    np.savez(path, **{IDS[0]: _maps(1)[0], IDS[1]: _maps(1)[0]})
    with zipfile.ZipFile(path, "a") as zf, pytest.warns(UserWarning, match="Duplicate name"):
        zf.writestr(IDS[0] + ".npy", zf.read(IDS[0] + ".npy"))
    with open_submission(path) as sub, pytest.raises(SubmissionError, match="duplicate") as info:
        validate_ids(sub, IDS)
    assert info.value.sample == IDS[0]


@pytest.mark.parametrize(("ids", "problem"), [
    (np.array([b"a", b"b"]), "dtype \\|S1 is not accepted"),
    (np.array([["a"], ["b"]]), "ids must be 1-D"),
    (np.array(["a", ""]), r"ids\[1\] is an empty id"),
    (np.array(["a", "x" * 201]), r"ids\[1\] is 201 characters long"),
    (np.array(["a", "b", "c"]), "length mismatch: 2 maps but 3 ids"),
])
def test_bad_ids(tmp_path, ids, problem):
    path = tmp_path / "preds.npz"
    np.savez(path, ids=ids, maps=_maps(2))
    err = _error(path)
    assert re.search(problem, err.problem), err.problem


# ---------------------------------------------------------------------------------------------------
# pickles and dtypes


class _Boom:
    """Unpickling this calls `_unpickled`, which records that it happened."""

    def __reduce__(self):
        return (_unpickled, ())


UNPICKLED: list = []


def _unpickled():
    UNPICKLED.append(True)
    return "unpickled"


def test_object_arrays_are_rejected_without_unpickling(tmp_path):
    obj = np.empty(2, dtype=object)
    obj[0], obj[1] = _Boom(), _Boom()
    cases = {
        "maps": dict(ids=np.array(IDS[:2]), maps=obj),
        "ids": dict(ids=obj, maps=_maps(2)),
        "scores": dict(ids=np.array(IDS[:2]), maps=_maps(2), scores=obj),
        "member": {IDS[0]: obj},
    }
    for name, members in cases.items():
        path = tmp_path / f"{name}.npz"
        np.savez(path, allow_pickle=True, **members)
        assert "object (pickled) arrays are not accepted" in _error(path).problem
    later = tmp_path / "later.npz"  # a pickled member after a valid first member (layout b)
    np.savez(later, allow_pickle=True, **{IDS[0]: _maps(1)[0], IDS[1]: obj})
    err = _error(later)
    assert "object (pickled)" in err.problem and err.sample == IDS[1]
    assert UNPICKLED == []


@pytest.mark.parametrize("dtype", [np.int32, np.uint8, bool, np.complex64, np.longdouble, "datetime64[s]"])
def test_non_float_maps(tmp_path, dtype):
    path = tmp_path / "preds.npz"
    np.savez(path, ids=np.array(IDS[:2]), maps=np.zeros((2, 4, 4), dtype=dtype))
    assert "need float16/32/64" in _error(path).problem


def test_structured_maps(tmp_path):
    path = tmp_path / "preds.npz"
    np.savez(path, ids=np.array(IDS[:2]), maps=np.zeros((2, 4, 4), dtype=[("a", "<f4")]))
    assert "structured dtype" in _error(path).problem


@pytest.mark.parametrize(("shape", "problem"), [((128,), "3-D"), ((2, 1, 8, 8), "3-D"), ((2, 0, 8), "empty grid"),
                                                 ((0, 8, 8), "empty")])
def test_bad_map_shapes_layout_a(tmp_path, shape, problem):
    path = tmp_path / "preds.npz"
    np.savez(path, ids=np.array(IDS[: shape[0]] if len(shape) > 1 else IDS[:2]), maps=np.zeros(shape, np.float32))
    assert problem in _error(path).problem


@pytest.mark.parametrize("shape", [(64,), (1, 8, 8)])
def test_bad_map_shapes_layout_b(tmp_path, shape):
    path = tmp_path / "preds.npz"
    np.savez(path, **{IDS[0]: np.zeros(shape, np.float32)})
    err = _error(path)
    assert "2-D" in err.problem and err.sample == IDS[0]


def test_ragged_layout_b(tmp_path):
    path = tmp_path / "preds.npz"
    members = {i: np.zeros((8, 8), np.float32) for i in IDS[:5]}
    members[IDS[3]] = np.zeros((8, 9), np.float32)
    np.savez(path, **members)
    err = _error(path)
    assert "ragged" in err.problem and err.sample == IDS[3]


def test_fortran_order_layout_a(tmp_path):
    path = tmp_path / "preds.npz"
    np.savez(path, ids=np.array(IDS[:3]), maps=np.asfortranarray(_maps(3)))
    assert "Fortran order" in _error(path).problem


@pytest.mark.parametrize(("scores", "problem"), [
    (np.zeros(3), "shape (2,)"),
    (np.zeros((2, 1)), "shape (2,)"),
    (np.array([1, 2]), "need float16/32/64"),
    (np.array([0.5, np.nan]), "not finite"),
])
def test_bad_scores(tmp_path, scores, problem):
    path = tmp_path / "preds.npz"
    np.savez(path, ids=np.array(IDS[:2]), maps=_maps(2), scores=scores)
    err = _error(path)
    assert problem in err.problem
    if "finite" in problem:
        assert err.sample == IDS[1]


# ---------------------------------------------------------------------------------------------------
# non-finite values


@pytest.mark.parametrize("layout", ["a", "b"])
@pytest.mark.parametrize(("value", "dtype", "problem"), [
    (np.nan, np.float32, "NaN"), (np.inf, np.float16, "inf"), (-np.inf, np.float64, "inf"),
    (1e300, np.float64, "beyond the float32 range"),
])
def test_non_finite_maps_name_the_sample(tmp_path, layout, value, dtype, problem):
    maps = _maps(dtype=np.float64)
    maps[7, 3, 5] = value
    maps = maps.astype(dtype)
    path = tmp_path / "preds.npz"
    if layout == "a":
        np.savez(path, ids=np.array(IDS), maps=maps)
    else:
        np.savez(path, **dict(zip(IDS, maps)))
    with open_submission(path) as sub:
        seen = []
        with pytest.raises(SubmissionError) as info:
            for ids, _ in sub.iter_chunks(chunk_size=3, prefetch=2):
                seen += ids
    assert info.value.sample == IDS[7] and problem in info.value.problem
    assert seen == IDS[:6]  # earlier chunks were delivered before the error


# ---------------------------------------------------------------------------------------------------
# broken archives


def test_not_a_zip(tmp_path):
    path = tmp_path / "preds.npz"
    path.write_bytes(b"hello, this is not a zip file")
    assert "not a valid zip" in _error(path).problem
    np.save(tmp_path / "maps.npy", _maps())
    assert "not a valid zip" in _error(tmp_path / "maps.npy").problem
    assert "not found" in _error(tmp_path / "missing.npz").problem


def test_empty_archive(tmp_path):
    path = tmp_path / "preds.npz"
    with zipfile.ZipFile(path, "w"):
        pass
    assert "empty archive" in _error(path).problem


@pytest.mark.parametrize("cut", [1, 100, 0.5])
def test_truncated_file(tmp_path, cut):
    path = tmp_path / "preds.npz"
    write_submission(path, IDS, _maps(h=64, w=64), compressed=True)
    data = path.read_bytes()
    keep = int(len(data) * cut) if isinstance(cut, float) else len(data) - cut
    path.write_bytes(data[:keep])
    assert "not a valid zip" in _error(path).problem


def _member_data_span(path, name):
    with zipfile.ZipFile(path) as zf:
        info = zf.getinfo(name)
    raw = path.read_bytes()
    name_len, extra_len = struct.unpack_from("<HH", raw, info.header_offset + 26)
    start = info.header_offset + 30 + name_len + extra_len
    return start, info.compress_size


@pytest.mark.parametrize(("compressed", "fill", "reason"), [
    (True, 0x00, "Bad CRC-32"),  # inflates to garbage (it looks like NaN maps): the CRC decides
    (True, 0xFF, "Error -3 while decompressing"),  # zlib.error mid-stream
    (False, 0x00, "Bad CRC-32"),
])
def test_corrupt_member_data_fails_while_streaming(tmp_path, compressed, fill, reason):
    path = tmp_path / "preds.npz"
    write_submission(path, IDS, _maps(h=64, w=64), compressed=compressed)
    start, size = _member_data_span(path, "maps.npy")
    data = bytearray(path.read_bytes())
    middle = start + size // 2
    data[middle : middle + 64] = bytes([fill]) * 64  # overwrite a run in the middle of the member
    path.write_bytes(bytes(data))
    with open_submission(path) as sub:  # headers are intact: the damage shows while streaming
        with pytest.raises(SubmissionError, match="maps.npy' is corrupt: " + reason) as info:
            for _ in sub.iter_chunks(chunk_size=2):
                pass
    assert "\n" not in str(info.value)


def test_declared_size_above_the_bound(tmp_path):
    path = tmp_path / "preds.npz"
    write_submission(path, IDS, _maps())
    assert "exceeds the limit of 1,000" in _error(path, max_uncompressed_bytes=1000).problem
    # a crafted central directory claiming a 4 GiB member is refused before anything is read
    crafted = tmp_path / "crafted.npz"
    buf = io.BytesIO()
    np.save(buf, _maps(1)[0])
    with zipfile.ZipFile(crafted, "w") as zf:
        zf.writestr(IDS[0] + ".npy", buf.getvalue())
    data = bytearray(crafted.read_bytes())
    cd = data.rfind(b"PK\x01\x02")
    struct.pack_into("<I", data, cd + 24, 0xFFFFFFF0)
    crafted.write_bytes(bytes(data))
    assert "declared uncompressed size 4,294,967,280 bytes" in _error(crafted, max_uncompressed_bytes=1 << 30).problem


def test_too_many_members(tmp_path):
    path = tmp_path / "preds.npz"
    np.savez(path, **{i: np.zeros((4, 4), np.float32) for i in IDS[:5]})
    assert "more than the limit of 3" in _error(path, max_members=3).problem
    np.savez(path, **{"x" * 600: np.zeros((4, 4), np.float32)})  # one entry, 600-byte name
    assert "central directory of" in _error(path, max_members=1).problem


def test_mixed_layouts(tmp_path):
    path = tmp_path / "preds.npz"
    np.savez(path, ids=np.array(IDS[:2]), maps=_maps(2), **{IDS[5]: _maps(1)[0]})
    assert "mixes layout (a)" in _error(path).problem
    np.savez(path, maps=_maps(2))
    assert "'ids' is missing" in _error(path).problem
    np.savez(path, scores=np.zeros(2), **{IDS[0]: _maps(1)[0]})
    assert "only accepted with layout (a)" in _error(path).problem


def test_bad_npy_members(tmp_path):
    path = tmp_path / "preds.npz"
    with zipfile.ZipFile(path, "w") as zf:
        zf.writestr("ids.npy", b"\x93NUMPY garbage that is not a header")
        zf.writestr("maps.npy", b"not even a magic string")
    assert "not a valid .npy array" in _error(path).problem
    with zipfile.ZipFile(path, "w") as zf:  # header promises 10×8×8 floats, data holds fewer
        buf = io.BytesIO()
        np.save(buf, _maps())
        zf.writestr("maps.npy", buf.getvalue()[:-40])
        buf = io.BytesIO()
        np.save(buf, np.array(IDS))
        zf.writestr("ids.npy", buf.getvalue())
    assert "is truncated" in _error(path).problem
    with zipfile.ZipFile(path, "w") as zf:
        zf.writestr("notes.txt", b"hi")
    assert "is not a .npy array" in _error(path).problem
