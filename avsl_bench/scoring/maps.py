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

The work is vectorised over blocks of a few maps (rows of a 2-D array; a block stays in the CPU cache
across its passes): one ``np.sort`` per block, per-row thresholds as (m, 1) columns, pixel counts
for the cIoU. Only rare rows leave the vectorised path (max - min overflowing float32, top50 ties
from rounding that reach far below the median, GT values other than 0, 0.5 and 1), and they are
computed by the same float32 kernels. `per_sample_scores` is the fused fast path used by the scorer:
the sorted block serves the threshold, the confidence and the min/max at once; it returns exactly
what the separate functions return.

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

from collections.abc import Iterator
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
# block kernels: 2-D float32 blocks (m, n), one flattened map per row; per-row scalars are (m,) arrays

_BLOCK = 8
"""Maps per vectorised block: a few 200 KB rows, so the passes over one block stay in the CPU cache."""

_WINDOW = 64
"""Sorted values below the median searched for top50 threshold ties before looking at all of them."""

_bitwise_count = getattr(np, "bitwise_count", None)  # numpy >= 2.0


def _row_blocks(b: int) -> Iterator[slice]:
    return (slice(start, min(start + _BLOCK, b)) for start in range(0, b, _BLOCK))


def _count_rows(flags: np.ndarray) -> np.ndarray:
    """Number of True values in each row of a C-contiguous (m, n) bool array, as int64 (m,)."""
    if _bitwise_count is not None and flags.shape[1] % 8 == 0 and flags.flags.c_contiguous:
        return _bitwise_count(flags.view(np.uint64)).sum(axis=1, dtype=np.int64)  # one bit per True byte
    return np.count_nonzero(flags, axis=1).astype(np.int64)


def _f64_row_sums(a: np.ndarray) -> np.ndarray:
    """``np.add.reduce(row, dtype=float64)`` for each row, in the same summation order as on one row."""
    return np.add.reduce(a, axis=1, dtype=np.float64)


def _span_params(lo: np.ndarray, hi: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(offset, scale) per row so that minmax(p) = (p - offset) / scale in float32.

    (lo, hi - lo), the reference's float32 arithmetic; (0, 1) for a constant row, which minmax leaves
    unchanged (p - 0 and p / 1 are exact). A NaN span (inf maps) is not 0: normalised, like the reference.
    """
    with np.errstate(over="ignore", invalid="ignore"):
        span = hi - lo
    const = span == 0
    return np.where(const, np.float32(0), lo)[:, None], np.where(const, np.float32(1), span)[:, None]


def _minmax_rows(p: np.ndarray, lo: np.ndarray, hi: np.ndarray, out: np.ndarray) -> np.ndarray:
    """out = (p - min) / (max - min) per row in float32 (constant rows copied); `lo`/`hi` are the row min/max."""
    offset, scale = _span_params(lo, hi)
    with np.errstate(over="ignore", invalid="ignore"):
        np.subtract(p, offset, out=out)
        np.divide(out, scale, out=out)
    return out


def _lvs_rows(p: np.ndarray, lo: np.ndarray, hi: np.ndarray, out: np.ndarray) -> np.ndarray:
    """out = 1 - minmax(-p) per row in float32, literally as the LVS test script computes it.

    `lo`/`hi` are min/max of p (not of -p): min(-p) = -max(p) and max(-p) = -min(p) exactly.
    """
    offset, scale = _span_params(-hi, -lo)
    with np.errstate(over="ignore", invalid="ignore"):
        np.negative(p, out=out)
        np.subtract(out, offset, out=out)
        np.divide(out, scale, out=out)
        np.subtract(np.float32(1), out, out=out)
    return out


def _finite_span(lo: np.ndarray, hi: np.ndarray) -> np.ndarray:
    with np.errstate(over="ignore", invalid="ignore"):
        return np.isfinite(hi - lo)


def _kth(values: np.ndarray, k: int) -> np.float32:
    """The k-th smallest value (0-based) of a 1-D array, i.e. sort(values)[k] (NaNs sort last)."""
    return np.partition(values, k)[k]


def _mask_from_q(q: np.ndarray, thr, mode: str, out: np.ndarray) -> None:
    if mode == "top50":
        np.greater_equal(q, thr, out=out)
    else:  # lvs: (q > thr) | (q >= 1), written as the LVS script does it so that NaN counts as on
        np.greater(q, thr, out=out)
        out |= ~(q < np.float32(1))


def _top50_thresholds(s: np.ndarray, lo: np.ndarray, hi: np.ndarray, k: int, finite: np.ndarray) -> np.ndarray:
    """Raw threshold per row of a row-sorted block: p >= thr ⇔ minmax(p) >= sort(minmax(p))[k].

    minmax is monotone non-decreasing in float32 (rounding keeps that), so sort(minmax(p))[k] is
    minmax(s[k]) and the mask is p >= s[j], j the first sorted index whose minmax reaches minmax(s[k]).
    Values below s[k] share it only through rounding, so j is almost always in a short window below k;
    rows where the ties reach further are searched in full. A constant row gives s[0] (all on).
    Rows without a finite span (``finite`` False) get meaningless values: the caller handles them.
    """
    m = s.shape[0]
    j0 = max(0, k - _WINDOW)
    window = _minmax_rows(s[:, j0 : k + 1], lo, hi, np.empty((m, k + 1 - j0), np.float32))
    first = np.argmax(window >= window[:, -1:], axis=1)
    thr = s[np.arange(m), j0 + first]
    if j0 > 0:
        for r in np.flatnonzero((first == 0) & (hi != lo) & finite):
            row = slice(r, r + 1)
            full = _minmax_rows(s[row, : k + 1], lo[row], hi[row], np.empty((1, k + 1), np.float32))[0]
            thr[r] = s[r, np.argmax(full >= full[-1])]
    return thr


def _mask_rows(p: np.ndarray, s: np.ndarray | None, mode: str, threshold: float | None, out: np.ndarray) -> np.ndarray:
    """Binary masks of a block (protocol §2) into `out`; `s` is the row-sorted block (None for fixed)."""
    if mode == "fixed":
        np.greater_equal(p, np.float32(threshold), out=out)
        return out
    k = p.shape[1] // 2
    lo, hi = s[:, 0], s[:, -1]
    finite = _finite_span(lo, hi)
    if mode == "top50":
        np.greater_equal(p, _top50_thresholds(s, lo, hi, k, finite)[:, None], out=out)
    else:  # the k-th smallest q is the transform of the k-th smallest p (monotone), same float32 kernels
        q = _lvs_rows(p, lo, hi, np.empty_like(p))
        _mask_from_q(q, _lvs_rows(s[:, k : k + 1], lo, hi, np.empty((p.shape[0], 1), np.float32)), mode, out)
    transform = _minmax_rows if mode == "top50" else _lvs_rows
    for r in np.flatnonzero(~finite):  # max - min overflows float32: NaNs in q, so threshold literally
        q_row = transform(p[r : r + 1], lo[r : r + 1], hi[r : r + 1], np.empty((1, p.shape[1]), np.float32))[0]
        _mask_from_q(q_row, _kth(q_row, k), mode, out[r])
    return out


def _top_quarter_means(s: np.ndarray) -> np.ndarray:
    """SLAVC's confidence ``np.sort(p)[-ceil(n/4):].mean()`` per row of a row-sorted block, float32.

    numpy's float32 mean over the last axis sums each row pairwise exactly as it sums one 1-D row,
    so the values are bit-identical to the per-map reference.
    """
    with np.errstate(over="ignore", invalid="ignore"):  # |values| near float32 max: inf, like the reference
        return s[:, s.shape[1] - _quarter(s.shape[1]) :].mean(axis=1)


def _ciou_terms(mask: np.ndarray, gt: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Numerator Σ(mask·gt), denominator Σ gt + Σ mask·[gt == 0] and area Σ gt per row, float64.

    GTs of the protocol hold only 0, 0.5 and 1: then every sum is exact and equals a (half) count, so
    the terms are counts of pixels (the same float64 values, much faster). Rows with other GT values
    take the general path: float64 sums of the exact products mask·gt.
    """
    one, zero = gt == 1, gt == 0
    n_one, n_zero, n_mask = _count_rows(one), _count_rows(zero), _count_rows(mask)
    inter_one = _count_rows(np.logical_and(mask, one, out=one))
    num = inter_one.astype(np.float64)
    den = (n_one + n_mask - inter_one).astype(np.float64)  # Σ gt + Σ mask·[gt == 0], GT binary
    area = n_one.astype(np.float64)
    rest = np.flatnonzero(n_one + n_zero != gt.shape[1])
    if rest.size:  # Flickr consensus (0.5) or arbitrary GT values
        m, g = mask[rest], gt[rest]
        half = g == 0.5
        n_half = _count_rows(half)
        inter_half = _count_rows(np.logical_and(m, half, out=half))
        false_pos = n_mask[rest] - _count_rows(np.logical_and(m, ~zero[rest]))
        area[rest] = n_one[rest] + 0.5 * n_half
        num[rest] = inter_one[rest] + 0.5 * inter_half
        general = np.flatnonzero(n_one[rest] + n_zero[rest] + n_half != gt.shape[1])
        if general.size:
            g = g[general]
            area[rest[general]] = _f64_row_sums(g)
            num[rest[general]] = _f64_row_sums(np.multiply(g, m[general], dtype=g.dtype))  # exact: gt·1 or gt·0
        den[rest] = area[rest] + false_pos
    return num, den, area


def _sq_err_means(p: np.ndarray, gt: np.ndarray, lo: np.ndarray, hi: np.ndarray) -> np.ndarray:
    """Mean over each row of (minmax(p) - gt)², float32 differences and squares, float64 sum / n."""
    q = _minmax_rows(p, lo, hi, np.empty(p.shape, np.float32))
    with np.errstate(over="ignore", invalid="ignore", divide="ignore"):
        np.subtract(q, gt, out=q, casting="same_kind")
        np.multiply(q, q, out=q)
        return _f64_row_sums(q) / q.shape[1]


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
    flat, flat_out = _flat(arr), _flat(out)
    for rows in _row_blocks(arr.shape[0]):
        p = flat[rows]
        _minmax_rows(p, p.min(axis=1), p.max(axis=1), flat_out[rows])
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
    if flat.shape[1] == 0:
        return out
    for rows in _row_blocks(arr.shape[0]):
        p = flat[rows]
        _mask_rows(p, None if mode == "fixed" else np.sort(p, axis=1), mode, threshold, flat_out[rows])
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
    out = np.empty(mk.shape[0], np.float64)
    flat, flat_gt = _flat(mk), _flat(gt)
    for rows in _row_blocks(mk.shape[0]):
        num, den, _ = _ciou_terms(flat[rows], flat_gt[rows])
        out[rows] = _divide_nan(num, den)
    return out


def confidence(maps: np.ndarray) -> np.ndarray:
    """Mean of the ceil(n/4) largest values of each raw map, float32 (B,).

    Bit-identical to SLAVC's ``np.sort(p.ravel())[-n//4:].mean()`` on the float32 map (same sorted
    values, same pairwise float32 summation).

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
    for rows in _row_blocks(arr.shape[0]):
        out[rows] = _top_quarter_means(np.sort(flat[rows], axis=1))
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
    for rows in _row_blocks(arr.shape[0]):
        p = flat[rows]
        out[rows] = _sq_err_means(p, flat_gt[rows], p.min(axis=1), p.max(axis=1))
    return out


def area(gts: np.ndarray) -> np.ndarray:
    """GT area Σ gt per map, float64 (B,) (Flickr areas include the 0.5 weights).

    Example:
        >>> area(np.full((1, 4, 4), 0.5, np.float32)).tolist()
        [8.0]
    """
    gt = np.asarray(gts)
    if gt.ndim != 3:
        raise ValueError(f"gts must be a (B, H, W) array, got shape {gt.shape}")
    return _f64_row_sums(_flat(np.ascontiguousarray(gt)))


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
    mse: np.ndarray | None = None  # float64, only when asked for (NaN for maps not asked for)


def per_sample_scores(
    maps: np.ndarray,
    gts: np.ndarray,
    binarization: str = "top50",
    threshold: float | None = None,
    *,
    mse: bool | np.ndarray = False,
) -> MapScores:
    """cIoU, confidence, GT area (and optionally pixel MSE) of a chunk of maps in one pass.

    Equal, value for value, to ``ciou(binarize(maps, binarization, threshold), gts)``,
    ``confidence(maps)``, ``area(gts)`` and ``pixel_mse(maps, gts)``, only faster: each block of
    maps is sorted once (one ``np.sort`` over its rows), and the sorted rows give min and max, the
    top quarter for the confidence and the median threshold. `mse` is True (every map), False, or a
    (B,) bool array selecting the maps whose MSE is wanted (NaN for the others, e.g. negatives).
    Resize beforehand (`resize_to_grid`). Large numpy calls release the GIL, so threads scoring
    different chunks run in parallel.

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
    if flat.shape[1] == 0:
        raise ValueError("maps must have at least one pixel")
    want_mse = None if np.ndim(mse) == 0 and not mse else np.broadcast_to(np.asarray(mse, dtype=bool), (b,))

    num = np.empty(b, np.float64)
    den = np.empty(b, np.float64)
    conf = np.empty(b, np.float32)
    areas = np.empty(b, np.float64)
    mses = np.full(b, np.nan) if want_mse is not None else None
    mask = np.empty((min(b, _BLOCK), flat.shape[1]), bool)
    for rows in _row_blocks(b):
        p, g = flat[rows], flat_gt[rows]
        s = np.sort(p, axis=1)
        conf[rows] = _top_quarter_means(s)
        m = _mask_rows(p, s, mode, threshold, mask[: p.shape[0]])
        num[rows], den[rows], areas[rows] = _ciou_terms(m, g)
        if want_mse is not None:
            sel = np.flatnonzero(want_mse[rows])
            if sel.size == p.shape[0]:
                mses[rows] = _sq_err_means(p, g, s[:, 0], s[:, -1])
            elif sel.size:
                mses[rows.start + sel] = _sq_err_means(p[sel], g[sel], s[sel, 0], s[sel, -1])
    return MapScores(ciou=_divide_nan(num, den), confidence=conf, area=areas, mse=mses)
