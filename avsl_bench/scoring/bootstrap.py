"""Seeded bootstrap for the metrics of :mod:`avsl_bench.scoring.functional` (protocol.md §8).

A bootstrap is a (B, N) int32 array of multiplicities (``weights[b, j]`` = how often sample j
occurs in resample b), drawn once per result and passed to every metric, so all metrics, strata
and paired comparisons use the same resamples. Positives and negatives are resampled separately,
each within its own group, so every resample keeps the original counts.

Paired comparison of two results: align both per-sample tables by sample id (same order, same
``positive`` mask), draw one ``weights`` from that mask and evaluate both methods' metrics on it;
:func:`paired_difference` returns the per-resample differences.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import NamedTuple

import numpy as np

__all__ = ["Estimate", "bootstrap_ci", "paired_difference", "percentile_ci", "resample_weights"]

# Cells (rows x samples) per block of draws; bounds the int64 temporaries to ~16 MB each.
_CHUNK_CELLS = 1 << 21

MetricFn = Callable[[np.ndarray | None], "float | np.ndarray"]


class Estimate(NamedTuple):
    """A point value with its percentile bootstrap interval."""

    value: float
    lo: float
    hi: float


def resample_weights(positive, n_resamples: int = 1000, seed: int = 0) -> np.ndarray:
    """(n_resamples, N) int32 multiplicities; positives and negatives resampled separately.

    Draws come from ``np.random.default_rng(seed)`` (PCG64): first, for resample 0, 1, …, the
    n_pos indices among the positives (``Generator.integers(0, n_pos)``), then likewise the
    negatives. Counting is an offset ``bincount`` per block of rows within the group, written
    into the group's columns; the result does not depend on the block size. Each row sums to
    n_pos over positives and n_neg over negatives.
    """
    pos = np.asarray(positive)
    if pos.ndim != 1 or pos.dtype != np.bool_:
        raise ValueError(f"`positive` must be a 1-D bool array, got {pos.dtype} shape {pos.shape}")
    if int(n_resamples) < 1:
        raise ValueError(f"`n_resamples` must be >= 1, got {n_resamples}")
    n, b = pos.shape[0], int(n_resamples)
    rng = np.random.default_rng(seed)
    out = np.zeros((b, n), dtype=np.int32)
    rows = max(1, _CHUNK_CELLS // max(n, 1))
    for members in (np.flatnonzero(pos), np.flatnonzero(~pos)):
        m = members.size
        if m == 0:
            continue
        columns = slice(members[0], members[-1] + 1) if members[-1] - members[0] + 1 == m else members
        for start in range(0, b, rows):
            block = out[start : start + rows]
            draws = rng.integers(0, m, size=(block.shape[0], m), dtype=np.int64)
            draws += (np.arange(block.shape[0], dtype=np.int64) * m)[:, None]  # row r counts in [r·m, (r+1)·m)
            block[:, columns] = np.bincount(draws.ravel(), minlength=draws.size).reshape(draws.shape)
    return out


def percentile_ci(values, level: float = 0.95) -> tuple[float, float]:
    """Percentile interval of bootstrap values: quantiles (1 ± level) / 2 with numpy's default
    linear interpolation.

    (nan, nan) if any value is NaN or there are none.
    """
    if not 0.0 < level < 1.0:
        raise ValueError(f"`level` must be in (0, 1), got {level}")
    v = np.asarray(values, dtype=np.float64).ravel()
    if v.size == 0 or np.isnan(v).any():
        return (float("nan"), float("nan"))
    tail = round((1.0 - level) / 2.0, 12)  # 0.025 for level 0.95, without float noise
    lo, hi = np.quantile(v, [tail, 1.0 - tail])
    return (float(lo), float(hi))


def bootstrap_ci(metric: MetricFn, weights: np.ndarray, level: float = 0.95) -> Estimate:
    """Point value ``metric(None)`` and the percentile interval of ``metric(weights)``.

    `metric` maps weights (or None) to the metric, e.g.
    ``functools.partial(functional.ap_legacy, ciou, conf, positive, 0.5)`` (γ bound, so
    weights is the next positional argument); for a positives-only
    metric restrict the columns: ``lambda w: auc(ciou[pos], None if w is None else w[:, pos])``.
    """
    return Estimate(float(metric(None)), *percentile_ci(metric(weights), level))


def paired_difference(metric_a: MetricFn, metric_b: MetricFn, weights: np.ndarray) -> np.ndarray:
    """Per-resample differences metric_a − metric_b on the same resamples (B,).

    Both callables must index the same samples in the same order (tables aligned by id).
    The point difference is ``metric_a(None) - metric_b(None)``.
    """
    return np.asarray(metric_a(weights), dtype=np.float64) - np.asarray(metric_b(weights), dtype=np.float64)
