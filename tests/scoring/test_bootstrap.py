"""Tests of avsl_bench.scoring.bootstrap: seeded stratified resampling and percentile intervals."""

from __future__ import annotations

import functools

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from avsl_bench.scoring import bootstrap as B
from avsl_bench.scoring import functional as F


def _mask(n_pos, n_neg, seed=0):
    return np.random.default_rng(seed).permutation(np.r_[np.ones(n_pos, bool), np.zeros(n_neg, bool)])


def _reference_weights(positive, n_resamples, seed):
    """The documented recipe, written naively: positives for every resample, then negatives."""
    rng = np.random.default_rng(seed)
    out = np.zeros((n_resamples, positive.size), dtype=np.int64)
    for members in (np.flatnonzero(positive), np.flatnonzero(~positive)):
        if members.size == 0:
            continue
        draws = rng.integers(0, members.size, size=(n_resamples, members.size), dtype=np.int64)
        for b in range(n_resamples):
            np.add.at(out[b], members[draws[b]], 1)
    return out


# --------------------------------------------------------------------------- resample_weights


def test_weights_shape_dtype_and_group_sums():
    positive = _mask(37, 23)
    w = B.resample_weights(positive, 50, seed=1)
    assert w.shape == (50, 60) and w.dtype == np.int32
    assert (w[:, positive].sum(axis=1) == 37).all()
    assert (w[:, ~positive].sum(axis=1) == 23).all()
    assert w.min() >= 0


def test_weights_follow_documented_recipe():
    positive = _mask(13, 8, seed=4)
    np.testing.assert_array_equal(B.resample_weights(positive, 30, seed=9), _reference_weights(positive, 30, 9))


def test_weights_seeded():
    positive = _mask(20, 20)
    a = B.resample_weights(positive, 10, seed=3)
    np.testing.assert_array_equal(a, B.resample_weights(positive, 10, seed=3))
    assert not np.array_equal(a, B.resample_weights(positive, 10, seed=4))


def test_weights_do_not_depend_on_block_size(monkeypatch):
    positive = _mask(33, 17, seed=2)  # odd sizes: 32-bit draws split across blocks
    whole = B.resample_weights(positive, 25, seed=5)
    monkeypatch.setattr(B, "_CHUNK_CELLS", 3 * positive.size)
    np.testing.assert_array_equal(whole, B.resample_weights(positive, 25, seed=5))
    monkeypatch.setattr(B, "_CHUNK_CELLS", 1)
    np.testing.assert_array_equal(whole, B.resample_weights(positive, 25, seed=5))


@pytest.mark.parametrize("n_pos, n_neg", [(0, 12), (12, 0), (1, 1)])
def test_weights_single_group(n_pos, n_neg):
    positive = _mask(n_pos, n_neg)
    w = B.resample_weights(positive, 7, seed=0)
    assert (w.sum(axis=1) == n_pos + n_neg).all()
    np.testing.assert_array_equal(w, _reference_weights(positive, 7, 0))


def test_weights_are_multinomial():
    w = B.resample_weights(np.ones(400, bool), 500, seed=0)
    assert w.mean() == 1.0
    assert np.mean(w == 0) == pytest.approx(np.exp(-1), abs=0.01)  # P(sample left out) ≈ 1/e


@pytest.mark.parametrize(
    "call",
    [
        lambda: B.resample_weights(np.ones(3, int)),
        lambda: B.resample_weights(np.ones((2, 3), bool)),
        lambda: B.resample_weights(np.ones(3, bool), n_resamples=0),
    ],
)
def test_weights_invalid(call):
    with pytest.raises(ValueError):
        call()


# --------------------------------------------------------------------------- intervals


def test_percentile_ci_values():
    assert B.percentile_ci(np.arange(101), level=0.9) == (5.0, 95.0)
    lo, hi = B.percentile_ci(np.arange(1001) / 1000)
    assert (lo, hi) == pytest.approx((0.025, 0.975))
    assert isinstance(lo, float)


def test_percentile_ci_nan_and_empty():
    assert all(np.isnan(B.percentile_ci([0.1, np.nan, 0.3])))
    assert all(np.isnan(B.percentile_ci([])))
    with pytest.raises(ValueError):
        B.percentile_ci([0.1], level=1.0)


def test_bootstrap_ci_and_paired_difference():
    rng = np.random.default_rng(0)
    positive = _mask(100, 100)
    conf = rng.random(200).astype(np.float32)
    ciou_a = np.where(positive, rng.random(200), 0.0)
    ciou_b = np.where(positive, np.clip(ciou_a - 0.2, 0, 1), 0.0)  # same ids, worse method
    w = B.resample_weights(positive, 200, seed=1)
    metric_a = functools.partial(F.ap_full, ciou_a, conf, positive, 0.5)
    metric_b = functools.partial(F.ap_full, ciou_b, conf, positive, 0.5)
    est = B.bootstrap_ci(metric_a, w)
    assert est.value == metric_a(None) and (est.lo, est.hi) == B.percentile_ci(metric_a(w))
    diff = B.paired_difference(metric_a, metric_b, w)
    np.testing.assert_array_equal(diff, metric_a(w) - metric_b(w))
    assert (diff >= 0).all()  # b is never better on any resample: pairing removes sample noise
    np.testing.assert_array_equal(B.paired_difference(metric_a, metric_a, w), np.zeros(200))


def test_positives_only_metric_uses_positive_columns():
    positive = _mask(30, 30, seed=6)
    ciou = np.where(positive, np.random.default_rng(1).random(60), 0.0)
    w = B.resample_weights(positive, 20, seed=2)
    est = B.bootstrap_ci(lambda v: F.loc_acc(ciou[positive], weights=None if v is None else v[:, positive]), w)
    assert est.value == F.loc_acc(ciou[positive])


@settings(max_examples=15, deadline=None)
@given(st.integers(50, 150), st.integers(50, 150), st.integers(0, 2**32 - 1), st.floats(0.0, 0.5))
def test_property_ci_contains_point_estimate(n_pos, n_neg, seed, shift):
    rng = np.random.default_rng(seed)
    positive = np.r_[np.ones(n_pos, bool), np.zeros(n_neg, bool)]
    ciou = np.where(positive, rng.random(positive.size), 0.0)
    conf = (rng.random(positive.size) + shift * positive).astype(np.float32)
    w = B.resample_weights(positive, 200, seed=seed)
    values = F.extended(ciou, conf, positive, 0.5, w)
    for key, point in F.extended(ciou, conf, positive).items():
        lo, hi = B.percentile_ci(values[key])
        assert lo <= point <= hi, key
    wp = w[:, positive]
    for fn in (F.loc_acc, F.auc, F.mean_ciou):
        lo, hi = B.percentile_ci(fn(ciou[positive], weights=wp) if fn is F.loc_acc else fn(ciou[positive], wp))
        assert lo <= fn(ciou[positive]) <= hi
