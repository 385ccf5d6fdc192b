"""The result file (`avsl-bench/result@1`, protocol §8) and its per-sample parquet table.

Optional block `retrieval` (only with `score --retrieval`, from the archive's embeddings; see
`scoring.retrieval`): ``{"convention": str, "queries": int, "classes": int, "embedding_dim": int,
"excluded": {"negatives": int, "positives_without_class": int}, "audio_to_image": {"r1", "r5", "r10"},
"image_to_audio": {"r1", "r5", "r10"}}`` with recalls as fractions in [0, 1]. It is not derived from the
per-sample table (the leaderboard's re-score does not check it).
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from ..errors import ResultFileError
from ..files import atomic_write, sha256_file, write_text_atomic

SCHEMA = "avsl-bench/result@1"
CHECKPOINT_SELECTIONS = ("final", "early_stopping", "unspecified")
RETRIEVAL_DIRECTIONS = ("audio_to_image", "image_to_audio")
RETRIEVAL_KEYS = ("r1", "r5", "r10")
PER_SAMPLE_COLUMNS = ("id", "positive", "negative_type", "size_bucket", "area", "ciou", "confidence", "mse", "missing")


def per_sample_path(result_path: str | Path) -> Path:
    """`result.json` → `result.samples.parquet` beside it."""
    result_path = Path(result_path)
    return result_path.with_name(result_path.stem + ".samples.parquet")


def finite_or_none(value: Any) -> Any:
    """JSON-safe numbers: NaN/inf become None (recursively through lists and dicts)."""
    if isinstance(value, dict):
        return {k: finite_or_none(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [finite_or_none(v) for v in value]
    if isinstance(value, (float, np.floating)):
        return float(value) if math.isfinite(value) else None
    if isinstance(value, np.integer):
        return int(value)
    if isinstance(value, np.bool_):
        return bool(value)
    return value


def write_result(result_path: str | Path, result: dict, table: pd.DataFrame) -> dict:
    """Write the per-sample parquet, then result.json (which records the parquet's sha256), both atomically."""
    result_path = Path(result_path)
    samples = per_sample_path(result_path)
    with atomic_write(samples) as handle:
        table.to_parquet(handle, index=False)
    result = dict(result)
    result["per_sample"] = {"path": samples.name, "sha256": sha256_file(samples), "rows": int(len(table))}
    write_text_atomic(result_path, json.dumps(finite_or_none(result), indent=2, sort_keys=True, allow_nan=False) + "\n")
    return result


def read_result(result_path: str | Path, *, with_table: bool = True) -> tuple[dict, pd.DataFrame | None]:
    """Load and check a result.json (schema, per-sample table digest); optionally its table."""
    result_path = Path(result_path)
    try:
        result = json.loads(result_path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise ResultFileError(f"{result_path}: unreadable result file: {exc}") from exc
    if not isinstance(result, dict) or result.get("schema") != SCHEMA:
        raise ResultFileError(f"{result_path}: not an {SCHEMA} file (schema={result.get('schema') if isinstance(result, dict) else None!r})")
    if not with_table:
        return result, None
    samples = result_path.with_name(result.get("per_sample", {}).get("path", per_sample_path(result_path).name))
    if not samples.is_file():
        raise ResultFileError(f"{result_path}: per-sample table {samples.name} is missing")
    digest = sha256_file(samples)
    if digest != result["per_sample"].get("sha256"):
        raise ResultFileError(f"{samples}: sha256 {digest} differs from the one recorded in {result_path.name}")
    table = pd.read_parquet(samples)
    missing_cols = [c for c in PER_SAMPLE_COLUMNS if c not in table.columns]
    if missing_cols:
        raise ResultFileError(f"{samples}: missing columns {missing_cols}")
    return result, table
