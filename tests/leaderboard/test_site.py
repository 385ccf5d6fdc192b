"""The static site and the Markdown README: structure, escaping, offline-only references, determinism."""

from __future__ import annotations

import html.parser
import re
from pathlib import Path

import pytest

from avsl_bench.errors import UsageError
from avsl_bench.leaderboard import build_site, load_store
from avsl_bench.leaderboard.markdown import md_escape, render_markdown
from avsl_bench.leaderboard.published import load_published
from avsl_bench.leaderboard.rows import build_board
from avsl_bench.leaderboard.site import SITE_MARKER

from .conftest import QUOTES, XSS
from .test_published import MINIMAL as MINIMAL_PUBLISHED


@pytest.fixture(scope="module")
def site(store, results, tmp_path_factory):
    out = tmp_path_factory.mktemp("site") / "site"
    index = build_site(store, out, markdown=out.parent / "README.md")
    return index


class _Collect(html.parser.HTMLParser):
    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.tags: list[tuple[str, dict]] = []
        self.text: list[str] = []

    def handle_starttag(self, tag, attrs):
        self.tags.append((tag, dict(attrs)))

    def handle_data(self, data):
        self.text.append(data)


def _parse(path: Path) -> _Collect:
    parser = _Collect()
    parser.feed(path.read_text(encoding="utf-8"))
    return parser


def test_layout_of_the_site(site):
    out = site.parent
    assert site == out / "index.html" and (out / SITE_MARKER).is_file()
    for page in ("vggss", "vggss-ext", "flickr", "flickr-ext", "vggss-semisup250-papers", "synthetic-tiny-ext"):
        assert (out / f"{page}.html").is_file(), page
    entries = sorted((out / "entries" / "synthetic-tiny-ext").glob("*.html"))
    assert len(entries) == 3
    plots = {p.name for p in (out / "plots" / "synthetic-tiny-ext").glob("*.svg")}
    assert plots == {"f1.svg", "pr.svg", "size.svg"}
    slavc = next(p for p in entries if p.name.startswith("slavc--"))
    assert (out / "plots" / "synthetic-tiny-ext" / slavc.stem / "overfit.svg").is_file()
    data = out / "data" / "synthetic-tiny-ext" / slavc.stem
    assert {p.name for p in data.iterdir()} == {"result.json", "result.samples.parquet", "overfit.json"}
    assert all(p.stat().st_mode & 0o777 == (0o755 if p.is_dir() else 0o644) for p in out.rglob("*"))
    for svg in out.glob("plots/**/*.svg"):
        head = svg.read_text()[:400]
        assert "<svg" in head and "<script" not in svg.read_text()


def test_every_page_is_self_contained_and_escaped(site):
    pages = sorted(site.parent.glob("**/*.html"))
    assert len(pages) >= 10
    for page in pages:
        text = page.read_text(encoding="utf-8")
        parsed = _parse(page)
        assert [t for t, _ in parsed.tags].count("script") == 1, page
        assert not any(t == "link" for t, _ in parsed.tags), page
        for tag, attrs in parsed.tags:
            assert not any(name.startswith("on") for name in attrs), (page, tag, attrs)
            if tag in ("script", "img", "iframe", "source", "embed", "object"):
                assert not re.match(r"^(https?:)?//", attrs.get("src") or ""), (page, attrs)
            if tag == "a" and attrs.get("href", "").startswith("http"):
                assert attrs["href"].startswith("https://"), attrs
            assert not (attrs.get("href") or "").lower().startswith("javascript:")
        assert "url(http" not in text and "@import" not in text and "fonts.googleapis" not in text
        assert XSS not in text and 'onmouseover="alert(2)' not in text
        assert "Content-Security-Policy" in text


def test_result_strings_come_back_as_text(site):
    page = site.parent / "synthetic-tiny-ext.html"
    parsed = _parse(page)
    text = "".join(parsed.text)
    assert XSS in text and QUOTES in text  # rendered as the literal strings
    raw = page.read_text(encoding="utf-8")
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in raw
    assert "Q&quot; onmouseover=&quot;alert(2)&#x27;" in raw


def test_board_columns_badges_and_published_rows(site):
    page = (site.parent / "synthetic-tiny-ext.html").read_text(encoding="utf-8")
    for key in ("loc_acc", "auc", "ap", "max_f1", "ap_full", "max_f1_full", "mse"):
        assert f'data-key="{key}"' in page, key
    assert page.count('class="badge b-good"') >= 3 and ">leaked<" in page and ">leak?<" in page
    vggss = (site.parent / "vggss.html").read_text(encoding="utf-8")
    for text in ("early-stopped", "unverified", "legacy eval", "JSA, CVPR&#x27;25, Table 1", "34.02", "By test subset"):
        assert text in vggss, text
    semi = (site.parent / "vggss-semisup250-papers.html").read_text(encoding="utf-8")
    assert "comparable neither" in semi and "48.40" in semi
    index = (site.parent / "index.html").read_text(encoding="utf-8")
    assert "SSL-Align" in index and "Badges" in index


def test_entry_page_has_provenance_recipe_and_strata(site):
    page = next((site.parent / "entries" / "synthetic-tiny-ext").glob("slavc--*.html")).read_text(encoding="utf-8")
    for text in ("Provenance", "ground truth sha256", "submission sha256", "checkpoint selection", "good-recipe",
                 "By object size", "max-F1 by negative type", "silent", "offscreen", "overfit.svg",
                 "1000 resamples"):
        assert text in page, text


def test_markdown_readme(site, store):
    readme = (site.parent.parent / "README.md").read_text(encoding="utf-8")
    assert readme.startswith("# avsl-bench leaderboard") and "## VGG-SS (`vggss@1`)" in readme
    assert "&lt;script&gt;alert\\(1\\)" not in readme  # parentheses are not escaped
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in readme and XSS not in readme
    section = readme.split("## Synthetic extended (tiny, for CI)")[1].splitlines()
    header = next(line for line in section if line.startswith("| # | Method"))
    quotes_row = next(line for line in section if "onmouseover" in line)
    pipes = re.compile(r"(?<!\\)\|")
    assert len(pipes.findall(quotes_row)) == len(pipes.findall(header))  # the `|` in the name adds no column
    assert "\\|pipe\\|" in quotes_row and "\\$x\\_1\\$" not in quotes_row and "$x\\_1$" in quotes_row
    assert "SSL-Align" in readme and "results/synthetic-tiny-ext/slavc--" in readme
    assert readme == render_markdown(build_board(load_store(store), load_published()))  # deterministic


def test_md_escape():
    assert md_escape("a|b*c_[d]`e`<f>&\n g") == "a\\|b\\*c\\_\\[d\\]\\`e\\`&lt;f&gt;& g"
    assert md_escape("Mo & Morgado &amp; &#60;") == "Mo & Morgado &amp;amp; &amp;#60;"


def test_builds_are_deterministic(site, store, tmp_path):
    again = build_site(store, tmp_path / "again").parent
    files = sorted(p.relative_to(site.parent) for p in site.parent.rglob("*") if p.is_file())
    assert files == sorted(p.relative_to(again) for p in again.rglob("*") if p.is_file())
    for rel in files:
        assert (site.parent / rel).read_bytes() == (again / rel).read_bytes(), rel


def test_a_rebuild_replaces_the_previous_site(tmp_path):
    published = tmp_path / "published.toml"
    published.write_text(MINIMAL_PUBLISHED)
    first = build_site(tmp_path / "empty-store", tmp_path / "site", published=published)
    (first.parent / "stale.html").write_text("old")
    assert build_site(tmp_path / "empty-store", tmp_path / "site", published=published) == first
    assert not (first.parent / "stale.html").exists() and (first.parent / "vggss.html").is_file()
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]


def test_refuses_to_replace_a_folder_that_is_not_a_site(store, tmp_path):
    (tmp_path / "docs").mkdir()
    (tmp_path / "docs" / "notes.txt").write_text("keep me")
    with pytest.raises(UsageError, match="not a leaderboard site"):
        build_site(store, tmp_path / "docs")
    assert (tmp_path / "docs" / "notes.txt").read_text() == "keep me"


def test_extra_results_are_checked_shown_and_not_stored(tmp_path, results, result_copy):
    from avsl_bench.leaderboard.store import EntryRefused

    store = tmp_path / "store"
    index = build_site(store, tmp_path / "site", extra_results=[results["good"]], markdown=tmp_path / "README.md")
    page = (index.parent / "synthetic-tiny-ext.html").read_text(encoding="utf-8")
    assert ">not stored<" in page and "SLAVC" in page
    assert not (store / "results").exists()
    assert "synthetic-tiny-ext" not in (tmp_path / "README.md").read_text()
    with pytest.raises(EntryRefused, match="final"):
        build_site(store, tmp_path / "site2", extra_results=[results["early"]])
