"""Refresh `baselines/expected.json`: the pinned CPU-recipe results of every learned baseline.

Two kinds of pins, both from the **final** checkpoint of a fixed schedule (never an epoch picked by a score):

* `ci`: what `tests/train/test_regression.py` re-checks on every CI run — the method's CPU recipe trained for
  `epochs` epochs (seed 0) on `synthetic-tiny` train (256 clips), scored on `synthetic-tiny-ext` (64 + 64).
  Exact on one platform; the tolerance band absorbs BLAS/thread differences across machines.
* `synthetic`: the acceptance run of baselines spec §3.8 — the full CPU recipe, seeds 0, 1, 2, on `synthetic`
  train (4,000 clips), scored on `synthetic` / `synthetic-ext` test (1,000 + 1,000), with the distractor-audio and
  shuffled-audio controls and the Center Prior. Informational (too slow for CI); the acceptance flags must hold.

Refresh deliberately, after a change that is *meant* to move the numbers (model code, recipe, data generator,
scorer), and say why in the commit message:

    .venv/bin/python baselines/refresh_expected.py --ci              # ~2 min: CI pins only (prints, no write)
    .venv/bin/python baselines/refresh_expected.py --ci --full --write --data /tmp/avsl-data
                                                                      # + the 3-seed acceptance runs (~30 min)

`--data DIR` holds `synthetic-tiny/` and `synthetic/` split directories (train, test, test-neg) as written by
`avsl-bench prepare` or by `tests/train/synthetic_shards.py`; missing splits are rendered there first.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

EXPECTED = REPO / "baselines" / "expected.json"
CI = {"data": "synthetic-tiny", "recipe": "synthetic", "epochs": 6, "seed": 0, "benchmark": "synthetic-tiny-ext"}
CI_TOLERANCE = {"loc_acc": 0.08, "auc": 0.04, "ap": 0.08}
SEEDS = (0, 1, 2)
ACCEPT = {"loc_acc_margin": 0.10, "auc_margin": 0.05, "control_gap": 0.10, "train_seconds": 180}


def splits(data: Path, size: str) -> dict[str, Path]:
    """The train / test / test-neg directories under `data/size`; rendered there only if a split has no shards
    (a directory written by `avsl-bench prepare` is used as it is, whatever its shard size)."""
    from tests.train.synthetic_shards import write_synthetic

    names = ("train", "test", "test-neg")
    dirs = {name: data / size / name for name in names}
    if all(any(d.glob("*.tar")) for d in dirs.values()):
        return dirs
    return write_synthetic(data, size, names, samples_per_shard=500)


def ci_run(method: str, dirs: dict[str, Path], work: Path) -> dict:
    """Train the CI variant of a method's CPU recipe and score it (what the regression test does)."""
    from avsl_bench.benchmarks.load import load_benchmark
    from avsl_bench.train.calibrate import score_archive
    from avsl_bench.train.loop import train
    from avsl_bench.train.predict import predict

    run_dir = work / f"ci-{method}"
    run = train(method, dirs["train"], run_dir, CI["recipe"], epochs=CI["epochs"], device="cpu", seed=CI["seed"],
                overwrite=True)
    predict(run_dir, [dirs["test"], dirs["test-neg"]], run_dir / "preds.npz", device="cpu", workers=0)
    values = score_archive(run_dir / "preds.npz", load_benchmark(CI["benchmark"]))
    return {"metrics": {k: round(values[k], 6) for k in CI_TOLERANCE}, "train_s": run["timing"]["wall_s"]}


def full_runs(method: str, dirs: dict[str, Path], work: Path, seeds=SEEDS) -> dict:
    from avsl_bench.benchmarks.load import load_benchmark
    from avsl_bench.train.calibrate import evaluate_run
    from avsl_bench.train.loop import train

    ext, pos = load_benchmark("synthetic-ext"), load_benchmark("synthetic")
    per_seed = {}
    for seed in seeds:
        run_dir = work / f"{method}-s{seed}"
        t0 = time.perf_counter()
        run = train(method, dirs["train"], run_dir, "synthetic", device="cpu", seed=seed, overwrite=True)
        train_s = time.perf_counter() - t0
        m = evaluate_run(run_dir, dirs["test"], ext, negatives=dirs["test-neg"], bench_positives=pos, device="cpu")
        per_seed[str(seed)] = {**{k: round(v, 4) for k, v in m.items()}, "train_s": round(train_s, 1),
                               "samples_per_s": run["timing"]["samples_per_s"]}
        print(f"  {method} seed {seed}: {per_seed[str(seed)]}", flush=True)
    keys = [k for k in next(iter(per_seed.values())) if k not in ("samples_per_s",)]
    mean = {k: round(statistics.mean(r[k] for r in per_seed.values()), 4) for k in keys}
    sd = {k: round(statistics.stdev(r[k] for r in per_seed.values()), 4) if len(per_seed) > 1 else 0.0 for k in keys}
    return {"seeds": per_seed, "mean": mean, "sd": sd}


def acceptance(full: dict, cp: dict) -> dict:
    """Spec §3.8 on the 3-seed runs: both margins over the Center Prior, the distractor-audio gap, and every seed's
    training within the time limit (wall seconds on this machine, so run the refresh with the machine idle)."""
    mean = full["mean"]
    max_train_s = max(r["train_s"] for r in full["seeds"].values())
    return {
        "loc_acc_vs_center_prior": round(mean["loc_acc"] - cp["loc_acc"], 4),
        "auc_vs_center_prior": round(mean["auc"] - cp["auc"], 4),
        "distractor_gap": round(mean["loc_acc"] - mean["distractor_loc_acc"], 4),
        "max_train_s": max_train_s,
        "passes": bool(mean["loc_acc"] >= cp["loc_acc"] + ACCEPT["loc_acc_margin"]
                       and mean["auc"] >= cp["auc"] + ACCEPT["auc_margin"]
                       and mean["loc_acc"] - mean["distractor_loc_acc"] >= ACCEPT["control_gap"]
                       and max_train_s <= ACCEPT["train_seconds"]),
    }  # fmt: skip


def markdown_table(expected: dict) -> str:
    """The README table of the acceptance runs: per seed, mean ± sd, both controls, and the verdict."""
    cp = expected["synthetic"]["center_prior"]
    lines = ["| method | seed | LocAcc | AUC | AP | distractor-audio LocAcc | shuffled-audio LocAcc | train s |",
             "|---|---|---|---|---|---|---|---|",
             f"| Center Prior | – | {cp['loc_acc']:.3f} | {cp['auc']:.3f} | – | – | – | – |"]
    for method, pins in sorted(expected["methods"].items()):
        full = pins.get("synthetic")
        if not full:
            continue
        for seed, r in sorted(full["seeds"].items()):
            lines.append(f"| {method} | {seed} | {r['loc_acc']:.3f} | {r['auc']:.3f} | {r['ap']:.3f} | "
                         f"{r['distractor_loc_acc']:.3f} | {r['shuffle_loc_acc']:.3f} | {r['train_s']:.0f} |")
        m, sd, acc = full["mean"], full["sd"], full["acceptance"]
        lines.append(f"| **{method}** | mean ± sd | **{m['loc_acc']:.3f} ± {sd['loc_acc']:.3f}** | "
                     f"**{m['auc']:.3f} ± {sd['auc']:.3f}** | {m['ap']:.3f} | {m['distractor_loc_acc']:.3f} | "
                     f"{m['shuffle_loc_acc']:.3f} | {acc['max_train_s']:.0f} (max) |")
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--ci", action="store_true", help="recompute the CI pins (synthetic-tiny)")
    ap.add_argument("--full", action="store_true", help="recompute the 3-seed acceptance runs on synthetic")
    ap.add_argument("--methods", nargs="*", default=None, help="default: every registered method")
    ap.add_argument("--data", type=Path, default=None, help="directory with synthetic(-tiny)/<split>/ shards")
    ap.add_argument("--work", type=Path, default=None, help="where runs are written (default: a temp dir)")
    ap.add_argument("--write", action="store_true", help="write baselines/expected.json (default: print only)")
    ap.add_argument("--table", action="store_true", help="print the README table of the pinned acceptance runs")
    args = ap.parse_args()
    if args.table:
        print(markdown_table(json.loads(EXPECTED.read_text())))
        return
    if not (args.ci or args.full):
        ap.error("choose --ci and/or --full")
    if args.methods is None:
        from avsl_bench.models import method_registry

        args.methods = method_registry().names()

    from avsl_bench.benchmarks.load import load_benchmark
    from avsl_bench.train.calibrate import center_prior_metrics

    expected = json.loads(EXPECTED.read_text()) if EXPECTED.is_file() else {}
    expected.setdefault("schema", "avsl-bench-expected@1")
    expected["refresh"] = "python baselines/refresh_expected.py --ci [--full] --write (see its docstring)"
    expected.setdefault("methods", {})
    with tempfile.TemporaryDirectory(prefix="avsl-refresh-") as tmp:
        data = args.data or Path(tmp) / "data"
        work = args.work or Path(tmp) / "runs"
        if args.ci:
            dirs = splits(data, "synthetic-tiny")
            expected["ci"] = {**CI, "tolerance": CI_TOLERANCE,
                              "center_prior": {k: round(v, 6) for k, v in center_prior_metrics(
                                  load_benchmark("synthetic-tiny")).items() if k in ("loc_acc", "auc")}}  # fmt: skip
            for method in args.methods:
                result = ci_run(method, dirs, work)
                print(f"ci {method}: {result}", flush=True)
                expected["methods"].setdefault(method, {})["ci"] = result["metrics"]
        if args.full:
            dirs = splits(data, "synthetic")
            cp = {k: round(v, 4) for k, v in center_prior_metrics(load_benchmark("synthetic")).items()
                  if k in ("loc_acc", "auc")}  # fmt: skip
            expected["synthetic"] = {"recipe": "synthetic", "seeds": list(SEEDS), "center_prior": cp,
                                     "acceptance_rule": ACCEPT}  # fmt: skip
            for method in args.methods:
                full = full_runs(method, dirs, work)
                full["acceptance"] = acceptance(full, cp)
                print(f"synthetic {method}: mean {full['mean']} sd {full['sd']} {full['acceptance']}", flush=True)
                expected["methods"].setdefault(method, {})["synthetic"] = full
    text = json.dumps(expected, indent=2, sort_keys=True) + "\n"
    if args.write:
        from avsl_bench.files import atomic_write

        with atomic_write(EXPECTED, "w") as f:
            f.write(text)
        print(f"wrote {EXPECTED}")
    else:
        print(text)


if __name__ == "__main__":
    main()
