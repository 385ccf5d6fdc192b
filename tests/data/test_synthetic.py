"""The synthetic benchmark (data spec §10): scene rules, determinism, negatives, rendering, golden hashes."""

from __future__ import annotations

import collections
import io
import itertools
import json
import math
import time

import numpy as np
import pytest

from avsl_bench.benchmarks.synthetic import (
    CLASSES, CLIP_SAMPLES, HEIGHT, SAMPLE_RATE, SIZES, WIDTH, box_iou, mask_box, normalize_box, rank, scene_params,
    synthetic_annotations,
)  # fmt: skip
from avsl_bench.data import synthetic as synthetic_data
from avsl_bench.data.synthetic import (
    SplitLeakError, assert_disjoint_splits, encode_flac_batch, meta_hashes, object_masks, render_audio, render_rgb,
    encode_flac_soundfile, plan_row, render_sample, sample_blobs, sample_blobs_batch,
)  # fmt: skip
from avsl_bench.files import canonical_json, sha256_bytes

from .regenerate_synthetic_golden import GOLDEN, golden

SECTION_8_FIELDS = {
    "key", "benchmark", "split", "protocol", "video_id", "audio_id", "source", "class", "audio_class", "label",
    "negative", "negative_type", "boxes", "box_group", "gt_rule", "defects", "gt_empty", "frame_boxes", "frame",
    "audio",
}  # fmt: skip


@pytest.fixture(scope="module")
def test_split() -> list[dict]:
    return synthetic_annotations("synthetic", "test", negatives=True)


@pytest.fixture(scope="module")
def val_split() -> list[dict]:
    return synthetic_annotations("synthetic", "val", negatives=True)


def _pixel_box(box: list[float]) -> tuple[int, int, int, int]:
    x0, y0, x1, y1 = box
    return (round(x0 * WIDTH), round(y0 * HEIGHT), round(x1 * WIDTH) - 1, round(y1 * HEIGHT) - 1)


# ------------------------------------------------------------------------------------------------ golden


def test_golden_hashes_are_reproduced_exactly():
    """First 10 samples of each split (seed 0) and the tiny annotations, against the checked-in pins."""
    expected = json.loads(GOLDEN.read_text())
    assert golden() == expected, f"synthetic generator output changed; if intended, run {GOLDEN.parent.parent.name}/regenerate_synthetic_golden.py"


# ------------------------------------------------------------------------------------------- determinism


def test_same_seed_same_bytes_other_split_or_seed_other_stream():
    a, b = scene_params("val", 3), scene_params("val", 3)
    assert a == b
    assert render_rgb(a).tobytes() == render_rgb(b).tobytes()
    assert render_audio(a).tobytes() == render_audio(b).tobytes()
    others = [scene_params("train", 3), scene_params("test", 3), scene_params("val", 3, seed=1), scene_params("val", 4)]
    for other in others:
        assert other.image_noise_seed != a.image_noise_seed and other.audio.noise_seed != a.audio.noise_seed
        assert render_rgb(other).tobytes() != render_rgb(a).tobytes()
    assert scene_params("val", 3).to_json() == json.loads(canonical_json(a.to_json()))  # plain JSON types only


def test_bad_arguments_raise():
    with pytest.raises(ValueError, match="split"):
        scene_params("dev", 0)
    with pytest.raises(ValueError, match="size"):
        synthetic_annotations("synthetic-huge", "test")
    with pytest.raises(ValueError, match="no negatives"):
        synthetic_annotations("synthetic-tiny", "train", negatives=True)


def test_split_sizes(val_split, test_split):
    assert SIZES == {"synthetic": {"train": 4000, "val": 500, "test": 1000},
                     "synthetic-tiny": {"train": 256, "val": 64, "test": 64}}  # fmt: skip
    splits = {("synthetic", "val"): val_split, ("synthetic", "test"): test_split}
    for size in SIZES:
        for split in ("val", "test"):
            rows = splits.get((size, split)) or synthetic_annotations(size, split, negatives=True)
            assert sum(not r["negative"] for r in rows) == sum(r["negative"] for r in rows) == SIZES[size][split]
            assert [r["key"] for r in rows[: SIZES[size][split]]] == [f"synthetic_{split}_{i:06d}" for i in range(SIZES[size][split])]
    assert len(synthetic_annotations("synthetic-tiny", "train")) == 256


# ------------------------------------------------------------------------------------------- scene rules


def test_placement_rules_on_the_test_split(test_split):
    counts = collections.Counter()
    for i in range(SIZES["synthetic"]["test"]):
        p = scene_params("test", i)
        assert 2 <= len(p.objects) <= 3 and p.objects[0].sounding and not any(o.sounding for o in p.objects[1:])
        assert len({o.class_id for o in p.objects}) == len(p.objects)
        assert sorted(p.draw_order) == list(range(len(p.objects)))
        for o in p.objects:
            fw, fh = o.side_fractions
            assert 0.3 <= fw <= 0.8 and 0.3 <= fh <= 0.8
            x0, y0, x1, y1 = o.box
            assert (x1 - x0 + 1, y1 - y0 + 1) == (math.floor(fw * WIDTH + 0.5), math.floor(fh * HEIGHT + 0.5))
            assert 0 <= x0 <= x1 < WIDTH and 0 <= y0 <= y1 < HEIGHT
            assert all(abs(c - b) <= 15 for c, b in zip(o.colour, CLASSES[o.class_id].rgb))
        for a, b in itertools.combinations(p.objects, 2):
            assert box_iou(a.box, b.box) <= 0.3
        gt = _pixel_box(test_split[i]["boxes"][0])
        sx0, sy0, sx1, sy1 = p.objects[0].box
        assert sx0 <= gt[0] <= gt[2] <= sx1 and sy0 <= gt[1] <= gt[3] <= sy1
        # the GT box is the mask's box: shapes touch their box's edges except thin tips (star: ≤ 4 px a side)
        assert (gt[2] - gt[0]) >= (sx1 - sx0) - 10 and (gt[3] - gt[1]) >= (sy1 - sy0) - 6
        counts[len(p.objects)] += 1
        counts["sounding on top"] += p.draw_order[-1] == 0
    assert counts[2] > 300 and counts[3] > 300
    assert 250 < counts["sounding on top"] < 600  # random draw order, not always on top


def test_gt_area_share(test_split):
    """≈ 60 % of positives have a GT box covering ≥ 25 % of the frame (§10)."""
    positives = [r for r in test_split if not r["negative"]]
    areas = np.array([(b[2] - b[0]) * (b[3] - b[1]) for r in positives for b in r["boxes"]])
    assert len(areas) == len(positives) == 1000
    assert 0.09 * 0.8 < areas.min() and areas.max() <= 0.64 + 1e-9
    assert 0.52 <= np.mean(areas >= 0.25) <= 0.70


def test_sounding_object_is_not_singled_out_by_size():
    sizes = [scene_params("train", i) for i in range(600)]
    area = lambda o: (o.box[2] - o.box[0] + 1) * (o.box[3] - o.box[1] + 1)  # noqa: E731
    two = [p for p in sizes if len(p.objects) == 2]
    largest = np.mean([area(p.objects[0]) >= area(p.objects[1]) for p in two])
    assert 0.4 < largest < 0.62  # chance level 0.5


def test_annotation_path_equals_render_path():
    for split, index in [("train", 0), ("val", 5), ("test", 7), ("test", 11)]:
        p = scene_params(split, index)
        row = synthetic_annotations("synthetic-tiny", split)[index]
        masks = object_masks(p)
        rows, cols = np.flatnonzero(masks[0].any(axis=1)), np.flatnonzero(masks[0].any(axis=0))
        assert row["boxes"] == [[cols[0] / WIDTH, rows[0] / HEIGHT, (cols[-1] + 1) / WIDTH, (rows[-1] + 1) / HEIGHT]]
        assert row["boxes"] == [normalize_box(mask_box(p.objects[0]))]
        assert row["frame_classes"] == [CLASSES[o.class_id].name for o in p.objects]
        # the frame shows each object in its colour wherever no later-drawn object covers it
        rgb = render_rgb(p)
        for pos, k in enumerate(p.draw_order):
            visible = masks[k].copy()
            for later in p.draw_order[pos + 1 :]:
                visible &= ~masks[later]
            assert (rgb[visible] == np.array(p.objects[k].colour, dtype=np.uint8)).all()


# --------------------------------------------------------------------------------------------- negatives


@pytest.mark.parametrize("fixture", ["val_split", "test_split"])
def test_negatives_reuse_every_frame_once(fixture, request):
    rows = request.getfixturevalue(fixture)
    positives = {r["key"]: r for r in rows if not r["negative"]}
    negatives = [r for r in rows if r["negative"]]
    assert len({r["key"] for r in rows}) == len(rows)
    assert collections.Counter(r["video_id"] for r in negatives) == collections.Counter(list(positives))
    kinds = collections.Counter(r["negative_type"] for r in negatives)
    assert kinds == {"offscreen": len(positives) // 2, "silent": len(positives) - len(positives) // 2}
    for r in negatives:
        frame = positives[r["video_id"]]
        assert r["boxes"] == [] and r["frame_boxes"] == frame["boxes"] and r["label"] == "non-sounding"
        assert r["class"] == frame["class"] and r["frame_classes"] == frame["frame_classes"]
        assert r["split"] == frame["split"] + "-neg" and "." not in r["key"]
        if r["negative_type"] == "silent":
            assert r["key"] == f"{frame['key']}__neg__silent" and r["audio_class"] is None
            assert r["audio_id"] == r["video_id"] and r["audio_index"] == r["frame_index"]
        else:
            audio = positives[r["audio_id"]]
            assert r["key"] == f"{frame['key']}__neg__{audio['key']}"
            assert audio["class"] not in frame["frame_classes"] and r["audio_class"] == audio["class"]
    # §6.3: offscreen = the first half of the frames in rank order; audio first unused in audio-rank order
    by_rank = sorted(positives, key=lambda k: rank(0, "frame", k))
    half = len(by_rank) // 2
    offscreen = {r["video_id"] for r in negatives if r["negative_type"] == "offscreen"}
    assert offscreen == set(by_rank[:half])
    uses = collections.Counter(r["audio_id"] for r in negatives if r["negative_type"] == "offscreen")
    assert max(uses.values()) == 1  # enough eligible audio: nothing reused


def test_negative_audio_rendering():
    rows = synthetic_annotations("synthetic-tiny", "test", negatives=True)
    silent = next(r for r in rows if r["negative_type"] == "silent")
    offscreen = next(r for r in rows if r["negative_type"] == "offscreen")
    pos = {r["key"]: r for r in rows if not r["negative"]}
    s_sil, s_off = render_sample(silent), render_sample(offscreen)
    s_frame, s_audio = render_sample(pos[silent["video_id"]]), render_sample(pos[offscreen["audio_id"]])
    assert s_sil.rgb.tobytes() == s_frame.rgb.tobytes()
    assert s_off.pcm.tobytes() == s_audio.pcm.tobytes()
    assert s_off.rgb.tobytes() == render_sample(pos[offscreen["video_id"]]).rgb.tobytes()
    # silent = the positive's background noise alone: quieter by about the SNR
    p = scene_params("test", silent["frame_index"])
    rms = lambda x: float(np.sqrt(np.mean(x.astype(np.float64) ** 2)))  # noqa: E731
    ratio_db = 20 * math.log10(rms(s_frame.pcm) / rms(s_sil.pcm))
    assert ratio_db == pytest.approx(10 * math.log10(1 + 10 ** (p.audio.snr_db / 10)), abs=0.2)
    # positive − silent = the class sound alone (±1 LSB of rounding), faded in and out over 10 ms
    sound = s_frame.pcm.astype(np.int64) - s_sil.pcm
    assert abs(sound[0]) <= 1 and abs(sound[-1]) <= 1
    ramp = int(0.010 * SAMPLE_RATE)
    assert np.abs(sound[:ramp // 4]).max() < np.abs(sound[ramp:]).max() / 4


# ------------------------------------------------------------------------------------------------- audio


def _dominant_hz(pcm: np.ndarray) -> float:
    spec = np.abs(np.fft.rfft(pcm.astype(np.float64) * np.hanning(len(pcm))))
    return float(np.fft.rfftfreq(len(pcm), 1 / SAMPLE_RATE)[np.argmax(spec)])


def test_audio_class_ties_to_its_sound():
    by_class: dict[int, list] = collections.defaultdict(list)
    for i in range(80):
        p = scene_params("train", i)
        if len(by_class[p.audio.class_id]) < 2:
            by_class[p.audio.class_id].append(p)
    lo, hi = 2 ** (-1 / 12), 2 ** (1 / 12)
    fundamentals = {0: 440.0, 1: 220.0, 2: 330.0}
    for cls, params in by_class.items():
        for p in params:
            pcm = render_audio(p)
            assert pcm.dtype == np.int16 and pcm.shape == (CLIP_SAMPLES,)
            assert lo <= p.audio.pitch_factor <= hi and 0.3 <= p.audio.peak <= 0.7 and 10 <= p.audio.snr_db <= 20
            peak = np.abs(pcm).max() / 32768
            assert min(p.audio.peak * 0.9, 0.9) < peak <= 0.99 + 1e-4
            f = _dominant_hz(pcm)
            if cls in fundamentals:
                assert fundamentals[cls] * lo - 1 <= f <= fundamentals[cls] * hi + 1, (cls, f)
            elif cls == 6:
                assert min(abs(f - 500 * p.audio.pitch_factor), abs(f - 750 * p.audio.pitch_factor)) <= 1
            elif cls == 7:
                assert 2000 * lo <= f <= 4000 * hi
            elif cls in (3, 4):
                assert 400 * lo <= f <= 2000 * hi
            else:  # 5: 660 Hz gated at 4 Hz (sidebands ±4 Hz)
                assert abs(f - 660 * p.audio.pitch_factor) <= 10


# ---------------------------------------------------------------------------------------------- encoding


def test_sample_blobs_round_trip():
    import soundfile as sf
    from PIL import Image

    rows = synthetic_annotations("synthetic-tiny", "val", negatives=True)
    picks = [rows[0], next(r for r in rows if r["negative_type"] == "silent"),
             next(r for r in rows if r["negative_type"] == "offscreen")]  # fmt: skip
    for row in picks:
        blobs = sample_blobs(row)
        assert blobs.key == row["key"]
        rendered = render_sample(row)
        meta = json.loads(blobs.json_bytes())
        assert SECTION_8_FIELDS <= set(meta) and meta["scene"]["key"] == row["video_id"]
        assert meta_hashes(meta) == (sha256_bytes(rendered.rgb.tobytes()), sha256_bytes(rendered.pcm.tobytes()))
        assert meta["boxes"] == row["boxes"] and meta["negative_type"] == row["negative_type"]
        assert meta["audio"]["samples"] == CLIP_SAMPLES and meta["frame"]["width"] == WIDTH
        image = Image.open(io.BytesIO(blobs.jpg))
        assert image.format == "JPEG" and image.size == (WIDTH, HEIGHT) and not image.getexif()
        assert b"Exif" not in blobs.jpg[:64]
        decoded = np.asarray(image.convert("RGB"), dtype=np.float64)
        assert 10 * math.log10(255**2 / np.mean((decoded - rendered.rgb) ** 2)) > 25  # noisy chroma, 4:2:0
        pcm, rate = sf.read(io.BytesIO(blobs.flac), dtype="int16")
        assert rate == SAMPLE_RATE and sf.info(io.BytesIO(blobs.flac)).subtype == "PCM_16"
        assert np.array_equal(pcm, rendered.pcm)
    first, second = sample_blobs(picks[1]), sample_blobs(plan_row(picks[1]))
    assert (first.jpg, first.flac, first.json_bytes()) == (second.jpg, second.flac, second.json_bytes())


def test_plan_rows_are_valid():
    from avsl_bench.data.plan import validate_row

    for split in ("train", "val", "test"):
        for row in synthetic_annotations("synthetic-tiny", split, negatives=split != "train"):
            plan = plan_row(row)
            validate_row(plan)
            assert plan.source_kind == "synthetic" and plan.extra["key"] == plan.key == row["key"]


def test_batch_flac_is_byte_identical_to_single_encodes(monkeypatch):
    from avsl_bench.data.ffmpeg import encode_flac

    pcms = [render_audio(scene_params("test", i)) for i in range(3)]
    assert encode_flac_batch(pcms, SAMPLE_RATE) == [encode_flac(p, SAMPLE_RATE) for p in pcms]
    monkeypatch.setattr(synthetic_data, "BATCH_CLIPS", 2)  # 2 ffmpeg runs, same bytes in the same order
    assert encode_flac_batch(pcms, SAMPLE_RATE) == [encode_flac(p, SAMPLE_RATE) for p in pcms]
    assert encode_flac_batch([], SAMPLE_RATE) == []


def test_soundfile_flac_decodes_to_the_same_pcm():
    import soundfile as sf

    from avsl_bench.data.ffmpeg import flac_streaminfo

    row = synthetic_annotations("synthetic-tiny", "test")[1]
    via_ffmpeg, via_sf = sample_blobs_batch([row])[0], sample_blobs_batch([row], flac_encoder="soundfile")[0]
    assert via_sf.flac == encode_flac_soundfile(render_sample(row).pcm, SAMPLE_RATE)  # deterministic
    assert via_ffmpeg.jpg == via_sf.jpg and via_ffmpeg.json_bytes() == via_sf.json_bytes()
    for flac in (via_ffmpeg.flac, via_sf.flac):
        info = flac_streaminfo(flac)
        assert (info["bits_per_sample"], info["total_samples"], info["sample_rate"]) == (16, CLIP_SAMPLES, SAMPLE_RATE)
        assert np.array_equal(sf.read(io.BytesIO(flac), dtype="int16")[0], render_sample(row).pcm)
    with pytest.raises(ValueError, match="flac_encoder"):
        sample_blobs(row, flac_encoder="lame")


def test_disjoint_splits_check():
    hashes = collections.defaultdict(list)
    for split, count in (("train", 16), ("val", 6), ("test", 6)):
        rows = synthetic_annotations("synthetic-tiny", split, negatives=split != "train")
        for row in rows[:count] + ([r for r in rows if r["negative"]][:4] if split != "train" else []):
            name = row["split"]
            hashes[name].extend(meta_hashes(render_sample(row).meta))
    assert_disjoint_splits(hashes)
    hashes["test-neg"].append(hashes["train"][5])
    with pytest.raises(SplitLeakError, match="test-neg"):
        assert_disjoint_splits(hashes)


# ------------------------------------------------------------------------------------------------- speed


def test_annotations_are_fast():
    start = time.process_time()
    rows = synthetic_annotations("synthetic", "test", negatives=True)
    elapsed = time.process_time() - start
    assert len(rows) == 2000
    assert elapsed < 5.0, f"{elapsed:.2f} s CPU for 2,000 annotation rows (≈ 0.4 s on an idle core)"
