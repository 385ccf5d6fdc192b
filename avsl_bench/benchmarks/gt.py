"""Ground truth on the 224×224 grid (protocol §1): box conversion, rasterisation, Flickr XML.

Boxes on the grid are integer `(x1, y1, x2, y2)`, filled end-exclusive (rows y1..y2-1, cols x1..x2-1).
Rule `vggss` (also the synthetic benchmark): union → {0, 1}. Rule `flickr`: count of covering boxes,
`min(count / 2, 1)` → {0, 0.5, 1}.
"""

from __future__ import annotations

import math
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Sequence

import numpy as np

from ..errors import DataFileError

GRID = 224
FLICKR_FRAME = 256
GT_RULES = ("vggss", "flickr")


def normalized_to_grid(box: Sequence[float]) -> tuple[int, int, int, int]:
    """VGG-SS rule: each coordinate → `int(clip(v, 0, 1) * 224)` in float64, truncated."""
    return tuple(int(min(max(float(v), 0.0), 1.0) * GRID) for v in box)  # type: ignore[return-value]


def flickr_to_grid(box: Sequence[int]) -> tuple[int, int, int, int]:
    """Flickr rule: pixel coordinate on the 256×256 frame → `int(224 * v / 256)`."""
    return tuple(int(GRID * int(v) / FLICKR_FRAME) for v in box)  # type: ignore[return-value]


def rasterize_into(out: np.ndarray, boxes: Sequence[Sequence[int]], rule: str) -> np.ndarray:
    """Fill a zeroed float32 224×224 array with the GT of grid boxes under `rule`; return it.

    'vggss': union → 1. 'flickr': each covering box adds 0.5, capped at 1 (= min(count / 2, 1)).
    """
    if rule not in GT_RULES:
        raise ValueError(f"unknown GT rule {rule!r}")
    for x1, y1, x2, y2 in boxes:
        if x2 > x1 and y2 > y1:
            if rule == "vggss":
                out[y1:y2, x1:x2] = 1.0
            else:
                out[y1:y2, x1:x2] += 0.5
    if rule == "flickr" and len(boxes) > 2:
        np.minimum(out, 1.0, out=out)
    return out


def rasterize(boxes: Sequence[Sequence[int]], rule: str) -> np.ndarray:
    """GT map (float32, 224×224) of grid boxes under `rule` ('vggss' or 'flickr')."""
    return rasterize_into(np.zeros((GRID, GRID), dtype=np.float32), boxes, rule)


def size_bucket(area: float) -> str:
    """Size bucket of a GT area in grid pixels (protocol §3): small/medium/large/huge; NaN → 'n/a'."""
    if area is None or math.isnan(area):
        return "n/a"
    if area < 32**2:
        return "small"
    if area < 96**2:
        return "medium"
    if area < 144**2:
        return "large"
    return "huge"


def read_flickr_xml(path: str | Path) -> list[tuple[int, list[tuple[int, int, int, int]]]]:
    """Boxes of one Senocak annotation file as `[(box_group, [(x1, y1, x2, y2) pixels on 256×256]), ...]`.

    For each child of the root (one group, presumably one annotator), every `bbox` element holds,
    after its first child, four integer children xmin, ymin, xmax, ymax. Anything else is an error.
    """
    path = Path(path)
    try:
        root = ET.parse(path).getroot()
    except (ET.ParseError, OSError) as exc:
        raise DataFileError(f"{path}: unreadable Flickr annotation: {exc}") from exc
    groups = []
    for group_index, group in enumerate(root):
        boxes = []
        for bbox in (element for element in group if element.tag == "bbox"):
            children = list(bbox)
            if len(children) < 5:
                raise DataFileError(f"{path}: bbox in group {group_index} has {len(children)} children, expected 5")
            try:
                boxes.append(tuple(int((c.text or "").strip()) for c in children[1:5]))
            except ValueError as exc:
                raise DataFileError(f"{path}: bbox in group {group_index}: non-integer coordinate ({exc})") from exc
        if boxes:
            groups.append((group_index, boxes))
    if not groups:
        raise DataFileError(f"{path}: no bbox elements found")
    return groups


def write_flickr_xml(path: str | Path, groups: Sequence[Sequence[Sequence[int]]]) -> None:
    """Write boxes (pixels on 256×256) in Senocak's XML layout; used by tests and fixtures."""
    root = ET.Element("annotation")
    for boxes in groups:
        obj = ET.SubElement(root, "object")
        for box in boxes:
            bbox = ET.SubElement(obj, "bbox")
            ET.SubElement(bbox, "name").text = "sound"
            for tag, value in zip(("xmin", "ymin", "xmax", "ymax"), box):
                ET.SubElement(bbox, tag).text = str(int(value))
    ET.ElementTree(root).write(path, encoding="utf-8")
