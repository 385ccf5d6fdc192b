"""Label splits of the semi-supervised methods (baselines spec §3.7) on the real pinned lists: counts, disjointness,
determinism, the catalog's splits, the unlabelled pools, and what the trainer accepts of the prepared shards."""

from __future__ import annotations

import hashlib
import json
import random
import shutil
import tarfile

import pytest

from avsl_bench.benchmarks.lists import read_id_list
from avsl_bench.benchmarks.semisup import (
    FLICKR_SEMISUP, VGGSS_SEMISUP250, RankPartition, flickr_semisup_parts, vggss_semisup_parts,
)  # fmt: skip
from avsl_bench.benchmarks.spec import get_spec
from avsl_bench.benchmarks.training import load_training_set
from avsl_bench.benchmarks.upstream import resolve
from avsl_bench.data.catalog import catalog_names, plan_benchmark
from avsl_bench.data.commands import prepare_benchmark
from avsl_bench.data.plan import keys_sha256
from avsl_bench.errors import DataFileError, UsageError
from avsl_bench.train.data import LeakageError, ShardIndex, check_training_data, labelled_flags
from tests.data.test_catalog import _flickr_tree

# sha256 of the sorted ids of each part (one per line): the split is fixed for every user.
PINS = {
    ("flickr", "val"): "335ef0ea4eced749", ("flickr", "labelled"): "b0da3f53edcdc95b",
    ("vggss", "test"): "71294abaf15a5338", ("vggss", "val"): "aebb5ca691b27d21",
    ("vggss", "labelled"): "9b53a08718abe7d0", ("vggss", "unused"): "144b1b90b1403a1f",
}  # fmt: skip


@pytest.fixture
def flickr_parts(upstream):
    return flickr_semisup_parts()


@pytest.fixture
def vggss_parts(upstream):
    return vggss_semisup_parts()


def _disjoint_cover(parts: dict, ids: list[str]) -> None:
    names = list(parts)
    for i, a in enumerate(names):
        for b in names[i + 1:]:
            assert not set(parts[a]) & set(parts[b]), (a, b)
    assert sorted(i for p in parts.values() for i in p) == sorted(ids)


def test_flickr_split_counts_order_and_pins(flickr_parts):
    assert {k: len(v) for k, v in flickr_parts.items()} == {"val": 500, "labelled": 4250}
    sup = list(load_training_set("flickr-sup-train").ids)
    _disjoint_cover(flickr_parts, sup)
    rank = lambda i: hashlib.sha256(f"semisup|{i}".encode()).hexdigest()  # noqa: E731  spec §3.7, literally
    assert max(map(rank, flickr_parts["val"])) < min(map(rank, flickr_parts["labelled"]))  # first 500 = val
    for part, ids in flickr_parts.items():
        assert keys_sha256(ids)[:16] == PINS["flickr", part], part


def test_vggss_split_counts_order_and_pins(vggss_parts):
    """Slices in the spec's order: 250 test, 500 val, 4,250 L, 158 unused."""
    assert {k: len(v) for k, v in vggss_parts.items()} == {"test": 250, "val": 500, "labelled": 4250, "unused": 158}
    assert list(vggss_parts) == ["test", "val", "labelled", "unused"]
    ids = read_id_list(resolve(get_spec("vggss").files["vggss_test"]), "vggsound")
    _disjoint_cover(vggss_parts, ids)
    rank = lambda i: hashlib.sha256(f"semisup-vggss|{i}".encode()).hexdigest()  # noqa: E731
    bounds = [(min(map(rank, v)), max(map(rank, v))) for v in vggss_parts.values()]
    assert all(hi < lo for (_, hi), (lo, _) in zip(bounds, bounds[1:]))  # consecutive slices of one ranking
    for part, members in vggss_parts.items():
        assert keys_sha256(members)[:16] == PINS["vggss", part], part


def test_splits_are_deterministic_and_order_independent(upstream, flickr_parts, vggss_parts):
    assert flickr_semisup_parts() == flickr_parts and vggss_semisup_parts() == vggss_parts
    ids = [i for p in vggss_parts.values() for i in p]
    random.Random(0).shuffle(ids)
    assert VGGSS_SEMISUP250.split(ids) == vggss_parts
    with pytest.raises(DataFileError, match="5,158"):
        VGGSS_SEMISUP250.split(ids[:-1])
    with pytest.raises(DataFileError, match="duplicate"):
        FLICKR_SEMISUP.split([*flickr_parts["val"], *flickr_parts["labelled"][:-1], flickr_parts["val"][0]])
    other = RankPartition("x", "other|", "flickr_sup_train", FLICKR_SEMISUP.parts)
    assert other.split(flickr_parts["val"] + flickr_parts["labelled"])["val"] != flickr_parts["val"]  # salt matters


def test_flickr_sup_train_plan_writes_labelled_train_and_val(flickr_parts):
    names = set(catalog_names())
    assert {"flickr-sup-train", "vggss-semisup250", "vggss-semisup250-train", "flickr-144k-semisup-u",
            "flickr-10k-semisup-u"} <= names  # fmt: skip
    plan = plan_benchmark("flickr-sup-train")
    assert (plan.directory, plan.kind, plan.producer, plan.flickr_xml) == ("flickr-sup-train", "training", "flickr",
                                                                           "required")  # fmt: skip
    train, val = plan.splits
    assert (train.split, len(train.rows), val.split, len(val.rows)) == ("train", 4250, "val", 500)
    assert {r.key for r in train.rows} == set(flickr_parts["labelled"])
    assert {r.key for r in val.rows} == set(flickr_parts["val"])
    assert all(r.extra["labelled"] is True and r.split == "train" for r in train.rows)
    assert all("labelled" not in r.extra and r.split == "val" for r in val.rows)
    assert "ranks [500, 4750) = labelled" in train.annotations["semisup_split"]


def test_vggss_semisup_plans(vggss_parts):
    bench = plan_benchmark("vggss-semisup250")
    (test,) = bench.splits
    assert (bench.directory, bench.kind, test.split, len(test.rows)) == ("vggss-semisup250", "test", "test", 250)
    assert {r.key for r in test.rows} == set(vggss_parts["test"])
    assert {r.protocol for r in test.rows} == {"vggss-semisup250@1"} and all(r.boxes for r in test.rows)
    assert all("labelled" not in r.extra for r in test.rows)
    training = plan_benchmark("vggss-semisup250-train", audio_window=3)
    train, val = training.splits
    assert (training.directory, training.kind, training.audio_window) == ("vggss-semisup250-train", "training", 3.0)
    assert (train.split, len(train.rows), val.split, len(val.rows)) == ("train", 4250, "val", 500)
    assert {r.key for r in train.rows} == set(vggss_parts["labelled"])
    assert {r.key for r in val.rows} == set(vggss_parts["val"])
    assert all(r.extra["labelled"] is True and r.extra["gt_rule"] == "vggss" for r in train.rows)
    prepared = {r.key for p in (bench, training) for s in p.splits for r in s.rows}
    assert not prepared & set(vggss_parts["unused"])  # the 158 unused clips are prepared nowhere
    with pytest.raises(UsageError, match="audio-window"):
        plan_benchmark("vggss-semisup250", audio_window=3)
    with pytest.raises(UsageError, match="--list"):
        plan_benchmark("vggss-semisup250-train", list_path="x.csv")


def test_unlabelled_pools_exclude_every_labelled_val_and_test_id(upstream, flickr_parts, vggss_parts):
    sup = set(flickr_parts["val"]) | set(flickr_parts["labelled"])
    for name, base, n in (("flickr-144k-semisup-u", "flickr-144k-noleak", 143_636),
                          ("flickr-10k-semisup-u", "flickr-10k-noleak", 9_986)):  # fmt: skip
        plan = plan_benchmark(name)
        (train,) = plan.splits
        keys = [r.key for r in train.rows]
        noleak = load_training_set(base).ids
        assert (plan.directory, train.split, len(keys)) == (name, "train", n)
        assert not set(keys) & sup and set(keys) == set(noleak) - sup
        assert len(noleak) - n == len(set(noleak) & sup)  # 344 resp. 13 flickr_sup_train ids dropped
        assert all(r.extra["labelled"] is False and r.protocol == f"{name}@1" for r in train.rows)
    # data spec §5.3 counts of the -noleak lists are untouched
    assert len(load_training_set("flickr-144k-noleak").ids) == 143_980
    u = set(load_training_set("vggsound-144k-noleak").ids)  # VGG-SS U: no VGG-SS clip at all
    assert len(u) == 132_837 and not u & {i for p in vggss_parts.values() for i in p}


# ---------------------------------------------------------------------------------------- prepared shards


def _metas(split_dir) -> list[dict]:
    out = []
    for tar_path in sorted(split_dir.glob("[0-9]*.tar")):
        with tarfile.open(tar_path) as tar:
            out += [json.loads(tar.extractfile(m).read()) for m in tar if m.name.endswith(".json")]
    return out


def test_prepared_flickr_sup_train_labelled_and_val_refused(tmp_path, upstream):
    plan = plan_benchmark("flickr-sup-train", limit=2)
    ids = [r.key for s in plan.splits for r in s.rows]
    _flickr_tree(tmp_path / "media", ids)
    report = prepare_benchmark("flickr-sup-train", tmp_path / "out", limit=2, flickr_archive=tmp_path / "media",
                               progress=False)  # fmt: skip
    dirs = {s.split: s.split_dir for s in report.splits}
    assert set(dirs) == {"train", "val"} and all(s.counts["success"] == 2 for s in report.splits)
    train, val = _metas(dirs["train"]), _metas(dirs["val"])
    assert [m["labelled"] for m in train] == [True, True] and all(m["boxes"] and m["split"] == "train" for m in train)
    assert all(m["split"] == "val" and "labelled" not in m and m["boxes"] for m in val)
    index = ShardIndex.build(dirs["train"])
    check_training_data(index)
    assert labelled_flags(index).tolist() == [True, True]
    with pytest.raises(LeakageError, match="val"):
        check_training_data(ShardIndex.build(dirs["val"]))
    with pytest.raises(LeakageError, match="val"):
        check_training_data(ShardIndex.build([dirs["train"], dirs["val"]]))


def test_prepared_vggss_semisup_labelled_val_and_test_refused(tmp_path, upstream, media):
    mirror = tmp_path / "mirror"
    mirror.mkdir()
    plans = {n: plan_benchmark(n, limit=2) for n in ("vggss-semisup250", "vggss-semisup250-train")}
    for clip in {r.key for p in plans.values() for s in p.splits for r in s.rows}:
        shutil.copy(media["idx25"], mirror / f"{clip}.mp4")
    dirs = {}
    for name in plans:
        report = prepare_benchmark(name, tmp_path / "out", limit=2, source_spec=f"mirror:{mirror}", progress=False)
        assert all(s.counts["success"] == 2 for s in report.splits), name
        dirs.update({(name, s.split): s.split_dir for s in report.splits})
    train = dirs["vggss-semisup250-train", "train"]
    assert all(m["labelled"] is True and m["boxes"] for m in _metas(train))
    index = ShardIndex.build(train)
    check_training_data(index)
    assert labelled_flags(index).all()
    with pytest.raises(LeakageError, match="val"):
        check_training_data(ShardIndex.build([train, dirs["vggss-semisup250-train", "val"]]))
    with pytest.raises(LeakageError, match="test"):
        check_training_data(ShardIndex.build([train, dirs["vggss-semisup250", "test"]]))
