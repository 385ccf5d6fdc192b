"""The batched metric paths (one count matrix for many subsets, shared γ counts, threaded resamples)
give exactly what the single-metric functions give."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from avsl_bench.scoring import bootstrap as B
from avsl_bench.scoring import functional as F
from avsl_bench.scoring import metrics as MET


def _data(n=400, seed=0):
    rng = np.random.default_rng(seed)
    positive = rng.random(n) < 0.5
    ciou = np.round(rng.random(n), 2)  # ties at the thresholds (0.5, 0.15, ...)
    ciou[rng.random(n) < 0.02] = np.nan
    conf = np.round(rng.random(n), 2).astype(np.float32)  # tied confidences
    return ciou, conf, positive


def _same(a, b):
    return np.array_equal(np.asarray(a), np.asarray(b), equal_nan=True)


def test_loc_acc_auc_subsets_equal_the_single_metric_calls():
    ciou, _, _ = _data()
    w = B.resample_weights(np.ones(ciou.size, bool), 37, seed=1)
    rng = np.random.default_rng(3)
    subsets = [np.sort(rng.choice(ciou.size, k, replace=False)) for k in (1, 50, 200)] + [np.arange(0)]
    for weights in (None, w):
        got = F.loc_acc_auc(ciou, subsets, gamma=0.5, weights=weights)
        for idx, values in zip(subsets, got):
            sub_w = None if weights is None else weights[:, idx]
            assert _same(values["loc_acc"], F.loc_acc(ciou[idx], 0.5, weights=sub_w))
            assert _same(values["loc_acc_strict"], F.loc_acc(ciou[idx], 0.5, strict=True, weights=sub_w))
            assert _same(values["auc"], F.auc(ciou[idx], weights=sub_w))
    assert np.isnan(got[3]["auc"]).all()  # an empty subset
    idx = subsets[1]
    assert F.loc_acc_auc(ciou, [idx])[0]["loc_acc"] == float(np.mean(ciou[idx] >= 0.5))


def test_weighted_counts_exact_beyond_float32():
    flags = np.array([[1], [1], [0]], bool)
    w = np.array([[1 << 24, 1, 5]], np.int64)  # a float32 sum would drop the 1
    assert F._weighted_counts(w, flags).tolist() == [[float((1 << 24) + 1)]]
    assert F._weighted_counts(np.array([[3, 4, 5]], np.int32), flags).tolist() == [[7.0]]


def test_extra_ap_equals_ap_legacy_at_that_gamma():
    ciou, conf, positive = _data(seed=5)
    w = B.resample_weights(positive, 41, seed=2)
    for weights in (None, w):
        got = F.extended(ciou, conf, positive, 0.5, weights, extra_ap={"ap75": 0.75, "ap30": 0.3})
        assert _same(got["ap75"], F.ap_legacy(ciou, conf, positive, 0.75, weights))
        assert _same(got["ap30"], F.ap_legacy(ciou, conf, positive, 0.3, weights))
        assert _same(got["ap"], F.ap_legacy(ciou, conf, positive, 0.5, weights))
        assert _same(got["max_f1_full"], F.max_f1_full(ciou, conf, positive, 0.5, weights))
    with pytest.raises(ValueError):
        F.extended(ciou, conf, positive, extra_ap={"ap": 0.75})


def _table(n=600, seed=7):
    ciou, conf, positive = _data(n, seed)
    rng = np.random.default_rng(seed)
    kinds = np.where(positive, None, rng.choice(["real", "easy", "hard"], n)).astype(object)
    buckets = np.where(positive, rng.choice(["small", "medium", "large", "huge"], n), "n/a")
    return pd.DataFrame({
        "positive": positive, "negative_type": pd.Series(kinds, dtype="string"), "size_bucket": buckets,
        "ciou": ciou, "confidence": conf.astype(np.float64), "mse": np.where(positive, rng.random(n), np.nan),
        "in_heard": positive & (rng.random(n) < 0.5),
    })


def test_metric_values_match_per_metric_calls_and_do_not_depend_on_the_thread_split(monkeypatch):
    table = _table()
    positive = table["positive"].to_numpy(bool)
    w = B.resample_weights(positive, 150, seed=0)
    threaded = MET.metric_values(table, gamma=0.5, extended=True, seed=0, weights=w)
    monkeypatch.setattr(MET, "_MIN_ROWS_PER_THREAD", 10**9)
    single = MET.metric_values(table, gamma=0.5, extended=True, seed=0, weights=w)
    assert list(threaded) == list(single)
    assert all(_same(threaded[k], single[k]) for k in single)
    c, cf = table["ciou"].to_numpy(), table["confidence"].to_numpy()
    pos = np.flatnonzero(positive)
    assert _same(single["auc"], F.auc(c[pos], weights=w[:, pos]))
    assert _same(single["mse"], F.mean(table["mse"].to_numpy()[pos], weights=w[:, pos]))
    assert _same(single["ap75"], F.ap_legacy(c, cf, positive, 0.75, w))
    heard = np.flatnonzero(table["in_heard"].to_numpy(bool))
    assert _same(single["strata.heard.loc_acc"], F.loc_acc(c[heard], weights=w[:, heard]))
    assert _same(single["strata.heard.mean_ciou"], F.mean_ciou(c[heard], weights=w[:, heard]))
    small = np.flatnonzero(positive & (table["size_bucket"] == "small").to_numpy())
    assert _same(single["strata.small.auc"], F.auc(c[small], weights=w[:, small]))
    point = MET.metric_values(table, gamma=0.5, extended=True, seed=0)
    assert list(point) == list(single) and isinstance(point["strata.small.auc"], float)
