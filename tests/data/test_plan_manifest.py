"""The deterministic plan and parts (spec §8, §9) and the merge checks that build the manifest."""

from __future__ import annotations

import io
import json

import numpy as np
import pyarrow.parquet as pq
import pytest
import soundfile as sf
from PIL import Image

from avsl_bench.data.cut import CutError
from avsl_bench.data.ffmpeg import encode_flac
from avsl_bench.data.manifest import MergeError, merge
from avsl_bench.data.plan import PlanError, PlanRow, clip_ref, make_plan, part_file, read_part_files
from avsl_bench.data.prepare import run_prepare
from avsl_bench.data.shards import SampleBlobs, shard_paths
from avsl_bench.errors import UsageError


def _row(key: str, **kw) -> PlanRow:
    return PlanRow(key=key, video_id=kw.pop("video_id", key), audio_id=kw.pop("audio_id", key), benchmark="toy",
                   split="test", protocol="toy@1", source_kind="synthetic", **kw)  # fmt: skip


def _fake_blobs(row: PlanRow) -> SampleBlobs:
    """Tiny deterministic samples; keys containing 'bad' fail like a cut."""
    if "bad" in row.key:
        raise CutError("no_frame", f"{row.key} is too short")
    meta = {"benchmark": row.benchmark, "split": row.split, "frame": {"width": 4, "height": 3},
            "audio": {"samples": 2, "window": [0.0, 3.0]}}  # fmt: skip
    return SampleBlobs(row.key, jpg=f"jpg-{row.key}".encode(), flac=f"flac-{row.key}".encode(), meta=meta)


def _prepare(tmp_path, keys, *, sps=2, num_parts=1, part=0, make_blobs=_fake_blobs, **kw):
    return run_prepare([_row(k) for k in keys], split_dir=tmp_path / "split", make_blobs=make_blobs,
                       samples_per_shard=sps, num_parts=num_parts, part=part, progress=False, workers=2,
                       **kw)  # fmt: skip


KEYS = ["b_1", "B_2", "a_3", "bad_4", "_5", "-6", "z_7"]

# --------------------------------------------------------------------------- plan


def test_plan_sorts_by_code_point_and_shards_by_position():
    plan, rows = make_plan([_row(k) for k in KEYS], samples_per_shard=3)
    assert list(plan.keys) == sorted(KEYS) == ["-6", "B_2", "_5", "a_3", "b_1", "bad_4", "z_7"]
    assert [r.key for r in rows] == list(plan.keys)
    assert plan.num_shards == 3
    assert [list(plan.shard_range(s)) for s in range(3)] == [[0, 1, 2], [3, 4, 5], [6]]
    assert [plan.shard_of(i) for i in range(7)] == [0, 0, 0, 1, 1, 1, 2]


def test_plan_hash_is_order_free_and_input_sensitive():
    base, _ = make_plan([_row(k) for k in KEYS], samples_per_shard=3)
    shuffled, _ = make_plan([_row(k) for k in reversed(KEYS)], samples_per_shard=3)
    assert base.plan_hash == shuffled.plan_hash
    assert base.plan_hash != make_plan([_row(k) for k in KEYS], samples_per_shard=4)[0].plan_hash
    assert base.plan_hash != make_plan([_row(k) for k in KEYS], samples_per_shard=3, input_sha256="0" * 64)[0].plan_hash
    assert base.plan_hash != make_plan([_row(k) for k in KEYS[:-1]], samples_per_shard=3)[0].plan_hash


def test_parts_partition_the_shards():
    plan, _ = make_plan([_row(f"k{i:03d}") for i in range(23)], samples_per_shard=2)
    parts = [plan.part_shards(4, i) for i in range(4)]
    assert parts[1] == [1, 5, 9]
    assert sorted(s for p in parts for s in p) == list(range(plan.num_shards)) == list(range(12))
    with pytest.raises(UsageError):
        plan.part_shards(4, 4)


@pytest.mark.parametrize(
    "rows",
    [
        [_row("a"), _row("a")],
        [_row("a.b")],
        [_row("x__neg__y", video_id="x__neg__z", audio_id="y")],
    ],
)
def test_plan_rejects_bad_rows(rows):
    with pytest.raises(PlanError):
        make_plan(rows)


def test_clip_ref():
    assert clip_ref("--9O4XZOge4_000030") == clip_ref("--9O4XZOge4_000030")
    ref = clip_ref("--9O4XZOge4_000030")
    assert (ref.ytid, ref.start) == ("--9O4XZOge4", 30)
    assert (clip_ref("3908875350").ytid, clip_ref("3908875350").start) == ("3908875350", 0)


# --------------------------------------------------------------------------- prepare with make_blobs + merge


def test_prepare_and_merge_writes_reproducible_manifest(tmp_path):
    summary = _prepare(tmp_path, KEYS, annotations={"list.txt": "ab" * 32})
    assert summary.counts == {"success": 6, "unavailable": 0, "failed_download": 0, "failed_cut": 1}
    assert summary.written == [0, 1, 2, 3] and summary.skipped == []
    split = tmp_path / "split"
    part = json.loads(part_file(split, 0, 1).read_text())
    assert part["plan"]["plan_hash"] == summary.plan_hash and part["shards"] == [0, 1, 2, 3]
    assert "started" not in json.dumps(part)

    doc = merge(split)
    assert doc["n_expected"] == 7 and doc["counts"]["failed_cut"] == 1
    assert doc["missing"]["ids"] == ["bad_4"]
    assert doc["inputs"]["annotations"] == {"list.txt": "ab" * 32}
    assert [s["name"] for s in doc["shards"]] == ["000000.tar", "000001.tar", "000002.tar", "000003.tar"]
    assert doc["ffmpeg"]["version_line"].startswith("ffmpeg version") and len(doc["ffmpeg"]["sha256"]) == 64
    assert set(doc["versions"]) == {"python", "numpy", "pillow"} and doc["protocol"] == "toy@1"
    table = pq.read_table(split / "manifest.parquet").to_pylist()
    assert [r["key"] for r in table] == sorted(KEYS)
    assert {r["key"]: r["shard"] for r in table}["z_7"] == 3
    bad = next(r for r in table if r["key"] == "bad_4")
    assert (bad["status"], bad["error"], bad["index_in_shard"]) == ("failed_cut", "no_frame: bad_4 is too short", None)
    sums = (split / "SHA256SUMS").read_text().splitlines()
    assert sums[0] == f"{doc['shards'][0]['sha256']}  000000.tar" and len(sums) == 4

    first = (split / "manifest.json").read_bytes()
    assert _prepare(tmp_path, KEYS, annotations={"list.txt": "ab" * 32}).skipped == [0, 1, 2, 3]  # resume: no work
    merge(split)
    assert (split / "manifest.json").read_bytes() == first


def test_parts_merge_equals_single_run(tmp_path):
    keys = [f"k{i:02d}" for i in range(9)]
    single = _prepare(tmp_path / "one", keys)
    for part in (0, 1):
        _prepare(tmp_path / "two", keys, num_parts=2, part=part)
    assert len(read_part_files(tmp_path / "two" / "split")) == 2
    assert merge(tmp_path / "two" / "split")["shards"] == merge(tmp_path / "one" / "split")["shards"]
    assert single.plan_hash == read_part_files(tmp_path / "two" / "split")[0]["plan"]["plan_hash"]


def test_merge_reports_missing_parts_and_shards(tmp_path):
    keys = [f"k{i:02d}" for i in range(9)]
    _prepare(tmp_path, keys, num_parts=2, part=0)  # part 1 (shards 1, 3) never ran
    with pytest.raises(MergeError) as info:
        merge(tmp_path / "split")
    assert info.value.incomplete == [1, 3]
    assert "000001" in str(info.value) and "000003" in str(info.value)
    assert not (tmp_path / "split" / "manifest.json").exists()


def test_merge_catches_tampered_tar_and_missing_stats(tmp_path):
    _prepare(tmp_path, [f"k{i:02d}" for i in range(6)])
    split = tmp_path / "split"
    tar = shard_paths(split, 1).tar
    data = bytearray(tar.read_bytes())
    data[600] ^= 0xFF
    tar.write_bytes(bytes(data))
    shard_paths(split, 2).stats.unlink()
    with pytest.raises(MergeError) as info:
        merge(split)
    assert info.value.incomplete == [1, 2]
    assert any("tar sha256" in p for p in info.value.problems)
    assert any("000002_stats.json" in p for p in info.value.problems)


def test_merge_checks_plan_hash_and_ffmpeg_build(tmp_path):
    keys = [f"k{i:02d}" for i in range(4)]
    _prepare(tmp_path, keys)
    split = tmp_path / "split"
    with pytest.raises(MergeError, match="plan"):
        merge(split, expected_plan_hash="0" * 64)
    stats_path = shard_paths(split, 1).stats
    stats = json.loads(stats_path.read_text())
    stats["ffmpeg"] = {"sha256": "f" * 64, "version_line": "ffmpeg version other"}
    stats_path.write_text(json.dumps(stats))
    with pytest.raises(MergeError, match="ffmpeg builds"):
        merge(split)
    doc = merge(split, allow_mixed_ffmpeg=True)
    assert doc["ffmpeg"]["mixed"] is True and doc["ffmpeg"]["allowed"] is True and len(doc["ffmpeg"]["builds"]) == 2


def test_merge_without_parts(tmp_path):
    with pytest.raises(MergeError, match="no part files"):
        merge(tmp_path)


def test_make_blobs_with_real_media_and_process_pool(tmp_path, ffmpeg_exe):
    summary = _prepare(tmp_path, ["s_0", "s_1", "s_2"], make_blobs=_real_blobs, blob_executor="process")
    assert summary.counts["success"] == 3
    table = pq.read_table(shard_paths(tmp_path / "split", 1).parquet).to_pylist()
    assert (table[0]["frame_width"], table[0]["audio_samples"]) == (8, 1600)


def _real_blobs(row: PlanRow) -> SampleBlobs:
    """Module-level (picklable) generator: a Pillow JPEG and an encode_flac FLAC."""
    seed = int(row.key.split("_")[1])
    buf = io.BytesIO()
    Image.fromarray(np.full((6, 8, 3), seed * 40, np.uint8)).save(buf, format="JPEG", quality=95)
    pcm = (np.sin(np.arange(1600) * 0.1 * (seed + 1)) * 8000).astype(np.int16)
    flac = encode_flac(pcm, 16000)
    assert sf.read(io.BytesIO(flac), dtype="int16")[0].shape == (1600,)
    meta = {"frame": {"width": 8, "height": 6}, "audio": {"samples": 1600, "window": [0.0, 0.1], "sample_rate": 16000}}
    return SampleBlobs(row.key, jpg=buf.getvalue(), flac=flac, meta=meta)


def _fake_batch(rows):
    return [_fake_blobs(r) for r in rows]


def test_batch_callable_gives_the_same_shards(tmp_path):
    keys = [f"k{i:02d}" for i in range(7)]
    _prepare(tmp_path / "rows", keys, sps=3)
    _prepare(tmp_path / "batch", keys, sps=3, make_blobs=None, make_blobs_batch=_fake_batch, blob_batch_size=2)
    for s in range(3):
        pairs = zip(shard_paths(tmp_path / "rows" / "split", s)[:2], shard_paths(tmp_path / "batch" / "split", s)[:2])
        for a, b in pairs:
            assert a.read_bytes() == b.read_bytes()
    summary = _prepare(tmp_path / "bad", ["a_1", "bad_2", "c_3"], sps=3, make_blobs=None,
                       make_blobs_batch=_fake_batch, blob_batch_size=2)  # fmt: skip
    assert summary.counts["failed_cut"] == 2  # a CutError fails its whole batch (a_1, bad_2)
    with pytest.raises(UsageError):
        _prepare(tmp_path / "both", keys, make_blobs_batch=_fake_batch)
