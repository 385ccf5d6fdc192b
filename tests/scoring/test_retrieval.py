"""Cross-modal retrieval R@k: reference cases, properties, and the archive's optional embedding arrays."""

from __future__ import annotations

import dataclasses
import math
import zipfile

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from avsl_bench.errors import SubmissionError, UsageError
from avsl_bench.scoring import retrieval as R
from avsl_bench.scoring.retrieval import cross_modal_recall, recall_at_k
from avsl_bench.scoring.submission import MAX_EMBEDDING_DIM, open_submission, write_submission

# ---------------------------------------------------------------------------------------------------
# an independent reference: Python loops, a full stable sort per query


def _reference_recall(queries, gallery, labels, ks):
    def unit(row):
        norm = math.sqrt(sum(float(v) * float(v) for v in row))
        return [float(v) / norm for v in row]

    q = [unit(r) for r in queries]
    g = [unit(r) for r in gallery]
    hits = {k: 0 for k in ks}
    for i, qi in enumerate(q):
        sims = [sum(a * b for a, b in zip(qi, gj)) for gj in g]
        order = sorted(range(len(g)), key=lambda j: -sims[j])  # Python's sort is stable: ties by index
        first = next(r for r, j in enumerate(order) if labels[j] == labels[i])
        for k in ks:
            hits[k] += first < k
    return {k: hits[k] / len(q) for k in ks}


def _one_hot(codes, d, scales=None):
    out = np.zeros((len(codes), d))
    out[np.arange(len(codes)), codes] = 1.0 if scales is None else scales
    return out


def _case(name):
    rng = np.random.default_rng(sum(map(ord, name)))
    if name == "gaussian":
        labels = rng.integers(0, 5, 40).tolist()
        a = rng.standard_normal((40, 8))
        return a, a + rng.standard_normal((40, 8)), labels
    if name == "ties":  # one-hot rows × powers of 2: every similarity is exactly 0 or 1, many exact ties
        labels = rng.integers(0, 3, 30).tolist()
        a = _one_hot(rng.integers(0, 4, 30), 4, 2.0 ** rng.integers(-3, 4, 30))
        i = _one_hot(rng.integers(0, 4, 30), 4, 2.0 ** rng.integers(-3, 4, 30))
        return a, i, labels
    if name == "one_class":
        return rng.standard_normal((12, 5)), rng.standard_normal((12, 5)), ["x"] * 12
    if name == "all_distinct_classes":  # instance retrieval: only the own pair is relevant
        a = rng.standard_normal((25, 6))
        return a, a + 0.8 * rng.standard_normal((25, 6)), list(range(25))
    if name == "float16":
        labels = [f"c{v}" for v in rng.integers(0, 4, 20)]
        a = rng.standard_normal((20, 16)).astype(np.float16)
        return a, (a + rng.standard_normal((20, 16))).astype(np.float16), labels
    raise KeyError(name)


CASES = ("gaussian", "ties", "one_class", "all_distinct_classes", "float16")


@pytest.mark.parametrize("name", CASES)
def test_matches_the_reference(name):
    audio, image, labels = _case(name)
    ks = (1, 2, 5, 10)
    got = cross_modal_recall(audio, image, labels, ks)
    assert got["audio_to_image"] == _reference_recall(audio, image, labels, ks)
    assert got["image_to_audio"] == _reference_recall(image, audio, labels, ks)


@pytest.mark.parametrize("name", CASES)
def test_chunked_equals_whole(name, monkeypatch):
    audio, image, labels = _case(name)
    whole = cross_modal_recall(audio, image, labels)
    monkeypatch.setattr(R, "_BLOCK_BYTES", 8 * 7 * audio.shape[1])  # a few rows per block
    monkeypatch.setattr(R, "_GALLERY_BYTES", 0)  # gallery converted per block
    assert cross_modal_recall(audio, image, labels) == whole


def test_ties_are_ranked_by_gallery_index():
    # every gallery item equals the query direction: the ranking is the gallery order
    e0 = np.array([[1.0, 0.0]])
    gallery = np.repeat(e0, 6, axis=0)
    labels = ["b", "b", "b", "a", "b", "a"]
    queries = np.repeat(e0, 6, axis=0)
    r = recall_at_k(queries, gallery, labels, ks=(1, 3, 4))
    # queries of class b (4) hit at rank 0; class a (2) first finds item 3 at rank 3
    assert r == {1: 4 / 6, 3: 4 / 6, 4: 1.0}


def test_own_pair_counts_and_nothing_is_excluded():
    # all distinct classes, queries identical to their own pair: R@1 = 1 only because the own pair counts
    x = np.random.default_rng(0).standard_normal((9, 4))
    assert recall_at_k(x, x, list(range(9)), ks=(1,)) == {1: 1.0}


def test_bad_arguments():
    x = np.ones((3, 2))
    with pytest.raises(ValueError, match="same"):
        recall_at_k(x, np.ones((3, 3)), [0, 1, 2])
    with pytest.raises(ValueError, match="labels"):
        recall_at_k(x, x, [0, 1])
    with pytest.raises(ValueError, match="None"):
        recall_at_k(x, x, [0, None, 1])
    with pytest.raises(ValueError, match="ks"):
        recall_at_k(x, x, [0, 1, 2], ks=(0,))
    with pytest.raises(ValueError, match="all zeros"):
        recall_at_k(np.array([[1.0, 0], [0, 0], [0, 1]]), x, [0, 1, 2])
    with pytest.raises(ValueError, match="finite"):
        recall_at_k(np.array([[1.0, np.nan], [1, 0], [0, 1]]), x, [0, 1, 2])


# ---------------------------------------------------------------------------------------------------
# properties

_samples = st.integers(1, 30).flatmap(lambda n: st.tuples(
    st.lists(st.integers(0, 5), min_size=n, max_size=n), st.integers(0, 2**32 - 1), st.integers(1, 6)))


@settings(max_examples=40, deadline=None)
@given(_samples)
def test_perfect_embeddings_give_r1_of_one(sample):
    labels, seed, _ = sample
    rng = np.random.default_rng(seed)
    n = len(labels)
    audio = _one_hot(labels, 6, rng.uniform(0.1, 10, n))  # class prototype, any positive scale
    image = _one_hot(labels, 6, rng.uniform(0.1, 10, n))
    got = cross_modal_recall(audio, image, labels)
    assert got["audio_to_image"][1] == got["image_to_audio"][1] == 1.0


@settings(max_examples=40, deadline=None)
@given(_samples)
def test_recall_is_monotone_in_k_and_bounded(sample):
    labels, seed, d = sample
    rng = np.random.default_rng(seed)
    n = len(labels)
    audio, image = rng.standard_normal((n, d)), rng.standard_normal((n, d))
    ks = tuple(range(1, n + 1))
    for by_k in cross_modal_recall(audio, image, labels, ks).values():
        values = [by_k[k] for k in ks]
        assert all(0.0 <= v <= 1.0 for v in values)
        assert values == sorted(values) and values[-1] == 1.0  # R@N = 1: the own pair is always there


@settings(max_examples=25, deadline=None)
@given(_samples)
def test_permuting_samples_changes_nothing_without_ties(sample):
    labels, seed, d = sample
    rng = np.random.default_rng(seed)
    n, d = len(labels), d + 2  # D = 1 makes every cosine ±1: all ties
    audio, image = rng.standard_normal((n, d)), rng.standard_normal((n, d))
    perm = rng.permutation(n)
    assert cross_modal_recall(audio, image, labels) == cross_modal_recall(
        audio[perm], image[perm], [labels[p] for p in perm])


# ---------------------------------------------------------------------------------------------------
# the archive's optional embeddings

IDS = [f"vid{i:03d}_000010" for i in range(10)]
MAPS = np.zeros((10, 4, 4), np.float32)


def _emb(d=8, dtype=np.float32, seed=0):
    rng = np.random.default_rng(seed)
    return rng.standard_normal((10, d)).astype(dtype), rng.standard_normal((10, d)).astype(dtype)


@pytest.mark.parametrize("dtype", [np.float16, np.float32, np.float64])
def test_embeddings_round_trip(tmp_path, dtype):
    image, audio = _emb(dtype=dtype)
    path = tmp_path / "preds.npz"
    write_submission(path, IDS, MAPS, embeddings=(image, audio))
    with open_submission(path) as sub:
        assert sub.embedding_dim == 8 and sub.require_embeddings() == 8
        emb = sub.read_embeddings()
        assert emb.image.dtype == np.float32 and np.array_equal(emb.image, image.astype(np.float32))
        assert np.array_equal(emb.audio, audio.astype(np.float32))
        picked = sub.read_embeddings([7, 2, 2])
        assert np.array_equal(picked.audio, audio[[7, 2, 2]].astype(np.float32))
    # np.savez with the documented member names is the same thing; maps are untouched
    np.savez(tmp_path / "np.npz", ids=np.array(IDS), maps=MAPS, audio_embeddings=audio, image_embeddings=image)
    with open_submission(tmp_path / "np.npz") as sub:
        assert np.array_equal(sub.read_embeddings().image, image.astype(np.float32))
        assert sum(len(ids) for ids, _ in sub.iter_chunks(chunk_size=3)) == 10


def test_write_submission_with_lazy_embeddings(tmp_path):
    image, audio = _emb()
    write_submission(tmp_path / "a.npz", IDS, iter([MAPS[:4], MAPS[4:]]), embeddings=lambda: (image, audio))
    write_submission(tmp_path / "b.npz", IDS, MAPS, embeddings=lambda: None)
    with open_submission(tmp_path / "a.npz") as a, open_submission(tmp_path / "b.npz") as b:
        assert a.embedding_dim == 8 and b.embedding_dim is None
    for bad in [(image,), (image, audio[:, :4]), (image[:9], audio[:9]), (image.astype(np.int32), audio),
                (np.zeros_like(image), audio), (image, np.full_like(audio, np.nan))]:
        with pytest.raises(ValueError):
            write_submission(tmp_path / "c.npz", IDS, MAPS, embeddings=bad)
    assert not (tmp_path / "c.npz").exists()


def test_archives_without_embeddings_say_so(tmp_path):
    write_submission(tmp_path / "a.npz", IDS, MAPS)
    np.savez(tmp_path / "b.npz", **{i: np.zeros((4, 4), np.float32) for i in IDS})
    for name, where in (("a.npz", "has none"), ("b.npz", "layout (b)")):
        with open_submission(tmp_path / name) as sub:
            assert sub.embedding_dim is None
            with pytest.raises(SubmissionError, match="no embeddings") as info:
                sub.read_embeddings()
            assert where in str(info.value) and name in str(info.value)


def _bad(tmp_path, kind):
    image, audio = _emb()
    arrays = {"ids": np.array(IDS), "maps": MAPS, "image_embeddings": image, "audio_embeddings": audio}
    sample = None
    if kind == "only_audio":
        del arrays["image_embeddings"]
    elif kind == "int":
        arrays["audio_embeddings"] = np.ones((10, 8), np.int32)
    elif kind == "object":
        arrays["audio_embeddings"] = np.array([object()] * 10, dtype=object)
    elif kind == "one_d":
        arrays["audio_embeddings"] = np.ones(10, np.float32)
    elif kind == "three_d":
        arrays["image_embeddings"] = np.ones((10, 8, 1), np.float32)
    elif kind == "rows":
        arrays["audio_embeddings"], arrays["image_embeddings"] = audio[:9], image[:9]
    elif kind == "zero_dim":
        arrays["audio_embeddings"] = arrays["image_embeddings"] = np.ones((10, 0), np.float32)
    elif kind == "too_wide":
        arrays["audio_embeddings"] = arrays["image_embeddings"] = np.ones((10, MAX_EMBEDDING_DIM + 1), np.float16)
    elif kind == "dims_differ":
        arrays["image_embeddings"] = image[:, :4]
    elif kind in ("nan", "inf", "overflow", "zero_row"):
        bad = audio.astype(np.float64)
        bad[6, 3] = {"nan": np.nan, "inf": -np.inf, "overflow": 1e300, "zero_row": 0.0}[kind]
        if kind == "zero_row":
            bad[6] = 0.0
        arrays["audio_embeddings"], sample = bad, IDS[6]
    elif kind == "fortran":
        arrays["image_embeddings"] = np.asfortranarray(image)
    path = tmp_path / f"{kind}.npz"
    np.savez(path, **arrays)
    if kind == "truncated_member":  # a member whose data is shorter than its header declares
        with zipfile.ZipFile(path) as zf:
            members = {n: zf.read(n) for n in zf.namelist()}
        members["audio_embeddings.npy"] = members["audio_embeddings.npy"][:-8]
        with zipfile.ZipFile(path, "w") as zf:
            for name, data in members.items():
                zf.writestr(name, data)
    if kind == "layout_b":
        np.savez(path, audio_embeddings=audio, **{i: np.zeros((4, 4), np.float32) for i in IDS})
    return path, sample


BAD_KINDS = {
    "only_audio": "both embeddings or neither", "int": "int32", "object": "object", "one_d": "2-D",
    "three_d": "2-D", "rows": "9 rows but there are 10 ids", "zero_dim": "D = 0", "too_wide": "D = 4,097",
    "dims_differ": "dimensions differ", "nan": "NaN", "inf": "inf", "overflow": "float32 range",
    "zero_row": "all zeros", "fortran": "Fortran", "truncated_member": "truncated", "layout_b": "layout (a)",
}


@pytest.mark.parametrize("kind", sorted(BAD_KINDS))
def test_bad_embeddings_are_refused_with_one_line(tmp_path, kind):
    path, sample = _bad(tmp_path, kind)
    with pytest.raises(SubmissionError) as info:
        open_submission(path).close()
    message = str(info.value)
    assert "\n" not in message and path.name in message, message
    assert BAD_KINDS[kind] in message, message
    if sample is not None:
        assert info.value.sample == sample and repr(sample) in message


# ---------------------------------------------------------------------------------------------------
# score(): prerequisites


def test_score_retrieval_prerequisites_and_exclusions(tmp_path):
    from avsl_bench.benchmarks.load import load_benchmark
    from avsl_bench.scoring.score import ScoreOptions, score

    bench = load_benchmark("synthetic-tiny")
    n = len(bench.ids)
    names = sorted(set(bench.classes))
    perfect = _one_hot([names.index(c) for c in bench.classes], len(names)).astype(np.float32)
    path = tmp_path / "p.npz"
    write_submission(path, bench.ids, np.zeros((n, 4, 4), np.float32), embeddings=(perfect, perfect))
    options = ScoreOptions(bootstrap=0, retrieval=True)
    with pytest.raises(UsageError, match="class labels"):
        score(path, dataclasses.replace(bench, classes=[None] * n), options)  # like Flickr
    result, _ = score(path, bench, options)
    block = result["retrieval"]
    assert block["queries"] == n and block["classes"] == len(names) and block["embedding_dim"] == len(names)
    assert block["audio_to_image"] == block["image_to_audio"] == {"r1": 1.0, "r5": 1.0, "r10": 1.0}
    partly = dataclasses.replace(bench, classes=[None, None] + bench.classes[2:])
    block = score(path, partly, options)[0]["retrieval"]
    assert block["queries"] == n - 2 and block["excluded"] == {"negatives": 0, "positives_without_class": 2}
    without = score(path, bench, ScoreOptions(bootstrap=0))[0]
    assert "retrieval" not in without and without["metrics"] == result["metrics"]
