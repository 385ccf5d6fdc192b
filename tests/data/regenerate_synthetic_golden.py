"""Rewrite tests/data/golden/synthetic_hashes.json, the synthetic benchmark's regression pins (data spec §10).

Run only after an intended change of the generator (which also means a new `synthetic@<version>`):

    .venv/bin/python tests/data/regenerate_synthetic_golden.py

Pins, for seed 0: the sha256 of the raw RGB array and of the PCM of the first 10 samples of each split, and
the sha256 of the canonical JSON of the `synthetic-tiny` annotation rows (placement, boxes, negatives).
"""

from __future__ import annotations

import sys
from pathlib import Path

GOLDEN = Path(__file__).resolve().parent / "golden" / "synthetic_hashes.json"
N_SAMPLES = 10
SEED = 0


def golden() -> dict:
    """The pinned values, computed from the current code."""
    from avsl_bench.benchmarks.synthetic import GENERATOR_VERSION, SPLIT_STREAM, scene_params, synthetic_annotations
    from avsl_bench.data.synthetic import render_audio, render_rgb
    from avsl_bench.files import canonical_json, sha256_bytes

    samples = {}
    for split in SPLIT_STREAM:
        samples[split] = []
        for index in range(N_SAMPLES):
            params = scene_params(split, index, SEED)
            samples[split].append({
                "key": params.key,
                "rgb_sha256": sha256_bytes(render_rgb(params).tobytes()),
                "pcm_sha256": sha256_bytes(render_audio(params).astype("<i2").tobytes()),
            })  # fmt: skip
    annotations = {}
    for split in SPLIT_STREAM:
        rows = synthetic_annotations("synthetic-tiny", split, SEED, negatives=split != "train")
        annotations[f"synthetic-tiny/{split}"] = sha256_bytes(canonical_json(rows).encode())
    return {"generator_version": GENERATOR_VERSION, "seed": SEED, "samples": samples, "annotations": annotations}


def main() -> int:
    sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
    from avsl_bench.files import write_json_atomic

    write_json_atomic(GOLDEN, golden())
    print(f"wrote {GOLDEN}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
