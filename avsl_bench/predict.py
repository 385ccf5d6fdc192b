"""Prediction archives from predictors that need no trained weights (Center Prior)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from .benchmarks.load import BenchmarkData
from .models.center_prior import center_prior_map
from .scoring.submission import write_submission

CHUNK = 256


def predict_center_prior(bench: BenchmarkData, out: str | Path, *, compressed: bool = True) -> Path:
    """Write the Center Prior map for every sample of `bench` (layout (a), float32, 224×224)."""
    single = center_prior_map()
    n = len(bench.ids)
    chunks = (np.broadcast_to(single, (min(CHUNK, n - start), *single.shape)) for start in range(0, n, CHUNK))
    write_submission(out, bench.ids, chunks, compressed=compressed)
    return Path(out)
