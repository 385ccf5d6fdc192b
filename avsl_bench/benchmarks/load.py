"""Load a benchmark's samples and ground truth from its (verified) annotation files."""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Sequence

import numpy as np

from ..errors import DataFileError
from .gt import GRID, flickr_to_grid, normalized_to_grid, rasterize_into, read_flickr_xml, size_bucket
from .lists import NegativePair, read_id_list, read_negative_pairs
from .spec import BenchmarkSpec, get_spec
from .upstream import resolve

GridBox = tuple[int, int, int, int]


@dataclass
class BenchmarkData:
    """Every scored sample of one benchmark, in evaluation order (positives, then negatives by key)."""

    spec: BenchmarkSpec
    ids: list[str]
    positive: np.ndarray  # bool (N,)
    negative_type: list[str | None]
    classes: list[str | None]
    boxes: list[list[GridBox]]  # the sample's GT boxes on the grid ([] for negatives)
    frame_boxes: list[list[GridBox]]  # boxes of the frame shown (negatives: for size buckets)
    strata_members: dict[str, np.ndarray] = field(default_factory=dict)  # name -> bool (N,)
    file_sha256: dict[str, str] = field(default_factory=dict)
    defects: dict[str, int] = field(default_factory=dict)

    @cached_property
    def index(self) -> dict[str, int]:
        return {key: i for i, key in enumerate(self.ids)}

    def gt_maps(self, indices: Sequence[int]) -> np.ndarray:
        """Float32 (B, 224, 224) GT maps of the given samples (all-zero for negatives)."""
        out = np.zeros((len(indices), GRID, GRID), dtype=np.float32)
        for row, i in enumerate(indices):
            rasterize_into(out[row], self.boxes[i], self.spec.gt_rule)
        return out

    @cached_property
    def areas(self) -> np.ndarray:
        """GT area (Σ gt) of the frame of each sample; NaN for frames without boxes."""
        out = np.full(len(self.ids), np.nan)
        grid = np.zeros((GRID, GRID), dtype=np.float32)
        for i, boxes in enumerate(self.frame_boxes):
            if boxes:
                grid.fill(0.0)
                out[i] = float(rasterize_into(grid, boxes, self.spec.gt_rule).sum(dtype=np.float64))
        return out

    @cached_property
    def size_buckets(self) -> list[str]:
        return [size_bucket(a) for a in self.areas]

    @property
    def n_positives(self) -> int:
        return int(self.positive.sum())

    @property
    def n_negatives(self) -> int:
        return int((~self.positive).sum())


def _vggss_boxes(
    path: Path, only: set[str] | None = None
) -> tuple[dict[str, list[GridBox]], dict[str, str], dict[str, int]]:
    """(grid boxes, class) of every entry; §5.1 defect counts over the entries in `only` (default: all)."""
    try:
        entries = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise DataFileError(f"{path}: unreadable VGG-SS annotations: {exc}") from exc
    boxes, classes = {}, {}
    defects = {"corrupt_coordinates": 0, "degenerate_boxes": 0, "empty_gt": 0}
    for entry in entries:
        grid = []
        count = only is None or entry["file"] in only
        for raw in entry["bbox"]:
            defects["corrupt_coordinates"] += count * sum(1 for v in raw if not 0.0 <= v <= 1.0)
            box = normalized_to_grid(raw)
            clipped = [min(max(v, 0.0), 1.0) for v in raw]
            if count and (clipped[2] <= clipped[0] or clipped[3] <= clipped[1]):
                defects["degenerate_boxes"] += 1
            grid.append(box)
        if count and not any(x2 > x1 and y2 > y1 for x1, y1, x2, y2 in grid):
            defects["empty_gt"] += 1
        boxes[entry["file"]] = grid
        classes[entry["file"]] = entry["class"]
    return boxes, classes, defects


def _flickr_boxes(directory: Path | None, ids: list[str]) -> dict[str, list[GridBox]]:
    if directory is None:
        raise DataFileError(
            "Flickr boxes are not public: pass --flickr-annotations DIR (Senocak's Annotations/<id>.xml folder)"
        )
    missing = [i for i in ids if not (directory / f"{i}.xml").is_file()]
    if missing:
        hint = " (use benchmark flickr-249 for the 249-id list)" if missing == ["3908875350"] else ""
        raise DataFileError(
            f"{directory}: {len(missing)} of {len(ids)} Flickr annotation files missing, e.g. {missing[0]}.xml{hint}"
        )
    return {
        i: [flickr_to_grid(b) for _, group in read_flickr_xml(directory / f"{i}.xml") for b in group] for i in ids
    }


def _typed_negatives(pairs: list[NegativePair], classes: dict[str, str] | None) -> list[tuple[str, NegativePair, str]]:
    typed = []
    for pair in pairs:
        if pair.video == pair.audio:
            kind = "real"
        elif classes is None:
            kind = "mismatched"
        else:
            kind = "hard" if classes.get(pair.video) == classes.get(pair.audio) else "easy"
        typed.append((pair.key, pair, kind))
    return sorted(typed, key=lambda item: item[0])


def _load_listed(spec: BenchmarkSpec, mirror, flickr_annotations) -> BenchmarkData:
    paths = {fid: resolve(f, mirror) for fid, f in spec.files.items()}
    kind = "vggsound" if spec.loader == "vggss" else "flickr"
    positives = read_id_list(paths[spec.positives], kind)
    if len(set(positives)) != len(positives):
        raise DataFileError(f"{paths[spec.positives]}: duplicate ids")
    if spec.subset_part is not None:  # a rank subset of the list (baselines spec §3.7), kept in list order
        from .semisup import get_partition

        partition, part = spec.subset_part
        members = set(get_partition(partition).split(positives, where=paths[spec.positives])[part])
        positives = [i for i in positives if i in members]
    defects: dict[str, int] = {}
    if spec.loader == "vggss":
        only = set(positives) if spec.subset else None  # a subset reports the defects of its own clips
        box_of, class_of, defects = _vggss_boxes(paths[spec.annotations], only)
        unknown = [i for i in positives if i not in box_of]
        if unknown:
            raise DataFileError(f"{paths[spec.annotations]}: no boxes for {len(unknown)} test ids, e.g. {unknown[0]}")
    else:
        class_of = None
        pairs_needed = read_negative_pairs(paths[spec.negatives], kind) if spec.negatives else []
        frames = sorted(set(positives) | {p.video for p in pairs_needed})
        box_of = _flickr_boxes(Path(flickr_annotations) if flickr_annotations else None, frames)
    ids, negative_type, classes = list(positives), [None] * len(positives), [class_of and class_of[i] for i in positives]
    boxes = [box_of[i] for i in positives]
    frame_boxes = list(boxes)
    if spec.negatives:
        for key, pair, kind_name in _typed_negatives(read_negative_pairs(paths[spec.negatives], kind), class_of):
            ids.append(key)
            negative_type.append(kind_name)
            classes.append(class_of.get(pair.video) if class_of else None)
            boxes.append([])
            frame_boxes.append(box_of.get(pair.video, []))
    positive = np.array([t is None for t in negative_type], dtype=bool)
    strata = {}
    for name in spec.strata:
        members = set(read_id_list(paths[name], kind))
        strata[name] = np.array([p and i in members for i, p in zip(ids, positive)], dtype=bool)
    return BenchmarkData(
        spec=spec, ids=ids, positive=positive, negative_type=negative_type, classes=classes, boxes=boxes,
        frame_boxes=frame_boxes, strata_members=strata,
        file_sha256={fid: f.sha256 for fid, f in spec.files.items() if f.sha256}, defects=defects,
    )


def load_synthetic_split(spec: BenchmarkSpec, split: str = "test") -> BenchmarkData:
    """BenchmarkData of one split of a synthetic benchmark (positives in key order, then negatives).

    `load_benchmark` scores `test`; calibration reads `val` so that the test set is only read for reports.
    """
    from .synthetic import synthetic_annotations

    rows = synthetic_annotations(spec.size, split, seed=spec.seed, negatives=bool(spec.negatives))
    rows = sorted((r for r in rows if not r["negative"]), key=lambda r: r["key"]) + sorted(
        (r for r in rows if r["negative"]), key=lambda r: r["key"]
    )
    grid = lambda bs: [normalized_to_grid(b) for b in bs]  # noqa: E731
    return BenchmarkData(
        spec=spec, ids=[r["key"] for r in rows], positive=np.array([not r["negative"] for r in rows]),
        negative_type=[r["negative_type"] for r in rows], classes=[r["class"] for r in rows],
        boxes=[grid(r["boxes"]) for r in rows], frame_boxes=[grid(r["frame_boxes"] or r["boxes"]) for r in rows],
        file_sha256={}, defects={},
    )


def load_benchmark(
    name: str | BenchmarkSpec,
    *,
    mirror: str | os.PathLike | None = None,
    flickr_annotations: str | os.PathLike | None = None,
) -> BenchmarkData:
    """Load a benchmark by name: verified annotation files → samples, GT boxes, types, strata."""
    spec = name if isinstance(name, BenchmarkSpec) else get_spec(name)
    data = load_synthetic_split(spec) if spec.loader == "synthetic" else _load_listed(spec, mirror, flickr_annotations)
    got = (data.n_positives, data.n_negatives)
    if got != (spec.expected_positives, spec.expected_negatives):
        raise DataFileError(
            f"{spec.source}: expected {spec.expected_positives} positives / {spec.expected_negatives} negatives, "
            f"the files give {got[0]} / {got[1]}"
        )
    return data
