"""vggss.normalized.json (data spec §5.1): pinned bytes, defect counts, GT grids equal to the raw file's."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
from rich.console import Console

from avsl_bench.benchmarks import normalize
from avsl_bench.benchmarks.normalize import (
    NORMALIZED_NAME,
    VGGSS_NORMALIZED_SHA256,
    VGGSS_RAW_SHA256,
    defect_report,
    normalize_entries,
    normalized_bytes,
    write_normalized,
)
from avsl_bench.benchmarks.spec import get_spec
from avsl_bench.benchmarks.upstream import resolve
from avsl_bench.errors import ChecksumError, DataFileError
from avsl_bench.files import sha256_bytes, sha256_file
from tests.conftest import UPSTREAM

GRID = 224
ZERO_AREA = ["UyCw7pCgYg8_000055", "M1P1xla8rg0_000000", "YBd5lEnpT_8_000000", "UMidlzROhC0_000082",
             "8_rFjamYo1Y_000022", "c-8SLUH5pp4_000030"]


@pytest.fixture(scope="module")
def raw_path():
    if UPSTREAM is None:
        pytest.skip("upstream mirror not available (set AVSL_BENCH_UPSTREAM)")
    return resolve(get_spec("vggss").files["vggss_json"], UPSTREAM)


@pytest.fixture(scope="module")
def raw(raw_path):
    return json.loads(raw_path.read_text(encoding="utf-8"))


@pytest.fixture(scope="module")
def data(raw_path):
    return normalized_bytes(raw_path)


@pytest.fixture(scope="module")
def normalized(data):
    return json.loads(data)


def test_raw_pin_is_the_manifest_pin(raw_path):
    assert sha256_file(raw_path) == VGGSS_RAW_SHA256 == get_spec("vggss").files["vggss_json"].sha256


def test_normalized_sha256_is_pinned(data):
    assert sha256_bytes(data) == VGGSS_NORMALIZED_SHA256


def test_serialisation(data, normalized):
    assert data.endswith(b"\n") and not data.endswith(b"\n\n")
    data.decode("ascii")  # ASCII only
    canonical = json.dumps(normalized, sort_keys=True, separators=(",", ":"), ensure_ascii=True) + "\n"
    assert data == canonical.encode("ascii")


def test_same_entries_same_order(raw, normalized):
    assert [(e["file"], e["class"]) for e in normalized] == [(e["file"], e["class"]) for e in raw]
    assert all(set(e) == {"bbox", "class", "defects", "file", "gt_empty"} for e in normalized)


def test_boxes_clipped_and_non_degenerate(raw, normalized):
    for r, n in zip(raw, normalized):
        dropped = {d["box_index"] for d in n["defects"] if d["kind"] == "degenerate"}
        expected = [[min(max(float(v), 0.0), 1.0) for v in box] for i, box in enumerate(r["bbox"]) if i not in dropped]
        assert n["bbox"] == expected
        for x1, y1, x2, y2 in n["bbox"]:
            assert 0.0 <= x1 < x2 <= 1.0 and 0.0 <= y1 < y2 <= 1.0
        assert all(isinstance(v, float) for box in n["bbox"] for v in box)
        assert n["gt_empty"] == (not n["bbox"])
        for d in n["defects"]:
            assert d["raw"] == r["bbox"][d["box_index"]]


def test_defect_report_counts(raw_path):
    report = defect_report(raw_path)
    assert report.as_dict() == {
        "clips": 5158, "boxes": 5941, "corrupt_coordinates": 14, "corrupt_boxes": 12, "corrupt_clips": 12,
        "degenerate_boxes": 18, "degenerate_clips": 18, "empty_gt_clips": 2, "coordinates_above_one": 0,
        "kept_boxes": 5941 - 18,
    }
    corrupt, degenerate = report.examples["corrupt_coordinate"], report.examples["degenerate"]
    assert {"Db6Hjt0x28k_000056", "5VCZHHd4UKI_000098", "MKC9LvRivTM_000030"} <= set(corrupt)
    assert set(degenerate) == set(corrupt) | set(ZERO_AREA)  # those 12 plus 6 zero-width/height
    assert report.examples["gt_empty"] == ("M1P1xla8rg0_000000", "MKC9LvRivTM_000030")
    assert defect_report(json.loads(raw_path.read_text())) == report  # parsed entries work too
    console = Console(record=True, width=160)
    console.print(report)
    assert "14 in 12 boxes of 12 clips" in console.export_text()


def test_named_defects(normalized):
    by_id = {e["file"]: e for e in normalized}
    m1 = by_id["M1P1xla8rg0_000000"]
    assert m1["gt_empty"] and m1["bbox"] == []
    assert m1["defects"] == [{"box_index": 0, "kind": "degenerate", "raw": [0.26875, 1.0, 0.753125, 1.0]}]
    db = by_id["Db6Hjt0x28k_000056"]["defects"]
    assert [d["kind"] for d in db] == ["corrupt_coordinate", "degenerate"]
    assert db[0]["raw"][3] == -2.8823037615171176e16 and not by_id["Db6Hjt0x28k_000056"]["gt_empty"]
    assert by_id["MKC9LvRivTM_000030"]["gt_empty"]


def _grid(boxes) -> np.ndarray:
    """Reference rule: clip to [0,1], ×224, floor, end-exclusive fill, union."""
    out = np.zeros((GRID, GRID), dtype=bool)
    if len(boxes):
        coords = np.floor(np.clip(np.asarray(boxes, dtype=np.float64), 0.0, 1.0) * GRID).astype(np.int64)
        for x1, y1, x2, y2 in coords:
            out[y1:y2, x1:x2] = True
    return out


def test_gt_grid_from_normalized_equals_raw_grid_for_every_clip(raw, normalized):
    assert len(raw) == len(normalized) == 5158
    areas = np.empty(len(raw), dtype=np.int64)
    for i, (r, n) in enumerate(zip(raw, normalized)):
        reference = _grid(r["bbox"])
        assert np.array_equal(_grid(n["bbox"]), reference), r["file"]
        areas[i] = reference.sum()
    assert int((areas == 0).sum()) == 2  # the two empty-GT clips


def test_write_normalized(tmp_path, raw_path):
    result = write_normalized(tmp_path, raw_path)
    assert result.path == tmp_path / NORMALIZED_NAME
    assert sha256_file(result.path) == result.sha256 == VGGSS_NORMALIZED_SHA256
    assert result.raw_sha256 == VGGSS_RAW_SHA256 and result.report.empty_gt_clips == 2
    again = write_normalized(tmp_path / "copy.json", raw_path)
    assert again.path.read_bytes() == result.path.read_bytes()
    assert raw_path.read_bytes() and sha256_file(raw_path) == VGGSS_RAW_SHA256  # raw untouched


def test_pinned_default_source(tmp_path, upstream):
    assert write_normalized(tmp_path / "n.json").sha256 == VGGSS_NORMALIZED_SHA256
    assert defect_report().corrupt_coordinates == 14


def test_pin_mismatch_writes_nothing(tmp_path, raw_path, monkeypatch):
    monkeypatch.setattr(normalize, "VGGSS_NORMALIZED_SHA256", "0" * 64)
    with pytest.raises(ChecksumError, match="pinned 0000"):
        write_normalized(tmp_path / "n.json", raw_path)
    assert not (tmp_path / "n.json").exists()


def test_small_cases():
    raw = [
        {"file": "a", "class": "x", "bbox": [[0, 0.5, 1, 1.0], [0.2, 0.2, 0.2, 0.9], [0.1, 0.1, -3e16, 0.5]]},
        {"file": "b", "class": "y", "bbox": []},
    ]
    a, b = normalize_entries(raw)
    assert a["bbox"] == [[0.0, 0.5, 1.0, 1.0]] and not a["gt_empty"]
    assert [(d["box_index"], d["kind"]) for d in a["defects"]] == [
        (1, "degenerate"), (2, "corrupt_coordinate"), (2, "degenerate")]
    assert b == {"file": "b", "class": "y", "bbox": [], "defects": [], "gt_empty": True}
    report = defect_report(raw)
    assert (report.corrupt_coordinates, report.degenerate_boxes, report.empty_gt_clips) == (1, 2, 1)
    assert defect_report([{"file": "c", "class": "z", "bbox": [[0.1, 0.1, 1.5, 0.5]]}]).coordinates_above_one == 1


@pytest.mark.parametrize("bad", [
    [{"file": "a", "class": "x", "bbox": [[0.1, 0.2, 0.3]]}],
    [{"file": "a", "class": "x", "bbox": [[0.1, 0.2, 0.3, math.nan]]}],
    [{"file": "a", "class": "x", "bbox": [[0.1, 0.2, 0.3, "0.4"]]}],
    [{"file": "a", "bbox": []}],
    [{"file": "a", "class": "x", "bbox": [], "defects": []}],
])
def test_malformed_entries_fail_loudly(bad):
    with pytest.raises(DataFileError):
        normalize_entries(bad)


def test_unreadable_raw_file(tmp_path):
    path = tmp_path / "vggss.json"
    path.write_text("{not json")
    with pytest.raises(DataFileError, match="unreadable"):
        normalized_bytes(path)
