"""CI regression: each learned baseline's CPU recipe, trained briefly on `synthetic-tiny`, reproduces its pins.

The pins live in `baselines/expected.json` (`ci` and `methods.<m>.ci`) and are refreshed only deliberately with
`baselines/refresh_expected.py --ci --write`. The shards are rendered once per session by the data layer
(`avsl_bench.data.synthetic` + `avsl_bench.data.shards`), ~20 s.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from avsl_bench.models.recipes import baselines_dir

EXPECTED = json.loads((baselines_dir() / "expected.json").read_text())
CI = EXPECTED["ci"]


@pytest.fixture(scope="session")
def tiny_synthetic(tmp_path_factory) -> dict[str, Path]:
    from .synthetic_shards import write_synthetic

    return write_synthetic(tmp_path_factory.mktemp("synthetic"), CI["data"], samples_per_shard=128)


def test_pins_cover_every_registered_method():
    from avsl_bench.models import method_registry

    assert sorted(EXPECTED["methods"]) == method_registry().names()


def test_pinned_acceptance_verdicts_follow_the_spec_rule():
    """Each stored §3.8 verdict is what `refresh_expected.acceptance` computes from the stored per-seed runs (a hand
    edit of a number or a flag fails here), and the rule includes the training-time limit."""
    import importlib.util

    spec = importlib.util.spec_from_file_location("refresh_expected", baselines_dir() / "refresh_expected.py")
    refresh = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(refresh)
    cp = EXPECTED["synthetic"]["center_prior"]
    for method, pins in EXPECTED["methods"].items():
        if "synthetic" in pins:
            assert refresh.acceptance(pins["synthetic"], cp) == pins["synthetic"]["acceptance"], method
    slow = {"seeds": {"0": {"train_s": refresh.ACCEPT["train_seconds"] + 1}},
            "mean": {"loc_acc": 1.0, "auc": 1.0, "distractor_loc_acc": 0.0}}
    assert refresh.acceptance(slow, cp)["passes"] is False


@pytest.mark.slow
@pytest.mark.parametrize("method", sorted(EXPECTED["methods"]))
def test_cpu_recipe_reproduces_pins(method, tiny_synthetic, tmp_path):
    from avsl_bench.benchmarks.load import load_benchmark
    from avsl_bench.train.calibrate import score_archive
    from avsl_bench.train.loop import train
    from avsl_bench.train.predict import predict

    run = train(method, tiny_synthetic["train"], tmp_path / "run", CI["recipe"], epochs=CI["epochs"], device="cpu",
                seed=CI["seed"])
    assert run["checkpoint_selection"] == "final" and run["training_data"]["leaky"] is False
    predict(tmp_path / "run", [tiny_synthetic["test"], tiny_synthetic["test-neg"]], tmp_path / "preds.npz",
            device="cpu", workers=0)
    got = score_archive(tmp_path / "preds.npz", load_benchmark(CI["benchmark"]))
    pins = EXPECTED["methods"][method]["ci"]
    for metric, tol in CI["tolerance"].items():
        assert abs(got[metric] - pins[metric]) <= tol, (
            f"{method} {metric} = {got[metric]:.4f}, pinned {pins[metric]:.4f} ± {tol} "
            "(refresh deliberately with baselines/refresh_expected.py --ci --write)"
        )
