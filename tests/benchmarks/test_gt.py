"""Ground-truth rasterisation: truncation, end-exclusive fill, Flickr consensus, size buckets."""

import numpy as np
import pytest

from avsl_bench.benchmarks.gt import (
    flickr_to_grid, normalized_to_grid, rasterize, read_flickr_xml, size_bucket, write_flickr_xml,
)
from avsl_bench.errors import DataFileError


def test_vggss_truncation_in_float64():
    # 0.6 * 224 = 134.39999999999998 → 134; corrupt coordinates clip to 0; > 1 clips to 224
    assert normalized_to_grid([0.6, 0.5, 1.0, 0.25]) == (134, 112, 224, 56)
    assert normalized_to_grid([-2.8823037615171176e16, 0.1, 1.5, 0.2]) == (0, 22, 224, 44)


def test_fill_is_end_exclusive_and_degenerate_boxes_are_empty():
    gt = rasterize([(10, 20, 13, 22)], "vggss")
    assert gt.sum() == 3 * 2
    assert gt[20, 10] == 1 and gt[21, 12] == 1 and gt[22, 12] == 0 and gt[21, 13] == 0
    assert rasterize([(5, 5, 5, 9), (9, 9, 3, 12)], "vggss").sum() == 0


def test_vggss_union_is_binary():
    gt = rasterize([(0, 0, 10, 10), (5, 5, 15, 15)], "vggss")
    assert set(np.unique(gt)) == {0.0, 1.0}
    assert gt.sum() == 100 + 100 - 25


def test_flickr_consensus_counts_boxes_not_annotators():
    # two boxes of the same annotator overlapping count twice
    gt = rasterize([(0, 0, 4, 4), (2, 2, 6, 6), (3, 3, 4, 4)], "flickr")
    assert gt[0, 0] == 0.5
    assert gt[2, 2] == 1.0  # covered by 2 boxes
    assert gt[3, 3] == 1.0  # 3 boxes → min(1.5, 1)
    assert gt[5, 5] == 0.5
    assert set(np.unique(gt)) == {0.0, 0.5, 1.0}


def test_flickr_pixel_conversion_truncates():
    # int(224 * v / 256): 255 → 223.125 → 223; 7 → 6.125 → 6; 256 → 224
    assert flickr_to_grid((255, 7, 256, 1)) == (223, 6, 224, 0)


def test_flickr_xml_round_trip(tmp_path):
    path = tmp_path / "123456789.xml"
    write_flickr_xml(path, [[(10, 20, 100, 200)], [(0, 0, 256, 256), (5, 5, 6, 6)]])
    groups = read_flickr_xml(path)
    assert groups == [(0, [(10, 20, 100, 200)]), (1, [(0, 0, 256, 256), (5, 5, 6, 6)])]


def test_flickr_xml_malformed_is_a_clear_error(tmp_path):
    path = tmp_path / "bad.xml"
    path.write_text("<annotation><object><bbox><name>x</name><xmin>1</xmin></bbox></object></annotation>")
    with pytest.raises(DataFileError, match="bad.xml"):
        read_flickr_xml(path)
    path.write_text("<annotation><object>")
    with pytest.raises(DataFileError, match="unreadable"):
        read_flickr_xml(path)


@pytest.mark.parametrize(
    "area,bucket",
    [(0, "small"), (1023, "small"), (1024, "medium"), (9215, "medium"), (9216, "large"), (20735, "large"),
     (20736, "huge"), (50176, "huge"), (float("nan"), "n/a"), (1023.5, "small"), (1024.0, "medium")],
)
def test_size_bucket_edges(area, bucket):
    assert size_bucket(area) == bucket
