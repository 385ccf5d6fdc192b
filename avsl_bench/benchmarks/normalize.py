"""`vggss.normalized.json`: the VGG-SS annotations with their defects handled and recorded (data spec §5.1).

The raw `vggss.json` stays untouched. The normalised copy has the same entries in the same order;
every coordinate is clipped to [0, 1] (and written as a float), boxes that are degenerate after
clipping (x2 ≤ x1 or y2 ≤ y1) are dropped, and each entry gains

* `defects`: `[{"box_index": i, "kind": "corrupt_coordinate" | "degenerate", "raw": [x1, y1, x2, y2]}]`,
  `box_index` indexing the raw `bbox` list, `raw` the box as given. A coordinate outside [0, 1] makes
  its box `corrupt_coordinate`; such a box is usually also `degenerate` (then it has both records,
  corrupt first);
* `gt_empty`: no box left.

Serialisation: UTF-8 (ASCII only), sorted keys, separators `(",", ":")`, trailing newline. For the
pinned raw file the result is pinned by `VGGSS_NORMALIZED_SHA256`.
"""

from __future__ import annotations

import json
import math
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

from ..errors import ChecksumError, DataFileError
from ..files import canonical_json, sha256_bytes, sha256_file, write_bytes_atomic

__all__ = [
    "NORMALIZED_NAME",
    "VGGSS_NORMALIZED_SHA256",
    "VGGSS_RAW_SHA256",
    "DefectReport",
    "NormalizedFile",
    "defect_report",
    "normalize_entries",
    "normalized_bytes",
    "write_normalized",
]

NORMALIZED_NAME = "vggss.normalized.json"
VGGSS_RAW_SHA256 = "ae300b4a259267e6fe839970d495862edd70bfe3da63d925bcdb34054ed3b15e"
VGGSS_NORMALIZED_SHA256 = "0484cb9c36ba7d5db89e9fae10b1c2f058764ca28577edda737efe526269c258"
CORRUPT = "corrupt_coordinate"
DEGENERATE = "degenerate"


def _read_raw(source: str | os.PathLike | bytes) -> list[dict]:
    where = "vggss.json" if isinstance(source, bytes) else str(source)
    try:
        text = source.decode("utf-8") if isinstance(source, bytes) else Path(source).read_text(encoding="utf-8")
        entries = json.loads(text)
    except (OSError, UnicodeDecodeError, ValueError) as exc:
        raise DataFileError(f"{where}: unreadable VGG-SS annotations: {exc}") from exc
    if not isinstance(entries, list):
        raise DataFileError(f"{where}: expected a JSON list of entries")
    return entries


def _check_box(entry_index: int, box_index: int, box: Any) -> list[float]:
    ok = isinstance(box, list) and len(box) == 4
    ok = ok and all(isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v) for v in box)
    if not ok:
        raise DataFileError(f"vggss.json: entry {entry_index}, box {box_index}: expected 4 finite numbers, got {box!r}")
    return [float(v) for v in box]


def normalize_entry(index: int, entry: dict) -> dict:
    """One normalised entry (see the module docstring); malformed input raises `DataFileError`."""
    if not isinstance(entry, dict) or not {"file", "class", "bbox"} <= set(entry):
        raise DataFileError(f"vggss.json: entry {index}: expected an object with file, class and bbox")
    if not isinstance(entry["bbox"], list):
        raise DataFileError(f"vggss.json: entry {index}: bbox must be a list, got {entry['bbox']!r}")
    boxes, defects = [], []
    for box_index, raw in enumerate(entry["bbox"]):
        values = _check_box(index, box_index, raw)
        if any(not 0.0 <= v <= 1.0 for v in values):
            defects.append({"box_index": box_index, "kind": CORRUPT, "raw": raw})
        x1, y1, x2, y2 = (min(max(v, 0.0), 1.0) for v in values)
        if x2 <= x1 or y2 <= y1:
            defects.append({"box_index": box_index, "kind": DEGENERATE, "raw": raw})
            continue
        boxes.append([x1, y1, x2, y2])
    extra = {k: v for k, v in entry.items() if k not in ("file", "class", "bbox")}
    if extra.keys() & {"defects", "gt_empty"}:
        raise DataFileError(f"vggss.json: entry {index} is already normalised (has defects/gt_empty)")
    return {**extra, "file": entry["file"], "class": entry["class"], "bbox": boxes, "defects": defects,
            "gt_empty": not boxes}


def normalize_entries(entries: Sequence[dict]) -> list[dict]:
    """The normalised entries of a raw `vggss.json` list (same order)."""
    return [normalize_entry(i, e) for i, e in enumerate(entries)]


def normalized_bytes(raw: str | os.PathLike | bytes) -> bytes:
    """The bytes of `vggss.normalized.json` for a raw `vggss.json` (path or content)."""
    return canonical_json(normalize_entries(_read_raw(raw))).encode("ascii")


@dataclass(frozen=True)
class DefectReport:
    """§5.1 counts of a VGG-SS annotation file."""

    clips: int
    boxes: int  # raw boxes
    corrupt_coordinates: int
    corrupt_boxes: int
    corrupt_clips: int
    degenerate_boxes: int
    degenerate_clips: int
    empty_gt_clips: int
    coordinates_above_one: int
    kept_boxes: int
    examples: dict[str, tuple[str, ...]] = field(default_factory=dict, repr=False)  # kind -> clip ids, file order

    def as_dict(self) -> dict[str, int]:
        """The counts (for manifests and result files)."""
        return {k: v for k, v in self.__dict__.items() if k != "examples"}

    def __rich__(self):
        from rich.table import Table

        table = Table(title="VGG-SS annotation defects (data spec §5.1)")
        table.add_column("defect")
        table.add_column("count", justify="right")
        table.add_column("clips, e.g.")
        rows = [
            ("corrupt coordinates",
             f"{self.corrupt_coordinates} in {self.corrupt_boxes} boxes of {self.corrupt_clips} clips", CORRUPT),
            ("degenerate boxes (dropped)", f"{self.degenerate_boxes} in {self.degenerate_clips} clips", DEGENERATE),
            ("empty GT (kept as positives)", f"{self.empty_gt_clips}", "gt_empty"),
            ("coordinates > 1", f"{self.coordinates_above_one}", None),
        ]
        for label, count, kind in rows:
            ids = self.examples.get(kind, ()) if kind else ()
            table.add_row(label, count, ", ".join(ids[:3]) + (" …" if len(ids) > 3 else ""))
        table.caption = f"{self.clips:,} clips, {self.boxes:,} raw boxes, {self.kept_boxes:,} kept"
        return table


def defect_report(source: str | os.PathLike | bytes | Sequence[dict] | None = None, *, mirror=None) -> DefectReport:
    """§5.1 defect counts of a raw `vggss.json` (path, bytes or parsed entries; default: the pinned file)."""
    if source is None:
        source = _pinned_raw_path(mirror)
    entries = source if isinstance(source, (list, tuple)) else _read_raw(source)
    normalised = normalize_entries(entries)
    corrupt_coordinates = above_one = 0
    for i, entry in enumerate(entries):
        for b, box in enumerate(entry["bbox"]):
            values = _check_box(i, b, box)
            corrupt_coordinates += sum(1 for v in values if not 0.0 <= v <= 1.0)
            above_one += sum(1 for v in values if v > 1.0)

    def with_kind(kind: str) -> list[dict]:
        return [e for e in normalised if any(d["kind"] == kind for d in e["defects"])]

    def count(kind: str) -> int:
        return sum(1 for e in normalised for d in e["defects"] if d["kind"] == kind)

    corrupt, degenerate = with_kind(CORRUPT), with_kind(DEGENERATE)
    empty = [e for e in normalised if e["gt_empty"]]
    return DefectReport(
        clips=len(entries), boxes=sum(len(e["bbox"]) for e in entries), corrupt_coordinates=corrupt_coordinates,
        corrupt_boxes=count(CORRUPT), corrupt_clips=len(corrupt), degenerate_boxes=count(DEGENERATE),
        degenerate_clips=len(degenerate), empty_gt_clips=len(empty), coordinates_above_one=above_one,
        kept_boxes=sum(len(e["bbox"]) for e in normalised),
        examples={
            CORRUPT: tuple(e["file"] for e in corrupt), DEGENERATE: tuple(e["file"] for e in degenerate),
            "gt_empty": tuple(e["file"] for e in empty),
        },
    )


def _pinned_raw_path(mirror=None) -> Path:
    from .spec import get_spec
    from .upstream import resolve

    return resolve(get_spec("vggss").files["vggss_json"], mirror)


@dataclass(frozen=True)
class NormalizedFile:
    """What `write_normalized` wrote: both checksums go into every manifest."""

    path: Path
    sha256: str
    raw_sha256: str
    report: DefectReport


def write_normalized(
    out: str | os.PathLike, raw: str | os.PathLike | None = None, *, mirror=None
) -> NormalizedFile:
    """Write `vggss.normalized.json` atomically (`out` is the file, or a directory to hold it).

    `raw` defaults to the pinned upstream `vggss.json`. For the pinned raw file the output must hash to
    `VGGSS_NORMALIZED_SHA256`, else `ChecksumError` (nothing is written).
    """
    raw_path = Path(raw) if raw is not None else _pinned_raw_path(mirror)
    raw_bytes = raw_path.read_bytes()
    data = normalized_bytes(raw_bytes)
    digest, raw_digest = sha256_bytes(data), sha256_bytes(raw_bytes)
    if raw_digest == VGGSS_RAW_SHA256 and digest != VGGSS_NORMALIZED_SHA256:
        raise ChecksumError(
            f"{raw_path}: normalised VGG-SS annotations hash to {digest}, pinned {VGGSS_NORMALIZED_SHA256}"
        )
    target = Path(out)
    if target.is_dir():
        target = target / NORMALIZED_NAME
    write_bytes_atomic(target, data)
    if sha256_file(target) != digest:  # pragma: no cover - disk corruption
        raise ChecksumError(f"{target}: written file does not hash to {digest}")
    return NormalizedFile(path=target, sha256=digest, raw_sha256=raw_digest, report=defect_report(raw_bytes))
