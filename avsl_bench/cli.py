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


# ---- data commands ----
# `prepare`, `negatives`, `audit`: thin wrappers over avsl_bench.data.commands (owned by the data layer).


@app.command("prepare")
def prepare_cmd(
    benchmark: Annotated[str, typer.Argument(help="synthetic (default benchmark, no network), synthetic-tiny, vggss, "
                                             "vggss-ext, flickr, flickr-ext, or a training set: vggsound-10k, "
                                             "vggsound-144k, vggsound-heard, vggsound, flickr-10k, flickr-144k "
                                             "(each also -noleak), flickr-sup-train.")],
    out: Annotated[Path, typer.Option("--out", help="Output root: shards go to OUT/<benchmark>/<split>/, the clip "
                                      "and cut caches to OUT/_cache/.")],
    source: Annotated[Optional[str], typer.Option("--source", help="VGGSound media: youtube (yt-dlp, default) or "
                                                  "mirror:PATH (directory or .tar.gz files of <clip_id>.mp4).")] = None,
    workers: Annotated[Optional[int], typer.Option(help="Parallel acquisitions / renderers (default: 4 for "
                                                   "youtube, else the CPU count).")] = None,
    num_parts: Annotated[int, typer.Option("--num-parts", help="Split the work into K parts (shards s with "
                                           "s mod K = I go to part I).")] = 1,
    part: Annotated[int, typer.Option("--part", help="Which part this process runs (0 <= I < K); e.g. "
                                      "$SLURM_ARRAY_TASK_ID.")] = 0,
    limit: Annotated[Optional[int], typer.Option(help="Keep only the first N rows of each split in key order "
                                                 "(for trials).")] = None,
    merge_only: Annotated[bool, typer.Option("--merge", help="Run nothing: check every part and shard, write the "
                                             "manifests; non-zero exit listing incomplete shards.")] = False,
    url_template: Annotated[Optional[str], typer.Option("--url-template", help="Media URL with {ytid} (default: "
                                                        "https://www.youtube.com/watch?v={ytid}).")] = None,
    cookies: Annotated[Optional[Path], typer.Option(help="Netscape cookie file for yt-dlp.")] = None,
    proxy: Annotated[Optional[str], typer.Option(help="Proxy URL for yt-dlp.")] = None,
    timeout: Annotated[float, typer.Option(help="Per-clip acquisition limit in seconds (all retries).")] = 180.0,
    ffmpeg: Annotated[Optional[str], typer.Option(help="ffmpeg binary (default: $AVSL_BENCH_FFMPEG, PATH, "
                                                  "imageio-ffmpeg).")] = None,
    audio_window: Annotated[Optional[float], typer.Option("--audio-window", help="Stored audio in seconds: 10 "
                                                          "(default) or 3 (training sets only: the centred 3 s).")] = None,
    samples_per_shard: Annotated[int, typer.Option("--samples-per-shard", help="Rows per shard.")] = 1000,
    mirror_layout: Annotated[str, typer.Option("--mirror-layout", help="clip (10 s files named <clip_id>.mp4) or "
                                               "full (whole videos named <ytid>.mp4).")] = "clip",
    upstream: UpstreamOpt = None,
    flickr_archive: Annotated[Optional[Path], typer.Option("--flickr-archive", help="Your Flickr-SoundNet media: "
                                                           "a directory or .tar.gz with frames/<id>.jpg, "
                                                           "audio/<id>.wav|mp3 and Annotations/<id>.xml.")] = None,
    flickr_annotations: FlickrOpt = None,
    list_file: Annotated[Optional[Path], typer.Option("--list", help="The training list file (required for "
                                                      "vggsound: your copy of vggsound.csv).")] = None,
    allow_mixed_ffmpeg: Annotated[bool, typer.Option("--allow-mixed-ffmpeg", help="Merge parts cut by different "
                                                     "ffmpeg builds (recorded in the manifest).")] = False,
    no_progress: Annotated[bool, typer.Option("--no-progress", help="No progress bars.")] = False,
) -> None:
    """Acquire, cut and shard a benchmark or training set (resumable, partable), then merge its manifests.

    Examples: `avsl-bench prepare synthetic --out data`; `avsl-bench prepare vggss-ext --out data --source
    mirror:/mnt/vggsound`; `avsl-bench prepare vggsound-144k-noleak --out data --num-parts 8 --part 3`, then
    `avsl-bench prepare vggsound-144k-noleak --out data --merge`.
    """
    from .data.commands import prepare_benchmark

    try:
        report = prepare_benchmark(
            benchmark, out, source_spec=source, workers=workers, num_parts=num_parts, part=part, limit=limit,
            merge_only=merge_only, url_template=url_template, cookies=cookies, proxy=proxy, ffmpeg=ffmpeg,
            timeout=timeout, audio_window=audio_window, samples_per_shard=samples_per_shard,
            mirror_layout=mirror_layout, upstream=upstream, flickr_archive=flickr_archive,
            flickr_annotations=flickr_annotations, list_path=list_file, allow_mixed_ffmpeg=allow_mixed_ffmpeg,
            progress=not no_progress, console=console,
        )  # fmt: skip
    except AvslBenchError as exc:
        _fail(exc)
    if report.plan.defects is not None:
        console.print(report.plan.defects)
    if report.normalized is not None:
        console.print(f"wrote {report.normalized.path} (sha256 {report.normalized.sha256}; raw vggss.json "
                      f"{report.normalized.raw_sha256})", highlight=False, soft_wrap=True)  # fmt: skip
    for key, value in report.inputs.items():
        console.print(f"{key}: {value}", highlight=False, soft_wrap=True)
    console.print(report.table())
    if report.disjoint is not None:
        counts = ", ".join(f"{k} {v:,}" for k, v in report.disjoint["samples"].items())
        console.print(f"disjoint splits: OK (no val/test RGB or PCM hash in train; {counts})")
    if report.merged:
        for s in report.splits:
            console.print(f"{s.name}: {s.split_dir / 'manifest.parquet'}", highlight=False, soft_wrap=True)
    else:
        same = "".join(f" {flag} {value}" for flag, value in (("--limit", limit), ("--samples-per-shard",
                       samples_per_shard if samples_per_shard != 1000 else None)) if value is not None)  # fmt: skip
        console.print(f"part {part} of {num_parts} done; when every part is: avsl-bench prepare {benchmark} "
                      f"--out {out}{same} --merge", highlight=False, soft_wrap=True)  # fmt: skip
    for warning in report.warnings:
        err_console.print(f"[bold yellow]warning:[/] {warning}", highlight=False, soft_wrap=True)


@app.command("negatives")
def negatives_cmd(
    base: Annotated[str, typer.Argument(help="vggss (new list from its positives), vggss-ext / flickr-ext (the "
                                        "official SLAVC lists, typed), another benchmark with classes, or a "
                                        "prepared benchmark/split directory.")],
    out: Annotated[Path, typer.Option("--out", help="Output list: writes LIST.csv, LIST.sha256, LIST.stats.json.")],
    seed: Annotated[int, typer.Option(help="Seed of the hash ranking (data spec §6.3).")] = 0,
    hard_fraction: Annotated[float, typer.Option("--hard-fraction", help="Share of same-class (hard) pairs.")] = 0.25,
    n: Annotated[Optional[int], typer.Option("--n", help="Number of mismatched negatives (default: one per "
                                             "positive).")] = None,
    real_negatives: Annotated[Optional[Path], typer.Option("--real-negatives", help="File of clip ids whose own "
                                                           "audio is a negative (typed real).")] = None,
    upstream: UpstreamOpt = None,
    flickr_annotations: FlickrOpt = None,
) -> None:
    """Write a typed negative list for an extended test set and print its Table-1 size-bucket stats."""
    from .benchmarks.negatives import render_table1
    from .data.commands import negatives_command

    try:
        report = negatives_command(base, out, seed=seed, hard_fraction=hard_fraction, n=n,
                                   real_negatives=real_negatives, upstream=upstream,
                                   flickr_annotations=flickr_annotations)  # fmt: skip
    except AvslBenchError as exc:
        _fail(exc)
    title = f"{'official' if report.kind == 'official' else 'generated'} negatives of {base}"
    if report.kind == "generated":
        title += f" (seed {seed}, hard fraction {hard_fraction:g})"
    console.print(render_table1(report.table1, title=title))
    types = ", ".join(f"{k} {v:,}" for k, v in sorted(report.types.items()))
    console.print(f"{sum(report.types.values()):,} negatives ({types})")
    for note in report.notes:
        console.print(f"[cyan]note:[/] {note}", highlight=False, soft_wrap=True)
    console.print(f"wrote {report.files.csv}  sha256 {report.sha256}", highlight=False, soft_wrap=True)
    console.print(f"      {report.files.sha256_file}, {report.files.stats_file}", highlight=False, soft_wrap=True)


@app.command("audit")
def audit_cmd(
    train_list: Annotated[str, typer.Argument(help="A training-set name (e.g. vggsound-144k, flickr-10k-noleak) "
                                              "or a file of clip ids.")],
    against: Annotated[str, typer.Option("--against", help="vggss (VGGSound test split, VGG-SS) or flickr "
                                         "(Flickr-SoundNet test lists).")] = "vggss",
    upstream: UpstreamOpt = None,
) -> None:
    """Count the test clips inside a training list (train/test leakage, data spec §5.3)."""
    from .benchmarks.training import render_audit_table
    from .data.commands import audit_command

    try:
        result = audit_command(train_list, against, upstream=upstream)
    except AvslBenchError as exc:
        _fail(exc)
    console.print(render_audit_table([result.report]))
    if result.warning:
        console.print(f"[bold yellow]warning:[/] {result.warning}", highlight=False, soft_wrap=True)


# ---- end of data commands ----


# ---- leaderboard commands ----
# `leaderboard add` / `leaderboard build`: thin wrappers over avsl_bench.leaderboard (owned by the leaderboard).

leaderboard_app = typer.Typer(
    help="Leaderboard: add verified result files to the store, build the static site and README tables.",
    no_args_is_help=True,
)
app.add_typer(leaderboard_app, name="leaderboard")
StoreOpt = Annotated[Path, typer.Option("--store", help="Leaderboard store (results/ + published.toml).")]


@leaderboard_app.command("add")
def leaderboard_add_cmd(
    result: Annotated[Path, typer.Argument(help="result.json from `avsl-bench score --out` (parquet beside it).")],
    store: StoreOpt = Path("leaderboard"),
    name: Annotated[Optional[str], typer.Option(help="Entry name (default: method--training-set--sha).")] = None,
    replace: Annotated[bool, typer.Option("--replace", help="Replace an entry of that name.")] = False,
    upstream: UpstreamOpt = None,
    flickr_annotations: FlickrOpt = None,
) -> None:
    """Validate a result (protocol, checksums, final checkpoint, re-scored metrics) and copy it into the store.

    Example: avsl-bench leaderboard add runs/slavc/result.json --store leaderboard/
    """
    from .leaderboard.store import add_result

    try:
        entry, status = add_result(result, store, name=name, replace=replace, mirror=upstream,
                                   flickr_annotations=flickr_annotations)
    except AvslBenchError as exc:
        _fail(exc)
    console.print(f"{status}: {entry}", highlight=False, soft_wrap=True)


@leaderboard_app.command("build")
def leaderboard_build_cmd(
    out: Annotated[Path, typer.Option(help="Site directory (replaced if it holds a previous site).")] = Path("site"),
    store: StoreOpt = Path("leaderboard"),
    markdown: Annotated[Optional[Path], typer.Option(help="Markdown tables (default <store>/README.md).")] = None,
    extra: Annotated[Optional[list[Path]], typer.Option(
        help="Also show this result (checked like `add`, not stored); repeatable.")] = None,
    published: Annotated[Optional[Path], typer.Option(
        help="Published rows (default <store>/published.toml, else the repository's).")] = None,
    upstream: UpstreamOpt = None,
    flickr_annotations: FlickrOpt = None,
) -> None:
    """Render the static leaderboard site (sortable tables, plots, a page per entry) and the README tables.

    Example: avsl-bench leaderboard build --out site/ --store leaderboard/
    """
    from .leaderboard.site import build_site

    markdown_path = markdown if markdown is not None else store / "README.md"
    try:
        index = build_site(store, out, extra_results=extra or [], published=published, markdown=markdown_path,
                           mirror=upstream, flickr_annotations=flickr_annotations)
    except AvslBenchError as exc:
        _fail(exc)
    console.print(f"site: {index}\nmarkdown: {markdown_path}", highlight=False, soft_wrap=True)


# ---- end of leaderboard commands ----


def main() -> None:  # pragma: no cover - console entry point alias
    app()


if __name__ == "__main__":  # pragma: no cover
    app()
