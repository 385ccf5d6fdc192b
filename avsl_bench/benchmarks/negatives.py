"""Negatives of extended test sets (data spec §6): SLAVC's lists typed, Table-1 stats, and the generator.

* `official_negatives('vggss-ext' | 'flickr-ext')`: SLAVC's `*_test_plus_silent.csv` rows typed as
  `prepare` types them (`real` = video == audio; VGG-SS: `hard` = same vggss.json class, else `easy`;
  Flickr: `mismatched`), sorted by negative key; `reuse_stats` gives their frame/audio reuse.
* `table1_stats` / `render_table1`: the §6.2 size-bucket table of a benchmark or of generated rows.
* `generate_negatives` / `write_negative_list`: the §6.3 generator for new extended sets. All
  randomness is hash-ranking, so the list is a pure function of (positives, seed, N, ρ, real ids):

      rank(tag, x) = int.from_bytes(sha256(f"{seed}|{tag}|{x}".encode()).digest()[:8], "big")

  Frames are the first N positives by `rank("frame", id)`, each used once; the audio order A is the
  positives by `rank("audio", id)`; the first H = floor(ρ·N + 0.5) pairs that can be are `hard`
  (same class), the others `easy` (other class); audio always comes from another source video; the
  audio taken is the first unused eligible one in A, else the least used (ties: A order).
"""

from __future__ import annotations

import hashlib
import math
import os
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Mapping, Sequence

import numpy as np

from ..errors import DataFileError
from ..files import canonical_json, sha256_bytes, write_bytes_atomic, write_json_atomic
from .lists import NEG_SEPARATOR

__all__ = [
    "GENERATOR_VERSION",
    "NEGATIVE_LABEL",
    "TABLE1_BUCKETS",
    "NegativeListFiles",
    "NegativeRow",
    "PositiveRef",
    "frame_buckets",
    "generate_negatives",
    "hard_quota",
    "official_negatives",
    "positives_from_benchmark",
    "positives_sha256",
    "rank",
    "read_negative_list",
    "render_table1",
    "reuse_stats",
    "table1_stats",
    "type_negative",
    "write_negative_list",
]

GENERATOR_VERSION = "avsl-bench-negatives@1"
NEGATIVE_LABEL = "non-sounding"
CSV_HEADER = "video,audio,label,negative_type"
TABLE1_BUCKETS = ("small", "medium", "large", "huge", "n/a", "all")
TABLE1_ROWS = ("positives", "real", "easy", "hard", "total")
MISMATCHED_TYPES = ("easy", "hard", "mismatched")
_FORBIDDEN = (",", '"', "\n", "\r", " ", "\t", NEG_SEPARATOR)
_FAST_PATH_STEPS = 64


@dataclass(frozen=True)
class PositiveRef:
    """A positive of the test set: clip id, class, and source video (YouTube id; the id itself for Flickr)."""

    id: str
    class_name: str
    source_video: str


@dataclass(frozen=True)
class NegativeRow:
    """A negative pair: the frame of clip `video` with the audio of clip `audio`."""

    video: str
    audio: str
    negative_type: str  # real | easy | hard | mismatched

    @property
    def key(self) -> str:
        """Negative key `<video>__neg__<audio>` (data spec §6.1)."""
        return f"{self.video}{NEG_SEPARATOR}{self.audio}"

    @property
    def label(self) -> str:
        return NEGATIVE_LABEL


def _check_id(value: str, what: str) -> str:
    if not isinstance(value, str) or not value or any(bad in value for bad in _FORBIDDEN):
        raise ValueError(f"{what}: invalid id {value!r} (empty, or contains one of {list(_FORBIDDEN)})")
    return value


# ----------------------------------------------------------------------------------------------- generator


def rank(seed: int, tag: str, x: str) -> int:
    """`int.from_bytes(sha256(f"{seed}|{tag}|{x}".encode()).digest()[:8], "big")` (data spec §6.3)."""
    return int.from_bytes(hashlib.sha256(f"{seed}|{tag}|{x}".encode()).digest()[:8], "big")


def hard_quota(n: int, hard_fraction: float) -> int:
    """H = floor(ρ·N + 0.5)."""
    return math.floor(hard_fraction * n + 0.5)


def _validate_positives(positives: Sequence[PositiveRef]) -> list[PositiveRef]:
    refs = list(positives)
    seen: set[str] = set()
    for p in refs:
        if not isinstance(p, PositiveRef):
            raise ValueError(f"positives: expected PositiveRef items, got {type(p).__name__}")
        _check_id(p.id, "positives")
        if not isinstance(p.class_name, str) or not isinstance(p.source_video, str):
            raise ValueError(f"positives: {p.id}: class_name and source_video must be strings")
        if p.id in seen:
            raise ValueError(f"positives: duplicate id {p.id!r}")
        seen.add(p.id)
    return refs


class _NextUnused:
    """Smallest unused position ≥ i, with path compression (positions 0..n-1, n = past the end)."""

    def __init__(self, n: int) -> None:
        self.parent = list(range(n + 1))

    def find(self, i: int) -> int:
        root = i
        while self.parent[root] != root:
            root = self.parent[root]
        while self.parent[i] != root:
            self.parent[i], i = root, self.parent[i]
        return root

    def mark_used(self, i: int) -> None:
        self.parent[i] = i + 1


def generate_negatives(
    positives: Sequence[PositiveRef],
    seed: int,
    n: int | None = None,
    hard_fraction: float = 0.25,
    real_negatives: Iterable[str] | None = None,
) -> list[NegativeRow]:
    """Negatives for a new extended test set (data spec §6.3), sorted by negative key.

    Args:
        positives: the test positives (id, class, source video); ids unique. Input order does not matter.
        seed: integer seed of the hash ranking.
        n: number of mismatched negatives N (default |P|, at most |P|): one per frame, each frame once.
        hard_fraction: ρ; H = floor(ρ·N + 0.5) hard pairs are requested (fewer when frames lack
            same-class audio from another video).
        real_negatives: ids of clips outside the test set whose own audio is a negative (`real` rows).

    Raises:
        ValueError: invalid arguments, or a frame with no eligible audio at all (every other positive
            shares its class or its source video).

    Example:
        >>> P = [PositiveRef("a1", "dog", "A"), PositiveRef("a2", "dog", "B"), PositiveRef("c1", "cat", "C")]
        >>> [r.negative_type for r in generate_negatives(P, seed=0, hard_fraction=0.0)]
        ['easy', 'easy', 'easy']
    """
    if isinstance(seed, bool) or not isinstance(seed, int):
        raise ValueError(f"seed: expected an integer, got {seed!r}")
    if not 0.0 <= hard_fraction <= 1.0:
        raise ValueError(f"hard_fraction: expected a value in [0, 1], got {hard_fraction!r}")
    refs = _validate_positives(positives)
    n = len(refs) if n is None else n
    if isinstance(n, bool) or not isinstance(n, int) or not 0 <= n <= len(refs):
        raise ValueError(f"n: expected an integer in [0, {len(refs)}] (each frame is used once), got {n!r}")
    real_rows = _real_rows(real_negatives, {p.id for p in refs})

    frames = sorted(refs, key=lambda p: (rank(seed, "frame", p.id), p.id))[:n]
    order = sorted(refs, key=lambda p: (rank(seed, "audio", p.id), p.id))
    classes = {c: k for k, c in enumerate(sorted({p.class_name for p in order}))}
    videos = {v: k for k, v in enumerate(sorted({p.source_video for p in order}))}
    cls = np.array([classes[p.class_name] for p in order], dtype=np.int64)
    vid = np.array([videos[p.source_video] for p in order], dtype=np.int64)
    members = {k: np.flatnonzero(cls == k) for k in classes.values()}  # A positions per class, ascending
    use = np.zeros(len(order), dtype=np.int64)
    unused = _NextUnused(len(order))
    quota, hard = hard_quota(n, hard_fraction), 0

    rows = []
    for frame in frames:
        cf, vf = classes[frame.class_name], videos[frame.source_video]
        choice, kind = None, "easy"
        if hard < quota:
            same = members[cf]
            eligible = same[vid[same] != vf]
            if eligible.size:
                choice, kind = int(eligible[np.argmin(use[eligible])]), "hard"
        if choice is None:
            choice = _first_unused_easy(unused, cls, vid, cf, vf)
        if choice is None:
            mask = (cls != cf) & (vid != vf)
            if not mask.any():
                raise ValueError(f"positives: frame {frame.id!r} has no eligible audio (all share its class or video)")
            choice = int(np.argmin(np.where(mask, use, np.iinfo(np.int64).max)))
        if use[choice] == 0:
            unused.mark_used(choice)
        use[choice] += 1
        hard += kind == "hard"
        rows.append(NegativeRow(frame.id, order[choice].id, kind))
    return sorted(rows + real_rows, key=lambda r: r.key)


def _first_unused_easy(unused: _NextUnused, cls: np.ndarray, vid: np.ndarray, cf: int, vf: int) -> int | None:
    """Fast path: the first unused audio of another class and video within a few unused positions, else None."""
    i = unused.find(0)
    for _ in range(_FAST_PATH_STEPS):
        if i >= len(cls):
            return None
        if cls[i] != cf and vid[i] != vf:
            return i
        i = unused.find(i + 1)
    return None


def _real_rows(real_negatives: Iterable[str] | None, positive_ids: set[str]) -> list[NegativeRow]:
    if real_negatives is None:
        return []
    ids = [_check_id(i, "real_negatives") for i in real_negatives]
    duplicates = sorted(i for i, c in Counter(ids).items() if c > 1)
    if duplicates:
        raise ValueError(f"real_negatives: duplicate ids, e.g. {duplicates[0]!r}")
    overlap = sorted(set(ids) & positive_ids)
    if overlap:
        raise ValueError(f"real_negatives: {len(overlap)} ids are positives of the test set, e.g. {overlap[0]!r}")
    return [NegativeRow(i, i, "real") for i in ids]


def positives_sha256(positives: Sequence[PositiveRef]) -> str:
    """sha256 of the positives as the generator sees them (canonical JSON of (id, class, video), by id)."""
    items = sorted([p.id, p.class_name, p.source_video] for p in positives)
    return sha256_bytes(canonical_json(items).encode("ascii"))


def positives_from_benchmark(data) -> list[PositiveRef]:
    """PositiveRefs of a loaded benchmark's positives (source video = YouTube id of VGGSound clip ids).

    The generator needs classes: a benchmark without them (Flickr) raises `ValueError`.
    """
    from .lists import VGGSOUND_ID

    refs = []
    for i in np.flatnonzero(data.positive):
        clip, label = data.ids[i], data.classes[i]
        if not label:
            raise ValueError(f"benchmark {data.spec.name}: positive {clip!r} has no class; the generator needs classes")
        video = clip.rsplit("_", 1)[0] if VGGSOUND_ID.match(clip) else clip
        refs.append(PositiveRef(clip, label, video))
    return refs


def frame_buckets(data) -> dict[str, str]:
    """Size bucket of each positive frame of a loaded benchmark (id → small|medium|large|huge|n/a)."""
    return {data.ids[i]: data.size_buckets[i] for i in np.flatnonzero(data.positive)}


# ----------------------------------------------------------------------------------------- official lists


def type_negative(video: str, audio: str, class_of: Mapping[str, str] | None) -> str:
    """`real` if video == audio; without classes `mismatched`; else `hard` (same class) or `easy`."""
    if video == audio:
        return "real"
    if class_of is None:
        return "mismatched"
    return "hard" if class_of.get(video) == class_of.get(audio) else "easy"


def official_negatives(benchmark: str = "vggss-ext", *, mirror: str | os.PathLike | None = None) -> list[NegativeRow]:
    """SLAVC's negatives of an extended benchmark, typed (data spec §6.1), sorted by negative key."""
    import json

    from .lists import read_negative_pairs
    from .spec import get_spec
    from .upstream import resolve

    spec = get_spec(benchmark)
    if not spec.negatives or spec.loader == "synthetic":
        raise DataFileError(f"benchmark {benchmark!r} has no negative list file")
    kind = "vggsound" if spec.loader == "vggss" else "flickr"
    pairs = read_negative_pairs(resolve(spec.files[spec.negatives], mirror), kind)
    class_of = None
    if spec.annotations:
        path = resolve(spec.files[spec.annotations], mirror)
        class_of = {e["file"]: e["class"] for e in json.loads(path.read_text(encoding="utf-8"))}
    rows = [NegativeRow(p.video, p.audio, type_negative(p.video, p.audio, class_of)) for p in pairs]
    return sorted(rows, key=lambda r: r.key)


def reuse_stats(rows: Sequence[NegativeRow]) -> dict[str, int]:
    """Frame/audio reuse of the mismatched (non-`real`) rows, plus counts over all rows."""
    mismatched = [r for r in rows if r.negative_type != "real"]
    frames = Counter(r.video for r in mismatched)
    audio = Counter(r.audio for r in mismatched)
    return {
        "rows": len(rows),
        "real": len(rows) - len(mismatched),
        "mismatched_rows": len(mismatched),
        "distinct_frames": len(frames),
        "max_frame_reuse": max(frames.values(), default=0),
        "distinct_audio_sources": len(audio),
        "max_audio_reuse": max(audio.values(), default=0),
        "duplicate_pairs": len(rows) - len({(r.video, r.audio) for r in rows}),
    }


# ------------------------------------------------------------------------------------------------ Table 1


def _empty_row() -> dict[str, int]:
    return {b: 0 for b in TABLE1_BUCKETS}


def table1_stats(
    source,
    *,
    positives: Sequence[PositiveRef] | None = None,
    buckets: Mapping[str, str] | None = None,
) -> dict:
    """§6.2 stats: rows {positives, real, easy, hard, total} × {small, medium, large, huge, n/a, all}.

    `source` is a loaded `BenchmarkData`, or negative rows (then `positives` gives the positives row
    and the class count, `buckets` the size bucket of each positive frame; frames without one are
    `n/a`). A `mismatched` row is added when such rows exist (Flickr). `total` = positives + all
    negatives. Also: `distinct_frames`, `distinct_audio_sources`, `max_audio_reuse` of the mismatched
    (non-`real`) negatives, and `classes` (distinct positive classes; None without classes).
    """
    if hasattr(source, "negative_type") and hasattr(source, "size_buckets"):
        data = source
        pos_items = [(data.size_buckets[i], data.classes[i]) for i in np.flatnonzero(data.positive)]
        neg_items, rows = [], []
        for i in np.flatnonzero(~data.positive):
            video, _, audio = data.ids[i].partition(NEG_SEPARATOR)
            rows.append(NegativeRow(video, audio, data.negative_type[i]))
            neg_items.append((data.negative_type[i], data.size_buckets[i]))
    else:
        rows = list(source)
        buckets = buckets or {}
        pos_items = [(buckets.get(p.id, "n/a"), p.class_name) for p in positives or ()]
        neg_items = [(r.negative_type, buckets.get(r.video, "n/a")) for r in rows]
    table = {name: _empty_row() for name in TABLE1_ROWS}
    for bucket, _ in pos_items:
        for row in ("positives", "total"):
            table[row][bucket] += 1
            table[row]["all"] += 1
    for kind, bucket in neg_items:
        if kind not in table:
            table[kind] = _empty_row()
        for row in (kind, "total"):
            table[row][bucket] += 1
            table[row]["all"] += 1
    reuse = reuse_stats(rows)
    classes = {c for _, c in pos_items if c}
    ordered = [*TABLE1_ROWS[:4], *(k for k in table if k not in TABLE1_ROWS), "total"]
    return {
        "rows": {name: table[name] for name in ordered},
        "distinct_frames": reuse["distinct_frames"],
        "distinct_audio_sources": reuse["distinct_audio_sources"],
        "max_audio_reuse": reuse["max_audio_reuse"],
        "classes": len(classes) if classes else None,
    }


def render_table1(stats: Mapping, title: str | None = None):
    """A rich Table of `table1_stats` output (real rows have no size bucket: shown as –)."""
    from rich.table import Table

    table = Table(title=title or "Size buckets (data spec §6.2)")
    table.add_column("")
    for bucket in TABLE1_BUCKETS:
        table.add_column(bucket, justify="right")
    for name, row in stats["rows"].items():
        cells = [
            "–" if name == "real" and bucket not in ("n/a", "all") else f"{row[bucket]:,}" for bucket in TABLE1_BUCKETS
        ]
        table.add_row(name, *cells, end_section=name == list(stats["rows"])[-2])
    classes = "–" if stats.get("classes") is None else f"{stats['classes']:,}"
    table.caption = (
        f"mismatched negatives: {stats['distinct_frames']:,} distinct frames, {stats['distinct_audio_sources']:,} "
        f"audio sources, max audio reuse {stats['max_audio_reuse']}; classes {classes}"
    )
    return table


# ---------------------------------------------------------------------------------------------- list files


@dataclass(frozen=True)
class NegativeListFiles:
    """The three files `write_negative_list` wrote."""

    csv: Path
    sha256_file: Path
    stats_file: Path
    sha256: str  # of the csv
    stats: dict


def _csv_bytes(rows: Sequence[NegativeRow]) -> bytes:
    ordered = sorted(rows, key=lambda r: r.key)
    keys = [r.key for r in ordered]
    if len(set(keys)) != len(keys):
        raise ValueError("rows: duplicate (video, audio) pairs")
    lines = [CSV_HEADER]
    for r in ordered:
        _check_id(r.video, "rows.video")
        _check_id(r.audio, "rows.audio")
        if r.negative_type not in ("real", *MISMATCHED_TYPES):
            raise ValueError(f"rows: unknown negative_type {r.negative_type!r}")
        if (r.negative_type == "real") != (r.video == r.audio):
            raise ValueError(f"rows: {r.key}: type real iff video == audio")
        lines.append(f"{r.video},{r.audio},{NEGATIVE_LABEL},{r.negative_type}")
    return ("\n".join(lines) + "\n").encode("utf-8")


def write_negative_list(
    rows: Sequence[NegativeRow],
    out: str | os.PathLike,
    *,
    positives: Sequence[PositiveRef],
    seed: int,
    n: int | None = None,
    hard_fraction: float = 0.25,
    input_sha256: Mapping[str, str] | None = None,
    buckets: Mapping[str, str] | None = None,
) -> NegativeListFiles:
    """Write `<name>.csv`, `<name>.sha256` and `<name>.stats.json` atomically (stats last).

    `out` is `<dir>/<name>` or `<dir>/<name>.csv`. The CSV has header `video,audio,label,negative_type`,
    rows sorted by negative key, UTF-8, LF. The stats hold the §6.2 table, H requested/achieved, seed,
    generator version and the input sha256s (`positives` is always added: `positives_sha256`).
    """
    out = Path(out)
    stem = out.name[: -len(".csv")] if out.name.endswith(".csv") else out.name
    directory = out.parent
    data = _csv_bytes(rows)
    digest = sha256_bytes(data)
    n = len(positives) if n is None else n
    inputs = dict(input_sha256 or {})
    inputs["positives"] = positives_sha256(positives)
    real = sorted(r.video for r in rows if r.negative_type == "real")
    if real:
        inputs["real_negatives"] = sha256_bytes(canonical_json(real).encode("ascii"))
    stats = {
        "generator": GENERATOR_VERSION,
        "seed": seed,
        "n": n,
        "hard_fraction": hard_fraction,
        "hard_requested": hard_quota(n, hard_fraction),
        "hard_achieved": sum(1 for r in rows if r.negative_type == "hard"),
        "positives": len(positives),
        "real_negatives": len(real),
        "input_sha256": dict(sorted(inputs.items())),
        "csv": f"{stem}.csv",
        "csv_sha256": digest,
        "table1": table1_stats(rows, positives=positives, buckets=buckets),
    }
    csv_path, sha_path, stats_path = (directory / f"{stem}{ext}" for ext in (".csv", ".sha256", ".stats.json"))
    write_bytes_atomic(csv_path, data)
    write_bytes_atomic(sha_path, f"{digest}  {stem}.csv\n".encode("ascii"))
    write_json_atomic(stats_path, stats)
    return NegativeListFiles(csv=csv_path, sha256_file=sha_path, stats_file=stats_path, sha256=digest, stats=stats)


def read_negative_list(path: str | os.PathLike) -> list[NegativeRow]:
    """Rows of a list written by `write_negative_list` (header and label checked)."""
    path = Path(path)
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as exc:
        raise DataFileError(f"{path}: cannot read negative list: {exc}") from exc
    if not lines or lines[0] != CSV_HEADER:
        raise DataFileError(f"{path}: expected header {CSV_HEADER}")
    rows = []
    for number, line in enumerate(lines[1:], start=2):
        fields = line.split(",")
        if len(fields) != 4 or fields[2] != NEGATIVE_LABEL or fields[3] not in ("real", *MISMATCHED_TYPES):
            raise DataFileError(f"{path}: line {number}: expected video,audio,{NEGATIVE_LABEL},<type>, got {line!r}")
        rows.append(NegativeRow(fields[0], fields[1], fields[3]))
    return rows
