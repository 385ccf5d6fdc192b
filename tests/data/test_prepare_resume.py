"""The prepare engine over real (fixture) mp4s: statuses, negatives, SIGKILL + resume, bot-check stop."""

from __future__ import annotations

import io
import json
import os
import signal
import subprocess
import sys
import tarfile
import threading
import time
from collections import Counter
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from avsl_bench.data.manifest import merge
from avsl_bench.data.plan import PlanRow
from avsl_bench.data.prepare import AcquisitionAborted, run_prepare
from avsl_bench.data.shards import shard_paths
from avsl_bench.data.sources.base import AcquireResult, Status

from ._prepare_driver import LocalSource

DRIVER = Path(__file__).with_name("_prepare_driver.py")
REPO = Path(__file__).resolve().parents[2]
SPS = 2  # samples per shard


def _vid(i: int) -> str:
    return f"vid{i:08d}_000000"


def _rows_and_media(media: dict[str, Path]) -> tuple[list[dict], dict[str, str]]:
    """10 positives over 3 fixture clips + 1 unavailable + 1 failed cut + 3 negatives = 15 rows, 8 shards."""
    sources = ["idx25", "plain", "idx2997"]
    mapping = {_vid(i): str(media[sources[i % 3]]) for i in range(10)}
    mapping[_vid(11)] = str(media["video_only"])
    common = {"benchmark": "toy", "split": "test", "protocol": "toy@1"}
    rows = [{"key": _vid(i), "video_id": _vid(i), "audio_id": _vid(i), "class_name": f"c{i % 3}",
             "boxes": [[0.1, 0.2, 0.5, 0.6]], **common} for i in list(range(12))]  # fmt: skip
    for v, a in [(1, 2), (4, 0), (3, 10)]:  # the last one pairs with the unavailable clip 10
        key = f"{_vid(v)}__neg__{_vid(a)}"
        rows.append({"key": key, "video_id": _vid(v), "audio_id": _vid(a), "label": "non-sounding", "negative": True,
                     "negative_type": "easy", "extra": {"frame_boxes": [[0.1, 0.2, 0.5, 0.6]]}, **common})  # fmt: skip
    return rows, mapping


def _plan_rows(rows: list[dict]) -> list[PlanRow]:
    return [PlanRow(**{**r, "boxes": tuple(tuple(b) for b in r.get("boxes", ()))}) for r in rows]


def _run_inprocess(out: Path, rows, mapping, progress: bool = False, **kw):
    return run_prepare(_plan_rows(rows), out_dir=out, split_dir=out / "split", source=LocalSource(mapping),
                       workers=2, cut_workers=2, samples_per_shard=SPS, progress=progress, **kw)  # fmt: skip


def _members(tar_path: Path) -> dict[str, bytes]:
    with tarfile.open(tar_path) as tar:
        return {m.name: tar.extractfile(m).read() for m in tar.getmembers()}


@pytest.fixture(scope="module")
def reference(media, tmp_path_factory):
    """An uninterrupted run (the byte-level reference for the resume test)."""
    rows, mapping = _rows_and_media(media)
    out = tmp_path_factory.mktemp("reference")
    summary = _run_inprocess(out, rows, mapping)
    return out, rows, mapping, summary


def test_statuses_negatives_and_records(reference):
    out, rows, _, summary = reference
    split = out / "split"
    assert summary.counts == {"success": 12, "unavailable": 2, "failed_download": 0, "failed_cut": 1}
    assert summary.written == list(range(8))
    table = {r["key"]: r for r in merge(split) and pq.read_table(split / "manifest.parquet").to_pylist()}
    assert table[_vid(10)]["status"] == "unavailable" and table[_vid(10)]["error"].startswith("not_in_mirror: ")
    assert table[_vid(11)]["status"] == "failed_cut" and table[_vid(11)]["error"].startswith("no_audio_stream: ")
    bad_neg = table[f"{_vid(3)}__neg__{_vid(10)}"]
    assert bad_neg["status"] == "unavailable" and f"[audio {_vid(10)}]" in bad_neg["error"]
    assert table[_vid(0)]["audio_samples"] == 160000 and table[_vid(1)]["audio_samples"] == 96000
    assert (table[_vid(0)]["frame_width"], table[_vid(0)]["frame_height"]) == (160, 96)

    blobs = {}
    for s in range(8):
        blobs.update(_members(shard_paths(split, s).tar))
    neg = f"{_vid(1)}__neg__{_vid(2)}"
    assert blobs[f"{neg}.jpg"] == blobs[f"{_vid(1)}.jpg"] and blobs[f"{neg}.flac"] == blobs[f"{_vid(2)}.flac"]
    assert blobs[f"{neg}.jpg"] != blobs[f"{_vid(2)}.jpg"]
    meta = json.loads(blobs[f"{neg}.json"])
    assert (meta["negative"], meta["negative_type"], meta["label"], meta["boxes"]) == (True, "easy", "non-sounding", [])
    assert meta["frame_boxes"] == [[0.1, 0.2, 0.5, 0.6]] and meta["audio"]["sha256"] == table[_vid(2)]["flac_sha256"]
    pos = json.loads(blobs[f"{_vid(0)}.json"])
    assert pos["frame"] == {"t": 5.0, "width": 160, "height": 96, "sha256": table[_vid(0)]["jpg_sha256"]}
    assert pos["audio"]["window"] == [0.0, 10.0]
    assert pos["source"] == {"kind": "youtube", "ytid": "vid00000000", "start": 0}
    assert pos["boxes"] == [[0.1, 0.2, 0.5, 0.6]] and pos["gt_empty"] is False and pos["class"] == "c0"
    assert list(blobs)[:3] == [f"{_vid(0)}.flac", f"{_vid(0)}.jpg", f"{_vid(0)}.json"]


def test_sigkill_then_resume_is_byte_identical(reference, tmp_path):
    ref_out, rows, mapping, _ = reference
    out = tmp_path / "killed"
    config = {"rows": rows, "media": mapping, "out_dir": str(out), "split_dir": str(out / "split"),
              "samples_per_shard": SPS, "delay": 0.12}  # fmt: skip
    cfg = tmp_path / "config.json"
    cfg.write_text(json.dumps(config))
    env = {**os.environ, "PYTHONPATH": str(REPO) + os.pathsep + os.environ.get("PYTHONPATH", "")}
    proc = subprocess.Popen([sys.executable, str(DRIVER), str(cfg)], env=env, start_new_session=True,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)  # fmt: skip
    split = out / "split"
    deadline = time.monotonic() + 60
    while not list(split.glob("*_stats.json")) and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.01)
    os.killpg(proc.pid, signal.SIGKILL)
    _, err = proc.communicate()
    done_at_kill = sorted(p.name[:6] for p in split.glob("*_stats.json"))
    assert 1 <= len(done_at_kill) < 8, (done_at_kill, err.decode()[-2000:])
    (split / "000007.tar.tmp").write_bytes(b"left over by a crash")

    config["delay"] = 0.0
    cfg.write_text(json.dumps(config))
    rerun = subprocess.run([sys.executable, str(DRIVER), str(cfg)], env=env, capture_output=True, timeout=120)
    assert rerun.returncode == 0, rerun.stderr.decode()[-2000:]
    report = json.loads(rerun.stdout.decode().strip().splitlines()[-1])
    assert [f"{s:06d}" for s in report["skipped"]] == done_at_kill
    assert not list(split.rglob("*.tmp"))
    assert not list((out / "_cache" / "tmp").glob("*/*"))  # temp dirs of the killed ffmpegs are gone

    for s in range(8):
        for mine, theirs in zip(shard_paths(split, s)[:2], shard_paths(ref_out / "split", s)[:2]):
            assert mine.read_bytes() == theirs.read_bytes(), mine.name
    merge(split)
    merge(ref_out / "split")
    for name in ("manifest.json", "SHA256SUMS", "manifest.parquet"):
        assert (split / name).read_bytes() == (ref_out / "split" / name).read_bytes(), name


class _BotWall:
    name = "botwall"

    def acquire(self, clip, cache_dir):
        return AcquireResult(Status.FAILED_DOWNLOAD, None, "bot_check: Sign in to confirm you're not a bot", 1)


def test_consecutive_bot_checks_stop_the_part(tmp_path):
    rows = [PlanRow(key=_vid(i), video_id=_vid(i), audio_id=_vid(i), benchmark="toy", split="test", protocol="toy@1")
            for i in range(30)]  # fmt: skip
    with pytest.raises(AcquisitionAborted, match="bot checks"):
        run_prepare(rows, out_dir=tmp_path, source=_BotWall(), samples_per_shard=25, progress=False)
    assert not list((tmp_path / "toy" / "test").glob("*_stats.json"))


def test_source_and_make_blobs_are_exclusive(tmp_path):
    from avsl_bench.errors import UsageError

    rows = [PlanRow(key="k", video_id="k", audio_id="k", benchmark="toy", split="test", protocol="toy@1")]
    with pytest.raises(UsageError):
        run_prepare(rows, out_dir=tmp_path, progress=False)


def test_progress_bars_render(media, tmp_path):
    from rich.console import Console

    rows, mapping = _rows_and_media(media)
    console = Console(file=io.StringIO(), force_terminal=True, width=100)
    summary = _run_inprocess(tmp_path, rows[:3], mapping, progress=True, console=console)
    assert summary.counts["success"] == 3
    text = console.file.getvalue()
    assert "acquire" in text and "cut" in text and "shards" in text
    Console(file=io.StringIO()).print(summary.table())


def test_mirror_source_batches_and_matches_reference(reference, tmp_path):
    """MirrorSource (acquire_many) over a directory of clip-named mp4s gives the same shards."""
    from avsl_bench.data.sources.mirror import MirrorSource

    ref_out, rows, mapping, _ = reference
    tree = tmp_path / "mirror"
    tree.mkdir()
    for clip_id, path in mapping.items():
        (tree / f"{clip_id}.mp4").write_bytes(Path(path).read_bytes())
    source = MirrorSource(tree, index_cache_dir=tmp_path / "index")
    out = tmp_path / "out"
    summary = run_prepare(_plan_rows(rows), out_dir=out, split_dir=out / "split", source=source,
                          samples_per_shard=SPS, progress=False)  # fmt: skip
    assert summary.counts["success"] == 12
    for s in range(8):
        assert shard_paths(out / "split", s).tar.read_bytes() == shard_paths(ref_out / "split", s).tar.read_bytes()


def test_full_length_layout_adds_start(media, tmp_path):
    """Layout `full`: files are whole videos named by ytid; clip `<ytid>_000002` is cut from 2 s + 5 s."""
    from avsl_bench.data.sources.mirror import MirrorSource

    from .conftest import frame_index

    tree = tmp_path / "full"
    tree.mkdir()
    (tree / "fullvideo01.mp4").write_bytes(media["idx25"].read_bytes())
    rows = [PlanRow(key=k, video_id=k, audio_id=k, benchmark="toy", split="test", protocol="toy@1")
            for k in ("fullvideo01_000000", "fullvideo01_000002")]  # fmt: skip
    source = MirrorSource(tree, layout="full", index_cache_dir=tmp_path / "index")
    run_prepare(rows, out_dir=tmp_path / "out", source=source, progress=False)
    blobs = _members(shard_paths(tmp_path / "out" / "toy" / "test", 0).tar)
    assert frame_index(blobs["fullvideo01_000000.jpg"]) == 125
    assert frame_index(blobs["fullvideo01_000002.jpg"]) == 175
    assert json.loads(blobs["fullvideo01_000002.json"])["audio"]["samples"] == 128000


def test_no_temp_dirs_left_in_cache(reference):
    out = reference[0]
    assert not (out / "_cache" / "tmp").exists() or not any((out / "_cache" / "tmp").iterdir())


def test_one_cut_pool_per_run_shut_down_at_its_end(media, tmp_path, monkeypatch):
    pytest.importorskip("av")
    from avsl_bench.data import prepare
    from avsl_bench.data.cut import cut_pool

    pools = []
    monkeypatch.setattr(prepare, "cut_pool", lambda *args: pools.append(cut_pool(*args)) or pools[-1])
    rows, mapping = _rows_and_media(media)
    summary = _run_inprocess(tmp_path, rows[:6], mapping, cutter="pyav")
    assert summary.written == [0, 1, 2] and len(pools) == 1 and isinstance(pools[0], ProcessPoolExecutor)
    with pytest.raises(RuntimeError):
        pools[0].submit(os.getpid)


# ------------------------------------------------------------------------------------------------ --retry-failed


class _FlakySource(LocalSource):
    """A LocalSource whose `flaky` clips fail once (connection reset); counts acquisitions per clip."""

    def __init__(self, media: dict[str, str], flaky: set[str]) -> None:
        super().__init__(media)
        self.flaky, self.calls, self._lock = set(flaky), Counter(), threading.Lock()

    def acquire(self, clip, cache_dir):
        with self._lock:
            self.calls[clip.clip_id] += 1
            flaky = clip.clip_id in self.flaky
            self.flaky.discard(clip.clip_id)
        if flaky:
            return AcquireResult(Status.FAILED_DOWNLOAD, None, "connection_reset: [Errno 104] Connection reset", 4)
        return super().acquire(clip, cache_dir)


def _prepare_with(out: Path, rows, source, **kw):
    return run_prepare(_plan_rows(rows), out_dir=out, split_dir=out / "split", source=source, workers=2,
                       cut_workers=2, samples_per_shard=SPS, progress=False, **kw)  # fmt: skip


def _same_shards(split: Path, ref_split: Path) -> None:
    for s in range(8):
        for mine, theirs in zip(shard_paths(split, s)[:2], shard_paths(ref_split, s)[:2]):
            assert mine.read_bytes() == theirs.read_bytes(), mine.name


def test_retry_failed_redoes_transient_failures_only(reference, tmp_path):
    ref_out, rows, mapping, _ = reference
    out, split = tmp_path / "out", tmp_path / "out" / "split"
    source = _FlakySource(mapping, {_vid(0), _vid(2)})  # also the audio clips of negatives 4__neg__0, 1__neg__2
    first = _prepare_with(out, rows, source)
    assert first.counts == {"success": 8, "unavailable": 2, "failed_download": 4, "failed_cut": 1}
    failed_shards = sorted({r["shard"] for s in range(8) for r in pq.read_table(shard_paths(split, s).parquet)
                            .to_pylist() if r["status"] == "failed_download"})  # fmt: skip

    again = _prepare_with(out, rows, source)  # a plain re-run skips every committed shard, failures and all
    assert (again.written, again.skipped, again.counts) == ([], list(range(8)), first.counts)
    calls = dict(source.calls)

    retried = _prepare_with(out, rows, source, retry_failed="transient")
    assert retried.written == failed_shards and sum(retried.retried.values()) == 4
    assert retried.counts == {"success": 12, "unavailable": 2, "failed_download": 0, "failed_cut": 1}
    delta = {c: n - calls.get(c, 0) for c, n in source.calls.items() if n != calls.get(c, 0)}
    assert delta == {_vid(0): 1, _vid(1): 1, _vid(2): 1, _vid(4): 1}  # not unavailable 10 nor failed cut 11
    _same_shards(split, ref_out / "split")  # kept rows and samples are committed again byte for byte
    assert merge(split) == merge(ref_out / "split")

    calls = dict(source.calls)
    everything = _prepare_with(out, rows, source, retry_failed="all")  # permanent failures too: same outcome
    delta = {c: n - calls.get(c, 0) for c, n in source.calls.items() if n != calls.get(c, 0)}
    assert delta == {_vid(3): 1, _vid(10): 1, _vid(11): 1} and sum(everything.retried.values()) == 3
    assert everything.counts == retried.counts
    _same_shards(split, ref_out / "split")
    record = json.loads(sorted((split / "_runs").glob("*.json"))[-1].read_text())
    assert record["params"] == {"cut_timeout_s": 60.0, "retry_failed": "all"} and sum(record["retried"].values()) == 3


def test_cut_timeout_is_recorded_and_its_failures_are_retried(media, tmp_path):
    rows, mapping = _rows_and_media(media)
    out, split = tmp_path / "out", tmp_path / "out" / "split"
    first = _run_inprocess(out, rows[:3], mapping, cut_timeout=1e-4)
    assert first.counts["failed_cut"] == 3
    table = pq.read_table(shard_paths(split, 0).parquet).to_pylist()
    assert {r["error"].split(":")[0] for r in table} == {"timeout"}
    assert json.loads(shard_paths(split, 0).stats.read_text())["params"] == {"cut_timeout_s": 1e-4}
    assert merge(split)["params"] == {"cut_timeout_s": 1e-4}

    second = _run_inprocess(out, rows[:3], mapping, retry_failed="transient", cut_timeout=30)
    assert second.counts["success"] == 3 and sorted(second.retried) == second.written == [0, 1]
    assert json.loads(shard_paths(split, 1).stats.read_text())["params"] == {"cut_timeout_s": 30}
    assert merge(split)["params"] == {"cut_timeout_s": 30}


def test_retry_failed_refuses_a_modified_shard_and_bad_options(reference, tmp_path):
    from avsl_bench.errors import DataFileError, UsageError

    _, rows, mapping, _ = reference
    out, split = tmp_path / "out", tmp_path / "out" / "split"
    _prepare_with(out, rows[:4], _FlakySource(mapping, {_vid(1)}))  # shard 0: vid 0 fine, vid 1 failed
    tar = shard_paths(split, 0).tar
    tar.write_bytes(tar.read_bytes()[:-1] + b"\x01")  # same size, other bytes
    with pytest.raises(DataFileError, match="000000.tar: sha256 .* modified since its commit"):
        _prepare_with(out, rows[:4], LocalSource(mapping), retry_failed="transient")
    tar.unlink()
    with pytest.raises(DataFileError, match="000000_stats.json: committed shard is damaged"):
        _prepare_with(out, rows[:4], LocalSource(mapping), retry_failed="transient")
    with pytest.raises(UsageError, match="--retry-failed"):
        _prepare_with(out, rows[:4], LocalSource(mapping), retry_failed="some")
    with pytest.raises(UsageError, match="--cut-timeout"):
        _prepare_with(out, rows[:4], LocalSource(mapping), cut_timeout=0)


# ------------------------------------------------------------------------------------------------ cutters


def test_cutter_is_recorded_beside_the_ffmpeg_build(reference):
    from avsl_bench.data.cut import cutter_info

    out, *_ = reference
    split = out / "split"
    expected = cutter_info()
    stats = json.loads(shard_paths(split, 0).stats.read_text())
    part = json.loads((split / "_parts" / "part-0-of-1.json").read_text())
    record = json.loads(sorted((split / "_runs").glob("*.json"))[-1].read_text())
    assert stats["cutter"] == part["cutter"] == record["cutter"] == expected and stats["ffmpeg"]
    doc = merge(split)
    assert doc["cutter"] == json.loads((split / "manifest.json").read_text())["cutter"] == expected and doc["ffmpeg"]


def test_other_cutter_cuts_afresh_and_merge_refuses_the_mix(media, tmp_path):
    pytest.importorskip("av")
    from avsl_bench.data.manifest import MergeError
    from avsl_bench.errors import UsageError

    rows, mapping = _rows_and_media(media)
    rows = [rows[i] for i in (0, 1, 2, 11)]  # shard 0: vid 0, 1; shard 1: vid 11 (failed cut), vid 2
    out, split = tmp_path / "out", tmp_path / "out" / "split"
    first = _prepare_with(out, rows, LocalSource(mapping), cutter="pyav")
    assert first.written == [0, 1] and first.counts["success"] == 3
    tar1 = shard_paths(split, 1).tar.read_bytes()
    again = _prepare_with(out, rows, LocalSource(mapping), cutter="pyav")  # same options: everything skipped
    assert (again.written, again.skipped) == ([], [0, 1])

    shard_paths(split, 1).stats.unlink()  # shard 1 is redone by the other cutter
    second = _prepare_with(out, rows, LocalSource(mapping), cutter="ffmpeg")
    assert (second.written, second.skipped) == ([1], [0])
    variants = {d.name: sorted(p.name for p in d.glob("*.json")) for d in (out / "_cache" / "cuts").iterdir()}
    assert len(variants) == 2  # no cut of the pyav run was reused: the ffmpeg variant holds shard 1's clip only
    assert sorted(variants.values(), key=len) == [[f"{_vid(2)}.json"], [f"{_vid(i)}.json" for i in (0, 1, 2)]]
    assert shard_paths(split, 1).tar.read_bytes() == tar1  # the two cutters agree byte for byte on H.264/AAC
    assert json.loads(shard_paths(split, 1).stats.read_text())["cutter"] == {"cutter": "ffmpeg", "fallback": None}

    with pytest.raises(MergeError, match="2 cutters across parts"):
        merge(split)
    assert not (split / "manifest.json").exists()
    doc = merge(split, allow_mixed_ffmpeg=True)
    assert doc["cutter"]["mixed"] and {c["cutter"] for c in doc["cutter"]["cutters"]} == {"pyav", "ffmpeg"}
    with pytest.raises(UsageError, match="shard 000001 was cut by ffmpeg: retry its failed rows with --cutter ffmpeg"):
        _prepare_with(out, rows, LocalSource(mapping), cutter="pyav", retry_failed="all")
    with pytest.raises(UsageError, match="cutter must be one of pyav, ffmpeg"):
        _prepare_with(out, rows, LocalSource(mapping), cutter="gstreamer")
