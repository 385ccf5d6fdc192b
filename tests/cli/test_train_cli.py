"""`avsl-bench train / predict RUN_DIR / score (run provenance) / overfit / reproduce` through the CLI (CliRunner).

One `prepare synthetic-tiny --limit 128` (shards with manifests; test + test-neg whole) and one tiny-recipe run.
"""

from __future__ import annotations

import json

import pytest
import torch
from typer.testing import CliRunner

from avsl_bench.cli import app

from ..train.conftest import tiny_recipe

runner = CliRunner()
SIZE = "synthetic-tiny"
BENCH = "synthetic-tiny-ext"


def _invoke(*args):
    return runner.invoke(app, [str(a) for a in args])


def _one_line_error(result, code: int = 2, text: str = "", *, after: int = 0) -> None:
    """Exit `code` with one `error:` line (after `after` lines of normal output)."""
    assert result.exit_code == code, result.output
    lines = result.output.strip().splitlines()
    assert len(lines) == after + 1 and lines[-1].startswith("error:") and text in lines[-1], result.output


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    """Two shared CPU cores: torch's thread pool oversubscribes them (20× slower decoding)."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def data_root(tmp_path_factory):
    from avsl_bench.data.commands import prepare_benchmark

    root = tmp_path_factory.mktemp("data")
    prepare_benchmark(SIZE, root, progress=False, limit=128)  # train 256 → 128 rows; val/test splits stay whole
    return root


@pytest.fixture(scope="module")
def test_dirs(data_root):
    return [data_root / SIZE / "test", data_root / SIZE / "test-neg"]


@pytest.fixture(scope="module")
def trained(tmp_path_factory, data_root):
    root = tmp_path_factory.mktemp("runs")
    recipe = tiny_recipe(root / "tiny.toml", "ezvsl", cache=True)
    run_dir = root / "ezvsl"
    result = _invoke("train", "ezvsl", "--data", data_root / SIZE / "train", "--out", run_dir, "--config", recipe,
                     "--device", "cpu", "--save-every", "1")
    assert result.exit_code == 0, result.output
    return run_dir, result.output


def test_help_of_training_commands():
    for command in ("train", "predict", "score", "reproduce", "overfit"):
        result = _invoke(command, "--help")
        assert result.exit_code == 0, result.output
        assert "Usage" in result.output


def test_train_writes_run_and_final_checkpoint(trained):
    run_dir, output = trained
    run = json.loads((run_dir / "run.json").read_text())
    assert (run_dir / "final.pt").is_file() and (run_dir / "epoch_001.pt").is_file()
    assert run["epochs"] == 2 and run["checkpoint_selection"] == "final"
    assert run["training_data"]["benchmarks"] == [SIZE] and run["training_data"]["samples"] == 128
    assert "epoch 1/2" in output and "epoch 2/2" in output and "loss" in output
    assert run["checkpoint"]["sha256"] in output.replace("\n", "").replace("│", "").replace(" ", "")
    assert "samples/s" in output
    # a second train into the same directory is refused, one line
    _one_line_error(_invoke("train", "ezvsl", "--data", run_dir.parent / "nothing", "--out", run_dir,
                            "--config", run_dir.parent / "tiny.toml", "--device", "cpu"), text="exists")


def test_predict_run_then_score_carries_provenance(trained, test_dirs, tmp_path):
    run_dir, _ = trained
    run = json.loads((run_dir / "run.json").read_text())
    preds = tmp_path / "preds.npz"
    result = _invoke("predict", run_dir, "--data", test_dirs[0], "--data", test_dirs[1], "--out", preds,
                     "--device", "cpu")
    assert result.exit_code == 0, result.output
    summary = json.loads((tmp_path / "preds.npz.json").read_text())
    assert summary["run"] == str(run_dir) and summary["checkpoint"]["sha256"] == run["checkpoint"]["sha256"]
    assert summary["samples"] == 128

    out = tmp_path / "result.json"
    result = _invoke("score", preds, "-b", BENCH, "--bootstrap", "0", "--out", out)  # run found via preds.npz.json
    assert result.exit_code == 0, result.output
    assert "provenance: run" in result.output
    method = json.loads(out.read_text())["method"]
    assert method["name"] == "ezvsl" and method["checkpoint_selection"] == "final"
    assert method["checkpoint_sha256"] == run["checkpoint"]["sha256"]
    assert method["training_set"] == SIZE and method["training_set_sha256"] == run["training_data"]["keys_sha256"]
    assert method["training_set_leaky"] is False and method["extra"]["predictions"]["map"] == "fixed_range"

    # explicit --run gives the same provenance; a name given with --method wins
    result = _invoke("score", preds, "-b", BENCH, "--bootstrap", "0", "--run", run_dir, "--method", "mine", "--json")
    assert result.exit_code == 0, result.output
    explicit = json.loads(result.stdout)["method"]
    assert explicit["name"] == "mine" and explicit["checkpoint_sha256"] == method["checkpoint_sha256"]
    _one_line_error(_invoke("score", preds, "-b", BENCH, "--bootstrap", "0", "--checkpoint-selection",
                            "early_stopping"), text="final checkpoint")

    # a summary whose checkpoint is not the run's final one: one-line error
    summary["checkpoint"]["sha256"] = "0" * 64
    (tmp_path / "preds.npz.json").write_text(json.dumps(summary))
    _one_line_error(_invoke("score", preds, "-b", BENCH, "--bootstrap", "0"), text="checkpoint sha256")
    # a summary of another archive (stale): one-line error
    summary["submission"]["sha256"] = "1" * 64
    (tmp_path / "preds.npz.json").write_text(json.dumps(summary))
    _one_line_error(_invoke("score", preds, "-b", BENCH, "--bootstrap", "0"), text="another archive")


def test_predict_refuses_non_runs(trained, test_dirs, tmp_path):
    run_dir, _ = trained
    _one_line_error(_invoke("predict", tmp_path / "nowhere", "--data", test_dirs[0], "--out", tmp_path / "p.npz"),
                    text="no run.json")
    _one_line_error(_invoke("predict", run_dir, "--out", tmp_path / "p.npz"), text="--data")
    _one_line_error(_invoke("predict", run_dir, "--data", test_dirs[0], "--ogl", "sideways"), text="--ogl")
    _one_line_error(_invoke("predict", "center-prior", "--data", test_dirs[0]), text="center-prior")
    assert not (tmp_path / "p.npz").exists()
    result = _invoke("predict", "center-prior", "-b", SIZE, "--out", tmp_path / "cp.npz")
    assert result.exit_code == 0, result.output
    assert (tmp_path / "cp.npz").is_file()


def test_overfit_is_a_diagnostic(trained, test_dirs, tmp_path):
    from avsl_bench.leaderboard.store import read_overfit

    run_dir, _ = trained
    out = tmp_path / "overfit.json"
    result = _invoke("overfit", run_dir, "-b", BENCH, "--data", test_dirs[0], "--data", test_dirs[1], "--out", out,
                     "--device", "cpu")
    assert result.exit_code == 0, result.output
    assert "NOT ELIGIBLE" in result.output and "diagnostic" in result.output
    record = json.loads(out.read_text())
    assert record["eligible"] is False and record["diagnostic"] == "early-stop gap, never a leaderboard number"
    assert record["epochs"] == [1, 2] and record["final_epoch"] == 2
    assert [e["checkpoint"] for e in record["per_epoch"]] == ["epoch_001.pt", "final.pt"]
    assert set(record["scores"]) == {"loc_acc", "auc", "ap", "max_f1"}
    parsed = read_overfit(record, str(out))  # the leaderboard reads it
    assert record["gap"]["auc"]["gap"] == pytest.approx(parsed.gap("auc")[2]) and record["gap"]["auc"]["gap"] >= 0
    assert (tmp_path / "overfit.svg").read_text().lstrip().startswith("<?xml")


def test_reproduce_synthetic_tiny(data_root, tmp_path):
    out = tmp_path / "repro"
    args = ("reproduce", "ezvsl", "--recipe", "synthetic-tiny", "--epochs", "1", "--out", out, "--data-root",
            data_root, "--device", "cpu", "--bootstrap", "0")
    result = _invoke(*args)
    assert result.exit_code == 0, result.output
    data = json.loads((out / "result.json").read_text())
    run = json.loads((out / "run" / "run.json").read_text())
    assert data["protocol"] == "synthetic-tiny-ext@1" and data["counts"]["negatives"] == 64
    method = data["method"]
    assert method["name"] == "ezvsl" and method["checkpoint_selection"] == "final"
    assert method["checkpoint_sha256"] == run["checkpoint"]["sha256"] == json.loads(
        (out / "preds.npz.json").read_text())["checkpoint"]["sha256"]
    assert method["training_set"] == SIZE and method["training_set_sha256"] == run["training_data"]["keys_sha256"]
    assert run["recipe"]["name"] == "synthetic" and run["recipe"]["schedule_overridden"] is True
    # the same --out with another seed is refused (no silent reuse of a different run)
    _one_line_error(_invoke(*args, "--seed", "1"), text="holds another run", after=1)
    # a run without epoch checkpoints has nothing to compare for overfit
    _one_line_error(_invoke("overfit", out / "run", "-b", BENCH, "--data", data_root / SIZE / "test"),
                    text="--save-every")


def test_reproduce_helpers(data_root, tmp_path):
    from avsl_bench.errors import UsageError
    from avsl_bench.train.reproduce import default_benchmark, default_config, resolve_recipe, benchmark_layout

    assert default_config("ezvsl", [data_root / SIZE / "train"]) == "synthetic"
    with pytest.raises(UsageError, match="--config"):
        default_config("ezvsl", [tmp_path])
    recipe, train_set = resolve_recipe("slavc", "vggsound-144k", "vggsound-144k-noleak")
    assert recipe.name == "vggsound-144k" and train_set == "vggsound-144k-noleak"
    assert default_benchmark("vggsound-144k") == "vggss" and default_benchmark(SIZE) == BENCH
    assert benchmark_layout("vggss-ext") == ("vggss-ext", "vggss", ["test", "test-neg"])
    assert benchmark_layout("flickr-249") == ("flickr", "flickr", ["test"])
    assert benchmark_layout(BENCH) == (SIZE, SIZE, ["test", "test-neg"])
