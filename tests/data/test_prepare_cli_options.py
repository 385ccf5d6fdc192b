"""`avsl-bench prepare --cut-timeout / --retry-failed / --cutter` through the CLI (Flickr training videos: no network)."""

from __future__ import annotations

import json
import shutil

from typer.testing import CliRunner

from avsl_bench.cli import app
from avsl_bench.data.catalog import plan_benchmark

runner = CliRunner()


def _invoke(*args):
    return runner.invoke(app, [str(a) for a in args])


def test_help_lists_the_options():
    result = _invoke("prepare", "--help")
    assert result.exit_code == 0
    for option in ("--cut-timeout", "--retry-failed", "transient|all", "--cutter", "pyav|ffmpeg"):
        assert option in result.output, option


def test_cut_timeout_then_retry_failed(tmp_path, upstream, media):
    ids = [r.key for r in plan_benchmark("flickr-10k-noleak", limit=3).splits[0].rows]
    videos, out = tmp_path / "videos", tmp_path / "out"
    videos.mkdir()
    for i in ids[:2]:  # the third id is missing: unavailable, a permanent failure
        (videos / f"{i}.mp4").write_bytes(media["idx25"].read_bytes())
    args = ("prepare", "flickr-10k-noleak", "--out", out, "--limit", 3, "--flickr-archive", videos, "--no-progress")
    manifest = out / "flickr-10k-noleak" / "train" / "manifest.json"

    def counts() -> dict:
        return json.loads(manifest.read_text())["counts"]

    result = _invoke(*args, "--cut-timeout", "0.0001")
    assert result.exit_code == 0, result.output
    assert counts() == {"success": 0, "unavailable": 1, "failed_download": 0, "failed_cut": 2}
    assert json.loads(manifest.read_text())["params"] == {"cut_timeout_s": 0.0001}
    assert "failed_cut:timeout ×2" in " ".join(result.output.split())

    (videos / f"{ids[2]}.mp4").write_bytes(media["idx25"].read_bytes())  # now present, but missing was recorded
    assert _invoke(*args).exit_code == 0 and counts()["failed_cut"] == 2  # a plain re-run skips the shard
    result = _invoke(*args, "--retry-failed", "transient")
    assert result.exit_code == 0, result.output
    assert counts() == {"success": 2, "unavailable": 1, "failed_download": 0, "failed_cut": 0}
    assert json.loads(manifest.read_text())["params"] == {"cut_timeout_s": 60.0}
    result = _invoke(*args, "--retry-failed=all")
    assert result.exit_code == 0, result.output
    assert counts() == {"success": 3, "unavailable": 0, "failed_download": 0, "failed_cut": 0}

    for bad, message in ((("--retry-failed", "some"), "--retry-failed must be one of transient, all"),
                         (("--cut-timeout", "0"), "--cut-timeout must be > 0 seconds"),
                         (("--cutter", "gst"), "--cutter must be one of pyav, ffmpeg, got 'gst'")):  # fmt: skip
        result = _invoke(*args, *bad)
        assert result.exit_code == 2 and message in " ".join(result.output.split()), result.output


def test_cutter_reaches_flickr_cuts(tmp_path, upstream, media, monkeypatch):
    """`--cutter` cuts the Flickr videos and is recorded as for VGGSound cuts: shard stats, manifest, cache key.
    PyAV cuts run in a process pool; its shards are byte-identical to cutting the same clips in threads."""
    from concurrent.futures import ThreadPoolExecutor

    from avsl_bench.data import decode, prepare

    monkeypatch.delenv("AVSL_BENCH_CUTTER", raising=False)
    ids = [r.key for r in plan_benchmark("flickr-10k-noleak", limit=2).splits[0].rows]
    videos, out = tmp_path / "videos", tmp_path / "out"
    videos.mkdir()
    for i in ids:
        (videos / f"{i}.mp4").write_bytes(media["idx25"].read_bytes())
    calls = []
    in_process = decode.cut_pyav
    monkeypatch.setattr(decode, "cut_pyav", lambda src, **kw: calls.append(src) or in_process(src, **kw))
    split, caches = out / "flickr-10k-noleak" / "train", out / "_cache" / "flickr-cuts"

    def prepare_with(cutter: str) -> dict:
        calls.clear()
        shutil.rmtree(split, ignore_errors=True)  # the split is prepared afresh
        result = _invoke("prepare", "flickr-10k-noleak", "--out", out, "--limit", 2, "--flickr-archive", videos,
                         "--cutter", cutter, "--no-progress")  # fmt: skip
        assert result.exit_code == 0, result.output
        manifest = json.loads((split / "manifest.json").read_text())
        assert manifest["counts"]["success"] == 2 and manifest["cutter"]["cutter"] == cutter
        assert json.loads((split / "000000_stats.json").read_text())["cutter"] == manifest["cutter"]
        return manifest

    assert prepare_with("ffmpeg")["cutter"] == {"cutter": "ffmpeg", "fallback": None} and calls == []
    (ffmpeg_cache,) = caches.iterdir()
    prepare_with("pyav")  # in processes: the patched cut_pyav above is not theirs
    (pyav_cache,) = set(caches.iterdir()) - {ffmpeg_cache}  # one cut cache per cutter: not served from ffmpeg's
    assert len(list(pyav_cache.glob("*.json"))) == 2  # both clips cut afresh
    in_processes = {p.name: p.read_bytes() for p in split.glob("*.tar")}
    shutil.rmtree(pyav_cache)
    monkeypatch.setattr(prepare, "ProcessPoolExecutor", ThreadPoolExecutor)  # the same pool API, in threads
    prepare_with("pyav")
    assert len(calls) == 2 and {p.name: p.read_bytes() for p in split.glob("*.tar")} == in_processes
