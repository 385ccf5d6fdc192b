"""Write synthetic-benchmark shards for tests and the pin-refresh script (no manifest/parquet, just tars).

Uses the data layer's renderer (`avsl_bench.data.synthetic.sample_blobs_batch`) and deterministic tar writer
(`avsl_bench.data.shards.write_tar`), so the tars hold the same members as `avsl-bench prepare` writes. When the
prepare driver exists, `prepare` output can be used instead; the trainer reads either.
"""

from __future__ import annotations

import os
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

SPLITS = ("train", "test", "test-neg")  # also "val", "val-neg"


def _rows(size: str, split: str, seed: int) -> list[dict]:
    from avsl_bench.benchmarks.synthetic import synthetic_annotations

    base = split.removesuffix("-neg")
    rows = synthetic_annotations(size, base, seed, negatives=split.endswith("-neg"))
    return sorted((r for r in rows if r["split"] == split), key=lambda r: r["key"])


def _write_shard(args) -> str:
    size, split, seed, start, stop, path = args
    from avsl_bench.data.shards import write_tar
    from avsl_bench.data.synthetic import sample_blobs_batch

    rows = _rows(size, split, seed)[start:stop]
    blobs = sample_blobs_batch(rows)
    tmp = Path(str(path) + ".tmp")
    with open(tmp, "wb") as fh:
        write_tar(fh, blobs)
    os.replace(tmp, path)
    return str(path)


def write_synthetic(out: str | os.PathLike, size: str = "synthetic-tiny", splits=SPLITS, *, seed: int = 0,
                    samples_per_shard: int = 1000, workers: int = 2, limit: dict | None = None) -> dict[str, Path]:
    """Write `<out>/<size>/<split>/NNNNNN.tar` for each split (skips shards already written); return split dirs.

    `limit` optionally caps the number of samples per split (e.g. {"train": 512}).
    """
    jobs, dirs = [], {}
    for split in splits:
        n = len(_rows(size, split, seed))
        if limit and split in limit:
            n = min(n, limit[split])
        d = Path(out) / size / split
        d.mkdir(parents=True, exist_ok=True)
        dirs[split] = d
        for s, start in enumerate(range(0, n, samples_per_shard)):
            path = d / f"{s:06d}.tar"
            if not path.exists():
                jobs.append((size, split, seed, start, min(n, start + samples_per_shard), path))
    if jobs:
        if workers > 1:
            with ProcessPoolExecutor(workers) as pool:
                list(pool.map(_write_shard, jobs))
        else:
            for job in jobs:
                _write_shard(job)
    return dirs
