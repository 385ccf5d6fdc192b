"""`make demo`: the whole pipeline on the built-in synthetic benchmark, on whatever device is present.

synthetic prepare → shards → train EZ-VSL and SLAVC (CPU recipes, fixed schedules, final checkpoints)
→ predict → score on `synthetic-ext` (Center Prior too) → leaderboard site. Re-running resumes: shards
and finished runs are kept.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

from rich.console import Console
from rich.table import Table

METHODS = ("ezvsl", "slavc")


def run_demo(out: Path, *, size: str = "synthetic", epochs: int | None = None, device: str = "auto",
             seed: int = 0, console: Console | None = None) -> Path:
    """Run the demo into `out`; return the leaderboard index page."""
    from .benchmarks.load import load_benchmark
    from .leaderboard.site import build_site
    from .predict import predict_center_prior
    from .scoring.result import write_result
    from .scoring.score import MethodInfo, ScoreOptions, score
    from .train.reproduce import ensure_data, resolve_recipe, run_method

    console = console or Console()
    t0 = time.perf_counter()
    results = out / "results"
    benchmark = f"{size}-ext"

    console.rule(f"1/4 prepare {size}")
    data = ensure_data(size, benchmark, out / "data", console=console)
    bench = load_benchmark(benchmark)
    scored: list[tuple[str, dict]] = []

    console.rule("2/4 Center Prior")
    cp_preds = predict_center_prior(bench, out / "preds" / "center-prior.npz", compressed=False)
    result, table = score(cp_preds, bench, ScoreOptions(),
                          MethodInfo(name="Center Prior", checkpoint_selection="final", training_set="none"))
    write_result(results / "center-prior.json", result, table)
    scored.append(("Center Prior", result))

    for method in METHODS:
        console.rule(f"3/4 train + predict {method}")
        recipe, _ = resolve_recipe(method, size)
        done = run_method(method, recipe, data, bench, run_dir=out / "runs" / method,
                          preds=out / "preds" / f"{method}.npz", result_path=results / f"{method}.json",
                          epochs=epochs, device=device, seed=seed)
        scored.append((method, done["result"]))

    console.rule("4/4 leaderboard")
    index = build_site(Path(__file__).resolve().parents[1] / "leaderboard", out / "site",
                       extra_results=sorted(results.glob("*.json")))
    summary = Table(title=f"demo results on {benchmark}@1 (×100; final checkpoints, no early stopping)")
    for column in ("method", "LocAcc", "AUC", "AP", "max-F1"):
        summary.add_column(column, justify="right" if column != "method" else "left")
    for name, result in scored:
        m = result["metrics"]
        summary.add_row(name, *(f"{100 * m[k]['value']:.2f}" for k in ("loc_acc", "auc", "ap", "max_f1")))
    console.print(summary)
    console.print(f"leaderboard page: {index}  (open it in a browser; it works offline)")
    console.print(f"demo finished in {time.perf_counter() - t0:.0f} s")
    return index


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, default=Path("demo-out"), help="output directory")
    parser.add_argument("--size", default="synthetic", choices=("synthetic", "synthetic-tiny"))
    parser.add_argument("--epochs", type=int, default=None, help="override the recipes' schedule (smoke runs)")
    parser.add_argument("--device", default="auto", help="auto | cpu | cuda")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    run_demo(args.out, size=args.size, epochs=args.epochs, device=args.device, seed=args.seed)


if __name__ == "__main__":
    main()
