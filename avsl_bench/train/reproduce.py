"""One command from recipe to result: prepare (if needed) → train → predict → score → result.json.

`reproduce(method, recipe, out)` is what `avsl-bench reproduce` runs; `make demo` (`avsl_bench.demo`) uses the same
steps (`ensure_data`, `run_method`) for each of its methods. Layout of `out`::

    out/data/<set>/<split>/     shards from `prepare` (default data root; reused when already merged)
    out/run/                    final.pt + run.json (an existing run with the same method/recipe/seed/epochs is kept)
    out/preds.npz(.json)        the prediction archive and its summary (run dir + checkpoint sha256)
    out/result.json             scored result with the run's provenance (+ result.samples.parquet)

Synthetic recipes train on `prepare synthetic` (train split) and are scored on `synthetic-ext` (positives and
negatives); the recipe name `synthetic-tiny` is the `synthetic` recipe on the CI-sized set (as the demo runs it).
Real-data recipes prepare the recipe's `train_set` and the test benchmark (default `vggss`, `flickr` for Flickr
training sets) with the same calls as `avsl-bench prepare`.

`archive_method_info(archive, run_dir)` is how `score` attaches a run's provenance to an archive written by
`predict RUN_DIR`: it reads the `<archive>.json` summary and checks it against the archive and the run.
"""

from __future__ import annotations

import dataclasses
import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Sequence

from ..errors import DataFileError, UsageError
from ..files import sha256_file

__all__ = [
    "DataPaths", "resolve_recipe", "recipe_for", "default_config", "default_benchmark", "benchmark_layout",
    "ensure_data", "run_method", "reproduce", "archive_method_info", "read_summary", "SYNTHETIC_SIZES",
]

SYNTHETIC_SIZES = ("synthetic", "synthetic-tiny")
METRICS = ("loc_acc", "auc", "ap", "max_f1")


# ------------------------------------------------------------------------------------------------ recipes


def recipe_for(method: str, train_set: str) -> str:
    """The recipe name of `method` for a training set: the set's own recipe (`-noleak` lists share their legacy
    list's schedule), the `synthetic` recipe for any synthetic size."""
    from ..models.recipes import RecipeError, list_recipes

    known = list_recipes(method)
    base = train_set.split("@")[0]
    for candidate in (base, base.removesuffix("-noleak")):
        if candidate in known:
            return candidate
    if base in SYNTHETIC_SIZES and "synthetic" in known:
        return "synthetic"
    raise RecipeError(f"no recipe of {method!r} for training set {train_set!r}; known: {', '.join(known) or 'none'}"
                      " (give --config)")


def default_config(method: str, data: Sequence[str | os.PathLike]) -> str:
    """The recipe implied by the training shards: the `benchmark` of their split directories' manifest.json."""
    names = set()
    for path in data:
        manifest = Path(path) / "manifest.json"
        if not manifest.is_file():
            raise UsageError(f"cannot tell the training set of {path} (no manifest.json): give --config")
        try:
            names.add(str(json.loads(manifest.read_text(encoding="utf-8"))["benchmark"]))
        except (OSError, ValueError, KeyError) as exc:
            raise DataFileError(f"{manifest}: unreadable manifest: {exc}") from None
    if len(names) != 1:
        raise UsageError(f"training shards of several sets ({', '.join(sorted(names))}): give --config")
    return recipe_for(method, names.pop())


def resolve_recipe(method: str, recipe: str | os.PathLike, train_set: str | None = None):
    """(recipe to train with, training set to prepare) for `reproduce`'s `--recipe` (name or .toml path)."""
    from ..models.recipes import RecipeError, load_recipe

    try:
        loaded = load_recipe(method, recipe)
    except RecipeError:
        if str(recipe) not in SYNTHETIC_SIZES:
            raise
        loaded = load_recipe(method, "synthetic")  # `synthetic-tiny`: the synthetic recipe on the tiny set
        train_set = train_set or str(recipe)
    return loaded, train_set or loaded.train_set


def default_benchmark(train_set: str) -> str:
    """The test benchmark a training set is scored on by default."""
    if train_set in SYNTHETIC_SIZES:
        return f"{train_set}-ext"
    return "flickr" if train_set.startswith("flickr") else "vggss"


# --------------------------------------------------------------------------------------------------- data


@dataclass
class DataPaths:
    """Shard directories of one reproduction: training split(s) and the test benchmark's split(s)."""

    root: Path
    train_set: str
    benchmark: str
    train: list[Path]
    test: list[Path]
    prepared: list[str] = field(default_factory=list)  # names `prepare` ran for (empty: all shards were there)

    def to_json(self) -> dict:
        return {"root": str(self.root), "train_set": self.train_set, "benchmark": self.benchmark,
                "train": [str(p) for p in self.train], "test": [str(p) for p in self.test], "prepared": self.prepared}


def benchmark_layout(benchmark: str) -> tuple[str, str, list[str]]:
    """(name to `prepare`, directory under the data root, splits) holding a benchmark's samples."""
    from ..benchmarks.spec import get_spec
    from ..data.catalog import EXTENDED, VIEWS

    spec = get_spec(benchmark)
    name = VIEWS.get(spec.name, spec.name)  # a view (synthetic-ext, flickr-249) prepares what it views
    directory = EXTENDED.get(name, name)
    return name, directory, ["test", "test-neg"] if spec.extended else ["test"]


def _options_for(name: str, options: dict[str, Any], training: bool) -> dict[str, Any]:
    """The prepare options that apply to `name` (options of other producers and kinds dropped; None values too)."""
    drop = set() if training else {"list_path", "audio_window"}
    if not name.startswith("flickr"):
        drop |= {"flickr_archive", "flickr_annotations"}
    if name.startswith("flickr") or name in SYNTHETIC_SIZES:
        drop |= {"source_spec", "mirror_layout", "url_template", "cookies", "proxy"}
    return {k: v for k, v in options.items() if k not in drop and v is not None}


def _merged(directory: Path) -> bool:
    return (directory / "manifest.parquet").is_file()


def ensure_data(train_set: str, benchmark: str, root: str | os.PathLike, *, console: Any = None,
                progress: bool = True, **prepare_options: Any) -> DataPaths:
    """Prepare the training set and the test benchmark under `root` unless their split directories are already
    merged; `prepare_options` go to `prepare_benchmark` (source_spec, upstream, flickr_archive, list_path, …)."""
    from ..data.commands import prepare_benchmark

    root = Path(root)
    test_name, test_dir, test_splits = benchmark_layout(benchmark)
    paths = DataPaths(root, train_set, benchmark, [root / train_set / "train"],
                      [root / test_dir / s for s in test_splits])
    todo = [train_set] if not all(_merged(p) for p in paths.train) else []
    if not all(_merged(p) for p in paths.test) and test_name not in todo:
        todo.append(test_name)
    for name in todo:
        if console is not None:
            console.rule(f"prepare {name}")
        options = _options_for(name, prepare_options, training=name == train_set)
        prepare_benchmark(name, root, progress=progress, console=console, **options)
        paths.prepared.append(name)
    missing = [str(p) for p in paths.train + paths.test if not _merged(p)]
    if missing:
        raise DataFileError(f"prepare left no merged shards in {missing[0]} (see the prepare report; re-run to resume)")
    return paths


# --------------------------------------------------------------------------------------------- provenance


def read_summary(archive: str | os.PathLike) -> dict | None:
    """The `<archive>.json` summary `predict` writes beside an archive, or None."""
    path = Path(str(archive) + ".json")
    if not path.is_file():
        return None
    try:
        summary = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise DataFileError(f"{path}: unreadable prediction summary: {exc}") from None
    return summary if isinstance(summary, dict) else None


def _find_run(named: str, archive: Path) -> Path | None:
    for candidate in (Path(named), archive.parent / named):
        if (candidate / "run.json").is_file():
            return candidate
    return None


def archive_method_info(archive: str | os.PathLike, run_dir: str | os.PathLike | None = None, *,
                        name: str | None = None):
    """The scorer's `MethodInfo` for an archive written by `predict RUN_DIR` (selection `final`), or None.

    The run is `run_dir`, else the one named by the archive's `<archive>.json` summary. When a summary is present
    it must describe this archive (sha256) and the run's final checkpoint (sha256); archives of audio controls and
    of the OGL prior alone carry no run provenance (None unless `run_dir` is given, which is then an error).
    """
    from .predict import method_info

    archive = Path(archive)
    summary_path = Path(str(archive) + ".json")
    summary = read_summary(archive)
    if summary is not None and "run" not in summary:
        summary = None  # e.g. the OGL prior alone: no run
    if summary is not None and summary.get("controls"):
        if run_dir is not None:
            raise UsageError(f"{archive}: an audio-control archive ({summary['controls']}), not the run's predictions")
        return None
    if run_dir is None and summary is None:
        return None
    if summary is not None:
        recorded = (summary.get("submission") or {}).get("sha256")
        if recorded and archive.is_file() and sha256_file(archive) != recorded:
            raise DataFileError(f"{summary_path} describes another archive (sha256 {recorded[:12]}…, not "
                                f"{archive.name}'s); re-run predict or remove the stale summary")
        checkpoint = summary.get("checkpoint") or {}
        if checkpoint.get("file", "final.pt") != "final.pt":
            raise UsageError(f"{archive} was predicted from the diagnostic checkpoint {checkpoint.get('file')}, not "
                             "final.pt; per-epoch scores belong in `avsl-bench overfit`")
        if run_dir is None:
            run_dir = _find_run(str(summary["run"]), archive)
            if run_dir is None:
                raise DataFileError(f"{summary_path} names run {summary['run']!r}, which is not a run directory here;"
                                    " pass --run RUN_DIR")
    run_dir = Path(run_dir)
    ogl = summary is not None and str(summary.get("map", "")).startswith("ogl_")
    info = method_info(run_dir, ogl=ogl)
    if summary is not None:
        digest = (summary.get("checkpoint") or {}).get("sha256")
        if digest != info.checkpoint_sha256:
            raise DataFileError(f"{summary_path}: checkpoint sha256 {str(digest)[:12]}… differs from the run's final "
                                f"checkpoint {info.checkpoint_sha256[:12]}… ({run_dir}/run.json)")
    extra = {**info.extra, "run_dir": str(run_dir)}
    if summary is not None:
        extra["predictions"] = {k: summary.get(k) for k in ("map", "ogl_weights", "data", "samples")}
    return dataclasses.replace(info, name=name or info.name, extra=extra)


# --------------------------------------------------------------------------------------------- pipeline


def _same_run(run_dir: Path, method: str, recipe, seed: int, epochs: int | None) -> bool:
    """True if `run_dir` holds a finished run of this method/recipe/seed/schedule; an error if it holds another."""
    if not (run_dir / "final.pt").exists():
        return False
    try:
        run = json.loads((run_dir / "run.json").read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise DataFileError(f"{run_dir}: final.pt without a readable run.json ({exc}); choose a new --out") from None
    want = {"method": method, "recipe": recipe.name, "seed": seed, "epochs": epochs or recipe.schedule.epochs}
    have = {"method": run.get("method"), "recipe": (run.get("recipe") or {}).get("name"), "seed": run.get("seed"),
            "epochs": run.get("epochs")}
    if want != have:
        diff = ", ".join(f"{k} {have[k]!r} ≠ {want[k]!r}" for k in want if want[k] != have[k])
        raise UsageError(f"{run_dir} holds another run ({diff}); choose a new --out")
    return True


def run_method(
    method: str,
    recipe,
    data: DataPaths,
    bench,
    *,
    run_dir: str | os.PathLike,
    preds: str | os.PathLike,
    result_path: str | os.PathLike,
    epochs: int | None = None,
    device: str = "auto",
    seed: int = 0,
    ogl: bool | str = False,
    bootstrap: int = 1000,
    save_every: int | None = None,
    on_epoch: Callable[[dict], None] | None = None,
    console: Any = None,
) -> dict[str, Any]:
    """Train (unless `run_dir` already holds this run) → predict on the test shards → score → write result.json."""
    from ..scoring.result import write_result
    from ..scoring.score import ScoreOptions, score
    from .loop import train
    from .predict import predict

    run_dir, preds, result_path = Path(run_dir), Path(preds), Path(result_path)
    trained = not _same_run(run_dir, method, recipe, seed, epochs)
    if trained:
        if console is not None:
            console.rule(f"train {method} ({recipe.name}) on {data.train_set}")
        train(method, data.train, run_dir, recipe.source, epochs=epochs, device=device, seed=seed,
              save_every=save_every, on_epoch=on_epoch)
    elif console is not None:
        console.print(f"{run_dir}: finished run of {method} ({recipe.name}, seed {seed}) kept")
    if console is not None:
        console.rule(f"predict + score {method} on {bench.spec.protocol}")
    preds.parent.mkdir(parents=True, exist_ok=True)
    summary = predict(run_dir, data.test, preds, ogl=ogl, device=device)
    info = archive_method_info(preds, run_dir)
    result, table = score(preds, bench, ScoreOptions(bootstrap=bootstrap), info)
    result_path.parent.mkdir(parents=True, exist_ok=True)
    result = write_result(result_path, result, table)
    return {
        "method": method, "recipe": recipe.name, "trained": trained, "run_dir": str(run_dir),
        "checkpoint_sha256": summary["checkpoint"]["sha256"], "predictions": str(preds), "result_path": str(result_path),
        "protocol": result["protocol"], "metrics": {k: v["value"] for k, v in result["metrics"].items()},
        "result": result,
    }


def reproduce(
    method: str,
    recipe: str | os.PathLike,
    out: str | os.PathLike,
    *,
    seed: int = 0,
    device: str = "auto",
    epochs: int | None = None,
    benchmark: str | None = None,
    train_set: str | None = None,
    data_root: str | os.PathLike | None = None,
    ogl: bool | str = False,
    bootstrap: int = 1000,
    upstream: str | os.PathLike | None = None,
    flickr_annotations: str | os.PathLike | None = None,
    prepare_options: dict[str, Any] | None = None,
    on_epoch: Callable[[dict], None] | None = None,
    console: Any = None,
    progress: bool = True,
) -> dict[str, Any]:
    """Reproduce one (method, recipe, seed): prepare → train → predict → score; return paths and metrics.

    `benchmark` defaults to `synthetic[-tiny]-ext` for synthetic recipes, else `vggss` (`flickr` for Flickr
    training sets); `train_set` overrides the recipe's (e.g. `vggsound-144k-noleak`); `data_root` defaults to
    `out/data`. `prepare_options` (source_spec, flickr_archive, list_path, workers, …) go to `prepare_benchmark`.
    """
    from ..benchmarks.load import load_benchmark

    out = Path(out)
    loaded, train_set = resolve_recipe(method, recipe, train_set)
    benchmark = benchmark or default_benchmark(train_set)
    data = ensure_data(train_set, benchmark, data_root if data_root is not None else out / "data", console=console,
                       progress=progress, upstream=upstream, flickr_annotations=flickr_annotations,
                       **(prepare_options or {}))
    bench = load_benchmark(benchmark, mirror=upstream, flickr_annotations=flickr_annotations)
    done = run_method(method, loaded, data, bench, run_dir=out / "run", preds=out / "preds.npz",
                      result_path=out / "result.json", epochs=epochs, device=device, seed=seed, ogl=ogl,
                      bootstrap=bootstrap, on_epoch=on_epoch, console=console)
    return {**done, "train_set": train_set, "benchmark": benchmark, "data": data.to_json(), "out": str(out)}
