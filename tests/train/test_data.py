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
