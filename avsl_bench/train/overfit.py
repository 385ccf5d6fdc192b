"""The early-stop gap of a finished run — a DIAGNOSTIC, never a leaderboard number.

`overfit(run_dir, bench, data)` scores, after training, every diagnostic `epoch_XXX.pt` the run kept
(`train --save-every N`) and its `final.pt` on a benchmark, and writes `overfit.json` in the leaderboard's
`avsl-bench/overfit@1` format (`leaderboard.store.read_overfit`) plus `"eligible": false`, the per-epoch metrics
and, per metric, the gap between the best epoch and the final checkpoint — what selecting the checkpoint on the
test set adds (the "early stop vs no early stop" gap of Mo & Morgado, Table 2). Nothing here selects a
checkpoint: the run's result is always `final.pt`. An SVG of the curves is written beside the JSON.
"""

from __future__ import annotations

import math
import os
import tempfile
from pathlib import Path
from typing import Any, Callable, Sequence

from ..errors import DataFileError, UsageError
from ..files import sha256_file, write_json_atomic

__all__ = ["overfit", "DIAGNOSTIC", "CURVE_METRICS"]

DIAGNOSTIC = "early-stop gap, never a leaderboard number"
#: Metrics drawn as curves and given a gap (the others are kept per epoch).
CURVE_METRICS = ("loc_acc", "auc", "ap", "max_f1")


def _checkpoints(run_dir: Path, run: dict) -> list[dict]:
    listed = sorted(run.get("epoch_checkpoints") or [], key=lambda c: c["epoch"])
    if not listed:
        raise UsageError(f"{run_dir}: the run kept no epoch checkpoints (train with --save-every N); nothing to "
                         "compare final.pt with")
    for ckpt in listed:
        path = run_dir / ckpt["file"]
        if not path.is_file():
            raise DataFileError(f"{path}: epoch checkpoint listed in run.json is missing")
        if ckpt.get("sha256") and sha256_file(path) != ckpt["sha256"]:
            raise DataFileError(f"{path}: sha256 differs from run.json (checkpoint replaced or corrupt)")
    final = {"file": "final.pt", "epoch": int(run["epochs"]), "sha256": run["checkpoint"]["sha256"]}
    return [c for c in listed if c["epoch"] < final["epoch"]] + [final]


def overfit(
    run_dir: str | os.PathLike,
    bench,
    data: str | os.PathLike | Sequence[str | os.PathLike],
    out: str | os.PathLike | None = None,
    *,
    device: str = "auto",
    workers: int = 2,
    plot: bool = True,
    on_checkpoint: Callable[[dict], None] | None = None,
) -> dict[str, Any]:
    """Score every kept checkpoint of `run_dir` on `bench` (a loaded benchmark) from the test shards `data`;
    write `out` (default `run_dir/overfit.json`) and `<out>.svg`; return the record.

    `on_checkpoint` is called with each {epoch, checkpoint, sha256, metrics} as it is scored.
    """
    from ..leaderboard.store import OVERFIT_SCHEMA, read_overfit
    from ..provenance import tool_info
    from ..scoring.score import ScoreOptions, score
    from .predict import _read_run, predict

    run_dir = Path(run_dir)
    run = _read_run(run_dir)
    out = Path(out) if out is not None else run_dir / "overfit.json"
    checkpoints = _checkpoints(run_dir, run)
    per_epoch = []
    with tempfile.TemporaryDirectory(prefix="avsl-overfit-") as tmp:
        for ckpt in checkpoints:
            archive = Path(tmp) / f"{Path(ckpt['file']).stem}.npz"
            predict(run_dir, data, archive, device=device, workers=workers, checkpoint=ckpt["file"])
            result, _ = score(archive, bench, ScoreOptions(bootstrap=0))
            metrics = {k: (v["value"] if v["value"] is not None and math.isfinite(v["value"]) else None)
                       for k, v in result["metrics"].items()}
            entry = {"epoch": int(ckpt["epoch"]), "checkpoint": ckpt["file"], "sha256": ckpt["sha256"],
                     "final": ckpt["file"] == "final.pt", "metrics": metrics}
            per_epoch.append(entry)
            if on_checkpoint is not None:
                on_checkpoint(entry)
    curves = [k for k in CURVE_METRICS if all(e["metrics"].get(k) is not None for e in per_epoch)]
    if not curves:
        raise DataFileError(f"no finite {'/'.join(CURVE_METRICS)} score for every checkpoint of {run_dir}")
    record: dict[str, Any] = {
        "schema": OVERFIT_SCHEMA,
        "eligible": False,
        "diagnostic": DIAGNOSTIC,
        "split": f"{bench.spec.protocol} ({', '.join(Path(p).name for p in _as_list(data))})",
        "epochs": [e["epoch"] for e in per_epoch],
        "scores": {k: [e["metrics"][k] for e in per_epoch] for k in curves},
        "final_epoch": int(run["epochs"]),
        "per_epoch": per_epoch,
        "run": {"dir": str(run_dir), "method": run["method"], "recipe": run["recipe"]["name"], "seed": run["seed"],
                "checkpoint_sha256": run["checkpoint"]["sha256"], "checkpoint_selection": "final"},
        "protocol": bench.spec.protocol,
        "data": [str(p) for p in _as_list(data)],
        "tool": tool_info(),
    }
    parsed = read_overfit(record, str(out))  # the leaderboard's own reader: same format, same gap
    record["gap"] = {}
    for metric in curves:
        best_epoch, best, gap = parsed.gap(metric)
        final = record["scores"][metric][record["epochs"].index(parsed.final_epoch)]
        record["gap"][metric] = {"best_epoch": best_epoch, "best": best, "final": final, "gap": gap}
    if plot:
        from ..leaderboard.plots import plot_overfit

        out.parent.mkdir(parents=True, exist_ok=True)
        record["plot"] = plot_overfit(parsed, out.with_suffix(".svg")).name
    write_json_atomic(out, record)
    return record


def _as_list(data) -> list:
    return list(data) if isinstance(data, (list, tuple)) else [data]
