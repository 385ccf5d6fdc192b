"""`avsl-bench prepare / negatives / audit` end to end through the CLI (CliRunner), media over loopback HTTP."""

from __future__ import annotations

import hashlib
import json
import random
import subprocess
import tarfile
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest
import soundfile as sf
from PIL import Image
from typer.testing import CliRunner

from avsl_bench.benchmarks.gt import write_flickr_xml
from avsl_bench.benchmarks.normalize import VGGSS_NORMALIZED_SHA256
from avsl_bench.cli import app
from avsl_bench.data.ffmpeg import find_ffmpeg
from tests.conftest import UPSTREAM
from tests.data._http_fixture import MediaServer

runner = CliRunner()
SPLITS = ("train", "val", "val-neg", "test", "test-neg")
#: data spec §6.3 golden: the generator's VGG-SS list for seed 0 (tests/benchmarks/test_negatives.py pins it too)
VGGSS_SEED0_CSV_SHA256 = "7d7b23650d310977e904cdfc041c0df2dbc3417574667a4529d2f1d32495b32e"


def _invoke(*args):
    return runner.invoke(app, [str(a) for a in args])


def _manifest(split_dir: Path) -> dict[str, dict]:
    return {r["key"]: r for r in pq.read_table(split_dir / "manifest.parquet").to_pylist()}


def _tar_members(path: Path) -> dict[str, bytes]:
    with tarfile.open(path) as tar:
        return {m.name: tar.extractfile(m).read() for m in tar}


@pytest.fixture(scope="module")
def mirror() -> Path:
    if UPSTREAM is None:
        pytest.skip("upstream mirror not available (set AVSL_BENCH_UPSTREAM)")
    return UPSTREAM


def test_help_texts():
    for command in ("prepare", "negatives", "audit"):
        result = _invoke(command, "--help")
        assert result.exit_code == 0 and "Usage" in result.output, result.output


def test_one_line_errors(tmp_path):
    result = _invoke("prepare", "vgss", "--out", tmp_path)
    assert result.exit_code == 2 and "error:" in result.output and "did you mean vggss" in result.output
    result = _invoke("prepare", "synthetic-tiny", "--out", tmp_path, "--audio-window", "5")
    assert result.exit_code == 2 and "10 or 3" in result.output
    result = _invoke("audit", "no-such-list", "--against", "vggss")
    assert result.exit_code == 2 and "no file" in result.output
    assert not any(tmp_path.iterdir())


# ------------------------------------------------------------------------------------------ VGG-SS over HTTP


@pytest.fixture(scope="module")
def http_media(tmp_path_factory) -> dict[str, Path]:
    """A 28 s clip with audio (ranges [1, 11) and [17, 27) of it are served) and a 496 s video-only file."""
    exe, root = find_ffmpeg(), tmp_path_factory.mktemp("http_media")
    av, video_only = root / "av28.mp4", root / "video_only.mp4"
    procs = [
        subprocess.Popen([exe, "-nostdin", "-v", "error", "-y", "-f", "lavfi", "-i",
                          "testsrc2=size=96x64:rate=10:duration=28", "-f", "lavfi", "-i",
                          "sine=frequency=440:sample_rate=44100:duration=28", "-c:v", "libx264", "-preset",
                          "ultrafast", "-g", "10", "-pix_fmt", "yuv420p", "-c:a", "aac", "-shortest", str(av)]),
        subprocess.Popen([exe, "-nostdin", "-v", "error", "-y", "-f", "lavfi", "-i",
                          "testsrc2=size=64x48:rate=1:duration=496", "-c:v", "libx264", "-preset", "ultrafast",
                          "-g", "1", "-pix_fmt", "yuv420p", str(video_only)]),
    ]  # fmt: skip
    assert [p.wait(timeout=120) for p in procs] == [0, 0]
    return {"av": av, "video_only": video_only}


def test_prepare_vggss_limit_over_http(mirror, http_media, tmp_path):
    # the first 6 VGG-SS clips in key order; yt-dlp fetches [start, start + 10) of http://127.0.0.1:PORT/{ytid}.mp4
    plan = {
        "-0BIyqJj9ZU_000030": "hang",  # server accepts and never answers: timeout
        "-0UuUoXQUoI_000107": "404",  # no route
        "-2-wdcN5vOw_000017": "ok",
        "-23CeprtibU_000030": "corrupt",
        "-2Dm0VjW8oM_000001": "ok",
        "-2sOH8XovEE_000484": "video_only",  # downloads, then the cut finds no audio stream
    }
    out = tmp_path / "out"
    with MediaServer() as server:
        for key, kind in plan.items():
            route = f"/{key[:11]}.mp4"
            if kind == "hang":
                server.hang(route)
            elif kind == "corrupt":
                server.serve_bytes(route, random.Random(7).randbytes(300_000))
            elif kind in ("ok", "video_only"):
                server.serve_file(route, http_media["av" if kind == "ok" else "video_only"])
        result = _invoke("prepare", "vggss", "--out", out, "--limit", 6, "--url-template",
                         server.base_url + "/{ytid}.mp4", "--timeout", 5, "--upstream", mirror)  # fmt: skip
    assert result.exit_code == 0, result.output
    split = out / "vggss" / "test"
    rows = _manifest(split)
    assert list(rows) == sorted(plan)
    status = {k: (r["status"], (r["error"] or "").split(":")[0]) for k, r in rows.items()}
    assert status == {
        "-0BIyqJj9ZU_000030": ("failed_download", "timeout"),
        "-0UuUoXQUoI_000107": ("unavailable", "http_404"),
        "-2-wdcN5vOw_000017": ("success", ""),
        "-23CeprtibU_000030": ("failed_download", "corrupt"),
        "-2Dm0VjW8oM_000001": ("success", ""),
        "-2sOH8XovEE_000484": ("failed_cut", "no_audio_stream"),
    }
    ok = rows["-2-wdcN5vOw_000017"]
    assert (ok["audio_samples"], ok["frame_width"], ok["frame_height"], ok["class"]) == (160000, 96, 64,
                                                                                          "train whistling")
    members = _tar_members(split / "000000.tar")
    assert sorted(members) == [f"{k}.{ext}" for k in sorted(k for k, v in plan.items() if v == "ok")
                               for ext in ("flac", "jpg", "json")]  # fmt: skip
    meta = json.loads(members["-2Dm0VjW8oM_000001.json"])
    assert meta["source"] == {"kind": "youtube", "ytid": "-2Dm0VjW8oM", "start": 1}
    assert meta["gt_rule"] == "vggss" and meta["boxes"] and meta["protocol"] == "vggss@1"
    manifest = json.loads((split / "manifest.json").read_text())
    assert manifest["n_expected"] == 6 and manifest["counts"] == {
        "success": 2, "unavailable": 1, "failed_download": 2, "failed_cut": 1}
    assert manifest["inputs"]["annotations"]["vggss.normalized.json"] == VGGSS_NORMALIZED_SHA256
    normalized = out / "vggss" / "vggss.normalized.json"
    assert hashlib.sha256(normalized.read_bytes()).hexdigest() == VGGSS_NORMALIZED_SHA256
    # the rich summary and the §5.1 defect report were printed
    for text in ("prepare vggss", "corrupt coordinates", "empty GT", "http_404", "manifest.parquet"):
        assert text in result.output, text


def _mirror_of(http_media, tmp_path: Path, keys) -> Path:
    tree = tmp_path / "mirror"
    tree.mkdir()
    for key in keys:
        (tree / f"{key}.mp4").write_bytes(http_media["av"].read_bytes())
    return tree


def test_prepare_mirror_with_the_ffmpeg_cutter(mirror, http_media, tmp_path):
    """`--cutter ffmpeg` end to end on a 2-clip mirror: recorded in stats and manifest; same frames as PyAV."""
    pytest.importorskip("av")
    keys = ["-0BIyqJj9ZU_000030", "-0UuUoXQUoI_000107"]  # the first VGG-SS keys
    tree = _mirror_of(http_media, tmp_path, keys)
    args = ("prepare", "vggss", "--limit", 2, "--source", f"mirror:{tree}", "--upstream", mirror, "--no-progress")
    result = _invoke(*args, "--out", tmp_path / "ff", "--cutter", "ffmpeg")
    assert result.exit_code == 0, result.output
    split = tmp_path / "ff" / "vggss" / "test"
    manifest = json.loads((split / "manifest.json").read_text())
    assert manifest["counts"]["success"] == 2 and manifest["cutter"] == {"cutter": "ffmpeg", "fallback": None}
    assert json.loads((split / "000000_stats.json").read_text())["cutter"] == manifest["cutter"]
    assert manifest["ffmpeg"]["version_line"].startswith("ffmpeg version")
    result = _invoke(*args, "--out", tmp_path / "ff", "--cutter", "ffmpeg")  # same options: skipped
    assert result.exit_code == 0 and "(0 new)" in result.output, result.output

    result = _invoke(*args, "--out", tmp_path / "pyav")  # default cutter
    assert result.exit_code == 0, result.output
    other = tmp_path / "pyav" / "vggss" / "test"
    doc = json.loads((other / "manifest.json").read_text())
    assert doc["cutter"]["cutter"] == "pyav" and doc["cutter"]["pyav"]["pyav"]
    ours, theirs = _tar_members(other / "000000.tar"), _tar_members(split / "000000.tar")
    assert [ours[f"{k}.jpg"] for k in keys] == [theirs[f"{k}.jpg"] for k in keys]  # (FLAC: see the issue notes)


def test_merge_refuses_parts_cut_by_different_cutters(mirror, http_media, tmp_path):
    pytest.importorskip("av")
    keys = ["-0BIyqJj9ZU_000030", "-0UuUoXQUoI_000107"]
    tree = _mirror_of(http_media, tmp_path, keys)
    args = ("prepare", "vggss", "--out", tmp_path / "out", "--limit", 2, "--source", f"mirror:{tree}",
            "--upstream", mirror, "--samples-per-shard", 1, "--num-parts", 2, "--no-progress")  # fmt: skip
    assert _invoke(*args, "--part", 0, "--cutter", "ffmpeg").exit_code == 0
    assert _invoke(*args, "--part", 1, "--cutter", "pyav").exit_code == 0
    result = _invoke(*args, "--merge")
    assert result.exit_code != 0 and "2 cutters across parts" in " ".join(result.output.split()), result.output
    result = _invoke(*args, "--merge", "--allow-mixed-ffmpeg")
    assert result.exit_code == 0, result.output
    cutter = json.loads((tmp_path / "out" / "vggss" / "test" / "manifest.json").read_text())["cutter"]
    assert cutter["mixed"] and cutter["allowed"] and [c["cutter"] for c in cutter["cutters"]] == ["ffmpeg", "pyav"]


# ---------------------------------------------------------------------------------------- synthetic-tiny


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    out = tmp_path_factory.mktemp("tiny")
    first = _invoke("prepare", "synthetic-tiny", "--out", out)
    return out, first


def test_synthetic_tiny_end_to_end(tiny):
    out, result = tiny
    assert result.exit_code == 0, result.output
    base = out / "synthetic-tiny"
    sizes = {"train": 256, "val": 64, "val-neg": 64, "test": 64, "test-neg": 64}
    for split, n in sizes.items():
        manifest = json.loads((base / split / "manifest.json").read_text())
        assert (manifest["split"], manifest["n_expected"], manifest["counts"]["success"]) == (split, n, n)
        assert (base / split / "SHA256SUMS").read_text().count(".tar") == 1
    assert json.loads((base / "disjoint_splits.json").read_text())["ok"] is True
    assert "disjoint splits: OK" in result.output
    members = _tar_members(base / "test-neg" / "000000.tar")
    keys = sorted({name.split(".")[0] for name in members})
    assert len(keys) == 64 and all("__neg__" in k for k in keys)
    meta = json.loads(members[f"{keys[0]}.json"])
    assert meta["negative"] and meta["protocol"] == "synthetic-tiny-ext@1" and meta["frame_boxes"]


def test_rerun_skips_committed_shards(tiny):
    out, _ = tiny
    tars = sorted((out / "synthetic-tiny").glob("*/000000.tar"))
    before = {p: (p.stat().st_mtime_ns, p.read_bytes()) for p in tars}
    result = _invoke("prepare", "synthetic-tiny-ext", "--out", out, "--no-progress")
    assert result.exit_code == 0, result.output
    assert "scoring view" in result.output and "(0 new)" in result.output
    assert {p: (p.stat().st_mtime_ns, p.read_bytes()) for p in tars} == before
    runs = sorted((out / "synthetic-tiny" / "train" / "_runs").glob("*.json"))
    assert len(runs) == 2 and json.loads(runs[-1].read_text())["skipped"] == [0]


def test_synthetic_cutter_ffmpeg_encodes_the_same_flac(tmp_path):
    """`--cutter ffmpeg`: synthetic FLAC through the ffmpeg binary; the same bytes as PyAV's in-process encoder."""
    args = ("prepare", "synthetic-tiny", "--limit", 2, "--no-progress")
    assert _invoke(*args, "--out", tmp_path / "ff", "--cutter", "ffmpeg").exit_code == 0
    assert _invoke(*args, "--out", tmp_path / "pyav", "--cutter", "pyav").exit_code == 0
    ff, pyav = (tmp_path / d / "synthetic-tiny" / "test" for d in ("ff", "pyav"))
    assert json.loads((ff / "manifest.json").read_text())["cutter"]["cutter"] == "ffmpeg"
    assert (ff / "000000.tar").read_bytes() == (pyav / "000000.tar").read_bytes()


def test_merge_reports_incomplete_shards(tmp_path):
    args = ("prepare", "synthetic-tiny", "--out", tmp_path, "--limit", 2, "--samples-per-shard", 1, "--no-progress")
    result = _invoke(*args, "--num-parts", 2, "--part", 1)
    assert result.exit_code == 0 and "--merge" in result.output, result.output
    result = _invoke(*args, "--merge")
    assert result.exit_code != 0 and "incomplete shards 000000" in result.output


def test_negatives_from_a_prepared_split(tiny, tmp_path):
    out, _ = tiny
    result = _invoke("negatives", out / "synthetic-tiny", "--out", tmp_path / "neg", "--seed", 3)  # → its test/
    assert result.exit_code == 0, result.output
    lines = (tmp_path / "neg.csv").read_text().splitlines()
    assert lines[0] == "video,audio,label,negative_type" and len(lines) == 65
    assert json.loads((tmp_path / "neg.stats.json").read_text())["hard_requested"] == 16


# ------------------------------------------------------------------------------------- negatives, audit


def test_negatives_vggss_ext_prints_table1(mirror, tmp_path):
    result = _invoke("negatives", "vggss-ext", "--out", tmp_path / "vggss_ext", "--upstream", mirror)
    assert result.exit_code == 0, result.output
    for row in ("134 │  1,796 │ 1,726 │ 1,502", "90 │  1,243 │ 1,190 │ 1,071", "33 │    428 │   407 │   317"):
        assert row in result.output, row
    assert "real 379" in result.output and "easy 3,594" in result.output and "hard 1,185" in result.output
    stats = json.loads((tmp_path / "vggss_ext.stats.json").read_text())
    assert stats["types"] == {"easy": 3594, "hard": 1185, "real": 379}
    assert stats["reuse"]["distinct_audio_sources"] == 3092 and stats["reuse"]["max_audio_reuse"] == 7


def test_negatives_vggss_seed0_writes_csv_sha256_stats(mirror, tmp_path):
    result = _invoke("negatives", "vggss", "--seed", 0, "--out", tmp_path / "vggss_s0", "--upstream", mirror)
    assert result.exit_code == 0, result.output
    csv = (tmp_path / "vggss_s0.csv").read_bytes()
    assert hashlib.sha256(csv).hexdigest() == VGGSS_SEED0_CSV_SHA256 and VGGSS_SEED0_CSV_SHA256 in result.output
    assert (tmp_path / "vggss_s0.sha256").read_text() == f"{VGGSS_SEED0_CSV_SHA256}  vggss_s0.csv\n"
    stats = json.loads((tmp_path / "vggss_s0.stats.json").read_text())
    assert (stats["seed"], stats["hard_requested"], stats["table1"]["rows"]["total"]["all"]) == (0, 1290, 10316)


def test_audit_vggsound_144k(mirror):
    result = _invoke("audit", "vggsound-144k", "--against", "vggss", "--upstream", mirror)
    assert result.exit_code == 0, result.output
    assert "3,709" in result.output and "11,163" in result.output and "vggsound-144k-noleak" in result.output
    clean = _invoke("audit", "vggsound-144k-noleak", "--upstream", mirror)
    assert clean.exit_code == 0 and "132,837" in clean.output and "warning" not in clean.output
    wrong = _invoke("audit", "flickr-10k", "--against", "vggss", "--upstream", mirror)
    assert wrong.exit_code == 2 and "--against flickr" in wrong.output


def test_audit_an_id_file(mirror, tmp_path):
    ids = tmp_path / "train.txt"
    ids.write_text("-0BIyqJj9ZU_000030.mp4\nzzzzzzzzzzz_000001\n")
    result = _invoke("audit", ids, "--upstream", mirror)
    assert result.exit_code == 0, result.output
    assert "1 of its 2 ids are test ids" in result.output.replace("\n", " ")


# ---------------------------------------------------------------------------------------------- Flickr


def test_prepare_flickr_archive_with_a_missing_xml(mirror, tmp_path):
    ids = ["10000130166", "10007936344", "10008553263"]  # the first 3 of SLAVC's 250 in key order
    neg_audio = "10437048305"  # audio of the first flickr-ext negative, 10000130166__neg__10437048305
    root = tmp_path / "tree" / "Flickr"
    for d in ("frames", "audio", "Annotations"):
        (root / d).mkdir(parents=True)
    exe = find_ffmpeg()
    for k, fid in enumerate([*ids, neg_audio]):
        t = np.arange(16000 * (12 if k != 2 else 6)) / 16000
        pcm = (0.3 * np.sin(2 * np.pi * (300 + 150 * k) * t) * 32767).astype(np.int16)
        if k == 1:  # an mp3, made with ffmpeg
            sf.write(tmp_path / "tmp.wav", pcm, 16000)
            subprocess.run([exe, "-v", "error", "-y", "-i", str(tmp_path / "tmp.wav"), str(root / "audio" / f"{fid}.mp3")],
                           check=True)  # fmt: skip
        else:
            sf.write(root / "audio" / f"{fid}.wav", pcm, 44100 if k == 3 else 16000)
        if k < 3:
            Image.fromarray(np.full((30, 40, 3), 60 * k, np.uint8)).save(root / "frames" / f"{fid}.jpg", quality=85)
        if k in (0, 2):  # 10007936344 has no XML
            write_flickr_xml(root / "Annotations" / f"{fid}.xml", [[[16, 32, 128, 200]], [[20, 40, 120, 210], [0, 0, 8, 8]]])
    archive = tmp_path / "flickr.tar.gz"
    with tarfile.open(archive, "w:gz") as tar:
        tar.add(root, arcname="Flickr")
    out = tmp_path / "out"
    result = _invoke("prepare", "flickr-ext", "--out", out, "--limit", 3, "--flickr-archive", archive,
                     "--upstream", mirror, "--no-progress")  # fmt: skip
    assert result.exit_code == 0, result.output
    test, neg = _manifest(out / "flickr" / "test"), _manifest(out / "flickr" / "test-neg")
    assert {k: r["status"] for k, r in test.items()} == {ids[0]: "success", ids[1]: "unavailable", ids[2]: "success"}
    assert test[ids[1]]["error"] == f"missing: Annotations/{ids[1]}.xml is not in {archive.resolve()}"
    manifest = json.loads((out / "flickr" / "test" / "manifest.json").read_text())
    assert manifest["missing"]["ids"] == [ids[1]] and manifest["counts"]["success"] == 2
    annotations = manifest["inputs"]["annotations"]
    assert annotations["flickr_archive.sha256"] == hashlib.sha256(archive.read_bytes()).hexdigest()
    assert annotations["flickr_xml.files"] == "2"

    members = _tar_members(out / "flickr" / "test" / "000000.tar")
    assert members[f"{ids[0]}.jpg"] == (root / "frames" / f"{ids[0]}.jpg").read_bytes()  # byte for byte
    meta = json.loads(members[f"{ids[0]}.json"])
    assert meta["boxes"] == [[16 / 256, 32 / 256, 128 / 256, 200 / 256], [20 / 256, 40 / 256, 120 / 256, 210 / 256],
                             [0.0, 0.0, 8 / 256, 8 / 256]] and meta["box_group"] == [0, 1, 1]  # fmt: skip
    assert meta["gt_rule"] == "flickr" and meta["audio"]["window"] == [0.0, 10.0]
    assert meta["audio"]["media_window"] == [1.0, 11.0] and meta["source"]["kind"] == "flickr"
    short = json.loads(members[f"{ids[2]}.json"])["audio"]
    assert (short["samples"], short["window"]) == (96000, [2.0, 8.0])  # 6 s: all of it, centred on 5 s

    assert neg[f"{ids[0]}__neg__{neg_audio}"]["status"] == "success"
    assert neg[f"{ids[1]}__neg__10079676496"]["error"].startswith("missing: Annotations/")
    assert neg[f"{ids[2]}__neg__10163352444"]["error"].startswith("missing: audio/10163352444")
    neg_members = _tar_members(out / "flickr" / "test-neg" / "000000.tar")
    key = f"{ids[0]}__neg__{neg_audio}"
    assert neg_members[f"{key}.jpg"] == members[f"{ids[0]}.jpg"]
    neg_meta = json.loads(neg_members[f"{key}.json"])
    assert neg_meta["negative_type"] == "mismatched" and neg_meta["boxes"] == []
    assert neg_meta["frame_boxes"] == meta["boxes"] and neg_meta["audio_id"] == neg_audio
