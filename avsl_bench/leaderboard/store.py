"""The result store: validate a result file, add it atomically, load every entry.

Layout (`<store>` defaults to the repository's `leaderboard/`)::

    <store>/results/<benchmark>/<entry>/result.json            the submitted result (bytes unchanged)
    <store>/results/<benchmark>/<entry>/<name>.samples.parquet  its per-sample table (name as recorded)
    <store>/results/<benchmark>/<entry>/overfit.json            optional per-epoch diagnostic (see below)

An entry is accepted only if it is a valid `avsl-bench/result@1` file whose protocol version, benchmark
definition sha256 and ground-truth fingerprint match the benchmark as defined now; its checkpoint selection is
`final` (protocol §8); it was scored at γ = 0.5 with ≥ 1,000 bootstrap resamples at 95 %; its per-sample table
lists exactly the benchmark's samples; and every metric, stratum and CI recomputed from that table matches the
recorded one to 1e-12. Anything else raises :class:`EntryRefused` with a one-line reason.

Overfit diagnostic (`avsl-bench/overfit@1`), either `result["diagnostics"]["overfit"]` or a file `overfit.json`
beside result.json (the inline one wins). Per-epoch scores of the same run, logged for diagnosis only — they
never select the checkpoint; the leaderboard plots them to show what early stopping would have added::

    {"schema": "avsl-bench/overfit@1",
     "split": "test",                        # what the per-epoch scores were computed on (free text)
     "epochs": [1, 2, 3, 4],                 # strictly increasing
     "scores": {"loc_acc": [0.41, 0.47, 0.44, 0.39], "auc": [...]},   # fractions, one list per metric
     "final_epoch": 4}                       # optional, default: the last epoch (the reported checkpoint)

`"metric": "loc_acc", "scores": [...]` (one list) is accepted as a shorthand.
"""

from __future__ import annotations

import json
import math
import os
import re
import shutil
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from ..errors import AvslBenchError, ResultFileError
from ..files import fsync_dir, sha256_file

__all__ = [
    "EntryRefused", "Overfit", "CheckedResult", "StoreEntry", "OVERFIT_SCHEMA", "REQUIRED_GAMMA", "MIN_RESAMPLES",
    "TOLERANCE", "validate_result", "add_result", "load_store", "entry_id", "read_overfit",
]

OVERFIT_SCHEMA = "avsl-bench/overfit@1"
REQUIRED_GAMMA = 0.5
MIN_RESAMPLES = 1000
REQUIRED_LEVEL = 0.95
TOLERANCE = 1e-12
LOWER_IS_BETTER = frozenset({"mse"})
_PARQUET_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*\.parquet$")
_OBJECT_KEYS = ("benchmark", "options", "method", "metrics", "strata", "counts", "submission", "per_sample")
_ENTRY_NAME = re.compile(r"^[a-z0-9][a-z0-9._-]{0,99}$")


class EntryRefused(ResultFileError):
    """A result the leaderboard does not accept; the message is the one-line reason."""


@dataclass(frozen=True)
class Overfit:
    """Per-epoch scores of one run (diagnostic only)."""

    epochs: tuple[int, ...]
    scores: dict[str, tuple[float, ...]]
    final_epoch: int
    split: str = ""

    def gap(self, metric: str) -> tuple[int, float, float]:
        """(best epoch, best score, best − final): what selecting on these scores would have added."""
        values = np.asarray(self.scores[metric])
        best = int(np.argmin(values) if metric in LOWER_IS_BETTER else np.argmax(values))
        final = values[self.epochs.index(self.final_epoch)]
        return self.epochs[best], float(values[best]), float(abs(values[best] - final))


@dataclass
class CheckedResult:
    """A result file that passed every check, with its per-sample table."""

    path: Path
    result: dict
    table: pd.DataFrame
    overfit: Overfit | None
    overfit_file: Path | None  # the sibling overfit.json, if that is where the diagnostic came from


@dataclass
class StoreEntry:
    """One leaderboard entry (from the store or an extra result given to the build)."""

    entry_id: str
    benchmark: str
    path: Path
    result: dict
    table: pd.DataFrame
    overfit: Overfit | None = None
    in_store: bool = True
    stale: bool = False  # the benchmark definition changed since the entry was checked
    notes: list[str] = field(default_factory=list)

    @property
    def method(self) -> str:
        return str(self.result.get("method", {}).get("name") or "unnamed")


# --------------------------------------------------------------------------------------------- overfit


def read_overfit(raw: Any, where: str) -> Overfit:
    """Validate an overfit record (dict) and return it; errors raise EntryRefused naming `where`."""

    def bad(problem: str) -> EntryRefused:
        return EntryRefused(f"{where}: overfit diagnostic: {problem}")

    if not isinstance(raw, dict) or raw.get("schema") != OVERFIT_SCHEMA:
        raise bad(f"expected an object with schema {OVERFIT_SCHEMA!r}")
    epochs = raw.get("epochs")
    if not isinstance(epochs, list) or not epochs or not all(isinstance(e, int) and not isinstance(e, bool)
                                                              for e in epochs):
        raise bad("epochs must be a non-empty list of integers")
    if any(b <= a for a, b in zip(epochs, epochs[1:])):
        raise bad("epochs must be strictly increasing")
    scores = raw.get("scores")
    if isinstance(scores, list):
        metric = raw.get("metric")
        if not isinstance(metric, str):
            raise bad("a list of scores needs \"metric\"")
        scores = {metric: scores}
    if not isinstance(scores, dict) or not scores:
        raise bad("scores must map metric keys to lists")
    clean = {}
    for key, values in scores.items():
        if not isinstance(key, str) or not re.fullmatch(r"[a-z0-9_]+", key):
            raise bad(f"bad metric key {key!r}")
        if not isinstance(values, list) or len(values) != len(epochs):
            raise bad(f"scores.{key} must have one value per epoch ({len(epochs)})")
        if not all(isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v) for v in values):
            raise bad(f"scores.{key} must be finite numbers")
        clean[key] = tuple(float(v) for v in values)
    final = raw.get("final_epoch", epochs[-1])
    if final not in epochs:
        raise bad(f"final_epoch {final!r} is not one of the epochs")
    split = raw.get("split", "")
    return Overfit(tuple(epochs), clean, int(final), str(split))


def _find_overfit(path: Path, result: dict) -> tuple[Overfit | None, Path | None]:
    inline = (result.get("diagnostics") or {}).get("overfit") if isinstance(result.get("diagnostics"), dict) else None
    if inline is not None:
        return read_overfit(inline, f"{path} diagnostics.overfit"), None
    sibling = path.with_name("overfit.json")
    if sibling.is_file():
        try:
            raw = json.loads(sibling.read_text(encoding="utf-8"))
        except (OSError, ValueError) as exc:
            raise EntryRefused(f"{sibling}: unreadable overfit diagnostic: {exc}") from exc
        return read_overfit(raw, str(sibling)), sibling
    return None, None


# --------------------------------------------------------------------------------------------- checks


def _refuse(path: Path, problem: str) -> EntryRefused:
    return EntryRefused(f"{path}: refused: {problem}")


def _same(a: Any, b: Any) -> bool:
    """Recorded value (None for NaN) vs recomputed value, to TOLERANCE."""
    a = None if a is None else float(a)
    b = None if b is None or (isinstance(b, float) and math.isnan(b)) else float(b)
    if a is None or b is None:
        return a is None and b is None
    return abs(a - b) <= TOLERANCE


def _read(path: Path) -> tuple[dict, pd.DataFrame]:
    from ..scoring.result import read_result

    result, _ = read_result(path, with_table=False)
    per_sample = result.get("per_sample")
    name = per_sample.get("path") if isinstance(per_sample, dict) else None
    if not isinstance(name, str) or not _PARQUET_NAME.match(name):
        raise _refuse(path, f"per_sample.path must be a plain .parquet file name beside the result, got {name!r}")
    return read_result(path)


def _spec_of(path: Path, result: dict):
    from ..benchmarks.spec import get_spec

    protocol = result.get("protocol")
    if not isinstance(protocol, str) or protocol.count("@") != 1:
        raise _refuse(path, f"protocol must be '<benchmark>@<version>', got {protocol!r}")
    name, version = protocol.split("@")
    try:
        spec = get_spec(name)
    except AvslBenchError as exc:
        raise _refuse(path, f"{exc}") from exc
    if version != str(spec.version):
        raise _refuse(path, f"protocol {protocol} is not the current version of {name!r} ({spec.protocol})")
    if (result.get("benchmark") or {}).get("name") != spec.name:
        raise _refuse(path, f"benchmark.name {result.get('benchmark', {}).get('name')!r} does not match {protocol}")
    return spec


def _check_declarations(path: Path, result: dict, spec) -> None:
    selection = (result.get("method") or {}).get("checkpoint_selection")
    if selection != "final":
        raise _refuse(path, f"checkpoint selection is {selection!r}; the leaderboard accepts only 'final' "
                            "(protocol §8: early stopping is forbidden)")
    definition = sha256_file(spec.source)
    if result["benchmark"].get("definition_sha256") != definition:
        raise _refuse(path, f"benchmark definition sha256 {result['benchmark'].get('definition_sha256')!r} differs "
                            f"from the current {spec.source.name} ({definition[:12]}…); re-score against {spec.protocol}")
    options = result.get("options") or {}
    if options.get("gamma") != REQUIRED_GAMMA:
        raise _refuse(path, f"scored at gamma={options.get('gamma')!r}; the leaderboard ranks at γ = {REQUIRED_GAMMA}")
    boot = options.get("bootstrap") or {}
    if not isinstance(boot.get("resamples"), int) or boot["resamples"] < MIN_RESAMPLES:
        raise _refuse(path, f"{boot.get('resamples')!r} bootstrap resamples; the leaderboard needs ≥ {MIN_RESAMPLES} "
                            "(protocol §8)")
    if boot.get("level") != REQUIRED_LEVEL or not isinstance(boot.get("seed"), int):
        raise _refuse(path, f"bootstrap level {boot.get('level')!r} / seed {boot.get('seed')!r}: need level 0.95 "
                            "and an integer seed")


def _check_ground_truth(path: Path, result: dict, table: pd.DataFrame, bench) -> None:
    from ..scoring.score import benchmark_fingerprint

    fingerprint = benchmark_fingerprint(bench)
    if result["benchmark"].get("ground_truth_sha256") != fingerprint:
        raise _refuse(path, f"ground-truth sha256 {result['benchmark'].get('ground_truth_sha256')!r} differs from "
                            f"{bench.spec.protocol}'s current ground truth ({fingerprint[:12]}…)")
    if dict(result["benchmark"].get("files") or {}) != dict(bench.file_sha256):
        raise _refuse(path, f"annotation file checksums differ from {bench.spec.protocol}'s pinned files")
    ids = table["id"].astype(str).tolist()
    if ids != list(bench.ids):
        if len(ids) != len(bench.ids):
            raise _refuse(path, f"per-sample table has {len(ids)} rows, {bench.spec.protocol} has {len(bench.ids)} samples")
        first = next(i for i, (a, b) in enumerate(zip(ids, bench.ids)) if a != b)
        raise _refuse(path, f"per-sample ids differ from {bench.spec.protocol} at row {first}: "
                            f"{ids[first]!r} instead of {bench.ids[first]!r}")
    if not np.array_equal(table["positive"].to_numpy(bool), np.asarray(bench.positive, bool)):
        raise _refuse(path, "per-sample 'positive' column differs from the benchmark")
    counts = result.get("counts") or {}
    missing = int(table["missing"].sum())
    expected = {"expected": len(bench.ids), "positives": bench.n_positives, "negatives": bench.n_negatives,
                "missing": missing, "scored": len(bench.ids) - missing}
    wrong = {k: counts.get(k) for k, v in expected.items() if counts.get(k) != v}
    if wrong:
        raise _refuse(path, f"counts {wrong} do not match the per-sample table and benchmark")


def _check_metrics(path: Path, result: dict, table: pd.DataFrame, extended: bool, check_ci: bool) -> None:
    from ..scoring.metrics import metric_values
    from ..scoring.score import ScoreOptions, score_table

    options = result["options"]
    boot = options["bootstrap"]
    recorded = {k: v for k, v in (result.get("metrics") or {}).items()}
    for name, metrics in (result.get("strata") or {}).items():
        recorded.update({f"strata.{name}.{k}": v for k, v in metrics.items()})
    if check_ci:
        metrics, strata = score_table(table, extended, ScoreOptions(
            gamma=options["gamma"], bootstrap=boot["resamples"], seed=boot["seed"], level=boot["level"]))
        fresh = dict(metrics)
        for name, values in strata.items():
            fresh.update({f"strata.{name}.{k}": v for k, v in values.items()})
    else:
        points = metric_values(table, gamma=options["gamma"], extended=extended, seed=boot["seed"])
        fresh = {k: {"value": v} for k, v in points.items()}
    if set(recorded) != set(fresh):
        extra, missing = sorted(set(recorded) - set(fresh)), sorted(set(fresh) - set(recorded))
        raise _refuse(path, f"metric keys differ from a re-score of the per-sample table "
                            f"(unexpected {extra}, missing {missing})")
    for key in sorted(fresh):
        entry = recorded[key]
        if not isinstance(entry, dict) or not _same(entry.get("value"), fresh[key]["value"]):
            got = entry.get("value") if isinstance(entry, dict) else entry
            raise _refuse(path, f"{key} = {got!r} but the per-sample table gives {float(fresh[key]['value'])!r} "
                                f"(tolerance {TOLERANCE:g})")
        if check_ci:
            ci = entry.get("ci95")
            if not (isinstance(ci, list) and len(ci) == 2 and all(_same(a, b) for a, b in zip(ci, fresh[key]["ci95"]))):
                raise _refuse(path, f"{key} ci95 = {ci!r} but the bootstrap of the per-sample table gives "
                                    f"{fresh[key]['ci95']!r}")


def validate_result(
    path: str | Path, *, bench=None, mirror: str | os.PathLike | None = None,
    flickr_annotations: str | os.PathLike | None = None, check_ci: bool = True,
) -> CheckedResult:
    """Run every acceptance check on a result.json (module docstring); raise EntryRefused on the first failure.

    `bench` (a loaded BenchmarkData) skips loading the benchmark; otherwise it is loaded with `mirror` /
    `flickr_annotations` like `avsl-bench score` does.
    """
    path = Path(path)
    result, table = _read(path)
    for key in _OBJECT_KEYS:
        if not isinstance(result.get(key), dict):
            raise _refuse(path, f"malformed result: {key!r} must be an object")
    spec = _spec_of(path, result)
    _check_declarations(path, result, spec)
    if bench is None:
        from ..benchmarks.load import load_benchmark

        bench = load_benchmark(spec, mirror=mirror, flickr_annotations=flickr_annotations)
    elif bench.spec.protocol != spec.protocol:
        raise _refuse(path, f"result is for {spec.protocol}, the benchmark given is {bench.spec.protocol}")
    _check_ground_truth(path, result, table, bench)
    _check_metrics(path, result, table, spec.extended, check_ci)
    overfit, overfit_file = _find_overfit(path, result)
    return CheckedResult(path, result, table, overfit, overfit_file)


# --------------------------------------------------------------------------------------------- store


def _slug(text: str | None, fallback: str) -> str:
    slug = re.sub(r"[^a-z0-9]+", "-", (text or "").lower()).strip("-")[:40].strip("-")
    return slug or fallback


def entry_id(result: dict) -> str:
    """Default entry name: `<method>--<training set>--<submission sha256[:8]>`, lower-case slug."""
    method = result.get("method") or {}
    digest = str((result.get("submission") or {}).get("sha256") or "")[:8] or "nosub"
    return f"{_slug(method.get('name'), 'unnamed')}--{_slug(method.get('training_set'), 'none')}--{_slug(digest, 'x')}"


def _results_dir(store: Path) -> Path:
    return Path(store) / "results"


def _fsync_file(path: Path) -> None:
    with open(path, "rb") as handle:
        os.fsync(handle.fileno())


def add_result(
    path: str | Path, store: str | Path = "leaderboard", *, name: str | None = None, replace: bool = False,
    mirror: str | os.PathLike | None = None, flickr_annotations: str | os.PathLike | None = None, bench=None,
) -> tuple[Path, str]:
    """Validate `path` and copy it (result, per-sample table, overfit.json) into the store atomically.

    Returns (entry directory, status) with status `added`, `replaced` or `unchanged` (the same result file is
    already stored under that name). An existing entry with a different result is refused unless `replace`.
    """
    checked = validate_result(path, bench=bench, mirror=mirror, flickr_annotations=flickr_annotations)
    source = checked.path
    entry = name or entry_id(checked.result)
    if not _ENTRY_NAME.match(entry):
        raise EntryRefused(f"entry name {entry!r} must be lower-case letters, digits, '.', '_' or '-'")
    bench_dir = _results_dir(Path(store)) / checked.result["benchmark"]["name"]
    final = bench_dir / entry
    digest = sha256_file(source)
    for other in sorted(bench_dir.glob("*/result.json")) if bench_dir.is_dir() else []:
        if other.parent.name != entry and not other.parent.name.startswith(".") and sha256_file(other) == digest:
            raise EntryRefused(f"{source}: already in the store as {other.parent.name!r}")
    if final.is_dir() and (final / "result.json").is_file() and sha256_file(final / "result.json") == digest:
        return final, "unchanged"
    if final.exists() and not replace:
        raise EntryRefused(f"{final}: entry {entry!r} already holds a different result; pass --replace or --name")
    bench_dir.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{entry}.", suffix=".tmp", dir=bench_dir))
    try:
        parquet = checked.result["per_sample"]["path"]
        shutil.copyfile(source, tmp / "result.json")
        shutil.copyfile(source.with_name(parquet), tmp / parquet)
        if checked.overfit_file is not None:
            shutil.copyfile(checked.overfit_file, tmp / "overfit.json")
        for copied in tmp.iterdir():
            _fsync_file(copied)
        if sha256_file(tmp / parquet) != checked.result["per_sample"]["sha256"]:
            raise EntryRefused(f"{source}: per-sample table changed while it was being copied")
        fsync_dir(tmp)
        os.chmod(tmp, 0o755)  # mkdtemp makes it private; a store entry is an ordinary folder
        status = "added"
        if final.exists():
            trash = Path(tempfile.mkdtemp(prefix=f".{entry}.", suffix=".old", dir=bench_dir))
            os.replace(final, trash / entry)
            os.replace(tmp, final)
            shutil.rmtree(trash, ignore_errors=True)
            status = "replaced"
        else:
            os.replace(tmp, final)
        fsync_dir(bench_dir)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return final, status


def _current_definition(benchmark: str) -> str | None:
    from ..benchmarks.spec import benchmark_registry

    registry = benchmark_registry()
    return sha256_file(registry.get(benchmark).source) if benchmark in registry else None


def entry_from_file(path: Path, entry: str, *, in_store: bool) -> StoreEntry:
    """Read one stored (already validated) entry: schema and per-sample digest are re-checked, metrics are not."""
    result, table = _read(path)
    overfit, _ = _find_overfit(path, result)
    benchmark = str(result.get("benchmark", {}).get("name") or "unknown")
    current = _current_definition(benchmark)
    stale = current is None or result["benchmark"].get("definition_sha256") != current
    return StoreEntry(entry, benchmark, path, result, table, overfit, in_store=in_store, stale=stale)


def load_store(store: str | Path = "leaderboard") -> list[StoreEntry]:
    """Every entry of the store, sorted by benchmark and entry name (temporary directories are skipped)."""
    root = _results_dir(Path(store))
    entries = []
    for path in sorted(root.glob("*/*/result.json")) if root.is_dir() else []:
        if path.parent.name.startswith(".") or path.parent.parent.name.startswith("."):
            continue
        entry = entry_from_file(path, path.parent.name, in_store=True)
        if entry.benchmark != path.parent.parent.name:
            raise ResultFileError(f"{path}: benchmark {entry.benchmark!r} stored under {path.parent.parent.name!r}")
        entries.append(entry)
    return entries
