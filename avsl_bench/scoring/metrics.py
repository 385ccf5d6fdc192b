"""From the per-sample table to every headline metric and stratum (protocol §4–5).

`metric_values(table, ...)` evaluates all metrics either once (point estimate) or on every bootstrap
resample at once (`weights` of shape (B, N)); the same code path serves both.
"""

from __future__ import annotations

from dataclasses import dataclass
import numpy as np
import pandas as pd

from . import functional as F

SIZE_BUCKETS = ("small", "medium", "large", "huge")
NEGATIVE_TYPES = ("real", "easy", "hard", "mismatched", "silent", "offscreen")
POSITIVE_KEYS = ("loc_acc", "loc_acc_strict", "mean_ciou", "auc", "mse")
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


def _sub(weights: np.ndarray | None, idx: np.ndarray) -> np.ndarray | None:
    return None if weights is None else weights[:, idx]


def positive_metrics(cols: Columns, idx: np.ndarray, gamma: float, weights) -> dict[str, object]:
    """LocAcc (≥ and >), mean cIoU, AUC and MSE over the positives `idx`."""
    ciou, w = cols.ciou[idx], _sub(weights, idx)
    return {
        "loc_acc": F.loc_acc(ciou, gamma, weights=w),
        "loc_acc_strict": F.loc_acc(ciou, gamma, strict=True, weights=w),
        "mean_ciou": F.mean_ciou(ciou, weights=w),
        "auc": F.auc(ciou, weights=w),
        "mse": F.mean(cols.mse[idx], weights=w),
    }


def extended_metrics(cols: Columns, idx: np.ndarray, gamma: float, weights) -> dict[str, object]:
    """Legacy and full-sweep AP / max-F1 and AP@0.75 over positives and negatives `idx`."""
    args = (cols.ciou[idx], cols.conf[idx], cols.positive[idx])
    w = _sub(weights, idx)
    values = dict(F.extended(*args, gamma=gamma, weights=w))
    values["ap75"] = F.ap_legacy(*args, gamma=0.75, weights=w)
    return values


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
    """All metrics: `{key: value}` and `{"strata.<name>.<key>": value}`; arrays of shape (B,) with weights."""
    cols = Columns.of(table)
    pos_idx = np.flatnonzero(cols.positive)
    values: dict[str, object] = dict(positive_metrics(cols, pos_idx, gamma, weights))
    if extended:
        values.update(extended_metrics(cols, np.arange(len(table)), gamma, weights))
    for name, (family, idx) in strata_indices(table, seed).items():
        if family == "positive":
            sub = positive_metrics(cols, idx, gamma, weights)
            values.update({f"strata.{name}.{k}": sub[k] for k in ("loc_acc", "auc", "mean_ciou")})
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
