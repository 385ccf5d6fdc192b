"""Leaderboard: result store → board (reproduced + published rows) → static site, Markdown and plots.

    store.py      validate a result file (schema, protocol, checksums, final checkpoint, re-score), add, load
    published.py  leaderboard/published.toml → validated published rows with citations and flags
    rows.py       the board model shared by both renderers (columns, flags/badges, ordering)
    site.py       static HTML (offline, escaped, sortable tables), `build_site`
    plots.py      matplotlib SVG plots (F1 vs threshold, PR, LocAcc by size, early-stop gap)
    markdown.py   leaderboard/README.md

Depends on `scoring` (result files, metric recomputation) and `benchmarks` (current definitions) only.
"""

from __future__ import annotations

from .published import Published, load_published
from .site import build_site, render_site
from .store import EntryRefused, add_result, load_store, validate_result

__all__ = ["build_site", "render_site", "add_result", "validate_result", "load_store", "load_published", "Published",
           "EntryRefused"]
