"""Stream a submission through the per-map protocol, producing the per-sample table."""

from __future__ import annotations

import os
from collections import deque
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import numpy as np
import pandas as pd

from ..benchmarks.load import BenchmarkData
from ..errors import UsageError
from . import maps as mapops
from .submission import Submission, validate_ids

RESIZE_MODES = ("bicubic", "bilinear")


@dataclass(frozen=True)
class MapOptions:
    """How submitted maps become binary masks and confidences (recorded in the result)."""

    binarize: str = "top50"
    resize: str = "bicubic"
    align_corners: bool = False

    def __post_init__(self) -> None:
        try:
            mapops.parse_binarization(self.binarize)
        except ValueError as exc:
            raise UsageError(f"--binarize must be top50, lvs or fixed:T ({exc})") from None
        if self.resize not in RESIZE_MODES:
            raise UsageError(f"--resize must be one of {RESIZE_MODES}, got {self.resize!r}")


def _workers() -> int:
    return max(1, min(4, os.cpu_count() or 1))


def per_sample_table(
    submission: Submission, bench: BenchmarkData, options: MapOptions, *, allow_missing: bool, chunk_size: int = 128
) -> pd.DataFrame:
    """One row per benchmark sample (evaluation order): cIoU, confidence, MSE, type, size bucket, missing.

    Chunks are decompressed by the submission's reader thread and scored by a small thread pool (numpy
    releases the GIL in its kernels), with a bounded number of chunks in flight so memory stays flat in N.
    Missing samples (only with `allow_missing`) count as failures: cIoU 0 and the lowest confidence.
    """
    missing = set(validate_ids(submission, bench.ids, allow_missing))
    n = len(bench.ids)
    ciou = np.zeros(n, dtype=np.float64)
    conf = np.full(n, -np.inf, dtype=np.float64)
    mse = np.full(n, np.nan, dtype=np.float64)
    seen = np.zeros(n, dtype=bool)
    score_of = dict(zip(submission.ids, submission.scores.astype(np.float64))) if submission.scores is not None else None

    def score_chunk(chunk_ids: list[str], maps: np.ndarray) -> tuple[np.ndarray, mapops.MapScores]:
        rows = np.fromiter((bench.index[i] for i in chunk_ids), dtype=np.int64, count=len(chunk_ids))
        maps = mapops.resize_to_grid(maps, options.resize, options.align_corners)
        positive = bench.positive[rows]  # MSE is a positives-only metric (protocol §3)
        return rows, mapops.per_sample_scores(maps, bench.gt_maps(rows), options.binarize, mse=positive)

    def collect(future) -> None:
        rows, scores = future.result()
        ciou[rows] = scores.ciou
        conf[rows] = [score_of[bench.ids[r]] for r in rows] if score_of is not None else scores.confidence
        mse[rows] = scores.mse
        seen[rows] = True

    workers = _workers()
    with ThreadPoolExecutor(max_workers=workers) as pool:
        # the table's per-sample GT areas and size buckets (lazy, ~1 s) are computed while the first
        # chunks are read, not after the last one
        described = pool.submit(lambda: (bench.areas, bench.size_buckets))
        in_flight: deque = deque()
        for chunk_ids, maps in submission.iter_chunks(chunk_size=chunk_size):
            in_flight.append(pool.submit(score_chunk, chunk_ids, maps))
            while len(in_flight) > workers:
                collect(in_flight.popleft())
        while in_flight:
            collect(in_flight.popleft())
        described.result()
    table = pd.DataFrame(
        {
            "id": bench.ids,
            "positive": bench.positive,
            "negative_type": pd.Series(bench.negative_type, dtype="string"),
            "size_bucket": bench.size_buckets,
            "area": bench.areas,
            "ciou": ciou,
            "confidence": conf,
            "mse": mse,
            "missing": ~seen,
        }
    )
    for name, members in bench.strata_members.items():
        table[f"in_{name}"] = members
    assert set(np.flatnonzero(~seen)) == {bench.index[i] for i in missing}, "every non-missing sample is scored"
    return table
