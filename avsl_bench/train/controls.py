"""Audio controls for the calibration of learned baselines (baselines spec §3.8).

Both controls pair each test positive's frame with other audio and are scored against the frame's own (true
sounding) box, so they measure how much the map follows the sound:

* `distractor`: the sound of one of the frame's distractor classes (a test positive whose sounding class is that
  distractor). A model that localises the sound should move to the distractor, far below its own LocAcc.
* `shuffle`: the audio of a random other test positive (a derangement).

Choices are pure functions of `seed` (hash ranks as in data spec §6.3).
"""

from __future__ import annotations

import hashlib
import os
from typing import Any, Sequence


from ..errors import UsageError
from .data import ShardIndex

__all__ = ["control_pairs", "predict_control", "CONTROL_KINDS"]

CONTROL_KINDS = ("distractor", "shuffle")


def _rank(seed: int, tag: str, x: str) -> int:
    return int.from_bytes(hashlib.sha256(f"{seed}|{tag}|{x}".encode()).digest()[:8], "big")


def control_pairs(index: ShardIndex, kind: str, *, seed: int = 0) -> dict[str, str]:
    """frame key → audio key for every positive of `index` (negatives are ignored)."""
    positives = sorted(s.key for s in index.samples if not s.meta.get("negative"))
    meta = {s.key: s.meta for s in index.samples}
    if len(positives) < 2:
        raise UsageError("controls need at least two positives")
    if kind == "shuffle":
        order = sorted(positives, key=lambda k: _rank(seed, "shuffle", k))
        return {order[i]: order[(i + 1) % len(order)] for i in range(len(order))}
    if kind != "distractor":
        raise UsageError(f"control kind must be one of {CONTROL_KINDS}, got {kind!r}")
    by_class: dict[str, list[str]] = {}
    for k in positives:
        by_class.setdefault(str(meta[k].get("class")), []).append(k)
    pairs = {}
    for k in positives:
        m = meta[k]
        classes = m.get("frame_classes")
        if not classes:
            raise UsageError(f"sample {k!r} has no frame_classes (the distractor control needs synthetic data)")
        distractors = [c for c in classes if c != m.get("class") and c in by_class]
        if not distractors:
            continue  # no test clip sounds like any distractor of this frame: left out of the control
        d = distractors[_rank(seed, "distractor", k) % len(distractors)]
        candidates = by_class[d]
        pairs[k] = candidates[_rank(seed, "audio", k) % len(candidates)]
    return pairs


def predict_control(
    run_dir: str | os.PathLike,
    data: str | os.PathLike | Sequence[str | os.PathLike],
    out: str | os.PathLike,
    kind: str = "distractor",
    *,
    seed: int = 0,
    **kwargs: Any,
) -> dict[str, Any]:
    """Prediction archive of a control: frame keys of the positives of `data`, maps from the paired audio."""
    from .predict import predict

    pairs = control_pairs(ShardIndex.build(data), kind, seed=seed)
    summary = predict(run_dir, data, out, audio_from=pairs, **kwargs)
    summary["control"] = {"kind": kind, "seed": seed, "pairs": len(pairs)}
    return summary
