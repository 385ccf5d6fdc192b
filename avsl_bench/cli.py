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
    """Metrics, then strata (dim), then cross-modal retrieval R@k (one row per direction and k, no CI) if scored."""
    from .scoring.result import RETRIEVAL_DIRECTIONS, RETRIEVAL_KEYS

    table = Table(title=f"{result['method']['name']} on {result['protocol']} (×100, 95 % bootstrap CI)")
    table.add_column("metric")
    table.add_column("value", justify="right")
    table.add_column("95 % CI", justify="right")
    for key, entry in result["metrics"].items():
        table.add_row(key, *_fmt(entry["value"], entry["ci95"]))
    for name, metrics in result["strata"].items():
        for key, entry in metrics.items():
            table.add_row(f"{name}.{key}", *_fmt(entry["value"], entry["ci95"]), style="dim")
    block = result.get("retrieval")
    if block is not None:
        for direction in RETRIEVAL_DIRECTIONS:
            label = direction.replace("_to_", "→").replace("audio", "A").replace("image", "I")
            table.add_section()
            for key in RETRIEVAL_KEYS:
                table.add_row(f"retrieval {label} R@{key[1:]}", *_fmt(block[direction][key]))
        table.caption = f"retrieval: {block['queries']:,} queries, relevant = same class"
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
    method: Annotated[Optional[str], typer.Option(help="Method name recorded in the result (default: the run's "
                                                  "method, else 'unnamed').")] = None,
    checkpoint_selection: Annotated[Optional[str], typer.Option(help="final | early_stopping | unspecified "
                                                                "(default: final with a run, else unspecified).")] = None,
    run: Annotated[Optional[Path], typer.Option("--run", help="Training run directory whose provenance (training "
                                                "set, checkpoint sha256, selection final) goes into the result; "
                                                "default: the run named by <archive>.json from `predict RUN_DIR`.")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the result JSON to stdout instead of tables.")] = False,
    retrieval: Annotated[bool, typer.Option("--retrieval", help="Also report cross-modal retrieval R@1/5/10 "
                                            "(audio→image, image→audio, relevant = same class) from the archive's "
                                            "audio_embeddings / image_embeddings.")] = False,
    upstream: UpstreamOpt = None,
    flickr_annotations: FlickrOpt = None,
) -> None:
    """Score a prediction archive against a versioned benchmark protocol.

    An archive written by `avsl-bench predict RUN_DIR` is scored with that run's provenance (its <archive>.json
    summary must match the archive and the run's final checkpoint); `--run` names the run explicitly.
    `--retrieval` needs an archive carrying embeddings and a benchmark with classes (VGG-SS, synthetic).
    """
    from .benchmarks.load import load_benchmark
    from .errors import UsageError
    from .scoring.persample import MapOptions
    from .scoring.result import finite_or_none, write_result
    from .scoring.score import MethodInfo, ScoreOptions, score
    from .train.reproduce import archive_method_info

    try:
        options = ScoreOptions(maps=MapOptions(binarize, resize, align_corners), gamma=gamma,
                               allow_missing=allow_missing, bootstrap=bootstrap, seed=seed, retrieval=retrieval)
        info = archive_method_info(predictions, run, name=method)
        if info is None:
            info = MethodInfo(name=method or "unnamed", checkpoint_selection=checkpoint_selection or "unspecified")
        elif checkpoint_selection not in (None, "final"):
            raise UsageError(f"a run's archive is its final checkpoint; --checkpoint-selection {checkpoint_selection}"
                             " does not apply")
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
    if "run_dir" in info.extra:
        console.print(f"provenance: run {info.extra['run_dir']} ({info.training_set}, checkpoint sha256 "
                      f"{info.checkpoint_sha256[:12]}…, selection {info.checkpoint_selection})",
                      highlight=False, soft_wrap=True)
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
    source: Annotated[str, typer.Argument(metavar="RUN_DIR|center-prior",
                                          help="A training run directory (holds run.json + final.pt), or the "
                                          "predictor center-prior.")],
    data: Annotated[Optional[list[Path]], typer.Option("--data", help="Test shard directory (e.g. data/vggss/test, "
                                                       "then data/vggss/test-neg); repeatable; required for a "
                                                       "run.")] = None,
    out: Annotated[Path, typer.Option(help="Output archive (.npz); a run's summary goes to "
                                      "<out>.json.")] = Path("preds.npz"),
    ogl: Annotated[Optional[str], typer.Option(help="Add the OGL prior: classic, extended, or auto (extended if "
                                               "the data hold negatives). Default: the AV map alone.")] = None,
    device: Annotated[str, typer.Option(help="auto | cpu | cuda.")] = "auto",
    benchmark: Annotated[Optional[str], typer.Option("--benchmark", "-b", help="center-prior only: the benchmark "
                                                     "protocol (default vggss).")] = None,
    upstream: UpstreamOpt = None,
    flickr_annotations: FlickrOpt = None,
) -> None:
    """Write a prediction archive: a trained run's maps of test shards, or Center Prior maps of a benchmark.

    Examples: `avsl-bench predict runs/ezvsl --data data/vggss/test --data data/vggss/test-neg --out preds.npz`;
    `avsl-bench predict center-prior -b vggss --out cp.npz`.
    """
    import warnings

    from .errors import DataFileError, UsageError

    try:
        if source == "center-prior":
            from .benchmarks.load import load_benchmark
            from .predict import predict_center_prior

            if data or ogl is not None:
                raise UsageError("--data / --ogl apply to a run directory, not to center-prior (use --benchmark)")
            bench = load_benchmark(benchmark or "vggss", mirror=upstream, flickr_annotations=flickr_annotations)
            path = predict_center_prior(bench, out)
            Path(str(out) + ".json").unlink(missing_ok=True)  # a run's summary of the archive just replaced
            console.print(f"wrote {len(bench.ids):,} maps to {path}", highlight=False, soft_wrap=True)
            return
        from .train.predict import predict

        if not (Path(source) / "run.json").is_file():
            raise DataFileError(f"{source}: not a training run directory (no run.json) and not a predictor "
                                "(available: center-prior)")
        if not data:
            raise UsageError("predicting with a run needs --data TEST_SHARDS (repeatable)")
        if benchmark is not None:
            raise UsageError("--benchmark applies to center-prior; a run predicts the shards given with --data")
        mode: bool | str = False
        if ogl is not None:
            if ogl not in ("classic", "extended", "auto"):
                raise UsageError(f"--ogl must be classic, extended or auto, got {ogl!r}")
            mode = True if ogl == "auto" else ogl
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            summary = predict(Path(source), data, out, ogl=mode, device=device)
    except AvslBenchError as exc:
        _fail(exc)
    for w in caught:
        err_console.print(f"[bold yellow]warning:[/] {w.message}", highlight=False, soft_wrap=True)
    console.print(f"wrote {summary['samples']:,} maps ({summary['map']}) of {summary['method']} "
                  f"({summary['recipe']}, seed {summary['seed']}) to {out}", highlight=False, soft_wrap=True)
    console.print(f"checkpoint {summary['checkpoint']['file']} sha256 {summary['checkpoint']['sha256']}; "
                  f"summary {out}.json (score attaches the run's provenance from it)", highlight=False, soft_wrap=True)


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
    cut_timeout: Annotated[float, typer.Option("--cut-timeout", help="Per-clip cut limit in seconds (PyAV stops, "
                                               "an ffmpeg process group is killed; failed_cut timeout).")] = 60.0,
    cutter: Annotated[Optional[str], typer.Option("--cutter", metavar="pyav|ffmpeg", help="How clips are cut (and "
                                                  "synthetic FLAC encoded): pyav (default, or $AVSL_BENCH_CUTTER) "
                                                  "runs the ffmpeg pipeline in-process through PyAV's libav*, no "
                                                  "process per clip; a file PyAV cannot cut falls back to the "
                                                  "ffmpeg binary, which also classifies cut failures. ffmpeg uses "
                                                  "that fallback path for every clip: one ffmpeg process per "
                                                  "clip.")] = None,
    retry_failed: Annotated[Optional[str], typer.Option("--retry-failed", metavar="transient|all", help="On a "
                                                        "re-run, redo the failed rows of committed shards: "
                                                        "transient (downloads, timeouts, bot checks) or all "
                                                        "(also unavailable and failed cuts). Without it "
                                                        "committed shards are skipped.")] = None,
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
                                                           "audio/<id>.wav|mp3 and Annotations/<id>.xml, or "
                                                           "videos <id>.mp4 (cut at the media midpoint).")] = None,
    flickr_annotations: FlickrOpt = None,
    list_file: Annotated[Optional[Path], typer.Option("--list", help="The training list file (required for "
                                                      "vggsound: your copy of vggsound.csv).")] = None,
    allow_mixed_ffmpeg: Annotated[bool, typer.Option("--allow-mixed-ffmpeg", help="Merge parts cut by different "
                                                     "ffmpeg builds or cutters / PyAV versions (recorded in the "
                                                     "manifest).")] = False,
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
            timeout=timeout, cut_timeout=cut_timeout, cutter=cutter, retry_failed=retry_failed,
            audio_window=audio_window,
            samples_per_shard=samples_per_shard, mirror_layout=mirror_layout, upstream=upstream,
            flickr_archive=flickr_archive, flickr_annotations=flickr_annotations, list_path=list_file,
            allow_mixed_ffmpeg=allow_mixed_ffmpeg,
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


# ---- training commands ----
# `train`, `reproduce`, `overfit`: thin wrappers over avsl_bench.train (loop.train, reproduce.reproduce,
# overfit.overfit). `predict RUN_DIR` and `score` (run provenance) are above.

DeviceOpt = Annotated[str, typer.Option(help="auto (CUDA if available) | cpu | cuda.")]
EpochsOpt = Annotated[Optional[int], typer.Option(help="Override the recipe's number of epochs (recorded as an "
                                                  "override in run.json; reference runs use the recipe's).")]
SeedOpt = Annotated[int, typer.Option(help="Seed of Python, numpy, torch, the loader workers and the shuffle order.")]
DataOpt = Annotated[list[Path], typer.Option("--data", help="Shard split directory (or .tar); repeatable.")]


def _epoch_line(record: dict, total: int) -> str:
    stats = "  ".join(f"{k} {v:.4g}" for k, v in record.items() if k not in ("epoch", "steps", "seconds"))
    return f"epoch {record['epoch']}/{total}  {stats}  ({record['seconds']:.1f} s)"


def _run_table(run: dict, run_dir: Path) -> Table:
    timing, data = run["timing"], run["training_data"]
    table = Table(title=f"{run['method']} ({run['recipe']['name']}): final checkpoint, fixed schedule, no early stopping")
    table.add_column("run", no_wrap=True)
    table.add_column("value", overflow="fold")
    epochs = f"{run['epochs']}" + (" (override of the recipe)" if run["recipe"]["schedule_overridden"] else "")
    rows = [("run dir", str(run_dir)), ("checkpoint", f"{run_dir / run['checkpoint']['file']}"),
            ("checkpoint sha256", run["checkpoint"]["sha256"]), ("epochs", epochs), ("steps", f"{run['steps']:,}"),
            ("training set", f"{', '.join(data['benchmarks'])} ({data['samples']:,} samples, leaky: {data['leaky']})"),
            ("samples/s", f"{timing['samples_per_s']}"), ("wall", f"{timing['wall_s']:.1f} s"),
            ("device", f"{run['device']['type']} × {run['device']['world_size']} ({run['device']['name']})"),
            ("seed", str(run["seed"]))]
    if run["epoch_checkpoints"]:
        rows.append(("diagnostic checkpoints", ", ".join(c["file"] for c in run["epoch_checkpoints"])))
    for key, value in rows:
        table.add_row(key, value)
    return table


@app.command("train")
def train_cmd(
    method: Annotated[str, typer.Argument(help="Method: ezvsl or slavc.")],
    data: DataOpt,
    out: Annotated[Path, typer.Option("--out", help="Run directory: final.pt + run.json (must not hold a run).")],
    config: Annotated[Optional[str], typer.Option(help="Recipe: a name under baselines/<method>/ (e.g. synthetic, "
                                                  "vggsound-144k) or a .toml path. Default: the recipe of the "
                                                  "shards' training set (their manifest.json).")] = None,
    epochs: EpochsOpt = None,
    device: DeviceOpt = "auto",
    seed: SeedOpt = 0,
    save_every: Annotated[Optional[int], typer.Option("--save-every", help="Also keep epoch_XXX.pt every N epochs "
                                                      "(diagnostics for `overfit`; never selected).")] = None,
    deterministic: Annotated[bool, typer.Option("--deterministic", help="torch deterministic algorithms.")] = False,
    workers: Annotated[Optional[int], typer.Option(help="Data-loader workers per process (default: recipe).")] = None,
) -> None:
    """Train a method with its recipe's fixed schedule on training shards from `prepare`; write final.pt + run.json.

    Every epoch is trained and the final checkpoint is the result (no validation, no early stopping). Runs on CPU,
    one GPU, or `torchrun --nproc_per_node G` (fixed global batch). Example: `avsl-bench train ezvsl --data
    data/vggsound-144k/train --out runs/ezvsl-144k --config vggsound-144k`.
    """
    import os

    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

    from .models.recipes import load_recipe
    from .train.loop import train
    from .train.reproduce import default_config

    try:
        config = config or default_config(method, data)
        total = epochs or load_recipe(method, config).schedule.epochs
        progress = Progress(TextColumn(f"train {method}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                            TimeRemainingColumn(), console=console, transient=True,
                            disable=os.environ.get("RANK", "0") != "0")  # torchrun: rank 0 reports
        task = progress.add_task("epochs", total=total)

        def on_epoch(record: dict) -> None:
            progress.console.print(_epoch_line(record, total), highlight=False)
            progress.update(task, completed=record["epoch"])

        with progress:
            run = train(method, data, out, config, epochs=epochs, device=device, seed=seed, save_every=save_every,
                        deterministic=deterministic, workers=workers, on_epoch=on_epoch)
    except AvslBenchError as exc:
        _fail(exc)
    if not run:  # not rank 0 of a torchrun job
        return
    for warning in run["warnings"]:
        err_console.print(f"[bold yellow]warning:[/] {warning}", highlight=False, soft_wrap=True)
    console.print(_run_table(run, out))


@app.command("reproduce")
def reproduce_cmd(
    method: Annotated[str, typer.Argument(help="Method: ezvsl or slavc.")],
    recipe: Annotated[str, typer.Option("--recipe", help="Recipe name (synthetic, synthetic-tiny, vggsound-144k, …) "
                                        "or .toml path.")],
    out: Annotated[Optional[Path], typer.Option(help="Output directory (run/, preds.npz, result.json); default "
                                                "runs/<method>-<recipe>-s<seed>.")] = None,
    seed: SeedOpt = 0,
    device: DeviceOpt = "auto",
    epochs: EpochsOpt = None,
    benchmark: Annotated[Optional[str], typer.Option("--benchmark", "-b", help="Test benchmark (default: "
                                                     "synthetic[-tiny]-ext for synthetic recipes, flickr for Flickr "
                                                     "training sets, else vggss).")] = None,
    train_set: Annotated[Optional[str], typer.Option("--train-set", help="Training set to prepare instead of the "
                                                     "recipe's (e.g. vggsound-144k-noleak).")] = None,
    data_root: Annotated[Optional[Path], typer.Option("--data-root", help="Shard root as for `prepare --out` "
                                                      "(default OUT/data); merged shards there are reused.")] = None,
    ogl: Annotated[Optional[str], typer.Option(help="Score the +OGL map: classic, extended or auto.")] = None,
    bootstrap: Annotated[int, typer.Option(help="Bootstrap resamples for the CIs (the leaderboard needs "
                                           "≥ 1000).")] = 1000,
    source: Annotated[Optional[str], typer.Option("--source", help="VGGSound media for prepare: youtube or "
                                                  "mirror:PATH.")] = None,
    list_file: Annotated[Optional[Path], typer.Option("--list", help="Training list file for prepare "
                                                      "(vggsound).")] = None,
    flickr_archive: Annotated[Optional[Path], typer.Option("--flickr-archive", help="Flickr-SoundNet media for "
                                                           "prepare.")] = None,
    upstream: UpstreamOpt = None,
    flickr_annotations: FlickrOpt = None,
    no_progress: Annotated[bool, typer.Option("--no-progress", help="No prepare progress bars.")] = False,
) -> None:
    """One command: prepare (unless the shards are there) → train → predict → score → result.json.

    The result carries the run's provenance (training set, checkpoint sha256, selection final). Examples:
    `avsl-bench reproduce ezvsl --recipe synthetic`; `avsl-bench reproduce slavc --recipe vggsound-144k
    --data-root data --source mirror:/mnt/vggsound --seed 1`.
    """
    from .errors import UsageError
    from .train.reproduce import reproduce, resolve_recipe

    if out is None:
        out = Path("runs") / f"{method}-{Path(recipe).stem}-s{seed}"
    console.print(f"reproduce {method} --recipe {recipe} (seed {seed}) into {out}", highlight=False, soft_wrap=True)
    try:
        if ogl not in (None, "classic", "extended", "auto"):
            raise UsageError(f"--ogl must be classic, extended or auto, got {ogl!r}")
        mode: bool | str = False if ogl is None else (True if ogl == "auto" else ogl)
        total = epochs or resolve_recipe(method, recipe, train_set)[0].schedule.epochs
        done = reproduce(method, recipe, out, seed=seed, device=device, epochs=epochs, benchmark=benchmark,
                         train_set=train_set, data_root=data_root, ogl=mode, bootstrap=bootstrap, upstream=upstream,
                         flickr_annotations=flickr_annotations, prepare_options={
                             "source_spec": source, "list_path": list_file, "flickr_archive": flickr_archive},
                         on_epoch=lambda r: console.print(_epoch_line(r, total), highlight=False),
                         console=console, progress=not no_progress)  # fmt: skip
    except AvslBenchError as exc:
        _fail(exc)
    console.print(_metrics_table(done["result"]))
    info = done["result"]["method"]
    table = Table(title="provenance (result.json)")
    table.add_column("item", no_wrap=True)
    table.add_column("value", overflow="fold")
    for key, value in (("result", done["result_path"]), ("predictions", done["predictions"]),
                       ("run dir", done["run_dir"] + ("" if done["trained"] else " (kept)")),
                       ("checkpoint sha256", done["checkpoint_sha256"]),
                       ("training set", f"{info['training_set']} (keys sha256 {info['training_set_sha256'][:12]}…, "
                                        f"leaky: {info['training_set_leaky']})"),
                       ("selection", info["checkpoint_selection"]), ("protocol", done["protocol"])):
        table.add_row(key, value)
    console.print(table)


@app.command("overfit")
def overfit_cmd(
    run_dir: Annotated[Path, typer.Argument(help="Training run directory with epoch_XXX.pt (train --save-every N).")],
    data: DataOpt,
    benchmark: BenchmarkOpt = "vggss",
    out: Annotated[Optional[Path], typer.Option(help="Where to write overfit.json (+ .svg); default "
                                                "RUN_DIR/overfit.json. Beside a result.json, the leaderboard plots "
                                                "it.")] = None,
    device: DeviceOpt = "auto",
    upstream: UpstreamOpt = None,
    flickr_annotations: FlickrOpt = None,
) -> None:
    """DIAGNOSTIC ONLY: per-epoch scores of a run and its early-stop gap (overfit.json; never a leaderboard number).

    Scores every kept epoch_XXX.pt (train --save-every N) and final.pt on a benchmark and writes overfit.json with
    "eligible": false and the gap between the best epoch and the final checkpoint (what test-set early stopping
    would add). The reported result is always final.pt. Example: `avsl-bench overfit runs/ezvsl -b vggss-ext
    --data data/vggss/test --data data/vggss/test-neg --out results/ezvsl/overfit.json`.
    """
    from .benchmarks.load import load_benchmark
    from .train.overfit import CURVE_METRICS, overfit

    try:
        bench = load_benchmark(benchmark, mirror=upstream, flickr_annotations=flickr_annotations)
        record = overfit(run_dir, bench, data, out, device=device,
                         on_checkpoint=lambda e: console.print(f"scored {e['checkpoint']} (epoch {e['epoch']})",
                                                               highlight=False))  # fmt: skip
    except AvslBenchError as exc:
        _fail(exc)
    metrics = [k for k in CURVE_METRICS if k in record["scores"]]
    table = Table(title=f"NOT ELIGIBLE — diagnostic: per-epoch scores on {record['protocol']} (×100); "
                        "the reported result is final.pt")
    table.add_column("epoch", justify="right")
    table.add_column("checkpoint")
    for key in metrics:
        table.add_column(key, justify="right")
    for entry in record["per_epoch"]:
        table.add_row(str(entry["epoch"]), entry["checkpoint"], *(_fmt(entry["metrics"][k])[0] for k in metrics),
                      style="bold" if entry["final"] else None)
    table.add_section()
    for key in metrics:
        gap = record["gap"][key]
        table.add_row("gap", f"{key}: best epoch {gap['best_epoch']} vs final", *(
            f"{100 * gap['gap']:+.2f}" if k == key else "" for k in metrics), style="dim")
    console.print(table)
    where = out if out is not None else run_dir / "overfit.json"
    plot = f" and {where.with_suffix('.svg')}" if "plot" in record else ""
    console.print(f"wrote {where} (eligible: false){plot}", highlight=False, soft_wrap=True)


# ---- end of training commands ----


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
