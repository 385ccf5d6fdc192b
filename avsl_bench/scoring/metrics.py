"""From the per-sample table to every headline metric and stratum (protocol §4–5).

`metric_values(table, ...)` evaluates all metrics either once (point estimate) or on every bootstrap
resample at once (`weights` of shape (B, N)); the same code path serves both.
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import numpy as np
import pandas as pd

from . import functional as F

SIZE_BUCKETS = ("small", "medium", "large", "huge")
NEGATIVE_TYPES = ("real", "easy", "hard", "mismatched", "silent", "offscreen")
POSITIVE_KEYS = ("loc_acc", "loc_acc_strict", "mean_ciou", "auc", "mse")
STRATUM_KEYS = ("loc_acc", "auc", "mean_ciou")
_MIN_ROWS_PER_THREAD = 64  # resamples per thread below which metric_values stays on one thread
EXTENDED_KEYS = ("ap", "max_f1", "ap_full", "max_f1_full", "ap75")


@dataclass(frozen=True)
class Columns:
    """The per-sample arrays the metrics read."""

    ciou: np.ndarray
    conf: np.ndarray
    positive: np.ndarray
    mse: np.ndarray

    @classmethod
    def of(cls, table: pd.DataFrame) -> "Columns":
        return cls(
            ciou=table["ciou"].to_numpy(np.float64),
            conf=table["confidence"].to_numpy(np.float64),
            positive=table["positive"].to_numpy(bool),
            mse=table["mse"].to_numpy(np.float64),
        )


def _sub(weights: np.ndarray | None, idx: np.ndarray | slice) -> np.ndarray | None:
    return None if weights is None else weights[:, idx]


def positive_metrics(
    cols: Columns, idx: np.ndarray, gamma: float, weights, strata: dict[str, np.ndarray] | None = None
) -> dict[str, object]:
    """LocAcc (≥ and >), mean cIoU, AUC and MSE over the positives `idx`, and per stratum (a subset
    of `idx`) its LocAcc, AUC and mean cIoU as ``{"strata.<name>.<key>": value}``.

    All LocAcc/AUC values come from one weighted count matrix (:func:`functional.loc_acc_auc`); the
    weights are restricted to the positives once.
    """
    strata = strata or {}
    ciou, w = cols.ciou[idx], _sub(weights, idx)
    local = [np.searchsorted(idx, members) for members in strata.values()]  # positions within idx
    counted = F.loc_acc_auc(ciou, [np.arange(idx.size), *local], gamma, weights=w)
    values: dict[str, object] = {
        "loc_acc": counted[0]["loc_acc"],
        "loc_acc_strict": counted[0]["loc_acc_strict"],
        "mean_ciou": F.mean_ciou(ciou, weights=w),
        "auc": counted[0]["auc"],
        "mse": F.mean(cols.mse[idx], weights=w),
    }
    for name, members, sub in zip(strata, local, counted[1:]):
        values[f"strata.{name}.loc_acc"] = sub["loc_acc"]
        values[f"strata.{name}.auc"] = sub["auc"]
        values[f"strata.{name}.mean_ciou"] = F.mean_ciou(ciou[members], weights=_sub(w, members))
    return values


def extended_metrics(cols: Columns, idx: np.ndarray | slice, gamma: float, weights) -> dict[str, object]:
    """Legacy and full-sweep AP / max-F1 and AP@0.75 over positives and negatives `idx`
    (``slice(None)``: all samples, without copying the weights)."""
    args = (cols.ciou[idx], cols.conf[idx], cols.positive[idx])
    return F.extended(*args, gamma=gamma, weights=_sub(weights, idx), extra_ap={"ap75": 0.75})


def strata_indices(table: pd.DataFrame, seed: int) -> dict[str, tuple[str, np.ndarray]]:
    """Stratum name → (family, sample indices). Families: 'positive' (size, heard...) and 'extended'."""
    positive = table["positive"].to_numpy(bool)
    out: dict[str, tuple[str, np.ndarray]] = {}
    buckets = table["size_bucket"].to_numpy()
    for bucket in SIZE_BUCKETS:
        idx = np.flatnonzero(positive & (buckets == bucket))
        if idx.size:
            out[bucket] = ("positive", idx)
    for column in (c for c in table.columns if c.startswith("in_")):
        idx = np.flatnonzero(positive & table[column].to_numpy(bool))
        if idx.size:
            out[column[3:]] = ("positive", idx)
    neg_types = table["negative_type"].astype(object).where(table["negative_type"].notna(), None).to_numpy()
    for kind in NEGATIVE_TYPES:
        if (neg_types == kind).any():
            out[kind] = ("extended", F.paired_negative_subset(positive, neg_types, kind, seed))
    return out


def metric_values(
    table: pd.DataFrame, *, gamma: float, extended: bool, seed: int, weights: np.ndarray | None = None
) -> dict[str, object]:
    """All metrics: `{key: value}` and `{"strata.<name>.<key>": value}`; arrays of shape (B,) with weights.

    With weights, the resamples are split between two threads (numpy releases the GIL in its
    kernels); every resample's values are computed independently, so the split changes nothing.
    """
    cols, strata = Columns.of(table), strata_indices(table, seed)
    if weights is not None and weights.shape[0] >= 2 * _MIN_ROWS_PER_THREAD:
        half = weights.shape[0] // 2
        with ThreadPoolExecutor(max_workers=2) as pool:
            parts = list(pool.map(lambda w: _metric_values(cols, strata, gamma, extended, w),
                                  (weights[:half], weights[half:])))
        return {key: np.concatenate([parts[0][key], parts[1][key]]) for key in parts[0]}
    return _metric_values(cols, strata, gamma, extended, weights)


def _metric_values(cols: Columns, strata: dict, gamma: float, extended: bool, weights) -> dict[str, object]:
    positive_strata = {name: idx for name, (family, idx) in strata.items() if family == "positive"}
    by_key = positive_metrics(cols, np.flatnonzero(cols.positive), gamma, weights, positive_strata)
    values: dict[str, object] = {k: by_key[k] for k in POSITIVE_KEYS}
    if extended:
        values.update(extended_metrics(cols, slice(None), gamma, weights))
    for name, (family, idx) in strata.items():
        if family == "positive":
            values.update({f"strata.{name}.{k}": by_key[f"strata.{name}.{k}"] for k in STRATUM_KEYS})
        else:
            sub_f1 = F.max_f1_legacy(cols.ciou[idx], cols.conf[idx], cols.positive[idx], gamma=gamma,
                                     weights=_sub(weights, idx))
            values[f"strata.{name}.max_f1"] = sub_f1
    return values


def curves(table: pd.DataFrame, gamma: float) -> dict[str, dict[str, list]]:
    """PR and F1-vs-threshold curves of the full sweep (point estimate), for plots."""
    cols = Columns.of(table)
    args = (cols.ciou, cols.conf, cols.positive)
    found = {"pr": F.pr_curve(*args, gamma=gamma), "f1": F.f1_curve(*args, gamma=gamma)}
    return {name: {k: np.asarray(v).tolist() for k, v in curve._asdict().items()} for name, curve in found.items()}
