"""The deterministic prepare plan: input rows sorted by key, fixed-size shards, parts (data spec §8, §9).

Shard membership depends only on the input list (never on which clips succeed), so every part of a scaled-out run
derives the same plan and the plan hash proves it.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any, Iterable, Mapping, Sequence

from ..errors import DataFileError, UsageError
from ..files import canonical_json, sha256_bytes, write_json_atomic
from .shards import check_key
from .sources.base import ClipRef

PLAN_SCHEMA_VERSION = 1
DEFAULT_SAMPLES_PER_SHARD = 1000
NEG_MARKER = "__neg__"
PARTS_DIR = "_parts"

_VGG_ID = re.compile(r"^([A-Za-z0-9_-]{11})_([0-9]{6})$")


class PlanError(DataFileError):
    """The input rows cannot form a plan (duplicate or malformed keys/ids)."""


def clip_ref(clip_id: str) -> ClipRef:
    """ClipRef of a clip id: VGGSound `<ytid>_<start:06d>` -> (ytid, start); anything else (Flickr) -> (id, 0)."""
    match = _VGG_ID.match(clip_id)
    if match:
        return ClipRef(clip_id=clip_id, ytid=match.group(1), start=int(match.group(2)))
    return ClipRef(clip_id=clip_id, ytid=clip_id, start=0)


@dataclass(frozen=True)
class PlanRow:
    """One input row of a split: a positive (video_id == audio_id == key) or a negative pair.

    `boxes` are normalised xyxy (after spec §5.1); `extra` is merged into the sample JSON (box_group, gt_rule,
    defects, gt_empty, frame_boxes, ...). `source_kind` is youtube | mirror | flickr | synthetic.
    """

    key: str
    video_id: str
    audio_id: str
    benchmark: str
    split: str
    protocol: str
    label: str = "sounding"
    negative: bool = False
    negative_type: str | None = None
    class_name: str | None = None
    audio_class: str | None = None
    boxes: tuple[tuple[float, float, float, float], ...] = ()
    source_kind: str = "youtube"
    extra: Mapping[str, Any] = field(default_factory=dict, hash=False)

    @property
    def video_ref(self) -> ClipRef:
        return clip_ref(self.video_id)

    @property
    def audio_ref(self) -> ClipRef:
        return clip_ref(self.audio_id)

    def clip_ids(self) -> tuple[str, ...]:
        """Distinct clips this row needs (one for a positive, two for a mismatched negative)."""
        return (self.video_id,) if self.video_id == self.audio_id else (self.video_id, self.audio_id)


def validate_row(row: PlanRow) -> None:
    """PlanError unless the key is a valid sample key and no clip id contains `__neg__`."""
    try:
        check_key(row.key)
    except ValueError as exc:
        raise PlanError(str(exc)) from None
    for clip_id in (row.video_id, row.audio_id):
        if not clip_id or NEG_MARKER in clip_id:
            raise PlanError(f"row {row.key!r}: clip id {clip_id!r} is empty or contains {NEG_MARKER!r}")


def keys_sha256(keys: Iterable[str]) -> str:
    """sha256 of the sorted keys, one per line (LF-terminated)."""
    return sha256_bytes("".join(f"{k}\n" for k in sorted(keys)).encode("utf-8"))


@dataclass(frozen=True)
class Plan:
    """Sorted keys cut into shards of `samples_per_shard`; `input_sha256` identifies the input list."""

    keys: tuple[str, ...]
    samples_per_shard: int
    input_sha256: str

    @cached_property
    def keys_sha256(self) -> str:
        return keys_sha256(self.keys)

    @cached_property
    def plan_hash(self) -> str:
        """sha256 over (schema, sorted keys, shard size, input list sha256)."""
        payload = {
            "schema_version": PLAN_SCHEMA_VERSION,
            "keys_sha256": self.keys_sha256,
            "samples_per_shard": self.samples_per_shard,
            "input_sha256": self.input_sha256,
        }
        return sha256_bytes(canonical_json(payload).encode("utf-8"))

    @property
    def num_shards(self) -> int:
        return -(-len(self.keys) // self.samples_per_shard)

    def shard_of(self, position: int) -> int:
        return position // self.samples_per_shard

    def shard_range(self, shard: int) -> range:
        """Positions (into the sorted rows) of shard `shard`."""
        if not 0 <= shard < self.num_shards:
            raise IndexError(f"shard {shard} out of range 0..{self.num_shards - 1}")
        lo = shard * self.samples_per_shard
        return range(lo, min(lo + self.samples_per_shard, len(self.keys)))

    def part_shards(self, num_parts: int = 1, part: int = 0) -> list[int]:
        """Shards handled by part `part` of `num_parts`: those s with s % num_parts == part."""
        check_part(num_parts, part)
        return [s for s in range(self.num_shards) if s % num_parts == part]

    def describe(self) -> dict[str, Any]:
        """The plan facts recorded in part files and the manifest."""
        return {
            "plan_hash": self.plan_hash,
            "samples_per_shard": self.samples_per_shard,
            "num_shards": self.num_shards,
            "n_rows": len(self.keys),
            "input_sha256": self.input_sha256,
            "keys_sha256": self.keys_sha256,
        }


def check_part(num_parts: int, part: int) -> None:
    """UsageError unless 0 <= part < num_parts."""
    if num_parts < 1 or not 0 <= part < num_parts:
        raise UsageError(f"--part must satisfy 0 <= part < --num-parts, got part={part}, num_parts={num_parts}")


def make_plan(
    rows: Sequence[PlanRow],
    *,
    samples_per_shard: int = DEFAULT_SAMPLES_PER_SHARD,
    input_sha256: str | None = None,
) -> tuple[Plan, list[PlanRow]]:
    """Validate and sort `rows` by key (code-point order); return the plan and the sorted rows.

    `input_sha256` is the digest of the input list file(s); when None, the sorted-key digest stands in.
    """
    if samples_per_shard < 1:
        raise UsageError(f"--samples-per-shard must be >= 1, got {samples_per_shard}")
    ordered = sorted(rows, key=lambda r: r.key)
    for row in ordered:
        validate_row(row)
    dupes = sorted({a.key for a, b in zip(ordered, ordered[1:]) if a.key == b.key})
    if dupes:
        raise PlanError(f"{len(dupes)} duplicate keys in the input, e.g. {dupes[:5]}")
    keys = tuple(r.key for r in ordered)
    plan = Plan(keys=keys, samples_per_shard=samples_per_shard, input_sha256=input_sha256 or keys_sha256(keys))
    return plan, ordered


def part_file(split_dir: str | Path, part: int, num_parts: int) -> Path:
    """`<split>/_parts/part-I-of-K.json`."""
    return Path(split_dir) / PARTS_DIR / f"part-{part}-of-{num_parts}.json"


def write_part_file(
    split_dir: str | Path, plan: Plan, *, part: int, num_parts: int, extra: Mapping[str, Any] | None = None
) -> Path:
    """Record which plan (hash) and shards a part handles, plus run facts in `extra` (no timestamps)."""
    check_part(num_parts, part)
    payload = {
        **dict(extra or {}),
        "schema_version": PLAN_SCHEMA_VERSION,
        "plan": plan.describe(),
        "part": part,
        "num_parts": num_parts,
        "shards": plan.part_shards(num_parts, part),
    }
    path = part_file(split_dir, part, num_parts)
    write_json_atomic(path, payload)
    return path


def read_part_files(split_dir: str | Path) -> list[dict[str, Any]]:
    """All part files of a split directory, sorted by (num_parts, part)."""
    found = []
    for path in sorted((Path(split_dir) / PARTS_DIR).glob("part-*-of-*.json")):
        try:
            found.append(json.loads(path.read_text("utf-8")) | {"_file": path.name})
        except (OSError, ValueError) as exc:
            raise DataFileError(f"unreadable part file {path}: {exc}") from None
    return sorted(found, key=lambda p: (p.get("num_parts", 0), p.get("part", 0)))
