"""The store: every acceptance check of `leaderboard add`, atomic copies, overfit diagnostics."""

from __future__ import annotations

import json
import shutil

import pandas as pd
import pytest

from avsl_bench.errors import ResultFileError
from avsl_bench.files import sha256_file
from avsl_bench.leaderboard import store as store_module
from avsl_bench.leaderboard.store import (EntryRefused, add_result, entry_id, load_store, read_overfit,
                                          validate_result)

from .conftest import OVERFIT


def _edit(path, change) -> None:
    data = json.loads(path.read_text())
    change(data)
    path.write_text(json.dumps(data, indent=2))


def _edit_table(path, change) -> None:
    """Rewrite the per-sample table and record its new digest (a consistent but altered result)."""
    data = json.loads(path.read_text())
    samples = path.with_name(data["per_sample"]["path"])
    table = change(pd.read_parquet(samples))
    table.to_parquet(samples, index=False)
    data["per_sample"]["sha256"] = sha256_file(samples)
    path.write_text(json.dumps(data, indent=2))


def _refused(path, tiny, *words):
    with pytest.raises(EntryRefused) as info:
        validate_result(path, bench=tiny)
    message = str(info.value)
    assert "\n" not in message and str(path) in message
    for word in words:
        assert word in message, message
    return message


def test_valid_result_passes_and_reads_its_overfit_file(results, tiny):
    checked = validate_result(results["good"], bench=tiny)
    assert checked.result["method"]["name"] == "SLAVC" and len(checked.table) == 128
    assert checked.overfit is not None and checked.overfit.final_epoch == 5
    assert checked.overfit.gap("loc_acc") == (3, 0.61, pytest.approx(0.06))


def test_add_copies_atomically_and_is_idempotent(tmp_path, results, tiny):
    entry, status = add_result(results["good"], tmp_path, bench=tiny)
    assert status == "added" and entry == tmp_path / "results" / "synthetic-tiny-ext" / entry_id(
        json.loads(results["good"].read_text()))
    assert entry.name.startswith("slavc--synthetic-tiny--")
    assert sorted(p.name for p in entry.iterdir()) == ["overfit.json", "result.json", "result.samples.parquet"]
    assert (entry / "result.json").read_bytes() == results["good"].read_bytes()
    assert add_result(results["good"], tmp_path, bench=tiny) == (entry, "unchanged")
    with pytest.raises(EntryRefused, match="already in the store"):
        add_result(results["good"], tmp_path, name="another-name", bench=tiny)
    assert not [p for p in entry.parent.iterdir() if p.name.startswith(".")]
    (loaded,) = load_store(tmp_path)
    assert loaded.entry_id == entry.name and loaded.overfit is not None and not loaded.stale


def test_same_name_different_result_needs_replace(tmp_path, results, tiny):
    add_result(results["good"], tmp_path, name="run", bench=tiny)
    with pytest.raises(EntryRefused, match="--replace"):
        add_result(results["xss"], tmp_path, name="run", bench=tiny)
    entry, status = add_result(results["xss"], tmp_path, name="run", replace=True, bench=tiny)
    assert status == "replaced" and (entry / "result.json").read_bytes() == results["xss"].read_bytes()
    assert not (entry / "overfit.json").exists()
    assert [e.entry_id for e in load_store(tmp_path)] == ["run"]


def test_failed_copy_leaves_no_entry_and_no_temporary_files(tmp_path, results, tiny, monkeypatch):
    original = shutil.copyfile

    def broken(src, dst, *args, **kwargs):
        if str(src).endswith(".parquet"):
            raise OSError("disk full")
        return original(src, dst, *args, **kwargs)

    monkeypatch.setattr(store_module.shutil, "copyfile", broken)
    with pytest.raises(OSError, match="disk full"):
        add_result(results["good"], tmp_path, bench=tiny)
    bench_dir = tmp_path / "results" / "synthetic-tiny-ext"
    assert list(bench_dir.iterdir()) == []
    assert load_store(tmp_path) == []


@pytest.mark.parametrize("selection", ["early_stopping", "unspecified", None])
def test_only_final_checkpoints_are_accepted(result_copy, tiny, selection):
    path = result_copy("good")
    _edit(path, lambda d: d["method"].__setitem__("checkpoint_selection", selection))
    _refused(path, tiny, "checkpoint selection", "final", "early stopping is forbidden")


def test_a_real_early_stopped_result_is_refused_before_any_scoring(results, tiny):
    _refused(results["early"], tiny, "'early_stopping'")


def test_tampered_metric_value_is_caught_by_rescoring(result_copy, tiny):
    path = result_copy("good")
    _edit(path, lambda d: d["metrics"]["loc_acc"].__setitem__("value", d["metrics"]["loc_acc"]["value"] + 1e-9))
    _refused(path, tiny, "loc_acc", "per-sample table gives")
    path = result_copy("xss")
    _edit(path, lambda d: d["strata"]["large"]["auc"].__setitem__("value", 0.99))
    _refused(path, tiny, "strata.large.auc")


def test_tampered_ci_is_caught(result_copy, tiny):
    path = result_copy("good")
    _edit(path, lambda d: d["metrics"]["ap"].__setitem__("ci95", [0.0, 1.0]))
    _refused(path, tiny, "ap ci95")


def test_missing_or_extra_metric_keys_are_refused(result_copy, tiny):
    path = result_copy("good")
    _edit(path, lambda d: d["metrics"].pop("ap75"))
    _refused(path, tiny, "missing ['ap75']")


def test_altered_table_with_updated_digest_is_refused(result_copy, tiny):
    path = result_copy("good")

    def worse(table):
        table.loc[table["positive"], "ciou"] = 0.0
        return table

    _edit_table(path, worse)
    _refused(path, tiny, "per-sample table gives")


def test_altered_table_without_digest_is_a_result_file_error(result_copy, tiny):
    path = result_copy("good")
    samples = path.with_name("result.samples.parquet")
    table = pd.read_parquet(samples)
    table.loc[0, "ciou"] = 1.0
    table.to_parquet(samples, index=False)
    with pytest.raises(ResultFileError, match="sha256"):
        validate_result(path, bench=tiny)


def test_reordered_samples_are_refused(result_copy, tiny):
    path = result_copy("good")
    _edit_table(path, lambda t: t.iloc[::-1].reset_index(drop=True))
    _refused(path, tiny, "per-sample ids differ", "row 0")


@pytest.mark.parametrize("change, words", [
    (lambda d: d.__setitem__("protocol", "synthetic-tiny-ext@2"), ("not the current version",)),
    (lambda d: d.__setitem__("protocol", "no-such-benchmark@1"), ("unknown benchmark",)),
    (lambda d: d["benchmark"].__setitem__("ground_truth_sha256", "0" * 64), ("ground-truth sha256",)),
    (lambda d: d["benchmark"].__setitem__("definition_sha256", "f" * 64), ("definition sha256",)),
    (lambda d: d["options"].__setitem__("gamma", 0.3), ("γ = 0.5",)),
    (lambda d: d["options"]["bootstrap"].__setitem__("resamples", 0), ("bootstrap resamples", "1000")),
    (lambda d: d["counts"].__setitem__("missing", 3), ("counts",)),
    (lambda d: d["per_sample"].__setitem__("path", "../../etc/passwd.parquet"), ("plain .parquet file name",)),
    (lambda d: d.__setitem__("options", "top50"), ("'options' must be an object",)),
])
def test_inconsistent_declarations_are_refused(result_copy, tiny, change, words):
    path = result_copy("good")
    _edit(path, change)
    _refused(path, tiny, *words)


def test_ground_truth_is_checked_against_a_freshly_loaded_benchmark(result_copy):
    path = result_copy("xss")
    _edit(path, lambda d: d["benchmark"].__setitem__("ground_truth_sha256", "0" * 64))
    with pytest.raises(EntryRefused, match="ground-truth"):
        validate_result(path)  # loads synthetic-tiny-ext itself


def test_inline_overfit_diagnostic_and_its_errors(result_copy, tiny):
    path = result_copy("xss")
    _edit(path, lambda d: d.__setitem__("diagnostics", {"overfit": {**OVERFIT, "final_epoch": 4}}))
    checked = validate_result(path, bench=tiny)
    assert checked.overfit.final_epoch == 4 and checked.overfit_file is None
    assert checked.overfit.gap("auc") == (3, 0.52, pytest.approx(0.02))
    _edit(path, lambda d: d["diagnostics"]["overfit"]["scores"].__setitem__("auc", [0.1]))
    _refused(path, tiny, "overfit", "one value per epoch")


@pytest.mark.parametrize("raw, words", [
    ({"schema": "x"}, "schema"),
    ({**OVERFIT, "epochs": [1, 3, 2, 4, 5]}, "strictly increasing"),
    ({**OVERFIT, "final_epoch": 9}, "final_epoch"),
    ({**OVERFIT, "scores": {"loc_acc": [0.1, 0.2, float("nan"), 0.3, 0.4]}}, "finite"),
    ({"schema": "avsl-bench/overfit@1", "epochs": [1, 2], "scores": [0.1, 0.2]}, "metric"),
])
def test_overfit_validation(raw, words):
    with pytest.raises(EntryRefused, match=words):
        read_overfit(raw, "x")


def test_overfit_shorthand_and_lower_is_better():
    overfit = read_overfit({"schema": "avsl-bench/overfit@1", "epochs": [1, 2, 3], "metric": "mse",
                            "scores": [0.3, 0.1, 0.2]}, "x")
    assert overfit.gap("mse") == (2, 0.1, pytest.approx(0.1))


def test_load_store_skips_temporary_folders(store):
    entries = load_store(store)
    assert len(entries) == 3 and {e.benchmark for e in entries} == {"synthetic-tiny-ext"}
    temp = store / "results" / "synthetic-tiny-ext" / ".half-written.tmp"
    temp.mkdir()
    try:
        assert len(load_store(store)) == 3
    finally:
        temp.rmdir()
