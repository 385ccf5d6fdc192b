"""Per-map operations of the scoring protocol (protocol.md §2–§3), batched over a chunk.

Every function takes a chunk of maps shaped ``(B, H, W)`` and returns one value per map (or one mask
per map). The arithmetic reproduces the published evaluators bit for bit:

- maps are converted to float32 first; normalisation, thresholds and confidence are float32;
- ``minmax(p) = (p - min) / (max - min)``, a constant map is left unchanged;
- ``top50``: ``q = minmax(p)``, mask ``q >= s_q[k]`` with ``s = sort(flat)`` and ``k = n // 2``;
- ``lvs``: ``q = 1 - minmax(-p)``, mask ``(q > s_q[k]) | (q >= 1)`` (a NaN q, possible only when
  max - min overflows float32, is on, as in the LVS script, which zeroes ``q < 1`` after the threshold);
- ``fixed``: mask ``p >= T`` on the raw map (``T`` rounded to float32, default 0.5);
- cIoU sums are float64 with one division (0/0 is NaN);
- confidence is SLAVC's ``np.sort(flat)[-ceil(n/4):].mean()`` in float32, before normalisation.

The work runs map by map on preallocated scratch buffers: one 224×224 map (200 KB) stays in the CPU
cache across the few passes it needs, which is about twice as fast as whole-chunk numpy expressions.
`per_sample_scores` is the fused fast path used by the scorer: one sort per map serves the threshold,
the confidence and the min/max at once; it returns exactly what the separate functions return.

Example:
    >>> import numpy as np
    >>> maps = np.random.default_rng(0).random((2, 224, 224), dtype=np.float32)
    >>> gts = np.zeros((2, 224, 224), np.float32); gts[:, :112] = 1
    >>> masks = binarize(maps, "top50")
    >>> masks.shape, masks.dtype, int(masks[0].sum())
    ((2, 224, 224), dtype('bool'), 25088)
    >>> ciou(masks, gts).dtype, confidence(maps).dtype
    (dtype('float64'), dtype('float32'))
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

__all__ = [
    "GRID",
    "BINARIZATIONS",
    "SIZE_BUCKETS",
    "MapScores",
    "parse_binarization",
    "resize_to_grid",
    "minmax",
    "binarize",
    "ciou",
    "confidence",
    "pixel_mse",
    "area",
    "size_bucket",
    "per_sample_scores",
]

GRID = 224
"""Side of the protocol grid: every map is scored at GRID × GRID."""

BINARIZATIONS = ("top50", "lvs", "fixed")
"""Binarisation modes (protocol §2); ``fixed`` takes a threshold, written ``fixed:T`` in options."""

DEFAULT_FIXED_THRESHOLD = 0.5

RESIZE_MODES = ("bicubic", "bilinear")

SIZE_BUCKETS = ("small", "medium", "large", "huge")
"""GT-area buckets: small [0, 32²), medium [32², 96²), large [96², 144²), huge [144², ∞)."""

_BUCKET_EDGES = np.array([32.0**2, 96.0**2, 144.0**2])
_BUCKET_NAMES = np.array(SIZE_BUCKETS)


# --------------------------------------------------------------------------------------------------
# argument handling


def parse_binarization(mode: str, threshold: float | None = None) -> tuple[str, float | None]:
    """Normalise a binarisation option to ``(mode, threshold)``.

    Accepts ``"top50"``, ``"lvs"``, ``"fixed"`` (threshold defaults to 0.5) and ``"fixed:T"``.

    Example:
        >>> parse_binarization("fixed:0.25")
        ('fixed', 0.25)
        >>> parse_binarization("top50")
        ('top50', None)
    """
    if not isinstance(mode, str):
        raise ValueError(f"binarization must be a string, got {mode!r}")
    name, sep, value = mode.partition(":")
    if sep:
        if name != "fixed":
            raise ValueError(f"binarization {mode!r}: only 'fixed' takes a threshold ('fixed:0.5')")
        if threshold is not None:
            raise ValueError(f"binarization {mode!r}: threshold given twice")
        try:
            threshold = float(value)
        except ValueError:
            raise ValueError(f"binarization {mode!r}: threshold {value!r} is not a number") from None
    if name not in BINARIZATIONS:
        raise ValueError(f"binarization must be one of {', '.join(BINARIZATIONS)} or 'fixed:T', got {mode!r}")
    if name == "fixed":
        threshold = DEFAULT_FIXED_THRESHOLD if threshold is None else float(threshold)
        if not np.isfinite(threshold):
            raise ValueError(f"binarization threshold must be finite, got {threshold!r}")
        return name, threshold
    if threshold is not None:
        raise ValueError(f"binarization {name!r} takes no threshold, got {threshold!r}")
    return name, None


def _as_maps(maps: np.ndarray, name: str = "maps") -> np.ndarray:
    """Return `maps` as a C-contiguous float32 (B, H, W) array (no copy when it already is one)."""
    arr = np.asarray(maps)
    if arr.ndim != 3:
        raise ValueError(f"{name} must be a (B, H, W) array, got shape {arr.shape}")
    if arr.dtype.kind not in "fiub":
        raise ValueError(f"{name} must hold real numbers, got dtype {arr.dtype}")
    return np.ascontiguousarray(arr, dtype=np.float32)


def _as_gts(gts: np.ndarray, like: np.ndarray, name: str = "gts") -> np.ndarray:
    arr = np.asarray(gts)
    if arr.shape != like.shape:
        raise ValueError(f"{name} must have shape {like.shape}, got {arr.shape}")
    if arr.dtype.kind != "f":
        arr = arr.astype(np.float32)
    return np.ascontiguousarray(arr)


def _flat(arr: np.ndarray) -> np.ndarray:
    """(B, H, W) C-contiguous → (B, H*W) view."""
    return arr.reshape(arr.shape[0], -1)


def _quarter(n: int) -> int:
    """ceil(n / 4): how many of the largest values the confidence averages."""
    return -(-n // 4)


# --------------------------------------------------------------------------------------------------
# per-map kernels (1-D float32 views; `out`/`scratch` are preallocated buffers of the same length)


def _minmax_into(p: np.ndarray, out: np.ndarray, lo=None, hi=None) -> None:
    """out = (p - min) / (max - min) in float32; a constant map is copied unchanged."""
    if lo is None:
        lo, hi = p.min(), p.max()
    span = hi - lo  # float32 scalar arithmetic, as in the reference
    if span == 0:
        np.copyto(out, p)
        return
    np.subtract(p, lo, out=out)
    np.divide(out, span, out=out)


def _lvs_into(p: np.ndarray, out: np.ndarray, lo=None, hi=None) -> None:
    """out = 1 - minmax(-p) in float32, literally as the LVS test script computes it.

    `lo`/`hi` are min/max of `p` (not of -p) when the caller already has them.
    """
    np.negative(p, out=out)
    if lo is None:
        nlo, nhi = out.min(), out.max()
    else:
        nlo, nhi = -hi, -lo  # min(-p) = -max(p), max(-p) = -min(p), exactly
    span = nhi - nlo
    if span != 0:
        np.subtract(out, nlo, out=out)
        np.divide(out, span, out=out)
    np.subtract(np.float32(1), out, out=out)


def _kth(values: np.ndarray, k: int, scratch: np.ndarray) -> np.float32:
    """The k-th smallest value (0-based), i.e. sort(values)[k], via an O(n) partition of a copy."""
    np.copyto(scratch, values)
    scratch.partition(k)
    return scratch[k]


def _mask_from_q(q: np.ndarray, thr, mode: str, out: np.ndarray) -> None:
    if mode == "top50":
        np.greater_equal(q, thr, out=out)
    else:  # lvs: (q > thr) | (q >= 1), written as the LVS script does it so that NaN counts as on
        np.greater(q, thr, out=out)
        out |= ~(q < np.float32(1))


def _confidence_1d(p: np.ndarray, scratch: np.ndarray) -> np.float32:
    """SLAVC's np.sort(p)[-ceil(n/4):].mean(): partition, then sort only the top quarter ascending."""
    n = p.shape[0]
    cut = n - _quarter(n)
    np.copyto(scratch, p)
    scratch.partition(cut)
    top = scratch[cut:]
    top.sort()
    with np.errstate(over="ignore"):  # |values| near float32 max: inf, like the reference
        return top.mean()


class _CiouTerms:
    """Numerator, denominator and GT area of the cIoU of one map, in float64, with reused buffers.

    GTs of the protocol hold only 0, 0.5 and 1: then every sum is exact and equals a count, so the
    terms are computed by counting pixels (same float64 values, several times faster). Any other GT
    values take the general path: float64 sums of the exact products mask·gt.
    """

    def __init__(self, n: int, dtype: np.dtype) -> None:
        self.n = n
        self.zero = np.empty(n, bool)
        self.one = np.empty(n, bool)
        self.half = np.empty(n, bool)
        self.tmp = np.empty(n, bool)
        self.prod = np.empty(n, dtype)

    def _count_and(self, a: np.ndarray, b: np.ndarray) -> int:
        np.logical_and(a, b, out=self.tmp)
        return np.count_nonzero(self.tmp)

    def __call__(self, mask: np.ndarray, gt: np.ndarray) -> tuple[float, float, float]:
        np.equal(gt, 0, out=self.zero)
        np.equal(gt, 1, out=self.one)
        n_zero, n_one = np.count_nonzero(self.zero), np.count_nonzero(self.one)
        false_pos = self._count_and(self.zero, mask)
        if n_zero + n_one == self.n:  # binary GT (VGG-SS, synthetic, negatives)
            gt_sum = float(n_one)
            inter = float(self._count_and(self.one, mask))
        else:
            np.equal(gt, 0.5, out=self.half)
            n_half = np.count_nonzero(self.half)
            if n_zero + n_one + n_half == self.n:  # Flickr consensus
                gt_sum = n_one + 0.5 * n_half
                inter = self._count_and(self.one, mask) + 0.5 * self._count_and(self.half, mask)
            else:
                np.multiply(gt, mask, out=self.prod)  # exact: gt·1 or gt·0
                inter = float(np.add.reduce(self.prod, dtype=np.float64))
                gt_sum = float(np.add.reduce(gt, dtype=np.float64))
        return inter, gt_sum + false_pos, gt_sum


def _divide_nan(num: np.ndarray, den: np.ndarray) -> np.ndarray:
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.divide(num, den)


# --------------------------------------------------------------------------------------------------
# public per-map functions


def resize_to_grid(maps: np.ndarray, mode: str = "bicubic", align_corners: bool = False) -> np.ndarray:
    """Resize (B, H, W) maps to (B, 224, 224) float32 with ``torch.nn.functional.interpolate``.

    Maps already at 224×224 are returned as float32 without resampling (and without a copy when
    they are float32 and C-contiguous). `mode` is ``"bicubic"`` (default) or ``"bilinear"``;
    `align_corners` is passed to torch unchanged (default False). No anti-aliasing.

    Example:
        >>> resize_to_grid(np.ones((3, 7, 9), np.float16)).shape
        (3, 224, 224)
    """
    if mode not in RESIZE_MODES:
        raise ValueError(f"resize mode must be one of {', '.join(RESIZE_MODES)}, got {mode!r}")
    arr = _as_maps(maps)
    if arr.shape[1:] == (GRID, GRID):
        return arr
    import torch  # the only torch use in scoring (protocol §2)

    if arr.shape[0] == 0:
        return np.empty((0, GRID, GRID), np.float32)
    if not arr.flags.writeable:
        arr = arr.copy()
    src = torch.from_numpy(arr).unsqueeze(1)
    with torch.no_grad():
        out = torch.nn.functional.interpolate(src, size=(GRID, GRID), mode=mode, align_corners=bool(align_corners))
    return np.ascontiguousarray(out.squeeze(1).numpy(), dtype=np.float32)


def minmax(maps: np.ndarray) -> np.ndarray:
    """Per-map ``(p - min) / (max - min)`` in float32 (new array); constant maps are unchanged.

    Example:
        >>> minmax(np.array([[[1.0, 3.0]], [[2.0, 2.0]]], np.float32)).tolist()
        [[[0.0, 1.0]], [[2.0, 2.0]]]
    """
    arr = _as_maps(maps)
    out = np.empty_like(arr)
    for p, q in zip(_flat(arr), _flat(out)):
        _minmax_into(p, q)
    return out


def binarize(maps: np.ndarray, mode: str = "top50", threshold: float | None = None) -> np.ndarray:
    """Binary masks (B, H, W) bool from raw maps, per protocol §2.

    `mode` is ``"top50"`` (default), ``"lvs"``, ``"fixed"`` or ``"fixed:T"``; `threshold` is the
    fixed threshold T (default 0.5), compared as float32 (``p >= float32(T)``).
    top50 turns on the ties at the median; a constant map is all on in top50, and in lvs all on when
    ``1 + value >= 1`` in float32: value >= 0, and also negatives of magnitude <= 2**-25, for which
    1 + value rounds to 1.

    Example:
        >>> p = np.arange(4, dtype=np.float32).reshape(1, 2, 2)
        >>> binarize(p, "fixed:1.5").astype(int).tolist()
        [[[0, 0], [1, 1]]]
    """
    mode, threshold = parse_binarization(mode, threshold)
    arr = _as_maps(maps)
    out = np.empty(arr.shape, dtype=bool)
    flat, flat_out = _flat(arr), _flat(out)
    if mode == "fixed":
        np.greater_equal(arr, np.float32(threshold), out=out)
        return out
    n = flat.shape[1]
    if n == 0:
        return out
    k = n // 2
    q = np.empty(n, np.float32)
    scratch = np.empty(n, np.float32)
    transform = _minmax_into if mode == "top50" else _lvs_into
    for p, m in zip(flat, flat_out):
        transform(p, q)
        _mask_from_q(q, _kth(q, k, scratch), mode, m)
    return out


def ciou(masks: np.ndarray, gts: np.ndarray) -> np.ndarray:
    """Senocak's cIoU per map: Σ(mask·gt) / (Σ gt + Σ mask·[gt == 0]), float64 sums, 0/0 → NaN.

    Example:
        >>> m = np.array([[[True, True, False, False]]])
        >>> g = np.array([[[1.0, 0.5, 0.5, 0.0]]], np.float32)
        >>> ciou(m, g).tolist()  # 1.5 / (2.0 + 0)
        [0.75]
    """
    mk = np.asarray(masks)
    if mk.ndim != 3:
        raise ValueError(f"masks must be a (B, H, W) array, got shape {mk.shape}")
    mk = np.ascontiguousarray(mk, dtype=bool)
    gt = _as_gts(gts, mk)
    b = mk.shape[0]
    num = np.empty(b, np.float64)
    den = np.empty(b, np.float64)
    terms = _CiouTerms(mk[0].size if b else 0, gt.dtype)
    for i, (m, g) in enumerate(zip(_flat(mk), _flat(gt))):
        num[i], den[i], _ = terms(m, g)
    return _divide_nan(num, den)


def confidence(maps: np.ndarray) -> np.ndarray:
    """Mean of the ceil(n/4) largest values of each raw map, float32 (B,).

    Bit-identical to SLAVC's ``np.sort(p.ravel())[-n//4:].mean()`` on the float32 map: the top
    quarter is found with an O(n) partition, then sorted ascending so numpy's pairwise float32 sum
    sees the same values in the same order.

    Example:
        >>> confidence(np.arange(8, dtype=np.float32).reshape(1, 2, 4)).tolist()
        [6.5]
    """
    arr = _as_maps(maps)
    flat = _flat(arr)
    out = np.empty(arr.shape[0], np.float32)
    if flat.shape[1] == 0:
        out.fill(np.nan)
        return out
    scratch = np.empty(flat.shape[1], np.float32)
    for i, p in enumerate(flat):
        out[i] = _confidence_1d(p, scratch)
    return out


def pixel_mse(maps: np.ndarray, gts: np.ndarray) -> np.ndarray:
    """Dual Mean-Teacher pixel MSE per map: mean over the grid of (minmax(p) - gt)², float64 (B,).

    minmax, the difference and the square are float32 (per-map arithmetic, protocol §2); the
    mean is a float64 sum divided by n. DMT released no code: this follows its appendix formula.

    Example:
        >>> pixel_mse(np.array([[[0.0, 2.0]]], np.float32), np.array([[[0.0, 0.0]]], np.float32)).tolist()
        [0.5]
    """
    arr = _as_maps(maps)
    gt = _as_gts(gts, arr)
    flat, flat_gt = _flat(arr), _flat(gt)
    out = np.empty(arr.shape[0], np.float64)
    n = flat.shape[1]
    q = np.empty(n, np.float32)
    for i, (p, g) in enumerate(zip(flat, flat_gt)):
        _minmax_into(p, q)
        out[i] = _sq_err_mean(q, g)
    return out


def _sq_err_mean(q: np.ndarray, g: np.ndarray) -> float:
    np.subtract(q, g, out=q, casting="same_kind")
    np.multiply(q, q, out=q)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.add.reduce(q, dtype=np.float64) / q.shape[0]


def area(gts: np.ndarray) -> np.ndarray:
    """GT area Σ gt per map, float64 (B,) (Flickr areas include the 0.5 weights).

    Example:
        >>> area(np.full((1, 4, 4), 0.5, np.float32)).tolist()
        [8.0]
    """
    gt = np.asarray(gts)
    if gt.ndim != 3:
        raise ValueError(f"gts must be a (B, H, W) array, got shape {gt.shape}")
    gt = np.ascontiguousarray(gt)
    return np.array([np.add.reduce(g, dtype=np.float64) for g in _flat(gt)], dtype=np.float64)


def size_bucket(areas: np.ndarray) -> np.ndarray:
    """Size bucket name per GT area: small [0, 32²), medium [32², 96²), large [96², 144²), huge [144², ∞).

    Example:
        >>> size_bucket([0, 1023.5, 1024, 9216, 20736]).tolist()
        ['small', 'small', 'medium', 'large', 'huge']
    """
    a = np.asarray(areas, dtype=np.float64)
    return _BUCKET_NAMES[np.searchsorted(_BUCKET_EDGES, a, side="right")]


# --------------------------------------------------------------------------------------------------
# fused fast path


@dataclass(frozen=True)
class MapScores:
    """Per-sample quantities of one chunk (protocol §3); arrays of length B."""

    ciou: np.ndarray  # float64, NaN for 0/0
    confidence: np.ndarray  # float32, top-quarter mean of the raw map
    area: np.ndarray  # float64, Σ gt
    mse: np.ndarray | None = None  # float64, only when asked for


def per_sample_scores(
    maps: np.ndarray,
    gts: np.ndarray,
    binarization: str = "top50",
    threshold: float | None = None,
    *,
    mse: bool = False,
) -> MapScores:
    """cIoU, confidence, GT area (and optionally pixel MSE) of a chunk of maps in one pass.

    Equal, value for value, to ``ciou(binarize(maps, binarization, threshold), gts)``,
    ``confidence(maps)``, ``area(gts)`` and ``pixel_mse(maps, gts)``, only faster: each map is
    sorted once, and the sorted copy gives min and max, the top quarter for the confidence, and the
    median threshold. minmax and 1 - minmax(-p) are monotone non-decreasing in p (float32 rounding
    keeps that), so the k-th smallest q is the transform of the k-th smallest p; for top50 the mask
    ``q >= s_q[k]`` is then ``p >= s[j]`` with j the first sorted index whose transform reaches
    s_q[k], and q itself is never computed. Resize beforehand (`resize_to_grid`).

    Example:
        >>> maps = np.random.default_rng(1).random((2, 224, 224), dtype=np.float32)
        >>> gts = np.zeros((2, 224, 224), np.float32); gts[:, 50:150, 50:150] = 1
        >>> s = per_sample_scores(maps, gts)
        >>> bool(np.array_equal(s.ciou, ciou(binarize(maps), gts), equal_nan=True))
        True
    """
    mode, threshold = parse_binarization(binarization, threshold)
    arr = _as_maps(maps)
    gt = _as_gts(gts, arr)
    b = arr.shape[0]
    flat, flat_gt = _flat(arr), _flat(gt)
    n = flat.shape[1]
    if n == 0:
        raise ValueError("maps must have at least one pixel")
    k, cut = n // 2, n - _quarter(n)
    fixed_thr = np.float32(threshold) if mode == "fixed" else None

    num = np.empty(b, np.float64)
    den = np.empty(b, np.float64)
    conf = np.empty(b, np.float32)
    areas = np.empty(b, np.float64)
    mses = np.empty(b, np.float64) if mse else None

    s = np.empty(n, np.float32)  # sorted copy of the map
    q = np.empty(n, np.float32)  # transformed map (lvs, literal fallback, MSE)
    window = np.empty(_WINDOW + 1, np.float32)
    mask = np.empty(n, bool)
    terms = _CiouTerms(n, gt.dtype)
    for i, (p, g) in enumerate(zip(flat, flat_gt)):
        np.copyto(s, p)
        s.sort()
        lo, hi = s[0], s[n - 1]
        with np.errstate(over="ignore"):
            conf[i] = s[cut:].mean()
            finite_span = bool(np.isfinite(hi - lo))
        if mode == "fixed":
            np.greater_equal(p, fixed_thr, out=mask)
        elif not finite_span:  # max - min overflows float32 (NaNs in q): literal path
            transform = _minmax_into if mode == "top50" else _lvs_into
            transform(p, q)
            _mask_from_q(q, _kth(q, k, s), mode, mask)
        elif mode == "top50":
            if lo == hi:  # constant map: q = p, all q >= s_q[k]
                mask.fill(True)
            else:
                np.greater_equal(p, s[_top50_cut(s, k, lo, hi, window)], out=mask)
        else:
            _lvs_into(p, q, lo, hi)
            _lvs_into(s[k : k + 1], window[:1], lo, hi)  # k-th smallest q, same float32 kernels
            _mask_from_q(q, window[0], mode, mask)
        num[i], den[i], areas[i] = terms(mask, g)
        if mses is not None:
            _minmax_into(p, q, lo, hi)
            mses[i] = _sq_err_mean(q, g)
    return MapScores(ciou=_divide_nan(num, den), confidence=conf, area=areas, mse=mses)


_WINDOW = 64


def _top50_cut(s: np.ndarray, k: int, lo, hi, window: np.ndarray) -> int:
    """First index j of sorted `s` with minmax(s[j]) >= minmax(s[k]), so that the top50 mask is p >= s[j].

    minmax is monotone, so minmax(s) is sorted and j is a searchsorted; values below s[k] can share
    the threshold only through float32 rounding, so a short window below k almost always holds j.
    """
    j0 = max(0, k - _WINDOW)
    part = window[: k + 1 - j0]
    _minmax_into(s[j0 : k + 1], part, lo, hi)
    t = part[-1]
    if part[0] < t or j0 == 0:
        return j0 + int(np.searchsorted(part, t, side="left"))
    full = np.empty(k + 1, np.float32)  # rounding collisions reach below the window: look at all
    _minmax_into(s[: k + 1], full, lo, hi)
    return int(np.searchsorted(full, t, side="left"))
