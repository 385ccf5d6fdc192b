"""Cross-modal retrieval by class: Recall@k audio→image and image→audio (pure numpy, chunked).

Convention (stated in every result as `CONVENTION`): each of the N samples contributes one query (its embedding
in the query modality) and one gallery item (its embedding in the other modality). Similarity is the cosine
(rows L2-normalised in float64). A gallery item is relevant to a query when both samples have the same class;
the query's own pair is a gallery item of its class and is **not** excluded, and nothing else is excluded either.
The gallery is ranked by decreasing similarity, ties broken by gallery index (stable: the lower index ranks
first). R@k is the share of queries with at least one relevant item among their top k.

Memory stays bounded: similarities are computed for blocks of queries × blocks of gallery items, and the rank of
the best relevant item is counted without sorting (O(N) per query), so N ≈ 20k needs a few hundred MB at most
(the normalised float64 gallery is kept whole when it fits 256 MB).

Example:
    >>> import numpy as np
    >>> audio = np.array([[1.0, 0.0], [0.0, 1.0], [1.0, 0.1]])
    >>> image = np.array([[0.0, 1.0], [0.0, 1.0], [1.0, 0.0]])  # sample 1's query ties with item 0, ranked first
    >>> recall_at_k(audio, image, ["dog", "cat", "dog"], ks=(1, 2))
    {1: 0.6666666666666666, 2: 1.0}
"""

from __future__ import annotations

from typing import Sequence

import numpy as np

__all__ = ["CONVENTION", "DEFAULT_KS", "recall_at_k", "cross_modal_recall"]

CONVENTION = ("cosine similarity; relevant = same class; the query's own pair is a gallery item of its class "
              "and nothing is excluded; ties ranked by gallery index (stable); R@k = share of queries with a "
              "relevant item in their top k")
DEFAULT_KS = (1, 5, 10)

_BLOCK_BYTES = 32 << 20  # float64 bytes of one similarity block / one converted embedding block
_GALLERY_BYTES = 256 << 20  # a normalised float64 gallery up to this size is converted once, not per block


def _class_codes(labels: Sequence, n: int) -> np.ndarray:
    labels = list(labels)
    if len(labels) != n:
        raise ValueError(f"labels: {len(labels)} labels for {n} embeddings")
    if any(label is None for label in labels):
        raise ValueError("labels must not contain None (drop samples without a class first)")
    codes: dict = {}
    return np.fromiter((codes.setdefault(label, len(codes)) for label in labels), dtype=np.int64, count=n)


def _inverse_norms(x: np.ndarray, name: str) -> np.ndarray:
    norms = np.empty(len(x), dtype=np.float64)
    step = max(1, _BLOCK_BYTES // (8 * x.shape[1]))
    for start in range(0, len(x), step):
        norms[start : start + step] = np.linalg.norm(x[start : start + step].astype(np.float64), axis=1)
    if not np.isfinite(norms).all():
        raise ValueError(f"{name}: embeddings must be finite")
    if (norms == 0).any():
        raise ValueError(f"{name}: row {int(np.argmin(norms))} is all zeros (cosine similarity undefined)")
    return 1.0 / norms


def _check(queries: np.ndarray, gallery: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    q, g = np.asarray(queries), np.asarray(gallery)
    for name, x in (("queries", q), ("gallery", g)):
        if x.ndim != 2 or x.shape[0] == 0 or x.shape[1] == 0:
            raise ValueError(f"{name} must be a non-empty (N, D) array, got shape {x.shape}")
        if x.dtype.kind not in "fiu":
            raise ValueError(f"{name} must be numeric, got dtype {x.dtype}")
    if q.shape != g.shape:
        raise ValueError(f"queries and gallery must have the same (N, D) shape, got {q.shape} and {g.shape}")
    return q, g


def _best_relevant(block: np.ndarray, query_codes: np.ndarray, members: dict[int, np.ndarray]
                   ) -> tuple[np.ndarray, np.ndarray]:
    """Per query row: the highest similarity over its class's gallery items, and the lowest index reaching it."""
    best = np.empty(len(block), dtype=np.float64)
    first = np.empty(len(block), dtype=np.int64)
    for code in np.unique(query_codes).tolist():
        rows = np.flatnonzero(query_codes == code)
        items = members[code]  # every query has one: its own pair
        sub = block[np.ix_(rows, items)]
        best[rows] = sub.max(axis=1)
        first[rows] = items[np.argmax(sub == best[rows, None], axis=1)]
    return best, first


def _best_relevant_ranks(queries: np.ndarray, gallery: np.ndarray, codes: np.ndarray) -> np.ndarray:
    """0-based rank of each query's best-ranked relevant gallery item (ties by index)."""
    n, d = queries.shape
    q_inv, g_inv = _inverse_norms(queries, "queries"), _inverse_norms(gallery, "gallery")
    q_rows = max(1, min(n, _BLOCK_BYTES // (8 * max(n, d))))
    g_rows = max(1, min(n, _BLOCK_BYTES // (8 * d)))
    whole = n * d * 8 <= _GALLERY_BYTES
    if whole:
        g_rows = n
        normalised = gallery.astype(np.float64) * g_inv[:, None]
    order = np.argsort(codes, kind="stable")  # gallery indices grouped by class, ascending within a class
    bounds = np.flatnonzero(np.diff(codes[order])) + 1
    members = dict(zip(codes[order][np.r_[0, bounds]].tolist(), np.split(order, bounds)))
    ranks = np.empty(n, dtype=np.int64)
    sims = np.empty((q_rows, n), dtype=np.float64)
    for qs in range(0, n, q_rows):
        qe = min(n, qs + q_rows)
        q_block = queries[qs:qe].astype(np.float64) * q_inv[qs:qe, None]
        block = sims[: qe - qs]
        for gs in range(0, n, g_rows):
            ge = min(n, gs + g_rows)
            g_block = normalised if whole else gallery[gs:ge].astype(np.float64) * g_inv[gs:ge, None]
            np.matmul(q_block, g_block.T, out=block[:, gs:ge])
        best, first = _best_relevant(block, codes[qs:qe], members)
        greater = np.count_nonzero(block > best[:, None], axis=1)
        tie_rows, tie_cols = np.nonzero(block == best[:, None])  # few: exact ties only
        before = np.bincount(tie_rows[tie_cols < first[tie_rows]], minlength=qe - qs)
        ranks[qs:qe] = greater + before
    return ranks


def recall_at_k(queries: np.ndarray, gallery: np.ndarray, labels: Sequence, ks: Sequence[int] = DEFAULT_KS
                ) -> dict[int, float]:
    """R@k for row-aligned queries / gallery (N, D) of N samples with class `labels` (module convention).

    Args:
        queries: (N, D) embeddings in the query modality (any real dtype; computed in float64).
        gallery: (N, D) embeddings in the other modality; row i is the pair of query i.
        labels: N hashable class labels (no None).
        ks: cut-offs, each ≥ 1.
    """
    q, g = _check(queries, gallery)
    codes = _class_codes(labels, len(q))
    ks = [int(k) for k in ks]
    if not ks or any(k < 1 for k in ks):
        raise ValueError(f"ks must be integers ≥ 1, got {ks}")
    ranks = _best_relevant_ranks(q, g, codes)
    return {k: float(np.mean(ranks < k)) for k in ks}


def cross_modal_recall(audio: np.ndarray, image: np.ndarray, labels: Sequence, ks: Sequence[int] = DEFAULT_KS
                       ) -> dict[str, dict[int, float]]:
    """Both directions: ``{"audio_to_image": {k: R@k}, "image_to_audio": {k: R@k}}``."""
    return {"audio_to_image": recall_at_k(audio, image, labels, ks),
            "image_to_audio": recall_at_k(image, audio, labels, ks)}
