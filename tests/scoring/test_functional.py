"""Tests of avsl_bench.scoring.functional against the slow upstream-style references."""

from __future__ import annotations

import zlib

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from avsl_bench.scoring import functional as F
from avsl_bench.scoring.bootstrap import resample_weights
from tests.scoring import reference as ref

# --------------------------------------------------------------------------- named, seeded cases


def _case(n_pos, n_neg, seed, levels=None, nan_frac=0.0, conf_dtype=np.float32):
    """Positives first; cIoU uniform with NaNs; conf continuous or quantised to `levels` values."""
    rng = np.random.default_rng(seed)
    n = n_pos + n_neg
    positive = np.r_[np.ones(n_pos, bool), np.zeros(n_neg, bool)]
    ciou = np.where(positive, rng.random(n), 0.0)
    ciou[positive & (rng.random(n) < nan_frac)] = np.nan
    raw = rng.random(n) + 0.25 * positive
    conf = np.floor(raw * levels) / levels if levels else raw
    return ciou, conf.astype(conf_dtype), positive


CASES = {
    "tiny_2": _case(1, 1, 0),
    "small_ties": _case(30, 27, 1, levels=8),  # N < 200: s = 1
    "nan_ciou": _case(80, 40, 2, nan_frac=0.2),
    "all_negative": _case(0, 40, 3),
    "all_positive": _case(90, 0, 4, levels=20),
    "flickr_ext_500": _case(250, 250, 5),  # s = 2 (AP), 50 (F1)
    "flickr_ext_500_ties": _case(250, 250, 6, levels=37, nan_frac=0.05),
    "float64_conf": _case(60, 70, 7, conf_dtype=np.float64),
    "n_399": _case(200, 199, 8),  # s = 1 with 398 AP thresholds
}
BIG = _case(5158, 5158, 9)  # extended VGG-SS size: s = 51 (AP), 1031 (F1)

LEGACY = [
    ("ap", F.ap_legacy, ref.ap_legacy),
    ("max_f1", F.max_f1_legacy, ref.max_f1_legacy),
]
FULL = [
    ("ap_full", F.ap_full, ref.ap_full),
    ("max_f1_full", F.max_f1_full, ref.max_f1_full),
]


def _materialise(arrays, w):
    idx = np.repeat(np.arange(w.shape[0]), w)
    return [a[idx] for a in arrays]


# --------------------------------------------------------------------------- §4 standard metrics


@pytest.mark.parametrize("name", [k for k in CASES if CASES[k][2].any()])
def test_standard_metrics_bit_identical(name):
    ciou, _, positive = CASES[name]
    c = ciou[positive]
    assert F.loc_acc(c) == ref.loc_acc(c)
    assert F.loc_acc(c, strict=True) == ref.loc_acc(c, strict=True)
    assert F.loc_acc(c, gamma=0.3) == ref.loc_acc(c, gamma=0.3)
    assert F.auc(c) == ref.auc(c)
    mean = F.mean_ciou(c)
    assert (np.isnan(mean) and np.isnan(c).any()) or mean == np.mean(c)


def test_auc_reference_formula_literal():
    c = CASES["nan_ciou"][0][:80]
    expected = np.trapezoid([np.sum(c >= 0.05 * i) / len(c) for i in range(21)], [0.05 * i for i in range(21)])
    assert F.auc(c) == float(expected)


def test_auc_thresholds_are_float_products():
    assert F.AUC_THRESHOLDS[3] == 0.15000000000000002
    assert F.AUC_THRESHOLDS[20] == 1.0


def test_ciou_exactly_015_fails_t3():
    exact, above = F.auc([0.15]), F.auc([0.15000000000000002])
    assert exact == ref.auc([0.15])
    t = F.AUC_THRESHOLDS
    assert exact == pytest.approx(t[2] + (t[3] - t[2]) / 2)  # y = 1 up to t_2, 0 from t_3
    assert above == pytest.approx(t[3] + (t[4] - t[3]) / 2)  # one more step passes


def test_ciou_exactly_half_strict_and_not():
    assert F.loc_acc([0.5]) == 1.0
    assert F.loc_acc([0.5], strict=True) == 0.0
    assert F.loc_acc([0.5, 0.49, 0.51, np.nan]) == 0.5


def test_nan_fails_and_propagates():
    c = np.array([0.9, np.nan, 0.7])
    assert F.loc_acc(c) == 2 / 3
    assert np.isnan(F.mean_ciou(c))
    assert F.auc(c) == ref.auc(c)


def test_empty_inputs_are_nan():
    assert np.isnan(F.loc_acc([]))
    assert np.isnan(F.mean([]))
    assert np.isnan(F.auc([]))
    for v in F.extended([], np.array([], np.float32), np.array([], bool)).values():
        assert np.isnan(v)


def test_mean_equals_numpy_mean():
    x = np.random.default_rng(3).random(1001)
    assert F.mean(x) == np.mean(x)


# --------------------------------------------------------------------------- §5 extended metrics


@pytest.mark.parametrize("gamma", [0.5, 0.75])
@pytest.mark.parametrize("name", list(CASES))
def test_extended_bit_identical(name, gamma):
    ciou, conf, positive = CASES[name]
    for key, fn, reference in LEGACY + FULL:
        assert fn(ciou, conf, positive, gamma) == reference(positive, ciou, conf, gamma), key


@pytest.mark.parametrize("name", list(CASES))
def test_extended_one_pass_equals_single_metrics(name):
    ciou, conf, positive = CASES[name]
    together = F.extended(ciou, conf, positive)
    assert together == {k: fn(ciou, conf, positive) for k, fn, _ in LEGACY + FULL}


def test_extended_vggss_size_bit_identical():
    ciou, conf, positive = BIG
    assert F.ap_legacy(ciou, conf, positive) == ref.ap_legacy(positive, ciou, conf)
    assert F.max_f1_legacy(ciou, conf, positive) == ref.max_f1_legacy(positive, ciou, conf)
    assert F.auc(ciou[positive]) == ref.auc(ciou[positive])


def test_legacy_ap_fewer_than_two_thresholds_is_zero():
    one = F.ap_legacy([0.9], np.float32([0.5]), [True])
    two = F.ap_legacy([0.9, 0.1], np.float32([0.5, 0.4]), [True, True])  # one threshold
    assert one == 0.0 and two == 0.0


def test_legacy_ap_perfect_model_quirk():
    """No recall step from 0: a perfect model scores 1 - 2/n_pos (distinct confidences, s = 1)."""
    n_pos = 50
    positive = np.r_[np.ones(n_pos, bool), np.zeros(50, bool)]
    conf = np.r_[np.linspace(1, 0.6, n_pos), np.linspace(0.5, 0, 50)].astype(np.float32)
    ciou = positive.astype(float)
    assert F.ap_legacy(ciou, conf, positive) == pytest.approx(1 - 2 / n_pos)
    assert F.ap_full(ciou, conf, positive) == pytest.approx(1.0)


def test_mislocalised_positives_count_as_fp_only():
    ciou = np.array([0.8, 0.2])  # both positives detected; the second in the wrong place
    conf = np.float32([0.9, 0.8])
    p, r = F.precision_recall(ciou, conf, np.array([True, True]), threshold=0.5)
    assert (p, r) == (0.5, 1.0)  # FP, not FN: recall stays 1
    assert (p, r) == ref.precision_recall([True, True], ciou, conf, np.float32(0.5))


def test_empty_denominators_give_one():
    ciou, conf, positive = CASES["small_ties"]
    assert F.precision_recall(ciou, conf, positive, threshold=2.0) == (1.0, 0.0)  # nothing detected
    ciou, conf, positive = CASES["all_negative"]
    p, r = F.precision_recall(ciou, conf, positive, threshold=-1000.0)
    assert (p, r) == (0.0, 1.0)  # no positives: recall 1.0
    assert F.pr_curve(ciou, conf, positive).recall.tolist() == [1.0] * len(np.unique(conf))


@pytest.mark.parametrize("name", ["small_ties", "nan_ciou", "flickr_ext_500"])
def test_precision_recall_matches_reference(name):
    ciou, conf, positive = CASES[name]
    for thr in [-1000.0, 0.5, float(np.median(conf)), float(conf.max())]:
        thr_c = conf.dtype.type(thr)
        assert F.precision_recall(ciou, conf, positive, thr_c) == ref.precision_recall(positive, ciou, conf, thr_c)


@pytest.mark.parametrize("name", ["small_ties", "flickr_ext_500_ties", "all_positive"])
def test_curves_match_reference(name):
    ciou, conf, positive = CASES[name]
    thresholds, precision, recall = ref.full_sweep(positive, ciou, conf)
    curve = F.pr_curve(ciou, conf, positive)
    assert curve.thresholds.tolist() == thresholds
    assert curve.precision.tolist() == precision
    assert curve.recall.tolist() == recall
    assert curve.f1.max() == F.max_f1_full(ciou, conf, positive)
    f1 = F.f1_curve(ciou, conf, positive)
    assert f1.thresholds.tolist() == thresholds[::-1]
    legacy_thr, legacy_f1 = ref.f1_list(positive, ciou, conf)
    legacy = F.f1_curve(ciou, conf, positive, legacy=True)
    assert legacy.thresholds.tolist() == [float(t) for t in legacy_thr]
    assert legacy.f1.tolist() == legacy_f1


def test_round_legacy_f1():
    rng = np.random.default_rng(0)
    xs = np.r_[rng.random(200), [0.0, 1.0, 0.12345, 0.0005, 0.9995]]
    for x in xs:
        assert F.round_legacy_f1(x) == float(f"{x * 100:.1f}") / 100
    assert F.round_legacy_f1(xs).tolist() == [F.round_legacy_f1(x) for x in xs]
    assert F.round_legacy_f1(0.4567) == 0.457


# --------------------------------------------------------------------------- weights (bootstrap)


def _weight_sets(positive, seed):
    n = positive.shape[0]
    rng = np.random.default_rng(seed)
    free = rng.integers(0, 3, size=(6, n))  # row sums vary (strata of a resample)
    free[0] = 0  # empty resample → NaN
    free[1] = 0
    free[1, n // 2] = 3  # one sample, three times
    return [resample_weights(positive, 8, seed=seed), free]


@pytest.mark.parametrize("name", list(CASES))
def test_weighted_extended_equals_materialised(name):
    ciou, conf, positive = CASES[name]
    for w in _weight_sets(positive, 11):
        got = F.extended(ciou, conf, positive, 0.5, w)
        for b in range(w.shape[0]):
            expected = F.extended(*_materialise([ciou, conf, positive], w[b]), 0.5)
            for key, value in expected.items():
                np.testing.assert_array_equal(got[key][b], value, err_msg=f"{key} resample {b}")
        for key, fn, _ in LEGACY + FULL:
            np.testing.assert_array_equal(fn(ciou, conf, positive, 0.5, w), got[key])


@pytest.mark.parametrize("name", [k for k in CASES if CASES[k][2].any()])
def test_weighted_standard_equals_materialised(name):
    ciou, _, positive = CASES[name]
    c = ciou[positive]
    for w in _weight_sets(positive, 12):
        wp = w[:, positive]
        la, las, au, mc = F.loc_acc(c, weights=wp), F.loc_acc(c, strict=True, weights=wp), F.auc(c, wp), F.mean_ciou(c, wp)
        for b in range(wp.shape[0]):
            (cb,) = _materialise([c], wp[b])
            if cb.size == 0:
                assert np.isnan([la[b], las[b], au[b], mc[b]]).all()
                continue
            assert la[b] == ref.loc_acc(cb) and las[b] == ref.loc_acc(cb, strict=True)
            assert au[b] == ref.auc(cb)
            np.testing.assert_allclose(mc[b], np.mean(cb), rtol=1e-12)  # Σw·x order: not bitwise


def test_weighted_precision_recall_equals_materialised():
    ciou, conf, positive = CASES["flickr_ext_500_ties"]
    w = resample_weights(positive, 5, seed=1)
    p, r = F.precision_recall(ciou, conf, positive, np.float32(0.6), weights=w)
    for b in range(5):
        assert (p[b], r[b]) == F.precision_recall(*_materialise([ciou, conf, positive], w[b]), np.float32(0.6))


def test_weighted_vggss_size():
    ciou, conf, positive = BIG
    w = resample_weights(positive, 3, seed=2)
    got = F.extended(ciou, conf, positive, 0.5, w, keys=("ap", "max_f1"))
    for b in range(3):
        expected = F.extended(*_materialise([ciou, conf, positive], w[b]), 0.5, keys=("ap", "max_f1"))
        assert got["ap"][b] == expected["ap"] and got["max_f1"][b] == expected["max_f1"]


def test_point_estimate_is_all_ones_resample():
    ciou, conf, positive = CASES["nan_ciou"]
    ones = np.ones((1, ciou.size), dtype=np.int32)
    for key, value in F.extended(ciou, conf, positive, 0.5, ones).items():
        assert value[0] == F.extended(ciou, conf, positive)[key]
    assert F.auc(ciou, ones)[0] == F.auc(ciou)


def test_blocking_does_not_change_results(monkeypatch):
    ciou, conf, positive = CASES["flickr_ext_500_ties"]
    w = resample_weights(positive, 20, seed=3)
    before = F.extended(ciou, conf, positive, 0.5, w)
    c = ciou[positive]
    std_before = F.auc(c, w[:, positive]), F.mean(c, w[:, positive])
    monkeypatch.setattr(F, "_CHUNK_CELLS", 3 * ciou.size)  # blocks of 3 resamples
    after = F.extended(ciou, conf, positive, 0.5, w)
    for key in before:
        np.testing.assert_array_equal(before[key], after[key])
    np.testing.assert_array_equal(std_before[0], F.auc(c, w[:, positive]))
    np.testing.assert_array_equal(std_before[1], F.mean(c, w[:, positive]))


def test_zero_resamples():
    ciou, conf, positive = CASES["small_ties"]
    w = np.zeros((0, ciou.size), dtype=np.int32)
    assert F.extended(ciou, conf, positive, 0.5, w)["ap"].shape == (0,)
    assert F.loc_acc(ciou, weights=w).shape == (0,)


# --------------------------------------------------------------------------- input validation


@pytest.mark.parametrize(
    "call",
    [
        lambda: F.ap_legacy([0.5, 0.5], np.float32([0.1]), [True, True]),  # length mismatch
        lambda: F.ap_legacy([0.5], np.float32([0.1]), [1]),  # positive not bool
        lambda: F.ap_full([0.5], np.float32([np.nan]), [True]),  # NaN conf
        lambda: F.loc_acc([[0.5]]),  # 2-D
        lambda: F.loc_acc([0.5], weights=np.ones((2, 3), int)),  # wrong N
        lambda: F.loc_acc([0.5], weights=np.ones((2, 1))),  # float weights
        lambda: F.loc_acc([0.5], weights=-np.ones((2, 1), int)),  # negative
        lambda: F.loc_acc([0.5], weights=np.ones(1, int)),  # 1-D
        lambda: F.extended([0.5], np.float32([0.1]), [True], keys=("auc",)),
    ],
)
def test_invalid_inputs_raise(call):
    with pytest.raises(ValueError):
        call()


# --------------------------------------------------------------------------- per-negative-type strata


def _typed_case():
    positive = np.r_[np.ones(40, bool), np.zeros(30, bool)]
    types = np.array([""] * 40 + ["real"] * 5 + ["easy"] * 15 + ["hard"] * 10)
    return positive, np.random.default_rng(0).permutation(types.size), types


def test_paired_negative_subset_recipe():
    positive, _, types = _typed_case()
    idx = F.paired_negative_subset(positive, types, "hard", seed=7)
    rng = np.random.default_rng([7, zlib.crc32(b"hard")])
    drawn = rng.choice(np.flatnonzero(positive), size=10, replace=False)
    assert idx.tolist() == sorted(drawn.tolist() + list(range(60, 70)))
    assert idx.dtype == np.int64


def test_paired_negative_subset_properties():
    positive, _, types = _typed_case()
    for name, k in [("real", 5), ("easy", 15), ("hard", 10)]:
        idx = F.paired_negative_subset(positive, types, name, seed=0)
        assert np.array_equal(idx, F.paired_negative_subset(positive, types, name, seed=0))
        assert len(np.unique(idx)) == idx.size == 2 * k
        assert positive[idx].sum() == k and set(types[idx[~positive[idx]]]) == {name}
    a = F.paired_negative_subset(positive, types, "easy", seed=0)
    assert not np.array_equal(a, F.paired_negative_subset(positive, types, "easy", seed=1))
    assert F.paired_negative_subset(positive, types, "none", seed=0).size == 0


def test_paired_negative_subset_too_many_negatives():
    positive = np.r_[np.ones(2, bool), np.zeros(3, bool)]
    with pytest.raises(ValueError, match="hard"):
        F.paired_negative_subset(positive, np.array(["", "", "hard", "hard", "hard"]), "hard", 0)


# --------------------------------------------------------------------------- properties


@st.composite
def extended_data(draw, min_size=1, max_size=60):
    n = draw(st.integers(min_size, max_size))
    positive = np.array(draw(st.lists(st.booleans(), min_size=n, max_size=n)))
    unit = st.floats(0, 1, allow_nan=False) | st.sampled_from([0.0, 0.15, 0.5, 0.75, 1.0])
    ciou = np.array(draw(st.lists(unit | st.just(float("nan")), min_size=n, max_size=n)))
    conf = np.array(draw(st.lists(st.sampled_from([0.1, 0.2, 0.3]) | unit, min_size=n, max_size=n)), np.float32)
    return ciou, conf, positive


@settings(max_examples=40, deadline=None)
@given(extended_data())
def test_property_bounds(data):
    ciou, conf, positive = data
    for key, value in F.extended(ciou, conf, positive).items():
        assert 0.0 <= value <= 1.0 + 1e-12, key  # AP sums recall steps: rounding could add an ulp
    assert 0.0 <= F.loc_acc(ciou) <= 1.0
    assert 0.0 <= F.auc(ciou) <= 1.0 + 1e-12


@settings(max_examples=40, deadline=None)
@given(extended_data(), st.randoms(use_true_random=False))
def test_property_permutation_invariance(data, random):
    ciou, conf, positive = data
    perm = np.array(random.sample(range(ciou.size), ciou.size))
    assert F.extended(ciou, conf, positive) == F.extended(ciou[perm], conf[perm], positive[perm])
    assert F.auc(ciou) == F.auc(ciou[perm]) and F.loc_acc(ciou) == F.loc_acc(ciou[perm])
    np.testing.assert_allclose(F.mean(ciou[perm]), F.mean(ciou), rtol=1e-12)


@settings(max_examples=40, deadline=None)
@given(extended_data(min_size=2))
def test_property_perfect_predictions_score_one(data):
    _, conf, positive = data
    if not positive.any():
        return
    ciou = np.where(positive, 1.0, 0.0)
    # every positive more confident than every negative
    conf = np.where(positive, 2.0 + conf, conf).astype(np.float32)
    assert F.ap_full(ciou, conf, positive) == pytest.approx(1.0, abs=1e-12)
    assert F.max_f1_full(ciou, conf, positive) == 1.0
    assert F.loc_acc(ciou[positive]) == 1.0
    assert F.auc(ciou[positive]) == pytest.approx(1.0, abs=1e-12)


@settings(max_examples=25, deadline=None)
@given(extended_data(max_size=40), st.integers(0, 2**32 - 1))
def test_property_weighted_equals_materialised(data, seed):
    ciou, conf, positive = data
    w = np.random.default_rng(seed).integers(0, 4, size=(3, ciou.size))
    got = F.extended(ciou, conf, positive, 0.5, w)
    for b in range(3):
        expected = F.extended(*_materialise([ciou, conf, positive], w[b]), 0.5)
        for key in expected:
            np.testing.assert_array_equal(got[key][b], expected[key])
