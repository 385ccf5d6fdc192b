"""Evaluation of trained runs for calibration and regression pins (baselines spec §3.8).

`evaluate_run` predicts a run's maps on a positives (+ negatives) directory, scores them with the benchmark's
protocol, and scores the two audio controls (`controls.py`) against the true boxes. `synthetic_split_benchmark`
builds the ground truth of any synthetic split (e.g. `val`, which calibration uses so that the test set is only
read for the final report).
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import Any, Sequence


__all__ = ["synthetic_split_benchmark", "score_archive", "evaluate_run", "center_prior_metrics"]

METRICS = ("loc_acc", "auc", "ap", "max_f1")


def synthetic_split_benchmark(size: str = "synthetic", split: str = "test", *, negatives: bool = False):
    """BenchmarkData of one synthetic split (positives in key order, then negatives)."""
    from ..benchmarks.load import load_synthetic_split
    from ..benchmarks.spec import get_spec

    return load_synthetic_split(get_spec(f"{size}-ext" if negatives else size), split)


def score_archive(path: str | os.PathLike, bench, *, allow_missing: bool = False, method=None) -> dict[str, float]:
    """The point values of the benchmark's metrics for one archive (no bootstrap)."""
    from ..scoring.score import MethodInfo, ScoreOptions, score

    result, _ = score(path, bench, ScoreOptions(bootstrap=0, allow_missing=allow_missing), method or MethodInfo())
    return {k: v["value"] for k, v in result["metrics"].items()}


def center_prior_metrics(bench) -> dict[str, float]:
    """Center Prior (§3.1) on a benchmark."""
    from ..predict import predict_center_prior

    with tempfile.TemporaryDirectory(prefix="avsl-cp-") as tmp:
        path = predict_center_prior(bench, Path(tmp) / "cp.npz", compressed=False)
        return score_archive(path, bench)


def evaluate_run(
    run_dir: str | os.PathLike,
    positives: str | os.PathLike,
    bench,
    *,
    negatives: str | os.PathLike | None = None,
    bench_positives=None,
    controls: Sequence[str] = ("distractor", "shuffle"),
    device: str = "auto",
    workers: int = 2,
    keep: str | os.PathLike | None = None,
) -> dict[str, Any]:
    """Metrics of a run: its maps on `positives` (+ `negatives`) scored with `bench`, plus each control's LocAcc and
    AUC scored with `bench_positives` (the positives-only benchmark; default `bench`). Archives are written under
    `keep` (kept) or a temp dir."""
    from .controls import predict_control
    from .predict import predict

    out: dict[str, Any] = {}
    with tempfile.TemporaryDirectory(prefix="avsl-eval-") as tmp:
        where = Path(keep) if keep is not None else Path(tmp)
        where.mkdir(parents=True, exist_ok=True)
        data = [positives] + ([negatives] if negatives is not None else [])
        predict(run_dir, data, where / "preds.npz", device=device, workers=workers)
        values = score_archive(where / "preds.npz", bench)
        out.update({k: values[k] for k in METRICS if k in values})
        for kind in controls:
            archive = where / f"control-{kind}.npz"
            predict_control(run_dir, positives, archive, kind, device=device, workers=workers)
            ctrl = score_archive(archive, bench_positives or bench, allow_missing=True)
            out[f"{kind}_loc_acc"], out[f"{kind}_auc"] = ctrl["loc_acc"], ctrl["auc"]
    return out
