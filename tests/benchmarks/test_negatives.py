"""Extended test sets (data spec §6): SLAVC's lists typed, Table 1, and the §6.3 negative generator."""

from __future__ import annotations

import hashlib
import json
import math
import random
from collections import Counter

import pytest
from rich.console import Console

from avsl_bench.benchmarks.load import load_benchmark
from avsl_bench.benchmarks.negatives import (
    GENERATOR_VERSION,
    NegativeRow,
    PositiveRef,
    frame_buckets,
    generate_negatives,
    hard_quota,
    official_negatives,
    positives_from_benchmark,
    positives_sha256,
    rank,
    read_negative_list,
    render_table1,
    reuse_stats,
    table1_stats,
    type_negative,
    write_negative_list,
)
from avsl_bench.errors import DataFileError
from tests.conftest import UPSTREAM

BUCKETS = ("small", "medium", "large", "huge", "n/a", "all")
# data spec §6.2 ("tests MUST reproduce")
TABLE1_VGGSS_EXT = {
    "positives": (134, 1796, 1726, 1502, 0, 5158),
    "easy": (90, 1243, 1190, 1071, 0, 3594),
    "hard": (33, 428, 407, 317, 0, 1185),
    "real": (0, 0, 0, 0, 379, 379),
}
# Golden: sha256 of the CSV the generator writes for VGG-SS, seed 0, N = |P|, rho = 0.25
# (changes only with GENERATOR_VERSION).
VGGSS_SEED0_CSV_SHA256 = "7d7b23650d310977e904cdfc041c0df2dbc3417574667a4529d2f1d32495b32e"


@pytest.fixture(scope="module")
def mirror():
    if UPSTREAM is None:
        pytest.skip("upstream mirror not available (set AVSL_BENCH_UPSTREAM)")
    return UPSTREAM


@pytest.fixture(scope="module")
def vggss_ext(mirror):
    return load_benchmark("vggss-ext", mirror=mirror)


@pytest.fixture(scope="module")
def vggss(mirror):
    return load_benchmark("vggss", mirror=mirror)


@pytest.fixture(scope="module")
def buckets(vggss_ext):
    return frame_buckets(vggss_ext)


@pytest.fixture(scope="module")
def vggss_positives(vggss):
    return positives_from_benchmark(vggss)


@pytest.fixture(scope="module")
def vggss_rows(vggss_positives):
    return generate_negatives(vggss_positives, seed=0)


def reference_generator(positives, seed, n=None, rho=0.25):
    """The §6.3 procedure written out literally (slow, for small inputs)."""
    def rk(tag, x):
        return int.from_bytes(hashlib.sha256(f"{seed}|{tag}|{x}".encode()).digest()[:8], "big")

    n = len(positives) if n is None else n
    frames = sorted(positives, key=lambda p: rk("frame", p.id))[:n]
    audio = sorted(positives, key=lambda p: rk("audio", p.id))
    quota = math.floor(rho * n + 0.5)
    uses = {p.id: 0 for p in positives}
    rows, hard = [], 0
    for f in frames:
        kinds = ["hard", "easy"] if hard < quota else ["easy"]
        for kind in kinds:
            eligible = [a for a in audio if a.id != f.id and a.source_video != f.source_video
                        and (a.class_name == f.class_name) == (kind == "hard")]
            if eligible:
                break
        unused = [a for a in eligible if uses[a.id] == 0]
        pick = unused[0] if unused else min(eligible, key=lambda a: uses[a.id])  # min keeps the first of ties
        uses[pick.id] += 1
        hard += kind == "hard"
        rows.append(NegativeRow(f.id, pick.id, kind))
    return sorted(rows, key=lambda r: r.key)


def random_positives(rng: random.Random, size: int, n_classes: int, n_videos: int, skew: float = 0.0):
    out = []
    for i in range(size):
        cls = 0 if rng.random() < skew else rng.randrange(n_classes)
        out.append(PositiveRef(f"clip{i:04d}", f"class{cls}", f"video{rng.randrange(n_videos)}"))
    return out


# ------------------------------------------------------------------------------------- official SLAVC lists


def test_slavc_vggss_typing_and_reuse(mirror, vggss_ext):
    rows = official_negatives("vggss-ext", mirror=mirror)
    assert Counter(r.negative_type for r in rows) == {"real": 379, "easy": 3594, "hard": 1185}
    assert reuse_stats(rows) == {
        "rows": 5158, "real": 379, "mismatched_rows": 4779, "distinct_frames": 4779, "max_frame_reuse": 1,
        "distinct_audio_sources": 3092, "max_audio_reuse": 7, "duplicate_pairs": 0,
    }
    assert [r.key for r in rows] == sorted(r.key for r in rows)
    # the same typing as the benchmark loader
    assert [r.key for r in rows] == vggss_ext.ids[5158:]
    assert [r.negative_type for r in rows] == vggss_ext.negative_type[5158:]
    positives = set(vggss_ext.ids[:5158])
    real = [r for r in rows if r.negative_type == "real"]
    assert all(r.video not in positives for r in real)  # real = clips outside the test set
    assert all(r.video in positives and r.audio in positives for r in rows if r.negative_type != "real")


def test_slavc_flickr_typing_and_reuse(mirror):
    rows = official_negatives("flickr-ext", mirror=mirror)
    assert Counter(r.negative_type for r in rows) == {"mismatched": 250}
    stats = reuse_stats(rows)
    assert (stats["distinct_frames"], stats["max_frame_reuse"]) == (250, 1)
    assert (stats["distinct_audio_sources"], stats["max_audio_reuse"], stats["duplicate_pairs"]) == (160, 5, 0)


def test_official_negatives_needs_a_negative_list():
    with pytest.raises(DataFileError, match="no negative list"):
        official_negatives("vggss")


def test_type_negative():
    classes = {"a": "dog", "b": "dog", "c": "cat"}
    assert [type_negative(v, a, classes) for v, a in [("a", "a"), ("a", "b"), ("a", "c")]] == ["real", "hard", "easy"]
    assert type_negative("a", "b", None) == "mismatched"


# ------------------------------------------------------------------------------------------------ Table 1


def test_table1_vggss_ext(vggss_ext):
    stats = table1_stats(vggss_ext)
    for row, expected in TABLE1_VGGSS_EXT.items():
        assert tuple(stats["rows"][row][b] for b in BUCKETS) == expected, row
    total = tuple(sum(TABLE1_VGGSS_EXT[r][i] for r in TABLE1_VGGSS_EXT) for i in range(6))
    assert tuple(stats["rows"]["total"][b] for b in BUCKETS) == total
    assert list(stats["rows"]) == ["positives", "real", "easy", "hard", "total"]
    assert (stats["distinct_frames"], stats["distinct_audio_sources"], stats["max_audio_reuse"], stats["classes"]) == (
        4779, 3092, 7, 221)
    console = Console(record=True, width=120)
    console.print(render_table1(stats, "vggss-ext"))
    text = console.export_text()
    assert "1,796" in text and "10,316" in text and "4,779 distinct frames" in text


def test_table1_from_rows_matches_benchmark(mirror, vggss_positives, buckets, vggss_ext):
    rows = official_negatives("vggss-ext", mirror=mirror)
    from_rows = table1_stats(rows, positives=vggss_positives, buckets=buckets)
    assert from_rows == table1_stats(vggss_ext)


def test_table1_mismatched_row_and_no_classes():
    rows = [NegativeRow("1", "2", "mismatched"), NegativeRow("2", "1", "mismatched")]
    stats = table1_stats(rows, positives=[PositiveRef("1", "", "1"), PositiveRef("2", "", "2")],
                         buckets={"1": "small", "2": "huge"})
    assert list(stats["rows"]) == ["positives", "real", "easy", "hard", "mismatched", "total"]
    assert stats["rows"]["mismatched"] == {"small": 1, "medium": 0, "large": 0, "huge": 1, "n/a": 0, "all": 2}
    assert stats["classes"] is None


# ---------------------------------------------------------------------------------------- generator: VGG-SS


def test_generator_invariants_on_vggss(vggss_positives, vggss_rows):
    P = {p.id: p for p in vggss_positives}
    rows = vggss_rows
    assert len(rows) == len(P) == 5158
    assert [r.key for r in rows] == sorted(r.key for r in rows)
    assert Counter(r.video for r in rows) == Counter(list(P))  # every frame exactly once
    for r in rows:
        f, a = P[r.video], P[r.audio]
        assert a.id != f.id and a.source_video != f.source_video
        assert (f.class_name == a.class_name) == (r.negative_type == "hard")
    quota = hard_quota(5158, 0.25)
    assert quota == 1290 and sum(r.negative_type == "hard" for r in rows) == quota
    assert reuse_stats(rows)["max_audio_reuse"] == 1  # an unused eligible audio was always available


def test_generator_is_deterministic_and_seed_dependent(vggss_positives, vggss_rows):
    assert generate_negatives(list(reversed(vggss_positives)), seed=0) == vggss_rows  # input order is irrelevant
    other = generate_negatives(vggss_positives, seed=1)
    assert other != vggss_rows and Counter(r.negative_type for r in other) == Counter(
        r.negative_type for r in vggss_rows)


def test_generator_frames_follow_the_rank(vggss_positives):
    rows = generate_negatives(vggss_positives, seed=7, n=100, hard_fraction=0.5)
    first = sorted(vggss_positives, key=lambda p: rank(7, "frame", p.id))[:100]
    assert {r.video for r in rows} == {p.id for p in first}
    assert sum(r.negative_type == "hard" for r in rows) == 50


def test_generator_matches_literal_procedure_on_vggss_subset(vggss_positives):
    classes = sorted({p.class_name for p in vggss_positives})[:25]
    subset = [p for p in vggss_positives if p.class_name in classes]
    for seed, rho in [(0, 0.25), (3, 0.9)]:
        assert generate_negatives(subset, seed=seed, hard_fraction=rho) == reference_generator(subset, seed, rho=rho)


def test_written_files_are_stable(tmp_path, buckets, vggss_positives, vggss_rows):
    kwargs = dict(positives=vggss_positives, seed=0, buckets=buckets, input_sha256={"vggss_json": "ab"})
    first = write_negative_list(vggss_rows, tmp_path / "a" / "vggss-neg", **kwargs)
    second = write_negative_list(list(reversed(vggss_rows)), tmp_path / "b" / "vggss-neg.csv", **kwargs)
    assert first.sha256 == second.sha256 == VGGSS_SEED0_CSV_SHA256
    for name in ("vggss-neg.csv", "vggss-neg.sha256", "vggss-neg.stats.json"):
        assert (tmp_path / "a" / name).read_bytes() == (tmp_path / "b" / name).read_bytes()
    data = first.csv.read_bytes()
    assert data.startswith(b"video,audio,label,negative_type\n") and b"\r" not in data and data.endswith(b"\n")
    assert hashlib.sha256(data).hexdigest() == first.sha256
    assert first.sha256_file.read_text() == f"{first.sha256}  vggss-neg.csv\n"
    assert read_negative_list(first.csv) == vggss_rows
    stats = json.loads(first.stats_file.read_text())
    assert stats["generator"] == GENERATOR_VERSION and stats["seed"] == 0 and stats["n"] == 5158
    assert (stats["hard_requested"], stats["hard_achieved"], stats["hard_fraction"]) == (1290, 1290, 0.25)
    assert stats["input_sha256"] == {"positives": positives_sha256(vggss_positives), "vggss_json": "ab"}
    assert stats["table1"]["rows"]["positives"]["all"] == 5158
    assert stats["table1"]["rows"]["hard"]["all"] == 1290 and stats["csv_sha256"] == first.sha256
    assert not list(tmp_path.glob("**/*.tmp"))


# ------------------------------------------------------------------------------------ generator: small cases


def test_rank_formula():
    digest = hashlib.sha256(b"5|frame|abc").digest()[:8]
    assert rank(5, "frame", "abc") == int.from_bytes(digest, "big")


@pytest.mark.parametrize(("n", "rho", "h"), [
    (2, 0.25, 1), (6, 0.25, 2), (10, 0.25, 3), (14, 0.25, 4), (5158, 0.25, 1290), (3, 0.5, 2), (0, 0.25, 0),
    (7, 1.0, 7), (7, 0.0, 0),
])
def test_hard_quota_rounds_half_up(n, rho, h):
    assert hard_quota(n, rho) == h


def test_single_clip_class_becomes_easy():
    P = [PositiveRef("d1", "dog", "A"), PositiveRef("d2", "dog", "B"), PositiveRef("d3", "dog", "C"),
         PositiveRef("c1", "cat", "D")]
    rows = generate_negatives(P, seed=0, hard_fraction=1.0)
    kinds = {r.video: r.negative_type for r in rows}
    assert kinds == {"d1": "hard", "d2": "hard", "d3": "hard", "c1": "easy"}
    assert {r.audio for r in rows if r.video == "c1"} <= {"d1", "d2", "d3"}


def test_same_source_video_is_never_eligible():
    # b1/b2 share a video: their only same-class partner is in the same video -> easy
    P = [PositiveRef("b1", "bird", "V"), PositiveRef("b2", "bird", "V"), PositiveRef("c1", "cat", "W"),
         PositiveRef("c2", "cat", "X")]
    rows = generate_negatives(P, seed=1, hard_fraction=1.0)
    kinds = {r.video: (r.negative_type, r.audio) for r in rows}
    assert kinds["b1"][0] == kinds["b2"][0] == "easy" and kinds["b1"][1] in ("c1", "c2")
    assert kinds["c1"] == ("hard", "c2") and kinds["c2"] == ("hard", "c1")


def test_least_used_fallback_ties_in_audio_order():
    # x, y are dogs, z the only cat; with rho = 0 every frame is easy
    P = [PositiveRef("x", "dog", "X"), PositiveRef("y", "dog", "Y"), PositiveRef("z", "cat", "Z")]
    seed = 0
    rows = {r.video: r.audio for r in generate_negatives(P, seed=seed, hard_fraction=0.0)}
    assert rows["x"] == rows["y"] == "z"  # z is reused: the only audio of another class
    first_dog = min(("x", "y"), key=lambda i: rank(seed, "audio", i))
    assert rows["z"] == first_dog
    assert Counter(rows.values())["z"] == 2


def test_hard_quota_stops_hard_pairs():
    P = [PositiveRef(f"{c}{i}", c, f"{c}{i}") for c in "ab" for i in range(5)]
    rows = generate_negatives(P, seed=2, hard_fraction=0.25)
    assert sum(r.negative_type == "hard" for r in rows) == 3  # floor(2.5 + 0.5)
    order = sorted(P, key=lambda p: rank(2, "frame", p.id))
    kinds = {r.video: r.negative_type for r in rows}
    assert [kinds[p.id] for p in order] == ["hard"] * 3 + ["easy"] * 7  # the first frames are the hard ones


@pytest.mark.parametrize("case", range(12))
def test_matches_literal_procedure_on_random_cases(case):
    rng = random.Random(case)
    P = random_positives(rng, size=rng.randrange(2, 60), n_classes=rng.randrange(2, 6), n_videos=rng.randrange(2, 40),
                         skew=rng.choice([0.0, 0.7, 0.95]))
    n = rng.randrange(0, len(P) + 1)
    rho = rng.choice([0.0, 0.25, 0.5, 1.0])
    try:
        expected = reference_generator(P, case, n=n, rho=rho)
    except ValueError:  # min() of an empty sequence: some frame has no eligible audio
        with pytest.raises(ValueError, match="no eligible audio"):
            generate_negatives(P, seed=case, n=n, hard_fraction=rho)
        return
    assert generate_negatives(P, seed=case, n=n, hard_fraction=rho) == expected


def test_hard_achieved_is_the_most_possible():
    rng = random.Random(99)
    P = random_positives(rng, size=80, n_classes=30, n_videos=70)
    rows = generate_negatives(P, seed=5, hard_fraction=1.0)
    by_id = {p.id: p for p in P}
    possible = sum(
        any(q.class_name == p.class_name and q.source_video != p.source_video for q in P) for p in P)
    assert sum(r.negative_type == "hard" for r in rows) == possible < len(P)
    assert all(by_id[r.video].class_name != by_id[r.audio].class_name for r in rows if r.negative_type == "easy")


def test_real_negatives():
    P = [PositiveRef("a", "dog", "A"), PositiveRef("b", "cat", "B")]
    rows = generate_negatives(P, seed=0, real_negatives=["r2", "r1"])
    assert [r.key for r in rows] == sorted(r.key for r in rows)
    assert [(r.video, r.audio, r.negative_type) for r in rows if r.negative_type == "real"] == [
        ("r1", "r1", "real"), ("r2", "r2", "real")]
    with pytest.raises(ValueError, match="positives of the test set"):
        generate_negatives(P, seed=0, real_negatives=["a"])
    with pytest.raises(ValueError, match="duplicate"):
        generate_negatives(P, seed=0, real_negatives=["r", "r"])


def test_invalid_arguments():
    P = [PositiveRef("a", "dog", "A"), PositiveRef("b", "cat", "B")]
    with pytest.raises(ValueError, match="n:"):
        generate_negatives(P, seed=0, n=3)
    with pytest.raises(ValueError, match="hard_fraction"):
        generate_negatives(P, seed=0, hard_fraction=1.5)
    with pytest.raises(ValueError, match="seed"):
        generate_negatives(P, seed="0")
    with pytest.raises(ValueError, match="duplicate id"):
        generate_negatives(P + [P[0]], seed=0)
    with pytest.raises(ValueError, match="invalid id"):
        generate_negatives([PositiveRef("a__neg__b", "dog", "A"), P[1]], seed=0)
    with pytest.raises(ValueError, match="no eligible audio"):
        generate_negatives([PositiveRef("a", "dog", "A"), PositiveRef("b", "dog", "B")], seed=0, hard_fraction=0.0)
    assert generate_negatives(P, seed=0, n=0) == []


def test_write_rejects_bad_rows(tmp_path):
    P = [PositiveRef("a", "dog", "A"), PositiveRef("b", "cat", "B")]
    with pytest.raises(ValueError, match="duplicate"):
        write_negative_list([NegativeRow("a", "b", "easy")] * 2, tmp_path / "x", positives=P, seed=0)
    with pytest.raises(ValueError, match="real iff"):
        write_negative_list([NegativeRow("a", "b", "real")], tmp_path / "x", positives=P, seed=0)
    assert not list(tmp_path.iterdir())


def test_positives_from_benchmark_needs_classes(vggss_positives):
    assert len(vggss_positives) == 5158 and len({p.class_name for p in vggss_positives}) == 221
    assert all(p.source_video == p.id[:-7] for p in vggss_positives)

    class Classless:  # a Flickr-like benchmark: no classes
        spec = type("S", (), {"name": "flickr"})()
        ids, classes = ["2432219254"], [None]
        positive = [True]

    with pytest.raises(ValueError, match="needs classes"):
        positives_from_benchmark(Classless())
