"""Fixtures: real result files on `synthetic-tiny-ext` (scored like `avsl-bench score --out` does) and a store."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from avsl_bench.benchmarks.load import load_benchmark
from avsl_bench.scoring.result import write_result
from avsl_bench.scoring.score import MethodInfo, ScoreOptions, score
from avsl_bench.scoring.submission import write_submission

TINY = "synthetic-tiny-ext"
XSS = "<script>alert(1)</script>"
QUOTES = "Q\" onmouseover=\"alert(2)' |pipe| $x_1$"

#: name → (method, map noise, checkpoint selection, leaky flag)
RUNS = {
    "good": ("SLAVC", 0.3, "final", False),
    "xss": (XSS, 0.7, "final", True),
    "quotes": (QUOTES, 1.0, "final", None),
}

OVERFIT = {"schema": "avsl-bench/overfit@1", "split": "val", "epochs": [1, 2, 3, 4, 5],
           "scores": {"loc_acc": [0.30, 0.52, 0.61, 0.57, 0.55], "auc": [0.35, 0.45, 0.52, 0.50, 0.49]}}


def _maps(bench, noise: float, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    gts = bench.gt_maps(range(len(bench.ids)))
    maps = gts + noise * rng.standard_normal(gts.shape).astype(np.float32)
    maps[~bench.positive] *= 0.1
    return maps.astype(np.float32)


@pytest.fixture(scope="session")
def tiny():
    return load_benchmark(TINY)


@pytest.fixture(scope="session")
def results(tmp_path_factory, tiny) -> dict[str, Path]:
    """name → result.json (parquet beside it), scored with the default 1,000 bootstrap resamples; `early` is `good`
    declared as early-stopped."""
    root = tmp_path_factory.mktemp("results")
    out = {}
    for i, (key, (method, noise, selection, leaky)) in enumerate(RUNS.items()):
        run = root / key
        run.mkdir()
        write_submission(run / "preds.npz", tiny.ids, _maps(tiny, noise, seed=i))
        info = MethodInfo(name=method, training_set="synthetic-tiny", training_set_leaky=leaky,
                          checkpoint_selection=selection, extra={"recipe": f"{key}-recipe", "seed": i})
        result, table = score(run / "preds.npz", tiny, ScoreOptions(), info)
        write_result(run / "result.json", result, table)
        out[key] = run / "result.json"
    # an early-stopped run: refused on its declaration, before any re-scoring, so its maps do not matter
    early = root / "early"
    shutil.copytree(out["good"].parent, early)
    data = json.loads((early / "result.json").read_text())
    data["method"].update(name="EZ-VSL", checkpoint_selection="early_stopping")
    (early / "result.json").write_text(json.dumps(data, indent=2))
    out["early"] = early / "result.json"
    (out["good"].parent / "overfit.json").write_text(json.dumps(OVERFIT))
    return out


@pytest.fixture
def result_copy(tmp_path, results):
    """Copy one result (json + parquet + overfit.json) into a fresh folder to tamper with."""

    def copy(key: str) -> Path:
        target = tmp_path / f"copy-{key}"
        shutil.copytree(results[key].parent, target)
        return target / "result.json"

    return copy


@pytest.fixture(scope="session")
def store(tmp_path_factory, results, tiny) -> Path:
    """A store holding the three acceptable results."""
    from avsl_bench.leaderboard.store import add_result

    root = tmp_path_factory.mktemp("store")
    for key in ("good", "xss", "quotes"):
        add_result(results[key], root, bench=tiny)
    return root
