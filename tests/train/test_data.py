"""Shard index, the no-test-data rule, deterministic shuffle and augmentation."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from avsl_bench.models.recipes import InputConfig
from avsl_bench.train.data import AVDataset, EpochBatchSampler, LeakageError, ShardIndex, check_training_data, clip_centre
from avsl_bench.train.seeding import epoch_permutation

from .conftest import write_split

CFG = InputConfig(image_size=32, resize_short=36, audio_frontend="pooled", freq_bins=32, time_frames=50)


def test_index_reads_members_and_meta(fixture_shards):
    index = ShardIndex.build(fixture_shards["train"])
    assert len(index) == 64 and len(index.shards) == 2
    assert index.keys == sorted(index.keys)
    assert index.splits() == {"train": 64}
    assert all(s.meta["key"] == s.key for s in index.samples)
    assert len(index.keys_sha256()) == 64
    digests = index.shard_digests()
    assert [d["path"] for d in digests] == [str(p) for p in index.shards] and all(len(d["sha256"]) == 64 for d in digests)


@pytest.mark.parametrize("split", ["test", "test-neg"])
def test_training_refuses_test_splits(fixture_shards, split):
    with pytest.raises(LeakageError, match="test data"):
        check_training_data(ShardIndex.build([fixture_shards["train"], fixture_shards[split]]))


def test_training_refuses_test_manifest_and_negatives(tmp_path, fixture_shards):
    d = write_split(tmp_path / "renamed", "train", 4)
    (d / "manifest.json").write_text(json.dumps({"split": "test"}))
    with pytest.raises(LeakageError, match="manifest.json"):
        check_training_data(ShardIndex.build(d))
    neg = write_split(tmp_path / "neg", "val-neg", 4, negative=True)
    with pytest.raises(LeakageError, match="negative pair"):
        check_training_data(ShardIndex.build(neg))
    check_training_data(ShardIndex.build(fixture_shards["train"]))  # fine


def test_sampler_is_a_pure_function_of_seed_and_epoch_and_splits_ranks():
    full = EpochBatchSampler(100, 16, seed=3)
    full.set_epoch(2)
    batches = list(full)
    assert len(batches) == 6 and all(len(b) == 16 for b in batches)
    again = EpochBatchSampler(100, 16, seed=3)
    again.set_epoch(2)
    assert list(again) == batches
    assert [i for _, i in batches[0]] == list(epoch_permutation(100, 3, 2)[:16])
    other = EpochBatchSampler(100, 16, seed=3)
    other.set_epoch(3)
    assert list(other) != batches
    ranks = []
    for r in range(4):
        s = EpochBatchSampler(100, 16, seed=3, rank=r, world_size=4)
        s.set_epoch(2)
        ranks.append(list(s))
    for b in range(6):
        assert sum((ranks[r][b] for r in range(4)), []) == batches[b]
    with pytest.raises(Exception, match="not divisible"):
        EpochBatchSampler(100, 16, seed=0, world_size=3)


def test_train_items_are_deterministic_across_workers(fixture_shards):
    from torch.utils.data import DataLoader

    index = ShardIndex.build(fixture_shards["train"])

    def batches(workers):
        ds = AVDataset(index, CFG, mode="train", seed=5)
        sampler = EpochBatchSampler(len(ds), 16, seed=5)
        sampler.set_epoch(1)
        return list(DataLoader(ds, batch_sampler=sampler, num_workers=workers))

    a, b = batches(0), batches(2)
    for x, y in zip(a, b):
        assert torch.equal(x["image"], y["image"]) and torch.equal(x["audio"], y["audio"])
        assert torch.equal(x["index"], y["index"])
    assert a[0]["image"].shape == (16, 3, 32, 32) and a[0]["image"].dtype == torch.uint8
    assert a[0]["audio"].shape == (16, 32, 50)
    cached = AVDataset(index, CFG, mode="train", seed=5)
    cached.fill_cache(0)
    item = cached[(1, 7)]
    ref = AVDataset(index, CFG, mode="train", seed=5)[(1, 7)]
    assert torch.equal(item["image"], ref["image"]) and torch.equal(item["audio"], ref["audio"])


def test_eval_items_squash_and_pair_audio(fixture_shards):
    index = ShardIndex.build(fixture_shards["test"])
    ds = AVDataset(index, CFG, mode="eval", ogl_image=True)
    own, swapped = ds[3], ds[(3, 5)]
    assert own["image"].shape == (3, 32, 32) and own["ogl_image"].shape == (3, 224, 224)
    assert torch.equal(own["image"], swapped["image"]) and torch.equal(swapped["audio"], ds[5]["audio"])


def test_clip_centre():
    assert clip_centre({"source": {"kind": "youtube"}, "frame": {"t": 5.033}}) == 5.0
    assert clip_centre({"source": {"kind": "synthetic"}, "frame": {"t": 1.5}}) == 1.5
    assert clip_centre({}) == 5.0


def test_ten_second_store_uses_protocol_window(tmp_path):
    d = write_split(tmp_path / "ten", "train", 2, kind="youtube", window=(0.0, 10.0))
    index = ShardIndex.build(d)
    cfg = InputConfig(image_size=32, resize_short=36)  # §2.1 spectrogram
    item = AVDataset(index, cfg, mode="eval")[0]
    assert item["audio"].shape == (1, 257, 200)


# ------------------------------------------------------------------------------- semi-supervised (§3.7)


def mark_labelled(src, dst, every: int = 4):
    """Copy fixture shards `src` → `dst`, marking every `every`-th sample `"labelled": true` (others false)."""
    import io
    import tarfile

    dst.mkdir(parents=True, exist_ok=True)
    n = 0
    for tar_path in sorted(src.glob("*.tar")):
        with tarfile.open(tar_path) as tin, tarfile.open(dst / tar_path.name, "w", format=tarfile.USTAR_FORMAT) as tout:
            for info in tin:
                data = tin.extractfile(info).read()
                if info.name.endswith(".json"):
                    meta = json.loads(data)
                    meta["labelled"] = n % every == 0
                    n += 1
                    data = json.dumps(meta, sort_keys=True).encode()
                    info.size = len(data)
                tout.addfile(info, io.BytesIO(data))
    return dst


def test_box_mask_rasterises_the_union_of_normalised_boxes():
    from avsl_bench.train.data import box_mask

    m = box_mask([[0.25, 0.5, 0.75, 1.0], [0.0, 0.0, 0.125, 0.125]], 8, 8)
    ref = np.zeros((8, 8), np.uint8)
    ref[4:8, 2:6] = 1
    ref[0, 0] = 1
    assert m.dtype == np.uint8 and np.array_equal(m, ref)
    assert not box_mask([], 4, 6).any() and box_mask([[0, 0, 1, 1]], 4, 6).all()


def test_mask_target_follows_the_image_crop_and_flip(fixture_shards, tmp_path):
    from avsl_bench import features
    from avsl_bench.train.data import box_mask
    from avsl_bench.train.seeding import sample_rng

    index = ShardIndex.build(mark_labelled(fixture_shards["train"], tmp_path / "lab", every=1))
    plain = AVDataset(index, CFG, mode="train", seed=5)
    ds = AVDataset(index, CFG, mode="train", seed=5, targets=True)
    flips = set()
    for epoch in range(3):
        for i in range(0, 64, 5):
            item, ref = ds[(epoch, i)], plain[(epoch, i)]
            assert torch.equal(item["image"], ref["image"])  # same draws: the image is unchanged
            assert item["labelled"] is True and item["mask"].shape == (32, 32) and item["mask"].dtype == torch.uint8
            # exact: the mask rasterised at the pre-crop size, cropped/flipped with the image's generator
            pre = ds._image(i)["pre"]
            rng = sample_rng(5, epoch, i)
            expected = features.random_crop_flip(box_mask(index.samples[i].meta["boxes"], *pre.shape[:2])[..., None],
                                                  32, rng, CFG.flip)[..., 0]  # fmt: skip
            assert np.array_equal(item["mask"].numpy(), expected)
            flips.add(_flipped(5, epoch, i, pre, CFG))
            # semantic: the fixture's object is a saturated square on a dark background
            bright = item["image"].max(0).values.float()
            m = item["mask"].bool()
            assert bright[m].mean() > 150 and bright[~m].mean() < 110
    assert flips == {True, False}  # both flipped and unflipped items were checked


def _flipped(seed, epoch, i, pre, cfg) -> bool:
    from avsl_bench.train.seeding import sample_rng

    rng = sample_rng(seed, epoch, i)
    rng.integers(0, pre.shape[0] - cfg.image_size + 1)
    rng.integers(0, pre.shape[1] - cfg.image_size + 1)
    return rng.random() < cfg.flip


def test_unlabelled_items_get_a_zero_mask_and_their_boxes_are_never_read(fixture_shards, tmp_path):
    index = ShardIndex.build(mark_labelled(fixture_shards["train"], tmp_path / "lab", every=4))

    class Unreadable(list):
        def __iter__(self):
            raise AssertionError("boxes of an unlabelled sample were read")

        __len__ = __bool__ = __iter__

    for ref in index.samples:
        if not ref.meta["labelled"]:
            ref.meta["boxes"] = Unreadable()
    ds = AVDataset(index, CFG, mode="train", seed=0, targets=True)
    for i in range(8):
        item = ds[(0, i)]
        assert item["labelled"] is (i % 4 == 0)
        assert item["mask"].any() == (i % 4 == 0)
    assert set(AVDataset(index, CFG, mode="train", seed=0)[(0, 1)]) == {"image", "audio", "index"}  # unsupervised


def test_semisup_sampler_phases_and_purity():
    from avsl_bench.train.data import SemiSupBatchSampler

    labelled = np.zeros(100, dtype=bool)
    labelled[::10] = True  # 10 labelled
    lab_set = set(np.flatnonzero(labelled).tolist())
    s = SemiSupBatchSampler(labelled, 16, labelled_batch=4, warmup_epochs=2, seed=3)
    s.set_epoch(1)
    warm = list(s)
    assert len(warm) == len(s) == 2 and s.global_batch() == 4
    assert all(e == 1 and i in lab_set for b in warm for e, i in b)
    s.set_epoch(2)
    batches = list(s)
    assert len(batches) == 90 // 16 and s.global_batch() == 20 and s.local == 20
    unl = [i for b in batches for _, i in b[:16]]
    assert len(set(unl)) == len(unl) and not set(unl) & lab_set  # one permutation of the unlabelled pool
    assert all(i in lab_set for b in batches for _, i in b[16:])
    again = SemiSupBatchSampler(labelled, 16, labelled_batch=4, warmup_epochs=2, seed=3)
    again.set_epoch(2)
    assert list(again) == batches
    ranks = [SemiSupBatchSampler(labelled, 16, labelled_batch=4, warmup_epochs=2, seed=3, rank=r, world_size=2)
             for r in range(2)]  # fmt: skip
    for r in ranks:
        r.set_epoch(2)
    parts = [list(r) for r in ranks]
    for b, batch in enumerate(batches):  # rank slices of each part make up the global batch
        assert sorted(parts[0][b] + parts[1][b]) == sorted(batch)
        assert parts[0][b][:8] + parts[1][b][:8] == batch[:16]
    # a labelled set smaller than a batch is cycled; labelled_batch = 0 mixes everything like EpochBatchSampler
    tiny = np.zeros(40, dtype=bool)
    tiny[:3] = True
    small = SemiSupBatchSampler(tiny, 8, warmup_epochs=1, seed=0)
    small.set_epoch(0)
    (only,) = list(small)
    assert len(only) == 8 and {i for _, i in only} == {0, 1, 2}
    small.set_epoch(1)
    plain = EpochBatchSampler(40, 8, seed=0)
    plain.set_epoch(1)
    assert list(small) == list(plain)
    with pytest.raises(Exception, match="labelled samples"):
        SemiSupBatchSampler(np.zeros(40, dtype=bool), 8, warmup_epochs=1, seed=0)


def test_synthetic_labelled_split_is_the_sha256_smallest_tenth():
    import hashlib

    from avsl_bench.benchmarks.synthetic import synthetic_annotations
    from avsl_bench.data.synthetic import labelled_keys, render_sample

    keys = [f"synthetic_train_{i:06d}" for i in range(256)]
    ranked = sorted(keys, key=lambda k: hashlib.sha256(f"semisup-synthetic|{k}".encode()).hexdigest())
    assert labelled_keys("synthetic-tiny") == frozenset(ranked[:25]) and len(labelled_keys("synthetic")) == 400
    rows = {r["key"]: r for r in synthetic_annotations("synthetic-tiny", "train")}
    assert render_sample(rows[ranked[0]]).meta["labelled"] is True
    assert render_sample(rows[ranked[-1]]).meta["labelled"] is False
    val = synthetic_annotations("synthetic-tiny", "val")[0]
    assert "labelled" not in render_sample(val).meta
