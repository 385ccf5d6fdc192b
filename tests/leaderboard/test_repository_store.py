"""The repository's own leaderboard/: its entries still pass `leaderboard add`, its README is up to date."""

from __future__ import annotations

from pathlib import Path

from avsl_bench.leaderboard import load_published, load_store, validate_result
from avsl_bench.leaderboard.markdown import render_markdown
from avsl_bench.leaderboard.rows import build_board

STORE = Path(__file__).resolve().parents[2] / "leaderboard"


def test_readme_matches_the_store_and_published_rows():
    expected = render_markdown(build_board(load_store(STORE), load_published(STORE / "published.toml")))
    assert (STORE / "README.md").read_text(encoding="utf-8") == expected, \
        "leaderboard/README.md is out of date: run `avsl-bench leaderboard build --out site/`"


def test_stored_entries_still_pass_every_check(upstream):
    entries = load_store(STORE)
    assert entries, "the repository store holds the reproduced Center Prior on vggss"
    for entry in entries:
        assert not entry.stale, entry.path
        checked = validate_result(entry.path, mirror=upstream)
        assert checked.result["method"]["checkpoint_selection"] == "final"
    center = next(e for e in entries if e.method == "Center Prior" and e.benchmark == "vggss")
    metrics = center.result["metrics"]
    assert (round(100 * metrics["loc_acc"]["value"], 2), round(100 * metrics["auc"]["value"], 2)) == (34.02, 37.44)
