"""The `vggss-semisup250` scoring track (baselines spec §3.7): 250 test clips of the fixed semi-supervised split."""

from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner

from avsl_bench.benchmarks.load import load_benchmark
from avsl_bench.benchmarks.semisup import vggss_semisup_parts
from avsl_bench.benchmarks.spec import get_spec, parse_spec
from avsl_bench.cli import app
from avsl_bench.errors import DataFileError

runner = CliRunner()


def test_definition_is_a_separate_track():
    spec = get_spec("vggss-semisup250@1")
    assert (spec.loader, spec.gt_rule, spec.expected_positives, spec.extended) == ("vggss", "vggss", 250, False)
    assert spec.subset_part == ("vggss-semisup250", "test") and "not comparable" in spec.title
    assert spec.files["vggss_json"].sha256 == get_spec("vggss").files["vggss_json"].sha256
    listing = runner.invoke(app, ["benchmarks"], env={"COLUMNS": "400"})
    assert listing.exit_code == 0 and "vggss-semisup250@1" in listing.output
    assert "not comparable" in listing.output


def test_loads_the_250_test_clips_in_list_order(upstream):
    bench = load_benchmark("vggss-semisup250")
    full = load_benchmark("vggss")
    assert bench.n_positives == 250 and bench.n_negatives == 0
    assert set(bench.ids) == set(vggss_semisup_parts()["test"])
    assert bench.ids == [i for i in full.ids if i in set(bench.ids)]
    assert bench.defects == {"corrupt_coordinates": 0, "degenerate_boxes": 0, "empty_gt": 0}  # of these 250 only
    assert sum(int(m.sum()) for m in bench.strata_members.values()) <= 250


def test_center_prior_scores_the_250_clips(upstream, tmp_path):
    preds = tmp_path / "cp.npz"
    result = runner.invoke(app, ["predict", "center-prior", "-b", "vggss-semisup250", "--out", str(preds)])
    assert result.exit_code == 0, result.output
    result = runner.invoke(app, ["score", str(preds), "-b", "vggss-semisup250", "--bootstrap", "0", "--json"])
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    assert data["counts"]["positives"] == 250 and data["protocol"] == "vggss-semisup250@1"
    assert 0.0 < data["metrics"]["loc_acc"]["value"] < 1.0


def test_bad_subsets_are_rejected(tmp_path):
    base = get_spec("vggss-semisup250").source.read_text(encoding="utf-8")
    for bad, match in (('subset = "vggss-semisup250/test"', None),
                       ('subset = "vggss-semisup250/nope"', "subset must be"),
                       ('subset = "flickr-sup-train/val"', "ranks 'flickr_sup_train'")):  # fmt: skip
        path = tmp_path / "vggss-semisup250.toml"
        path.write_text(base.replace('subset = "vggss-semisup250/test"', bad), encoding="utf-8")
        if match is None:
            assert parse_spec(path).subset == "vggss-semisup250/test"
        else:
            with pytest.raises(DataFileError, match=match):
                parse_spec(path)
