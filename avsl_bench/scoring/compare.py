"""Paired bootstrap between two results on the same benchmark, sample by sample."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from ..errors import ResultFileError
from . import bootstrap
from .metrics import metric_values
from .result import read_result


def _aligned(a: pd.DataFrame, b: pd.DataFrame, names: tuple[str, str]) -> tuple[pd.DataFrame, pd.DataFrame]:
    if len(a) != len(b) or set(a["id"]) != set(b["id"]):
        raise ResultFileError(f"{names[0]} and {names[1]} were scored on different samples")
    b = b.set_index("id").loc[a["id"]].reset_index()
    if not np.array_equal(a["positive"].to_numpy(), b["positive"].to_numpy()):
        raise ResultFileError(f"{names[0]} and {names[1]} disagree on which samples are positives")
    return a, b


def compare_results(path_a: str | Path, path_b: str | Path, *, n_resamples: int = 1000, seed: int = 0,
                    level: float = 0.95) -> dict[str, dict]:
    """For each metric: value A, value B, B − A and the paired-bootstrap CI of B − A (same resamples for both)."""
    result_a, table_a = read_result(path_a)
    result_b, table_b = read_result(path_b)
    if result_a["protocol"] != result_b["protocol"]:
        raise ResultFileError(f"{path_a} is {result_a['protocol']} but {path_b} is {result_b['protocol']}")
    if result_a["benchmark"]["ground_truth_sha256"] != result_b["benchmark"]["ground_truth_sha256"]:
        raise ResultFileError(f"{path_a} and {path_b} were scored against different ground truth")
    table_a, table_b = _aligned(table_a, table_b, (str(path_a), str(path_b)))
    gamma = result_a["options"]["gamma"]
    extended = result_a["counts"]["negatives"] > 0
    weights = bootstrap.resample_weights(table_a["positive"].to_numpy(bool), n_resamples=n_resamples, seed=seed)
    point_a = metric_values(table_a, gamma=gamma, extended=extended, seed=seed)
    point_b = metric_values(table_b, gamma=gamma, extended=extended, seed=seed)
    boot_a = metric_values(table_a, gamma=gamma, extended=extended, seed=seed, weights=weights)
    boot_b = metric_values(table_b, gamma=gamma, extended=extended, seed=seed, weights=weights)
    out = {}
    for key in point_a:
        if key.startswith("strata."):
            continue
        diff = np.asarray(boot_b[key], dtype=np.float64) - np.asarray(boot_a[key], dtype=np.float64)
        lo, hi = bootstrap.percentile_ci(diff, level)
        out[key] = {"a": float(point_a[key]), "b": float(point_b[key]),
                    "difference": float(point_b[key]) - float(point_a[key]), "ci95": [lo, hi]}
    return out
