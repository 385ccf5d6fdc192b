"""The prepare catalog (names → splits → rows), the Flickr producer and `prepare_benchmark` without the CLI."""

from __future__ import annotations

import io
import json
import subprocess
import tarfile
from collections import Counter
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest
import soundfile as sf
from PIL import Image

from avsl_bench.benchmarks.gt import write_flickr_xml
from avsl_bench.benchmarks.normalize import VGGSS_NORMALIZED_SHA256, VGGSS_RAW_SHA256
from avsl_bench.data.catalog import catalog_names, plan_benchmark
from avsl_bench.data.commands import prepare_benchmark
from avsl_bench.data.cut import CutError
from avsl_bench.data.flickr import FlickrArchive, cut_centred_audio
from avsl_bench.data.manifest import MergeError
from avsl_bench.data.plan import make_plan
from avsl_bench.errors import ChecksumError, DataFileError, UnknownNameError, UsageError

VGGSS_EMPTY_GT = {"M1P1xla8rg0_000000", "MKC9LvRivTM_000030"}


# ------------------------------------------------------------------------------------------------- names


def test_names_views_and_suggestions():
    names = set(catalog_names())
    expected = {"synthetic", "synthetic-tiny", "synthetic-ext", "synthetic-tiny-ext", "vggss", "vggss-ext",
                "vggss-heard", "vggss-unheard", "flickr", "flickr-249", "flickr-ext", "vggsound", "vggsound-noleak",
                "vggsound-10k", "vggsound-144k-noleak", "vggsound-heard", "flickr-10k", "flickr-144k-noleak",
                "flickr-sup-train"}  # fmt: skip
    assert expected <= names
    with pytest.raises(UnknownNameError, match="did you mean vggss"):
        plan_benchmark("vgss")


def test_synthetic_plan_and_ext_view():
    plan = plan_benchmark("synthetic-tiny")
    assert (plan.directory, plan.producer, plan.disjoint_check) == ("synthetic-tiny", "synthetic", True)
    assert [(s.split, len(s.rows)) for s in plan.splits] == [
        ("train", 256), ("val", 64), ("val-neg", 64), ("test", 64), ("test-neg", 64)]
    neg = plan.splits[-1]
    assert all(r.negative and "__neg__" in r.key and r.protocol == "synthetic-tiny-ext@1" for r in neg.rows)
    assert Counter(r.negative_type for r in neg.rows) == {"silent": 32, "offscreen": 32}
    view = plan_benchmark("synthetic-tiny-ext")
    assert view.view_of == "synthetic-tiny" and view.directory == "synthetic-tiny" and "scoring view" in view.notes[0]
    assert [s.input_sha256 for s in view.splits] == [s.input_sha256 for s in plan.splits]
    with pytest.raises(UsageError, match="audio-window"):
        plan_benchmark("synthetic-tiny", audio_window=3)


def test_limit_keeps_first_rows_in_key_order():
    full = plan_benchmark("synthetic-tiny").splits[0]
    limited = plan_benchmark("synthetic-tiny", limit=5).splits[0]
    assert [r.key for r in limited.rows] == sorted(r.key for r in full.rows)[:5]
    assert limited.input_sha256 == full.input_sha256
    with pytest.raises(UsageError):
        plan_benchmark("synthetic-tiny", limit=0)


# --------------------------------------------------------------------------------------- real annotations


def test_vggss_rows_boxes_and_defects(upstream):
    plan = plan_benchmark("vggss")
    (test,) = plan.splits
    assert (plan.directory, test.split, len(test.rows)) == ("vggss", "test", 5158)
    assert test.annotations["vggss_json"] == VGGSS_RAW_SHA256
    assert test.annotations["vggss.normalized.json"] == VGGSS_NORMALIZED_SHA256
    assert test.input_sha256 == "971081929d45caf21a148a6ca968822d96e8316331d0cc0bafb1783acb4d2c35"
    rows = {r.key: r for r in test.rows}
    assert all(0.0 <= v <= 1.0 for r in test.rows for b in r.boxes for v in b)
    assert all(b[2] > b[0] and b[3] > b[1] for r in test.rows for b in r.boxes)
    empty = {k for k, r in rows.items() if r.extra["gt_empty"]}
    assert empty == VGGSS_EMPTY_GT and all(not rows[k].boxes and not rows[k].negative for k in empty)
    kinds = Counter(d["kind"] for r in test.rows for d in r.extra["defects"])
    assert kinds == {"corrupt_coordinate": 12, "degenerate": 18}
    assert sum(len(r.boxes) for r in test.rows) == 5941 - 18
    d = plan.defects
    assert (d.corrupt_coordinates, d.corrupt_clips, d.degenerate_boxes, d.empty_gt_clips) == (14, 12, 18, 2)
    assert len({r.class_name for r in test.rows}) == 221


def test_vggss_ext_negatives_typed(upstream):
    plan = plan_benchmark("vggss-ext")
    assert [s.split for s in plan.splits] == ["test", "test-neg"] and plan.directory == "vggss"
    neg = plan.splits[1]
    assert len(neg.rows) == 5158 and neg.annotations["vggss_ext_neg"] == neg.input_sha256
    assert Counter(r.negative_type for r in neg.rows) == {"real": 379, "easy": 3594, "hard": 1185}
    for r in neg.rows:
        assert r.key == f"{r.video_id}__neg__{r.audio_id}" and r.negative and r.label == "non-sounding"
        assert not r.boxes and r.split == "test-neg" and r.protocol == "vggss-ext@1"
        if r.negative_type == "real":
            assert r.video_id == r.audio_id and r.extra["frame_boxes"] == []
        else:
            assert bool(r.extra["frame_boxes"]) == (r.video_id not in VGGSS_EMPTY_GT)
            assert (r.class_name == r.audio_class) == (r.negative_type == "hard")
    make_plan(neg.rows)  # valid keys, no clip id with __neg__, no duplicates


def test_flickr_rows(upstream):
    plan = plan_benchmark("flickr-ext")
    test, neg = plan.splits
    assert (len(test.rows), len(neg.rows), plan.producer, plan.flickr_xml) == (250, 250, "flickr", "required")
    assert "3908875350" in {r.key for r in test.rows}
    assert {r.negative_type for r in neg.rows} == {"mismatched"}
    assert plan_benchmark("flickr-249").view_of == "flickr"
    with pytest.raises(UsageError, match="training sets"):
        plan_benchmark("flickr", audio_window=3)


def test_training_plans(upstream):
    leaky = plan_benchmark("vggsound-10k", limit=3)
    assert leaky.warnings and "vggsound-10k-noleak" in leaky.warnings[0] and "238" in leaky.warnings[0]
    (train,) = leaky.splits
    assert (leaky.directory, train.split, train.n_total, len(train.rows)) == ("vggsound-10k", "train", 10000, 3)
    assert train.input_sha256 == "9a19023b17aedc79001bbcb69ccd5c96f6af2f7b8ef1b12fa92a76050a0ae43e"
    assert {"vggss_10k", "vgg_test", "vggss_test", "vggss_ext_neg"} <= set(train.annotations)
    clean = plan_benchmark("vggsound-144k-noleak", audio_window=3, source_kind="mirror")
    assert not clean.warnings and clean.splits[0].n_total == 132837 and clean.audio_window == 3.0
    assert {r.source_kind for r in clean.splits[0].rows} == {"mirror"}
    sup = plan_benchmark("flickr-sup-train")
    assert (sup.producer, sup.flickr_xml, sup.warnings) == ("flickr", "required", [])
    assert [(s.split, len(s.rows)) for s in sup.splits] == [("train", 4250), ("val", 500)]  # spec §3.7 label split
    with pytest.raises(UsageError, match="--list"):
        plan_benchmark("vggss", list_path="x.csv")


def test_vggsound_csv_needs_the_pinned_file(upstream, tmp_path):
    fake = tmp_path / "vggsound.csv"
    fake.write_text('--9O4XZOge4,30,"female speech, woman speaking",train\n')
    with pytest.raises(ChecksumError, match="git blob"):
        plan_benchmark("vggsound", list_path=fake)


# ------------------------------------------------------------------------------------------------- Flickr


def _wav(path: Path, seconds: float, rate: int = 16000, freq: float = 440.0) -> None:
    t = np.arange(int(seconds * rate)) / rate
    sf.write(path, (0.3 * np.sin(2 * np.pi * freq * t) * 32767).astype(np.int16), rate)


def test_centred_audio_windows(tmp_path, ffmpeg_exe):
    long, short = tmp_path / "long.wav", tmp_path / "short.wav"
    _wav(long, 12.0)
    _wav(short, 4.0, rate=44100)
    a = cut_centred_audio(long, exe=ffmpeg_exe)
    assert (a.samples, a.window, a.media_window, a.media_samples) == (160000, (0.0, 10.0), (1.0, 11.0), 192000)
    b = cut_centred_audio(short, exe=ffmpeg_exe)
    assert (b.samples, b.window, b.media_window) == (64000, (3.0, 7.0), (0.0, 4.0))
    c = cut_centred_audio(long, window=3.0, exe=ffmpeg_exe)
    assert (c.samples, c.window, c.media_window) == (48000, (3.5, 6.5), (4.5, 7.5))
    pcm, rate = sf.read(io.BytesIO(c.flac), dtype="int16")
    full, _ = sf.read(long, dtype="int16")
    assert rate == 16000 and np.array_equal(pcm, full[72000:120000])  # 16 kHz source: the exact samples


def _flickr_tree(root: Path, ids: list[str], *, xml: bool = True) -> None:
    for d in ("frames", "audio", "Annotations"):
        (root / d).mkdir(parents=True, exist_ok=True)
    for k, i in enumerate(ids):
        Image.fromarray(np.full((24, 32, 3), 30 * k, np.uint8)).save(root / "frames" / f"{i}.jpg", quality=90)
        _wav(root / "audio" / f"{i}.wav", 11.0, freq=300.0 + 100 * k)
        if xml:
            write_flickr_xml(root / "Annotations" / f"{i}.xml", [[[8, 16, 128, 240]]])


def test_flickr_archive_directory_and_tar_index(tmp_path):
    ids = ["1234567890", "2234567890"]
    _flickr_tree(tmp_path / "tree" / "Data", ids)
    (tmp_path / "tree" / "Data" / "audio" / "2234567890.mp3").write_bytes(b"ignored: wav is preferred")
    directory = FlickrArchive(tmp_path / "tree")
    media = directory.media(ids + ["3234567890"], tmp_path / "staging")
    assert set(media) == set(ids) and media[ids[1]]["audio"].endswith("2234567890.wav")
    assert set(directory.facts) == {"flickr_archive.listing_sha256", "flickr_archive.files"}
    archive = tmp_path / "f.tar.gz"
    with tarfile.open(archive, "w:gz") as tar:
        tar.add(tmp_path / "tree" / "Data", arcname="Data")
    staged = FlickrArchive(archive)
    media = staged.media(ids[:1], tmp_path / "staging")
    assert set(media) == {ids[0]} and Path(media[ids[0]]["frame"]).read_bytes() == (
        tmp_path / "tree" / "Data" / "frames" / f"{ids[0]}.jpg").read_bytes()
    assert staged.facts["flickr_archive.bytes"] == str(archive.stat().st_size)
    again = FlickrArchive(archive)
    assert again.media(ids[:1], tmp_path / "staging") == media and again.facts == staged.facts  # staged: reused
    with pytest.raises(DataFileError, match="directory or"):
        FlickrArchive(tmp_path / "tree" / "Data" / "frames" / f"{ids[0]}.jpg")


def test_prepare_flickr_training_set_three_second_window(tmp_path, upstream):
    ids = [r.key for r in plan_benchmark("flickr-10k-noleak", limit=2).splits[0].rows]
    _flickr_tree(tmp_path / "media", ids, xml=False)
    report = prepare_benchmark("flickr-10k-noleak", tmp_path / "out", limit=2, audio_window=3,
                               flickr_archive=tmp_path / "media", progress=False)  # fmt: skip
    (split,) = report.splits
    assert split.counts["success"] == 2 and report.merged
    with tarfile.open(split.split_dir / "000000.tar") as tar:
        metas = [json.loads(tar.extractfile(m).read()) for m in tar if m.name.endswith(".json")]
    assert [m["audio"]["window"] for m in metas] == [[3.5, 6.5]] * 2
    assert all(m["boxes"] == [] and m["gt_rule"] is None and m["split"] == "train" for m in metas)


def test_cut_midpoint_frame_and_centred_audio(media, ffmpeg_exe):
    from avsl_bench.data.flickr import cut_midpoint

    from .conftest import frame_index

    ten = cut_midpoint(media["idx25"], exe=ffmpeg_exe)  # 10.0 s: midpoint 5.0 s = frame 125 at 25 fps
    assert (ten.duration, ten.frame_time, frame_index(ten.jpg), (ten.width, ten.height)) == (10.0, 5.0, 125, (160, 96))
    assert (ten.audio.samples, ten.audio.window, ten.audio.media_window) == (160000, (0.0, 10.0), (0.0, 10.0))
    three = cut_midpoint(media["idx25"], window=3.0, exe=ffmpeg_exe)
    assert (three.audio.samples, three.audio.window, three.audio.media_window) == (48000, (3.5, 6.5), (3.5, 6.5))
    assert three.jpg == ten.jpg
    ntsc = cut_midpoint(media["idx2997"], exe=ffmpeg_exe)  # 8.01 s: first frame at >= 4.005 s is 121 (4.037 s)
    assert (ntsc.frame_time, frame_index(ntsc.jpg)) == (4.005, 121)
    assert ntsc.audio.media_window == (0.0, 8.0) and ntsc.audio.samples == 128000  # shorter than 10 s: all of it
    short = cut_midpoint(media["short"], exe=ffmpeg_exe)
    assert (frame_index(short.jpg), short.audio.window, short.audio.media_window) == (50, (3.0, 7.0), (0.0, 4.0))
    for name, reason in (("video_only", "no_audio_stream"), ("not_media", "ffmpeg_error")):
        with pytest.raises(CutError) as info:
            cut_midpoint(media[name], exe=ffmpeg_exe)
        assert info.value.reason == reason
    with pytest.raises(CutError, match="^timeout: idx25.mp4: ffmpeg exceeded"):
        cut_midpoint(media["idx25"], exe=ffmpeg_exe, timeout=1e-4)


def test_flickr_archive_finds_videos_in_directories_and_tars(tmp_path, media):
    ids = ["1234567890", "2234567890", "3234567890"]
    tree = tmp_path / "tree"
    _flickr_tree(tree / "Data", ids[:1], xml=False)  # id 0: frames/ + audio/ (and a video, not used for them)
    (tree / "videos" / "sub").mkdir(parents=True)
    for i, name in ((ids[0], "idx25"), (ids[1], "short")):
        (tree / "videos" / "sub" / f"{i}.mp4").write_bytes(media[name].read_bytes())
    (tree / "videos" / "123.mp4").write_bytes(b"not a Flickr id")
    media_dir = FlickrArchive(tree).media(ids, tmp_path / "staging")
    assert {i: sorted(kinds) for i, kinds in media_dir.items()} == {ids[0]: ["audio", "frame", "video"],
                                                                    ids[1]: ["video"]}  # fmt: skip
    archive = tmp_path / "f.tar"
    with tarfile.open(archive, "w") as tar:
        tar.add(tree, arcname="Flickr")
    staged = FlickrArchive(archive).media(ids, tmp_path / "staging")
    assert Path(staged[ids[1]]["video"]).read_bytes() == media["short"].read_bytes()


def test_prepare_flickr_training_set_from_videos(tmp_path, upstream, media, ffmpeg_exe):
    from .conftest import frame_index

    ids = [r.key for r in plan_benchmark("flickr-10k-noleak", limit=3).splits[0].rows]
    (tmp_path / "media").mkdir()
    for i, name in zip(ids, ("idx25", "idx2997")):  # the third id has no media: missing
        (tmp_path / "media" / f"{i}.mp4").write_bytes(media[name].read_bytes())
    report = prepare_benchmark("flickr-10k-noleak", tmp_path / "out", limit=3, flickr_archive=tmp_path / "media",
                               cut_timeout=30, progress=False)  # fmt: skip
    (split,) = report.splits
    assert (split.counts["success"], split.counts["unavailable"]) == (2, 1)
    assert split.manifest["params"] == {"cut_timeout_s": 30}
    rows = {r["key"]: r for r in pq.read_table(split.split_dir / "manifest.parquet").to_pylist()}
    assert rows[ids[2]]["error"] == f"missing: frames/{ids[2]}.jpg (or {ids[2]}.mp4) is not in {tmp_path / 'media'}"
    with tarfile.open(split.split_dir / "000000.tar") as tar:
        members = {m.name: tar.extractfile(m).read() for m in tar}
    first, second = (json.loads(members[f"{i}.json"]) for i in ids[:2])
    assert frame_index(members[f"{ids[0]}.jpg"]) == 125 and frame_index(members[f"{ids[1]}.jpg"]) == 121
    assert first["frame"] | {"sha256": None} == {"t": 5.0, "media_t": 5.0, "origin": "media midpoint", "width": 160,
                                                 "height": 96, "sha256": None}  # fmt: skip
    assert (first["audio"]["window"], first["audio"]["samples"], first["clip_duration"]) == ([0.0, 10.0], 160000, 10.0)
    assert second["audio"]["window"] == [0.995, 8.995] and second["audio"]["media_window"] == [0.0, 8.0]
    pcm, rate = sf.read(io.BytesIO(members[f"{ids[0]}.flac"]), dtype="int16")
    assert rate == 16000 and pcm.shape == (160000,)


def test_prepare_flickr_sup_train_takes_boxes_from_an_xml_dir(tmp_path, upstream):
    ids = [r.key for r in plan_benchmark("flickr-sup-train", limit=2).splits[0].rows]
    _flickr_tree(tmp_path / "media", ids, xml=False)
    _flickr_tree(tmp_path / "xml", ids[:1])  # boxes for the first id only
    report = prepare_benchmark("flickr-sup-train", tmp_path / "out", limit=2, flickr_archive=tmp_path / "media",
                               flickr_annotations=tmp_path / "xml" / "Annotations", progress=False)  # fmt: skip
    split = next(s for s in report.splits if s.split == "train")
    assert (split.counts["success"], split.counts["unavailable"]) == (1, 1)  # labelled: the id without XML is missing
    with tarfile.open(split.split_dir / "000000.tar") as tar:
        (meta,) = [json.loads(tar.extractfile(m).read()) for m in tar if m.name.endswith(".json")]
    assert meta["boxes"] == [[8 / 256, 16 / 256, 128 / 256, 240 / 256]] and meta["gt_rule"] == "flickr"
    assert meta["labelled"] is True
    assert split.manifest["inputs"]["annotations"]["flickr_xml.files"] == "1"


def test_prepare_flickr_rejects_missing_archive_and_bad_xml(tmp_path, upstream):
    with pytest.raises(DataFileError, match="--flickr-archive"):
        prepare_benchmark("flickr", tmp_path / "out", limit=1, progress=False)
    ids = [r.key for r in plan_benchmark("flickr", limit=1).splits[0].rows]
    _flickr_tree(tmp_path / "media", ids)
    (tmp_path / "media" / "Annotations" / f"{ids[0]}.xml").write_text("<annotation><object><bbox><name>x</name>"
                                                                      "<xmin>a</xmin></bbox></object></annotation>")
    with pytest.raises(DataFileError, match=ids[0]):
        prepare_benchmark("flickr", tmp_path / "out", limit=1, flickr_archive=tmp_path / "media", progress=False)
    assert not (tmp_path / "out" / "flickr" / "test").exists()  # failed before anything was written
    with pytest.raises(UsageError, match="--source"):
        prepare_benchmark("flickr", tmp_path / "out", source_spec="youtube", progress=False)


# ------------------------------------------------------------------------------------------ parts + merge


def test_parts_then_merge_then_disjointness(tmp_path):
    common = dict(limit=3, samples_per_shard=1, num_parts=2, progress=False)
    first = prepare_benchmark("synthetic-tiny", tmp_path, part=0, **common)
    assert not first.merged and [s.summary.written for s in first.splits] == [[0, 2]] * 5
    with pytest.raises(MergeError) as info:
        prepare_benchmark("synthetic-tiny", tmp_path, limit=3, samples_per_shard=1, merge_only=True, progress=False)
    message = str(info.value)
    assert "synthetic-tiny/train: incomplete shards 000001" in message and "synthetic-tiny/test-neg" in message
    prepare_benchmark("synthetic-tiny", tmp_path, part=1, **common)
    merged = prepare_benchmark("synthetic-tiny", tmp_path, limit=3, samples_per_shard=1, merge_only=True,
                               progress=False)  # fmt: skip
    assert merged.merged and [s.counts["success"] for s in merged.splits] == [3] * 5
    assert merged.disjoint["ok"] and merged.disjoint["samples"]["train"] == 3
    table = pq.read_table(tmp_path / "synthetic-tiny" / "val-neg" / "manifest.parquet").to_pylist()
    assert [r["shard"] for r in table] == [0, 1, 2]
    with pytest.raises(MergeError, match="disagree on the plan"):  # another --samples-per-shard: another plan
        prepare_benchmark("synthetic-tiny", tmp_path, limit=3, merge_only=True, progress=False)


def test_disjointness_check_catches_a_leak(tmp_path, monkeypatch):
    from avsl_bench.data import commands
    from avsl_bench.data.synthetic import SplitLeakError

    prepare_benchmark("synthetic-tiny", tmp_path, limit=2, progress=False)
    real = commands.iter_sample_meta

    def leaky(split_dir):
        metas = list(real(split_dir))
        if Path(split_dir).name == "test":  # pretend a test frame is byte-identical to a train frame
            train = next(iter(real(Path(split_dir).parent / "train")))
            metas[0] = {**metas[0], "frame": train["frame"]}
        return iter(metas)

    monkeypatch.setattr(commands, "iter_sample_meta", leaky)
    with pytest.raises(SplitLeakError, match="'test'"):
        prepare_benchmark("synthetic-tiny", tmp_path, limit=2, merge_only=True, progress=False)


def test_source_option_errors(tmp_path):
    with pytest.raises(UsageError, match="mirror:PATH"):
        prepare_benchmark("vggss", tmp_path, source_spec="ftp://x", progress=False)
    with pytest.raises(UsageError, match="does not apply"):
        prepare_benchmark("synthetic-tiny", tmp_path, source_spec="youtube", progress=False)
    with pytest.raises(UsageError, match="part"):
        prepare_benchmark("synthetic-tiny", tmp_path, num_parts=2, part=2, progress=False)


def test_mp3_audio_is_decoded(tmp_path, ffmpeg_exe):
    wav, mp3 = tmp_path / "a.wav", tmp_path / "a.mp3"
    _wav(wav, 2.0, rate=22050)
    subprocess.run([ffmpeg_exe, "-v", "error", "-y", "-i", str(wav), str(mp3)], check=True)
    a = cut_centred_audio(mp3, exe=ffmpeg_exe)
    assert 31000 < a.samples < 34000 and a.window[0] > 3.9  # ~2 s (+ mp3 padding), all of it, centred on 5 s
