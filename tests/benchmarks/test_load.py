"""Benchmark definitions and loading from the pinned upstream files."""

from collections import Counter

import numpy as np
import pytest

from avsl_bench.benchmarks.gt import write_flickr_xml
from avsl_bench.benchmarks.lists import read_id_list, read_negative_pairs
from avsl_bench.benchmarks.load import load_benchmark
from avsl_bench.benchmarks.spec import benchmark_registry, get_spec, parse_spec
from avsl_bench.benchmarks.upstream import resolve
from avsl_bench.errors import ChecksumError, DataFileError, UnknownNameError


def test_registry_lists_every_protocol():
    names = benchmark_registry().names()
    for name in ("vggss", "vggss-ext", "flickr", "flickr-249", "flickr-ext", "synthetic", "synthetic-ext"):
        assert name in names
    assert get_spec("vggss@1").protocol == "vggss@1"
    with pytest.raises(DataFileError, match="version"):
        get_spec("vggss@2")
    with pytest.raises(UnknownNameError, match="did you mean"):
        get_spec("vgss")


def test_same_file_id_has_the_same_pin_everywhere():
    pins = {}
    for name in benchmark_registry().names():
        for fid, f in get_spec(name).files.items():
            assert pins.setdefault((f.repo, f.path), (f.commit, f.sha256)) == (f.commit, f.sha256), (name, fid)


def test_unknown_manifest_key_is_rejected(tmp_path):
    path = tmp_path / "x.toml"
    path.write_text('name = "x"\nversion = 1\nloader = "vggss"\ngt_rule = "vggss"\nexpected_positives = 1\nbogus = 1\n')
    with pytest.raises(DataFileError, match="unknown keys"):
        parse_spec(path)


def test_vggss_counts_defects_and_strata(upstream):
    data = load_benchmark("vggss")
    assert (data.n_positives, data.n_negatives) == (5158, 0)
    assert data.defects == {"corrupt_coordinates": 14, "degenerate_boxes": 18, "empty_gt": 2}
    assert {k: int(v.sum()) for k, v in data.strata_members.items()} == {"heard": 2564, "unheard": 2575}
    empty = [data.ids[i] for i, boxes in enumerate(data.boxes) if data.gt_maps([i]).sum() == 0]
    assert sorted(empty) == ["M1P1xla8rg0_000000", "MKC9LvRivTM_000030"]
    assert len(set(data.classes)) == 221


def test_vggss_ext_table1_counts(upstream):
    """Data spec §6.2: the size buckets of positives and typed negatives of Extended VGG-SS."""
    data = load_benchmark("vggss-ext")
    counts = Counter(zip(data.negative_type, data.size_buckets))
    assert [counts[(None, b)] for b in ("small", "medium", "large", "huge")] == [134, 1796, 1726, 1502]
    assert [counts[("easy", b)] for b in ("small", "medium", "large", "huge")] == [90, 1243, 1190, 1071]
    assert [counts[("hard", b)] for b in ("small", "medium", "large", "huge")] == [33, 428, 407, 317]
    assert counts[("real", "n/a")] == 379
    negatives = data.ids[5158:]
    assert negatives == sorted(negatives) and all("__neg__" in k for k in negatives)


def test_checksum_mismatch_names_file_and_digests(upstream, tmp_path, monkeypatch):
    spec = get_spec("vggss").files["vggss_test"]
    fake = tmp_path / spec.mirror_relpath
    fake.parent.mkdir(parents=True)
    fake.write_text("abc\n")
    monkeypatch.setenv("AVSL_BENCH_UPSTREAM", str(tmp_path))
    with pytest.raises(ChecksumError, match=f"vggss_test.csv.*expected {spec.sha256}, got [0-9a-f]{{64}}"):
        resolve(spec)
    fake.unlink()
    with pytest.raises(DataFileError, match="missing annotation file"):
        resolve(spec)


def test_cache_download_path_verifies_checksum(upstream, tmp_path, monkeypatch):
    """Without a mirror the file is downloaded into the cache; here the 'download' is a local file URL."""
    import avsl_bench.benchmarks.upstream as up

    spec = get_spec("flickr").files["flickr_test"]
    monkeypatch.delenv("AVSL_BENCH_UPSTREAM")
    monkeypatch.setenv("AVSL_BENCH_CACHE", str(tmp_path / "cache"))
    served = upstream / spec.mirror_relpath
    monkeypatch.setattr(up, "RAW_URL", served.as_uri().replace("%", "%%") + "#{repo}{commit}{path}")
    path = resolve(spec)
    assert path.read_bytes() == served.read_bytes() and str(tmp_path / "cache") in str(path)


def _flickr_xml_dir(tmp_path, ids):
    rng = np.random.default_rng(0)
    for fid in ids:
        groups = []
        for _ in range(3):
            x1, y1 = rng.integers(0, 128, 2)
            groups.append([(int(x1), int(y1), int(x1 + rng.integers(20, 128)), int(y1 + rng.integers(20, 128)))])
        write_flickr_xml(tmp_path / f"{fid}.xml", groups)
    return tmp_path


def test_flickr_ext_needs_xml_and_types_negatives(upstream, tmp_path):
    ids = read_id_list(upstream / "stoneMo__SLAVC/metadata/flickr_test.csv", "flickr")
    pairs = read_negative_pairs(upstream / "stoneMo__SLAVC/metadata/flickr_test_plus_silent.csv", "flickr")
    with pytest.raises(DataFileError, match="--flickr-annotations"):
        load_benchmark("flickr")
    xml_dir = _flickr_xml_dir(tmp_path, sorted(set(ids) | {p.video for p in pairs}))
    data = load_benchmark("flickr-ext", flickr_annotations=xml_dir)
    assert (data.n_positives, data.n_negatives) == (250, 250)
    assert set(data.negative_type[250:]) == {"mismatched"}
    assert set(np.unique(data.gt_maps([0]))) <= {0.0, 0.5, 1.0}
    (xml_dir / "3908875350.xml").unlink()
    with pytest.raises(DataFileError, match="flickr-249"):
        load_benchmark("flickr", flickr_annotations=xml_dir)
    assert load_benchmark("flickr-249", flickr_annotations=xml_dir).n_positives == 249
