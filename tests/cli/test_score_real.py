"""Scoring on the real VGG-SS / Extended VGG-SS annotations (baselines spec §3.1 reference values)."""

from __future__ import annotations

import json

import numpy as np
import pytest
from typer.testing import CliRunner

from avsl_bench.benchmarks.load import load_benchmark
from avsl_bench.cli import app
from avsl_bench.scoring import functional as F
from avsl_bench.scoring.maps import per_sample_scores
from avsl_bench.scoring.submission import write_submission

runner = CliRunner()


def test_center_prior_reproduces_published_vggss_values(upstream, tmp_path):
    """34.0248 / 37.4351 on VGG-SS (incl. the 2 empty-GT clips), heard 32.14/36.51, unheard 35.65/38.22."""
    preds = tmp_path / "cp.npz"
    result = runner.invoke(app, ["predict", "center-prior", "-b", "vggss", "--out", str(preds), "--upstream", str(upstream)])
    assert result.exit_code == 0, result.output
    result = runner.invoke(app, ["score", str(preds), "-b", "vggss", "--bootstrap", "0", "--json"])
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    assert round(100 * data["metrics"]["loc_acc"]["value"], 4) == 34.0248
    assert round(100 * data["metrics"]["auc"]["value"], 4) == 37.4351
    assert [round(100 * data["strata"]["heard"][k]["value"], 2) for k in ("loc_acc", "auc")] == [32.14, 36.51]
    assert [round(100 * data["strata"]["unheard"][k]["value"], 2) for k in ("loc_acc", "auc")] == [35.65, 38.22]
    assert data["counts"]["positives"] == 5158 and data["benchmark"]["defects"]["empty_gt"] == 2
    assert data["benchmark"]["files"]["vggss_json"].startswith("ae300b4a")


def test_all_ones_map_reference_point(upstream):
    """A constant map (every pixel on under top50) gives 21.95 / 31.25 on VGG-SS."""
    bench = load_benchmark("vggss")
    ciou = np.concatenate([
        per_sample_scores(np.ones((len(chunk), 224, 224), np.float32), bench.gt_maps(chunk)).ciou
        for chunk in np.array_split(np.arange(len(bench.ids)), 20)
    ])
    assert round(100 * F.loc_acc(ciou), 2) == 21.95
    assert round(100 * F.auc(ciou), 2) == 31.25


def test_vggss_ext_scores_with_the_real_slavc_negatives(upstream, tmp_path):
    bench = load_benchmark("vggss-ext")
    rng = np.random.default_rng(0)
    maps = rng.random((len(bench.ids), 7, 7), dtype=np.float32)
    maps[~bench.positive] *= 0.5
    preds = tmp_path / "low_res.npz"
    write_submission(preds, bench.ids, maps)
    result = runner.invoke(app, ["score", str(preds), "-b", "vggss-ext", "--bootstrap", "20", "--json"])
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    assert data["counts"]["negatives"] == 5158 and data["submission"]["map_shape"] == [7, 7]
    assert {"real", "easy", "hard", "small", "huge", "heard"} <= set(data["strata"])
    assert 0 < data["metrics"]["ap"]["value"] < 1 and 0 < data["metrics"]["max_f1"]["value"] < 1
    assert data["metrics"]["max_f1"]["published_rounding"] == round(100 * data["metrics"]["max_f1"]["value"], 1) / 100
