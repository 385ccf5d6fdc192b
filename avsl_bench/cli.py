"""The `avsl-bench` command line: parse options, call one library function, print with rich."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Annotated, Optional

import typer
from rich.console import Console
from rich.table import Table

from .errors import AvslBenchError

app = typer.Typer(
    name="avsl-bench",
    help="Benchmark toolkit for audio-visual sound source localization: prepare data, score prediction maps, "
    "build the leaderboard.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)
console = Console()
err_console = Console(stderr=True)

BenchmarkOpt = Annotated[str, typer.Option("--benchmark", "-b", help="Benchmark protocol, e.g. vggss or vggss-ext@1.")]
UpstreamOpt = Annotated[
    Optional[Path],
    typer.Option("--upstream", help="Directory mirroring the upstream repos (<owner>__<repo>/<path>); "
                 "default: $AVSL_BENCH_UPSTREAM, else download into the cache."),
]
FlickrOpt = Annotated[
    Optional[Path], typer.Option("--flickr-annotations", help="Senocak's Flickr-SoundNet Annotations/ folder (XML).")
]


def _fail(exc: AvslBenchError) -> None:
    err_console.print(f"[bold red]error:[/] {exc}", highlight=False, soft_wrap=True)
    raise typer.Exit(exc.exit_code)


def _fmt(value: float | None, ci: list | None = None) -> tuple[str, str]:
    if value is None:
        return "–", ""
    text = f"{100 * value:.2f}"
    if ci and ci[0] is not None and ci[1] is not None:
        return text, f"[{100 * ci[0]:.2f}, {100 * ci[1]:.2f}]"
    return text, ""


def _metrics_table(result: dict) -> Table:
    table = Table(title=f"{result['method']['name']} on {result['protocol']} (×100, 95 % bootstrap CI)")
    table.add_column("metric")
    table.add_column("value", justify="right")
    table.add_column("95 % CI", justify="right")
    for key, entry in result["metrics"].items():
        table.add_row(key, *_fmt(entry["value"], entry["ci95"]))
    for name, metrics in result["strata"].items():
        for key, entry in metrics.items():
            table.add_row(f"{name}.{key}", *_fmt(entry["value"], entry["ci95"]), style="dim")
    return table


@app.command("benchmarks")
def benchmarks_cmd() -> None:
    """List the benchmark protocols with their positive/negative counts and annotation sources."""
    from .benchmarks.spec import benchmark_registry

    table = Table(title="avsl-bench benchmarks")
    table.add_column("protocol", no_wrap=True)
    for column in ("title", "positives", "negatives", "ground truth", "annotation files"):
        table.add_column(column, overflow="fold")
    for name in benchmark_registry().names():
        spec = benchmark_registry().get(name)
        sources = "generated from seed" if spec.loader == "synthetic" else "\n".join(
            f"{f.repo}@{f.commit[:7]}/{f.path}" for f in spec.files.values()
        )
        if spec.loader == "flickr":
            sources += "\n+ Senocak XML (--flickr-annotations)"
        table.add_row(spec.protocol, spec.title, f"{spec.expected_positives:,}", f"{spec.expected_negatives:,}",
                      spec.gt_rule, sources)
    console.print(table)


@app.command("score")
def score_cmd(
    predictions: Annotated[Path, typer.Argument(help="Submission archive preds.npz (ids + maps, or one array per id).")],
    benchmark: BenchmarkOpt = "vggss",
    binarize: Annotated[str, typer.Option(help="top50 (default; EZ-VSL/SLAVC), lvs, or fixed:T (raw map ≥ T).")] = "top50",
    resize: Annotated[str, typer.Option(help="Resize mode for maps not at 224×224: bicubic or bilinear.")] = "bicubic",
    align_corners: Annotated[bool, typer.Option("--align-corners", help="align_corners=True when resizing.")] = False,
    gamma: Annotated[float, typer.Option(help="cIoU threshold γ for LocAcc and AP.")] = 0.5,
    allow_missing: Annotated[bool, typer.Option("--allow-missing", help="Count missing ids as failures instead of refusing.")] = False,
    bootstrap: Annotated[int, typer.Option(help="Bootstrap resamples for the 95 % CIs (0: none).")] = 1000,
    seed: Annotated[int, typer.Option(help="Seed of the bootstrap and of the per-negative-type draws.")] = 0,
    out: Annotated[Optional[Path], typer.Option(help="Write result.json here (+ .samples.parquet beside it).")] = None,
    method: Annotated[str, typer.Option(help="Method name recorded in the result.")] = "unnamed",
    checkpoint_selection: Annotated[str, typer.Option(help="final | early_stopping | unspecified.")] = "unspecified",
    as_json: Annotated[bool, typer.Option("--json", help="Print the result JSON to stdout instead of tables.")] = False,
    upstream: UpstreamOpt = None,
    flickr_annotations: FlickrOpt = None,
) -> None:
    """Score a prediction archive against a versioned benchmark protocol."""
    from .benchmarks.load import load_benchmark
    from .scoring.persample import MapOptions
    from .scoring.result import finite_or_none, write_result
    from .scoring.score import MethodInfo, ScoreOptions, score

    try:
        options = ScoreOptions(maps=MapOptions(binarize, resize, align_corners), gamma=gamma,
                               allow_missing=allow_missing, bootstrap=bootstrap, seed=seed)
        info = MethodInfo(name=method, checkpoint_selection=checkpoint_selection)
        bench = load_benchmark(benchmark, mirror=upstream, flickr_annotations=flickr_annotations)
        result, table = score(predictions, bench, options, info)
        if out is not None:
            result = write_result(out, result, table)
    except AvslBenchError as exc:
        _fail(exc)
    if as_json:
        sys.stdout.write(json.dumps(finite_or_none(result), indent=2, sort_keys=True) + "\n")
        return
    console.print(_metrics_table(result))
    counts = result["counts"]
    console.print(f"scored {counts['scored']:,} of {counts['expected']:,} samples"
                  f" ({counts['missing']:,} missing, {counts['nan_ciou']} NaN cIoU)")
    if out is not None:
        console.print(f"result written to {out}")


@app.command("compare")
def compare_cmd(
    result_a: Annotated[Path, typer.Argument(help="Baseline result.json.")],
    result_b: Annotated[Path, typer.Argument(help="Result to compare (B − A).")],
    bootstrap: Annotated[int, typer.Option(help="Paired bootstrap resamples.")] = 1000,
    seed: Annotated[int, typer.Option(help="Bootstrap seed.")] = 0,
) -> None:
    """Paired bootstrap of B − A on the per-sample tables of two results on the same benchmark."""
    from .scoring.compare import compare_results

    try:
        diffs = compare_results(result_a, result_b, n_resamples=bootstrap, seed=seed)
    except AvslBenchError as exc:
        _fail(exc)
    table = Table(title=f"B − A (×100) with paired-bootstrap 95 % CI\nA = {result_a}\nB = {result_b}")
    for column in ("metric", "A", "B", "B − A", "95 % CI"):
        table.add_column(column, justify="right" if column != "metric" else "left")
    for key, d in diffs.items():
        diff, ci = _fmt(d["difference"], d["ci95"])
        table.add_row(key, _fmt(d["a"])[0], _fmt(d["b"])[0], diff, ci)
    console.print(table)


@app.command("predict")
def predict_cmd(
    method: Annotated[str, typer.Argument(help="Predictor: center-prior.")],
    benchmark: BenchmarkOpt = "vggss",
    out: Annotated[Path, typer.Option(help="Output archive (.npz).")] = Path("preds.npz"),
    upstream: UpstreamOpt = None,
    flickr_annotations: FlickrOpt = None,
) -> None:
    """Write a prediction archive for every sample of a benchmark."""
    from .benchmarks.load import load_benchmark
    from .predict import predict_center_prior

    try:
        if method != "center-prior":
            from .errors import UnknownNameError

            raise UnknownNameError(f"unknown predictor {method!r}; available: center-prior")
        bench = load_benchmark(benchmark, mirror=upstream, flickr_annotations=flickr_annotations)
        path = predict_center_prior(bench, out)
    except AvslBenchError as exc:
        _fail(exc)
    console.print(f"wrote {len(bench.ids):,} maps to {path}")


def main() -> None:  # pragma: no cover - console entry point alias
    app()


if __name__ == "__main__":  # pragma: no cover
    app()
