"""Deterministic WebDataset tars and the tar -> parquet -> stats commit (spec §8)."""

from __future__ import annotations

import hashlib
import io
import json
import tarfile

import pyarrow.parquet as pq
import pytest

from avsl_bench.data import shards
from avsl_bench.data.shards import (
    SampleBlobs, clean_leftovers, commit_shard, read_stats, shard_done, shard_paths, tar_bytes,
)  # fmt: skip
from avsl_bench.files import sha256_file


def _sample(key: str, n: int = 3) -> SampleBlobs:
    flac = b"fLaC" + bytes(i % 256 for i in range(n))
    meta = {"label": "sounding", "class": "dog", "n": n}
    return SampleBlobs(key, jpg=b"\xff\xd8" + key.encode() * n, flac=flac, meta=meta)


def _rows(keys_status):
    return [{"key": k, "video_id": k, "audio_id": k, "status": st, "error": err} for k, st, err in keys_status]


def test_tar_is_deterministic_ustar_with_fixed_attributes():
    samples = [_sample("abc_000001"), _sample("abc_000002", 700)]
    first, second = tar_bytes(samples), tar_bytes([_sample("abc_000001"), _sample("abc_000002", 700)])
    assert hashlib.sha256(first).digest() == hashlib.sha256(second).digest()
    assert len(first) % 10240 == 0 and first[257:263] == b"ustar\x00"
    with tarfile.open(fileobj=io.BytesIO(first)) as tar:
        members = tar.getmembers()
        assert [m.name for m in members] == [f"abc_00000{i}.{ext}" for i in (1, 2) for ext in ("flac", "jpg", "json")]
        for m in members:
            got = (m.mtime, m.mode, m.uid, m.gid, m.uname, m.gname, m.type)
            assert got == (0, 0o444, 0, 0, "", "", tarfile.REGTYPE)
        record = tar.extractfile("abc_000002.json").read()
    expected = {"class": "dog", "key": "abc_000002", "label": "sounding", "n": 700}
    assert record == (json.dumps(expected, sort_keys=True, separators=(",", ":")) + "\n").encode()


@pytest.mark.parametrize("key", ["a.b", "", "a/b", "a b"])
def test_bad_keys_rejected(key):
    with pytest.raises(ValueError):
        SampleBlobs(key, b"", b"", {})


def test_meta_key_must_match():
    with pytest.raises(ValueError, match="differs"):
        SampleBlobs("a", b"", b"", {"key": "b"})


def test_commit_shard_writes_three_files_and_stats(tmp_path):
    samples = [_sample("k2"), _sample("k1")]  # out of order on purpose
    rows = _rows([("k3", "unavailable", "not_in_mirror: gone"), ("k1", "success", None), ("k2", "success", None),
                  ("k4", "failed_cut", "no_frame: short")])  # fmt: skip
    stats = commit_shard(tmp_path, 7, samples, rows, {"plan_hash": "p", "durations": {"cut_s": 1.0}})
    paths = shard_paths(tmp_path, 7)
    assert [p.name for p in paths] == ["000007.tar", "000007.parquet", "000007_stats.json"]
    assert shard_done(tmp_path, 7) and read_stats(tmp_path, 7) == stats
    assert stats["tar_sha256"] == sha256_file(paths.tar) and stats["tar_bytes"] == paths.tar.stat().st_size
    assert paths.tar.read_bytes() == tar_bytes(sorted(samples, key=lambda s: s.key))
    assert stats["counts"] == {"success": 2, "unavailable": 1, "failed_download": 0, "failed_cut": 1}
    assert stats["errors"] == {"failed_cut:no_frame": 1, "unavailable:not_in_mirror": 1}
    assert stats["plan_hash"] == "p" and set(stats["durations"]) == {"cut_s", "commit_s"}
    table = pq.read_table(paths.parquet).to_pylist()
    assert [r["key"] for r in table] == ["k1", "k2", "k3", "k4"]
    assert [r["index_in_shard"] for r in table] == [0, 1, None, None]
    assert {r["shard"] for r in table} == {7}
    assert table[0]["jpg_sha256"] == hashlib.sha256(samples[1].jpg).hexdigest() and table[2]["jpg_sha256"] is None
    assert table[1]["json_bytes"] == len(samples[0].json_bytes())
    assert not list(tmp_path.glob("*.tmp"))


def test_commit_shard_is_byte_identical_twice(tmp_path):
    rows = _rows([("k1", "success", None), ("k2", "failed_download", "timeout: x")])
    for sub in ("a", "b"):
        commit_shard(tmp_path / sub, 0, [_sample("k1")], rows, {})
    for path in shard_paths(tmp_path / "a", 0)[:2]:
        assert path.read_bytes() == (tmp_path / "b" / path.name).read_bytes()


def test_samples_must_match_success_rows(tmp_path):
    with pytest.raises(ValueError, match="differ"):
        commit_shard(tmp_path, 0, [_sample("k1")], _rows([("k1", "unavailable", "x")]), {})
    with pytest.raises(ValueError, match="unknown columns"):
        commit_shard(tmp_path, 0, [], [{"key": "k1", "status": "unavailable", "bogus": 1}], {})
    assert not shard_done(tmp_path, 0)


def test_crash_before_stats_leaves_shard_undone(tmp_path, monkeypatch):
    def boom(*_a, **_k):
        raise OSError("disk full")

    monkeypatch.setattr(shards, "write_parquet_atomic", boom)
    with pytest.raises(OSError):
        commit_shard(tmp_path, 0, [_sample("k1")], _rows([("k1", "success", None)]), {})
    assert shard_paths(tmp_path, 0).tar.is_file() and not shard_done(tmp_path, 0)


def test_clean_leftovers(tmp_path):
    (tmp_path / "000001.tar.tmp").write_bytes(b"partial")
    (tmp_path / ".000001.parquet.abc123.tmp").write_bytes(b"partial")
    (tmp_path / "000000.tar").write_bytes(b"keep")
    removed = clean_leftovers(tmp_path)
    assert sorted(p.name for p in removed) == [".000001.parquet.abc123.tmp", "000001.tar.tmp"]
    assert [p.name for p in tmp_path.iterdir()] == ["000000.tar"]


def test_webdataset_reads_samples(tmp_path):
    wds = pytest.importorskip("webdataset")
    rows = _rows([("x_1", "success", None), ("x_2", "success", None)])
    commit_shard(tmp_path, 0, [_sample("x_1"), _sample("x_2")], rows, {})
    got = list(wds.WebDataset(str(shard_paths(tmp_path, 0).tar), shardshuffle=False))
    assert [s["__key__"] for s in got] == ["x_1", "x_2"]
    assert set(got[0]) >= {"flac", "jpg", "json"} and json.loads(got[1]["json"])["key"] == "x_2"
