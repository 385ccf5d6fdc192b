"""Sample-level metrics of the scoring protocol (protocol.md §4, §5) as pure numpy functions.

Inputs are per-sample arrays: ``ciou`` float64 (N,) (NaN fails every ``>=`` test), ``conf``
float32/float64 (N,), ``positive`` bool (N,). Standard metrics (§4) take the positives only.

Every metric takes ``weights=None`` or an integer array (B, N) of bootstrap multiplicities
(``weights[b, j]`` = how often sample j occurs in resample b) and then returns a float64 array
(B,): the metric on each resampled dataset, bit for bit as if that dataset had been
materialised with ``np.repeat`` (``mean`` only up to rounding, see there). ``weights=None`` is the single all-ones resample, so point estimates and
bootstrap values come from the same code. Work is vectorised over resamples and thresholds
(one global sort by confidence, per-group weight sums, cumulative sums, searchsorted; LocAcc and
AUC of many subsets from one weighted count matrix) and done in blocks of rows so temporaries stay
below ~100 MB. Counts are exact integers kept in the narrowest exact type (int32 cumulative sums,
float32 matmuls while every total is below 2**24).

Legacy metrics (``loc_acc``, ``auc``, ``ap_legacy``, ``max_f1_legacy``) reproduce the published
evaluators bit for bit, including the order of floating-point operations.
"""

from __future__ import annotations

import zlib
from collections.abc import Iterator
from typing import NamedTuple

import numpy as np

__all__ = [
    "AUC_THRESHOLDS",
    "EXTENDED_KEYS",
    "Curve",
    "ap_full",
    "ap_legacy",
    "auc",
    "extended",
    "f1_curve",
    "loc_acc",
    "loc_acc_auc",
    "max_f1_full",
    "max_f1_legacy",
    "mean",
    "mean_ciou",
    "paired_negative_subset",
    "pr_curve",
    "precision_recall",
    "round_legacy_f1",
]

#: AUC thresholds t_i = 0.05 * i as Python float64 products (t_3 = 0.15000000000000002).
AUC_THRESHOLDS = tuple(0.05 * i for i in range(21))

# Cells (rows x samples) per block of resamples; ~8 live int32/float64 arrays of this size.
_CHUNK_CELLS = 1 << 20

_trapezoid = getattr(np, "trapezoid", None) or np.trapz  # numpy < 2.0 has only trapz


class Curve(NamedTuple):
    """Points of a precision/recall/F1 curve, one per threshold (float64 arrays)."""

    thresholds: np.ndarray
    precision: np.ndarray
    recall: np.ndarray
    f1: np.ndarray


# --------------------------------------------------------------------------- input checks


def _vector(x, name: str, n: int | None = None) -> np.ndarray:
    arr = np.asarray(x)
    if arr.ndim != 1:
        raise ValueError(f"`{name}` must be 1-D, got shape {arr.shape}")
    if n is not None and arr.shape[0] != n:
        raise ValueError(f"`{name}` must have length {n}, got {arr.shape[0]}")
    return arr


def _float_vector(x, name: str, n: int | None = None) -> np.ndarray:
    arr = _vector(x, name, n)
    if arr.dtype not in (np.float32, np.float64):
        arr = arr.astype(np.float64)
    return arr


def _check_weights(weights, n: int) -> np.ndarray | None:
    if weights is None:
        return None
    w = np.asarray(weights)
    if w.ndim != 2 or w.shape[1] != n:
        raise ValueError(f"`weights` must have shape (B, {n}), got {w.shape}")
    if not np.issubdtype(w.dtype, np.integer):
        raise ValueError(f"`weights` must be an integer array, got dtype {w.dtype}")
    if w.size and w.min() < 0:
        raise ValueError("`weights` must be non-negative")
    return w


def _blocks(weights: np.ndarray | None, n: int) -> Iterator[np.ndarray]:
    """Yield blocks of rows of `weights` as views in their own integer dtype (one all-ones row
    when weights is None); every count below is exact in the dtype it is computed in."""
    if weights is None:
        yield np.ones((1, n), dtype=np.int64)
        return
    rows = max(1, _CHUNK_CELLS // max(n, 1))
    for start in range(0, weights.shape[0], rows):
        yield weights[start : start + rows]


def _run(per_block, weights: np.ndarray | None, n: int):
    """Apply `per_block` to each block of weights; a float for weights=None, else (B,) float64."""
    parts = [per_block(w) for w in _blocks(weights, n)]
    out = np.concatenate(parts) if parts else np.empty(0, dtype=np.float64)
    return float(out[0]) if weights is None else out


def _ratio(num: np.ndarray, den: np.ndarray, empty: float) -> np.ndarray:
    """num / den in float64 (correctly rounded, like Python int / int); `empty` where den == 0."""
    with np.errstate(divide="ignore", invalid="ignore"):
        out = np.true_divide(num, den, dtype=np.float64)
    np.putmask(out, np.broadcast_to(den == 0, out.shape), empty)
    return out


def _weighted_counts(w: np.ndarray, flags: np.ndarray) -> np.ndarray:
    """Exact Σ_j w[b, j] * flags[j, k] as float64 (B, K), for 0/1 `flags`.

    Every partial sum is an integer no larger than the row total Σ_j w[b, j]: a float32 matmul is
    exact while the totals stay below 2**24 (any summation order), a float64 one below 2**53.
    """
    exact32 = w.size == 0 or int(w.sum(axis=1).max()) < 1 << 24
    dtype = np.float32 if exact32 else np.float64
    return (w.astype(dtype) @ flags.astype(dtype)).astype(np.float64)


# --------------------------------------------------------------------------- §4 standard metrics


def loc_acc(ciou, gamma: float = 0.5, strict: bool = False, weights=None):
    """LocAcc@γ: fraction of samples with cIoU ≥ γ (> γ if `strict`, SLAVC's precision_at_50).

    Bit-identical to ``np.mean(ciou >= gamma)``; NaN counts as a failure; empty → NaN.
    """
    return loc_acc_auc(ciou, gamma=gamma, weights=weights)[0]["loc_acc_strict" if strict else "loc_acc"]


def loc_acc_auc(ciou, subsets=None, gamma: float = 0.5, weights=None) -> list[dict[str, object]]:
    """LocAcc (``loc_acc``, ``loc_acc_strict``) and ``auc`` of several subsets of samples at once.

    `subsets` is a list of index arrays into `ciou` (default: one subset, all samples). Returns one
    dict per subset, each value equal to :func:`loc_acc` / :func:`auc` called on ``ciou[idx]`` (and
    ``weights[:, idx]``): all of them are ratios of weighted counts, which come from one matmul of
    the weights with a (N, 24 × subsets) flag matrix (membership, ≥ γ, > γ, ≥ each AUC threshold).
    """
    c = _float_vector(ciou, "ciou")
    n = c.shape[0]
    w = _check_weights(weights, n)
    subsets = [np.arange(n)] if subsets is None else [np.asarray(s, dtype=np.intp) for s in subsets]
    t = np.asarray(AUC_THRESHOLDS)
    per_sample = np.column_stack([np.ones(n, bool), c >= gamma, c > gamma, c[:, None] >= t[None, :]])  # NaN: no pass
    flags = np.zeros((n, len(subsets), per_sample.shape[1]), bool)
    for s, idx in enumerate(subsets):
        flags[idx, s] = per_sample[idx]
    flags = flags.reshape(n, len(subsets) * per_sample.shape[1])
    counts = np.concatenate([np.empty((0, flags.shape[1]))] + [_weighted_counts(wb, flags) for wb in _blocks(w, n)])
    counts = counts.reshape(counts.shape[0], len(subsets), per_sample.shape[1])
    out = []
    for s in range(len(subsets)):
        size = counts[:, s, 0]
        values = {
            "loc_acc": _ratio(counts[:, s, 1], size, np.nan),
            "loc_acc_strict": _ratio(counts[:, s, 2], size, np.nan),
            "auc": _trapezoid(_ratio(counts[:, s, 3:], size[:, None], np.nan), t, axis=1),
        }
        out.append({k: float(v[0]) for k, v in values.items()} if w is None else values)
    return out


def mean(values, weights=None):
    """Plain mean of a per-sample quantity; NaN if any included sample is NaN, or if empty.

    The point value equals ``np.mean(values)`` bitwise (same pairwise summation). A resample's
    value is Σ w_j·x_j / Σ w_j, which equals the mean of the materialised resample up to
    floating-point rounding (a few ulp), not bitwise.
    """
    x = _float_vector(values, "values").astype(np.float64)
    w = _check_weights(weights, x.shape[0])
    nan_cols = np.flatnonzero(np.isnan(x))
    filled = np.where(np.isnan(x), 0.0, x)

    def block(wb):
        out = _ratio(np.sum(wb * filled, axis=1), wb.sum(axis=1), np.nan)
        out[wb[:, nan_cols].sum(axis=1) > 0] = np.nan
        return out

    return _run(block, w, x.shape[0])


def mean_ciou(ciou, weights=None):
    """Mean cIoU (§4): :func:`mean` of the positives' cIoU (NaN propagates)."""
    return mean(ciou, weights)


def auc(ciou, weights=None):
    """AUC of the LocAcc-vs-threshold curve (§4), bit-identical to the published evaluators.

    ``y_i = #(cIoU ≥ t_i) / N`` at :data:`AUC_THRESHOLDS`, integrated with ``np.trapezoid(y, t)``
    (what ``sklearn.metrics.auc`` calls).
    """
    return loc_acc_auc(ciou, weights=weights)[0]["auc"]


# --------------------------------------------------------------------------- §5 extended: shared core


class _Sorted(NamedTuple):
    """Samples sorted once by confidence, highest first; a group is a run of equal confidence."""

    order: np.ndarray  # sample indices, descending confidence
    ends: np.ndarray  # last sorted position of each group (G,)
    values: np.ndarray  # distinct confidences, descending (G,)
    tp: tuple[np.ndarray, ...]  # sorted-order flags per γ: positive and cIoU ≥ γ (bool)
    pos: np.ndarray  # sorted-order flags: positive (bool)


def _inputs(ciou, conf, positive):
    """Validated (ciou float, conf float32/64, positive bool) vectors of one length."""
    cf = _float_vector(conf, "conf")
    n = cf.shape[0]
    c = _float_vector(ciou, "ciou", n)
    p = _vector(positive, "positive", n)
    if p.dtype != np.bool_:
        raise ValueError(f"`positive` must be a bool array, got dtype {p.dtype}")
    if np.isnan(cf).any():
        raise ValueError("`conf` contains NaN")
    return c, cf, p


def _prepare(ciou, conf, positive, *gammas: float) -> _Sorted:
    c, cf, p = _inputs(ciou, conf, positive)
    order = np.argsort(cf, kind="stable")[::-1]
    s = cf[order]
    ends = np.flatnonzero(np.r_[s[1:] != s[:-1], True]) if s.size else np.empty(0, dtype=np.intp)
    c, p = c[order], p[order]
    return _Sorted(order, ends, s[ends], tuple(p & (c >= gamma) for gamma in gammas), p)


class _Counts(NamedTuple):
    """Weighted counts per resample (rows) at each group's confidence as threshold (columns,
    descending confidence); all are inclusive cumulative sums, so the last column is the total."""

    detected: np.ndarray  # Σ weight with conf ≥ threshold
    tp: tuple[np.ndarray, ...]  # per γ: Σ weight of positives with cIoU ≥ γ and conf ≥ threshold
    pos_detected: np.ndarray  # Σ weight of positives with conf ≥ threshold


def _group_counts(srt: _Sorted, wb: np.ndarray, totals: np.ndarray) -> _Counts:
    """Counts of one block of resamples; int32 (half the memory traffic) when the row totals fit."""
    dtype = np.int32 if int(totals.max(initial=0)) < 1 << 31 else np.int64
    ws = np.take(wb, srt.order, axis=1)  # C-contiguous, unlike wb[:, order]
    ties = srt.ends.size != ws.shape[1]

    def cum(a):
        out = np.cumsum(a, axis=1, dtype=dtype)
        return np.take(out, srt.ends, axis=1) if ties else out

    return _Counts(cum(ws), tuple(cum(ws * tp) for tp in srt.tp), cum(ws * srt.pos))


def _fraction(num: np.ndarray, den: np.ndarray, empty: float) -> np.ndarray:
    """num / den in float64 for 0 <= num <= den, and `empty` (0.0 or 1.0) where den == 0.

    The values of :func:`_ratio`, with two fewer passes: a zero denominator comes with a zero
    numerator, so the division gives NaN exactly there, and fmin(·, 1) / fmax(·, 0) (which leave
    every other value, all in [0, 1], unchanged) put `empty` in its place.
    """
    with np.errstate(divide="ignore", invalid="ignore"):
        out = np.true_divide(num, den, dtype=np.float64)
    if empty == 1.0:
        return np.fmin(out, 1.0, out=out)
    assert empty == 0.0, empty
    return np.fmax(out, 0.0, out=out)


def _pr(tp, detected, fn):
    """Precision and recall with the §5 conventions (1.0 on an empty denominator)."""
    return _fraction(tp, detected, 1.0), _fraction(tp, tp + fn, 1.0)


def _f1(precision, recall):
    """2PR/(P+R) evaluated as SLAVC does, ``2*r*p/(r+p)``; 0 where P+R = 0."""
    num = np.multiply(2, recall)
    num *= precision
    return _fraction(num, recall + precision, 0.0)


def _rev_cummax(a: np.ndarray) -> np.ndarray:
    """out[:, i] = max(a[:, i:]) along each row."""
    return np.maximum.accumulate(a[:, ::-1], axis=1)[:, ::-1]


def _seq_sum(terms: np.ndarray) -> np.ndarray:
    """Row sums added strictly left to right (as Python's ``sum``), not pairwise; overwrites `terms`."""
    if terms.shape[1] == 0:
        return np.zeros(terms.shape[0])
    return np.cumsum(terms, axis=1, out=terms)[:, -1]


def _rank_search(detected: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(flat, shift): row b of `detected` shifted by b*(max+1) and flattened, so the whole block
    stays one sorted array and a single searchsorted serves every row (see _groups_at_ranks)."""
    shift = np.arange(detected.shape[0], dtype=np.int64)[:, None] * (int(detected[:, -1].max()) + 1)
    return (detected + shift).ravel(), shift


def _groups_at_ranks(detected: np.ndarray, ranks: np.ndarray, search=None) -> np.ndarray:
    """Group holding the ranks[b, k]-th largest (0-based) confidence of resample b.

    One searchsorted over all rows (`search` = ``_rank_search(detected)``, reused when given).
    Out-of-range ranks give an index clipped to the last group.
    """
    rows, g = detected.shape
    flat, shift = search if search is not None else _rank_search(detected)
    idx = np.searchsorted(flat, (ranks + shift).ravel(), side="right").reshape(ranks.shape)
    return np.clip(idx - np.arange(rows)[:, None] * g, 0, g - 1)


def _pr_at(counts: _Counts, groups: np.ndarray | None = None, which: int = 0):
    """(P, R) at thresholds given as group indices (rows × K), or at every group; `which` picks the γ."""

    def pick(a):
        return a if groups is None else np.take_along_axis(a, groups, axis=1)

    tp = pick(counts.tp[which])
    fn = counts.pos_detected[:, -1:] - pick(counts.pos_detected)
    return _pr(tp, pick(counts.detected), fn)


def _legacy_ap_ranks(n: np.ndarray):
    """SLAVC ``np.sort(conf)[:-1][::-s]``, s = max(1, n // 200), as descending ranks 1, 1+s, …

    (ascending position n-2-k·s is the (1+k·s)-th largest). Returns (ranks, valid) (rows × K).
    """
    s = np.maximum(1, n // 200)
    count = np.where(n >= 2, (n - 2) // s + 1, 0)
    k = np.arange(int(count.max(initial=0)))
    valid = k[None, :] < count[:, None]
    return np.where(valid, 1 + k[None, :] * s[:, None], 0), valid


def _legacy_f1_ranks(n: np.ndarray):
    """SLAVC ``sorted(conf)[::s]``, s = max(1, n // 10): ascending positions k·s < n, i.e.
    descending ranks n-1-k·s. Returns (ranks, valid) (rows × K), thresholds ascending."""
    s = np.maximum(1, n // 10)
    count = (n + s - 1) // s
    k = np.arange(int(count.max(initial=0)))
    valid = k[None, :] < count[:, None]
    return np.where(valid, (n - 1)[:, None] - k[None, :] * s[:, None], 0), valid


class _Block:
    """One block of resamples: the metrics of :func:`extended`, sharing counts and sweeps."""

    def __init__(self, srt: _Sorted, wb: np.ndarray):
        self.n = wb.sum(axis=1)
        self.counts = _group_counts(srt, wb, self.n)
        self._full = None
        self._search = None
        self._at: dict[str, tuple[np.ndarray, np.ndarray]] = {}

    def _finish(self, values):
        return np.where(self.n > 0, values, np.nan)

    def _thresholds(self, legacy_ranks) -> tuple[np.ndarray, np.ndarray]:
        """(groups, valid) of a legacy threshold list, shared by every γ."""
        key = legacy_ranks.__name__
        if key not in self._at:
            ranks, valid = legacy_ranks(self.n)
            if self._search is None:
                self._search = _rank_search(self.counts.detected)
            self._at[key] = (_groups_at_ranks(self.counts.detected, ranks, self._search), valid)
        return self._at[key]

    def full(self):
        """(P, R, present) at every group; absent groups (weight 0 in a resample) repeat the
        point above them or are the empty detection, and are masked by the callers."""
        if self._full is None:
            det = self.counts.detected
            present = np.empty(det.shape, bool)  # np.diff(det, prepend=0) > 0, in one pass
            np.greater(det[:, :1], 0, out=present[:, :1])
            np.greater(det[:, 1:], det[:, :-1], out=present[:, 1:])
            self._full = (*_pr_at(self.counts), present)
        return self._full

    def ap(self, which: int = 0):
        groups, valid = self._thresholds(_legacy_ap_ranks)
        precision, recall = _pr_at(self.counts, groups, which)
        pmax = _rev_cummax(np.where(valid, precision, 0.0))  # padding 0 never raises a max of P ≥ 0
        terms = pmax[:, :-1] * (recall[:, 1:] - recall[:, :-1])
        return self._finish(_seq_sum(np.where(valid[:, 1:], terms, 0.0)))  # x + 0.0 == x exactly

    def max_f1(self):
        groups, valid = self._thresholds(_legacy_f1_ranks)
        precision, recall = _pr_at(self.counts, groups)
        return self._finish(np.where(valid, _f1(precision, recall), 0.0).max(axis=1, initial=0.0))

    def ap_full(self):
        precision, recall, present = self.full()
        envelope = _rev_cummax(np.where(present, precision, 0.0))
        step = np.empty_like(recall)  # np.diff(recall, prepend=0.0): recall starts at 0; 0 at absent groups
        step[:, :1] = recall[:, :1]
        np.subtract(recall[:, 1:], recall[:, :-1], out=step[:, 1:])
        return self._finish(_seq_sum(np.multiply(step, envelope, out=step)))

    def max_f1_full(self):
        precision, recall, present = self.full()
        f1 = _f1(precision, recall)  # finite, >= 0: times the 0/1 mask is where(present, f1, 0.0)
        return self._finish(np.multiply(f1, present, out=f1).max(axis=1, initial=0.0))


EXTENDED_KEYS = ("ap", "max_f1", "ap_full", "max_f1_full")


def extended(ciou, conf, positive, gamma: float = 0.5, weights=None, keys=EXTENDED_KEYS, *, extra_ap=None):
    """All extended metrics in one pass: ``{key: value}`` for `keys` ⊆ :data:`EXTENDED_KEYS`.

    Values are floats for weights=None, else (B,) arrays; see the single-metric functions
    (``ap`` = :func:`ap_legacy`, ``max_f1`` = :func:`max_f1_legacy`). Empty data → NaN.
    `extra_ap` (``{key: γ'}``) adds :func:`ap_legacy` at other cIoU thresholds under those keys,
    from the same sorted weights and detection counts (e.g. ``{"ap75": 0.75}``).
    """
    unknown = set(keys) - set(EXTENDED_KEYS)
    if unknown:
        raise ValueError(f"unknown extended metric keys {sorted(unknown)}; choose from {EXTENDED_KEYS}")
    extra_ap = dict(extra_ap or {})
    clash = set(extra_ap) & set(keys)
    if clash:
        raise ValueError(f"extra_ap keys {sorted(clash)} clash with metric keys")
    srt = _prepare(ciou, conf, positive, gamma, *extra_ap.values())
    n = srt.order.shape[0]
    w = _check_weights(weights, n)
    parts: dict[str, list] = {k: [np.empty(0)] for k in (*keys, *extra_ap)}
    for wb in _blocks(w, n):
        block = _Block(srt, wb) if n else None
        for k in keys:
            parts[k].append(getattr(block, k)() if n else np.full(wb.shape[0], np.nan))
        for which, k in enumerate(extra_ap, start=1):
            parts[k].append(block.ap(which) if n else np.full(wb.shape[0], np.nan))
    out = {k: np.concatenate(v) for k, v in parts.items()}
    return {k: float(v[0]) for k, v in out.items()} if w is None else out


# --------------------------------------------------------------------------- §5 extended: public metrics


def ap_legacy(ciou, conf, positive, gamma: float = 0.5, weights=None):
    """AP as published (SLAVC ``calc_ap``), bit-identical.

    Thresholds: the ascending sorted confidences without the largest, every s-th walking down
    from the second largest, s = max(1, N // 200). With (P_i, R_i) from high to low threshold and
    pmax_i = max(P_i, …, P_{K-1}): AP = Σ_{i<K-1} pmax_i·(R_{i+1} − R_i), added left to right.
    K < 2 → 0.0. Note it has no step from recall 0, so a perfect model scores below 1.
    In a resample the thresholds are the resampled confidences at those ranks.
    """
    return extended(ciou, conf, positive, gamma, weights, keys=("ap",))["ap"]


def max_f1_legacy(ciou, conf, positive, gamma: float = 0.5, weights=None):
    """Max-F1 as published (SLAVC's F1 list), unrounded; see :func:`round_legacy_f1`.

    Thresholds: ascending sorted confidences, every max(1, N // 10)-th from the minimum;
    F1 = 2·R·P/(R+P) (0 if P+R = 0) evaluated in SLAVC's operation order; the maximum.
    """
    return extended(ciou, conf, positive, gamma, weights, keys=("max_f1",))["max_f1"]


def ap_full(ciou, conf, positive, gamma: float = 0.5, weights=None):
    """AP over the full sweep (avsl-bench's clean definition).

    Thresholds c_1 > c_2 > … > c_G are all distinct confidences; (P_k, R_k) at each, R_0 = 0.
    AP = Σ_{k=1..G} (R_k − R_{k−1})·max_{k' ≥ k} P_{k'}, added in that order: all-point
    interpolated AP (precision envelope), starting from recall 0. The maximum recall is the
    fraction of positives localised (mislocalised positives are FP), so AP ≤ that fraction.
    """
    return extended(ciou, conf, positive, gamma, weights, keys=("ap_full",))["ap_full"]


def max_f1_full(ciou, conf, positive, gamma: float = 0.5, weights=None):
    """Max-F1 over every distinct confidence threshold (full sweep), unrounded."""
    return extended(ciou, conf, positive, gamma, weights, keys=("max_f1_full",))["max_f1_full"]


def round_legacy_f1(x):
    """Max-F1 as SLAVC prints it, ``f'{f*100:.1f}'``, returned as a fraction (float or array)."""
    if np.ndim(x) == 0:
        return float(f"{float(x) * 100:.1f}") / 100
    arr = np.asarray(x, dtype=np.float64)
    return np.array([round_legacy_f1(v) for v in arr.ravel()]).reshape(arr.shape)


def precision_recall(ciou, conf, positive, threshold: float, gamma: float = 0.5, weights=None):
    """(P, R) at one confidence threshold (SLAVC ``calc_precision_recall``); conf ≥ threshold detects.

    The comparison happens in numpy's rules for `conf`'s dtype (a Python float threshold is cast
    to float32 for float32 confidences).
    """
    c, cf, pos = _inputs(ciou, conf, positive)
    n = cf.shape[0]
    w = _check_weights(weights, n)
    det = cf >= threshold
    flags = np.stack([pos & (c >= gamma) & det, det, pos & ~det], axis=1)
    parts = [np.empty((0, 2))]
    for wb in _blocks(w, n):
        tp, d, fn = _weighted_counts(wb, flags).T
        parts.append(np.stack(_pr(tp, d, fn), axis=1))
    pr = np.concatenate(parts)
    return (float(pr[0, 0]), float(pr[0, 1])) if w is None else (pr[:, 0], pr[:, 1])


def _curve(srt: _Sorted, groups: np.ndarray | None) -> Curve:
    n = srt.order.shape[0]
    if n == 0:
        return Curve(*(np.empty(0),) * 4)
    counts = _group_counts(srt, np.ones((1, n), dtype=np.int64), np.array([n]))
    p, r = (a[0] for a in _pr_at(counts, None if groups is None else groups[None, :]))
    thresholds = srt.values if groups is None else srt.values[groups]
    return Curve(thresholds.astype(np.float64), p, r, _f1(p, r))


def pr_curve(ciou, conf, positive, gamma: float = 0.5) -> Curve:
    """Precision/recall/F1 at every distinct confidence, from the highest threshold down."""
    return _curve(_prepare(ciou, conf, positive, gamma), None)


def f1_curve(ciou, conf, positive, gamma: float = 0.5, legacy: bool = False) -> Curve:
    """F1 against threshold, thresholds ascending: every distinct confidence, or with `legacy`
    SLAVC's printed list (``sorted(conf)[::max(1, N // 10)]``, duplicates kept)."""
    srt = _prepare(ciou, conf, positive, gamma)
    n = srt.order.shape[0]
    if not legacy or n == 0:
        return Curve(*(a[::-1] for a in _curve(srt, None)))
    ranks, _ = _legacy_f1_ranks(np.array([n]))
    counts = _group_counts(srt, np.ones((1, n), dtype=np.int64), np.array([n]))
    return _curve(srt, _groups_at_ranks(counts.detected, ranks)[0])


def paired_negative_subset(positive, negative_type, type_name: str, seed: int = 0) -> np.ndarray:
    """Sample indices of one negative-type stratum (Table 5 of Mo & Morgado).

    All negatives whose type is `type_name`, plus as many positives drawn without replacement
    (``Generator.choice`` over the positives' indices in ascending order) by
    ``np.random.default_rng([seed, zlib.crc32(type_name.encode("utf-8"))])``. The draw depends
    only on seed, type name and the positives' positions, so each type gets its own fixed
    subset. Returns the sorted indices (int64).
    """
    pos = _vector(positive, "positive")
    if pos.dtype != np.bool_:
        raise ValueError(f"`positive` must be a bool array, got dtype {pos.dtype}")
    types = _vector(negative_type, "negative_type", pos.shape[0])
    neg_idx = np.flatnonzero(~pos & (types == type_name))
    pos_idx = np.flatnonzero(pos)
    if neg_idx.size > pos_idx.size:
        raise ValueError(
            f"negative type {type_name!r} has {neg_idx.size} negatives but only {pos_idx.size} positives"
        )
    rng = np.random.default_rng([int(seed), zlib.crc32(type_name.encode("utf-8"))])
    drawn = rng.choice(pos_idx, size=neg_idx.size, replace=False)
    return np.sort(np.concatenate([drawn, neg_idx])).astype(np.int64)
