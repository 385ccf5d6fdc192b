"""leaderboard/published.toml: the shipped rows (baselines.md §5) and the strict parser."""

from __future__ import annotations

import pytest

from avsl_bench.benchmarks.spec import benchmark_registry
from avsl_bench.errors import DataFileError
from avsl_bench.leaderboard.published import load_published, parse_published

ISSUE_METHODS = ("EZ-VSL", "SLAVC", "LVS", "Attention10k", "DMC", "FNAC", "JSA", "DMT", "XPL", "Center Prior")


@pytest.fixture(scope="module")
def pub():
    return load_published()


def _rows(pub, method, benchmark, training_set=None, table=None):
    return [r for r in pub.rows if r.method == method and r.benchmark == benchmark
            and (training_set is None or r.training_set == training_set) and (table is None or r.table == table)]


def test_every_method_of_the_issue_has_published_rows(pub):
    methods = {r.method for r in pub.rows}
    for name in ISSUE_METHODS:
        assert name in methods, name
    for row in pub.rows:
        assert row.citation and row.source.citation and row.table
        assert row.status in ("exact", "paper", "README", "recalled")


def test_ssl_align_is_a_pending_placeholder_without_a_number(pub):
    assert "SSL-Align" not in {r.method for r in pub.rows}
    (pending,) = [p for p in pub.pending if p.method == "SSL-Align"]
    assert "§5" in pending.reason and "checked" in pending.reason


def test_spot_values_from_the_reported_numbers_table(pub):
    (slavc,) = _rows(pub, "SLAVC", "vggss-ext", table="Table 3")
    assert slavc.metrics == {"ap": 32.95, "max_f1": 40.00, "loc_acc": 37.79}
    (cp,) = _rows(pub, "Center Prior", "vggss")
    assert (cp.metrics["loc_acc"], cp.metrics["auc"], cp.metrics["heard.loc_acc"], cp.status) == (34.02, 37.44, 32.14,
                                                                                                  "exact")
    (es,) = _rows(pub, "EZ-VSL", "flickr", table="Table 2 (ES)")
    (no_es,) = _rows(pub, "EZ-VSL", "flickr", table="Table 2 (no-ES)")
    assert (es.metrics["loc_acc"], es.early_stopped) == (79.60, True)
    assert (no_es.metrics["loc_acc"], no_es.early_stopped) == (66.40, False)
    (neg,) = _rows(pub, "SLAVC", "vggss-ext", table="Table 5")
    assert neg.metrics == {"real.max_f1": 40.30, "easy.max_f1": 43.20, "hard.max_f1": 33.00}
    (dmt,) = _rows(pub, "DMT", "flickr", "flickr-144k")
    assert dmt.metrics == {"loc_acc": 90.40, "auc": 69.36} and dmt.supervision == "semi"
    (xpl,) = _rows(pub, "XPL", "vggss-semisup250-papers")
    assert xpl.metrics == {"loc_acc": 48.40, "auc": 44.12}


def test_early_stopping_flags_follow_the_table_columns(pub):
    for row in pub.rows:
        if "(ES)" in row.table:
            assert row.early_stopped is True, row
        if "(no-ES)" in row.table:
            assert row.early_stopped is False, row
    # upstream code that selects on the test set (baselines.md §6 trap 3)
    for row in pub.rows:
        if row.method.startswith(("JSA", "FNAC")) or row.source.id == "ezvsl-readme":
            assert row.early_stopped is True, row


def _expected_leak(training_set: str, benchmark: str):
    """Data spec §5.3: which legacy lists hold clips of which test set."""
    if training_set in ("none", "vggsound-heard") or training_set.endswith("-noleak"):
        return False
    if training_set in ("vggsound-10k", "vggsound-144k"):
        return benchmark.startswith("vggss")
    if training_set in ("flickr-10k", "flickr-144k"):
        return benchmark.startswith("flickr")
    return "unknown"


def test_leak_flags_follow_the_overlap_table(pub):
    for row in pub.rows:
        if row.training_note.startswith("FNAC regenerated"):
            assert row.leaky_training_list == "unknown", row  # FNAC's own lists were never audited
            continue
        assert row.leaky_training_list == _expected_leak(row.training_set, row.benchmark), row


def test_benchmarks_are_defined_or_declared_tracks(pub):
    registry = benchmark_registry()
    for row in pub.rows:
        assert row.benchmark in registry or row.benchmark in pub.tracks, row.benchmark
    assert "vggss-semisup250-papers" in pub.tracks and "comparable neither" in pub.tracks["vggss-semisup250-papers"].note
    assert "vggss-semisup250" in registry and "vggss-semisup250" not in pub.tracks  # our fixed split: other clips


def test_sources_have_http_urls_only(pub):
    for source in pub.sources.values():
        assert source.url is None or source.url.startswith("https://")


MINIMAL = '''
schema = "avsl-bench/published@1"
[sources.s]
citation = "A paper"
short = "Paper"
[evaluators.e]
description = "x"
convention = "standard"
[[row]]
method = "M"
benchmark = "vggss"
training_set = "none"
metrics = { loc_acc = 10.0 }
source = "s"
table = "Table 1"
status = "paper"
evaluator = "e"
early_stopped = false
leaky_training_list = "unknown"
'''


def test_minimal_file_parses_and_nested_strata_flatten():
    pub = parse_published(MINIMAL.replace("{ loc_acc = 10.0 }", "{ loc_acc = 10.0, heard = { auc = 5.5 } }"))
    (row,) = pub.rows
    assert row.metrics == {"loc_acc": 10.0, "heard.auc": 5.5}
    assert row.leaky_training_list == "unknown" and not row.unverified
    assert parse_published(MINIMAL.replace('status = "paper"', 'status = "recalled"')).rows[0].unverified


@pytest.mark.parametrize("old, new, words", [
    ('method = "M"', 'method = "M"\ncolour = "red"', "unknown keys"),
    ('status = "paper"', 'status = "remembered"', "status"),
    ("{ loc_acc = 10.0 }", "{ locacc = 10.0 }", "unknown metric key"),
    ("{ loc_acc = 10.0 }", "{ loc_acc = 140.0 }", "[0, 100]"),
    ('source = "s"', 'source = "nope"', "source"),
    ('early_stopped = false', 'early_stopped = "maybe"', "early_stopped"),
    ('short = "Paper"', 'short = "Paper"\nurl = "javascript:alert(1)"', "url"),
    ('benchmark = "vggss"', 'benchmark = "VGG SS"', "protocol name"),
    ('schema = "avsl-bench/published@1"', 'schema = "v0"', "schema"),
])
def test_malformed_files_raise_naming_the_problem(old, new, words):
    with pytest.raises(DataFileError) as info:
        parse_published(MINIMAL.replace(old, new))
    assert words in str(info.value) and "\n" not in str(info.value)
