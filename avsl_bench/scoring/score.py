"""`score`: a submission + a benchmark protocol → result dict, per-sample table, CIs (protocol §2–8)."""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from ..benchmarks.load import BenchmarkData
from ..errors import SubmissionError, UsageError
from ..files import sha256_file
from ..provenance import tool_info
from . import bootstrap
from .metrics import curves, metric_values
from .persample import MapOptions, per_sample_table
from .result import CHECKPOINT_SELECTIONS, SCHEMA
from .submission import Submission, open_submission, validate_ids


@dataclass(frozen=True)
class MethodInfo:
    """What the submitter says about the method (copied from a training run's run.json when given)."""

    name: str = "unnamed"
    training_set: str | None = None
    training_set_sha256: str | None = None
    training_set_leaky: bool | None = None
    checkpoint_sha256: str | None = None
    checkpoint_selection: str = "unspecified"
    extra: dict = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.checkpoint_selection not in CHECKPOINT_SELECTIONS:
            raise UsageError(f"checkpoint selection must be one of {CHECKPOINT_SELECTIONS}")


@dataclass(frozen=True)
class ScoreOptions:
    """Every option that changes a number; all recorded in result.json."""

    maps: MapOptions = MapOptions()
    gamma: float = 0.5
    allow_missing: bool = False
    bootstrap: int = 1000
    seed: int = 0
    level: float = 0.95
    chunk_size: int = 128
    retrieval: bool = False  # cross-modal R@k from the archive's embeddings (result block `retrieval`)


def benchmark_fingerprint(bench: BenchmarkData) -> str:
    """sha256 of the scored ground truth itself: ids, types and grid boxes in evaluation order."""
    payload = json.dumps(
        [bench.ids, bench.negative_type, [[list(b) for b in bs] for bs in bench.boxes], bench.spec.gt_rule],
        separators=(",", ":"),
    )
    return hashlib.sha256(payload.encode()).hexdigest()


def _with_ci(point: dict, boot: dict | None, level: float) -> dict:
    out = {}
    for key, value in point.items():
        ci = bootstrap.percentile_ci(np.asarray(boot[key]), level) if boot is not None else (None, None)
        out[key] = {"value": float(value), "ci95": [ci[0], ci[1]]}
    return out


def score_table(table: pd.DataFrame, bench_extended: bool, options: ScoreOptions) -> tuple[dict, dict]:
    """(metrics, strata) with bootstrap CIs from a per-sample table."""
    point = metric_values(table, gamma=options.gamma, extended=bench_extended, seed=options.seed)
    boot = None
    if options.bootstrap > 0:
        weights = bootstrap.resample_weights(
            table["positive"].to_numpy(bool), n_resamples=options.bootstrap, seed=options.seed
        )
        boot = metric_values(table, gamma=options.gamma, extended=bench_extended, seed=options.seed, weights=weights)
    with_ci = _with_ci(point, boot, options.level)
    metrics = {k: v for k, v in with_ci.items() if not k.startswith("strata.")}
    strata: dict[str, dict] = {}
    for key, value in with_ci.items():
        if key.startswith("strata."):
            _, name, metric = key.split(".", 2)
            strata.setdefault(name, {})[metric] = value
    return metrics, strata


def _retrieval_rows(submission: Submission, bench: BenchmarkData, allow_missing: bool) -> tuple[np.ndarray, list]:
    """Archive positions and classes of the retrieval samples (positives with a class, benchmark order).

    Checked before any map is read: the benchmark has classes, the archive carries embeddings, and every
    such positive is in the archive (retrieval never scores a missing sample).
    """
    labelled = [i for i in range(len(bench.ids)) if bench.positive[i] and bench.classes[i] is not None]
    if not labelled:
        raise UsageError(f"cross-modal retrieval needs class labels, and {bench.spec.protocol} has none for its "
                         "positives (use a benchmark with classes: VGG-SS or synthetic)")
    submission.require_embeddings()
    validate_ids(submission, bench.ids, allow_missing)
    position = {sample: j for j, sample in enumerate(submission.ids)}
    absent = [bench.ids[i] for i in labelled if bench.ids[i] not in position]
    if absent:
        raise SubmissionError(submission.path, f"cross-modal retrieval needs the embeddings of every positive; "
                                               f"{len(absent):,} are missing (e.g. {absent[0]!r})")
    return (np.array([position[bench.ids[i]] for i in labelled], dtype=np.int64),
            [bench.classes[i] for i in labelled])


def retrieval_block(submission: Submission, bench: BenchmarkData, rows: np.ndarray, labels: list) -> dict:
    """The result's `retrieval` block: R@1/5/10 audio→image and image→audio, counts and the convention."""
    from .retrieval import CONVENTION, DEFAULT_KS, cross_modal_recall

    emb = submission.read_embeddings(rows)
    recall = cross_modal_recall(emb.audio, emb.image, labels, DEFAULT_KS)
    n_no_class = int(sum(1 for p, c in zip(bench.positive, bench.classes) if p and c is None))
    return {
        "convention": CONVENTION + "; gallery order = benchmark evaluation order",
        "queries": len(rows),
        "classes": len(set(labels)),
        "embedding_dim": int(submission.embedding_dim),
        "excluded": {"negatives": bench.n_negatives, "positives_without_class": n_no_class},
        **{direction: {f"r{k}": value for k, value in by_k.items()} for direction, by_k in recall.items()},
    }


def score(
    submission_path: str | Path, bench: BenchmarkData, options: ScoreOptions = ScoreOptions(),
    method: MethodInfo = MethodInfo(),
) -> tuple[dict, pd.DataFrame]:
    """Score one prediction archive against a loaded benchmark. Returns (result dict, per-sample table).

    With `options.retrieval` the result also holds a `retrieval` block (`retrieval_block`).
    """
    with open_submission(submission_path) as submission:
        if options.retrieval:
            rows, labels = _retrieval_rows(submission, bench, options.allow_missing)
        table = per_sample_table(
            submission, bench, options.maps, allow_missing=options.allow_missing, chunk_size=options.chunk_size
        )
        retrieval = retrieval_block(submission, bench, rows, labels) if options.retrieval else None
    metrics, strata = score_table(table, bench.spec.extended, options)
    if "max_f1" in metrics:
        from .functional import round_legacy_f1

        metrics["max_f1"]["published_rounding"] = round_legacy_f1(metrics["max_f1"]["value"])
    n_missing = int(table["missing"].sum())
    result = {
        "schema": SCHEMA,
        "protocol": bench.spec.protocol,
        "benchmark": {
            "name": bench.spec.name,
            "title": bench.spec.title,
            "definition_sha256": sha256_file(bench.spec.source),
            "ground_truth_sha256": benchmark_fingerprint(bench),
            "files": dict(sorted(bench.file_sha256.items())),
            "defects": bench.defects,
        },
        "options": {
            "binarize": options.maps.binarize,
            "resize": options.maps.resize,
            "align_corners": options.maps.align_corners,
            "confidence": "submitted_scores" if submission.scores is not None else "top_quarter_mean",
            "gamma": options.gamma,
            "allow_missing": options.allow_missing,
            "bootstrap": {"resamples": options.bootstrap, "seed": options.seed, "level": options.level,
                          "method": "percentile; positives and negatives resampled separately"},
        },
        "tool": tool_info(),
        "submission": {
            "file": Path(submission_path).name,
            "sha256": submission.sha256,
            "layout": submission.layout,
            "map_shape": list(submission.shape),
            "dtype": str(submission.dtype),
        },
        "method": asdict(method),
        "counts": {
            "expected": len(bench.ids),
            "scored": len(bench.ids) - n_missing,
            "missing": n_missing,
            "positives": bench.n_positives,
            "negatives": bench.n_negatives,
            "nan_ciou": int(np.isnan(table.loc[table["positive"], "ciou"]).sum()),
        },
        "metrics": metrics,
        "strata": strata,
        "curves": curves(table, options.gamma) if bench.spec.extended else {},
    }
    if retrieval is not None:
        result["retrieval"] = retrieval
    return result, table
