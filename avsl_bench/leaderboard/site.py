"""The static leaderboard site: an index, one page per benchmark, one page per reproduced entry, SVG plots.

The site is a folder of plain files that works offline (no external script, font, stylesheet or image; CSS and
the small sorting script are inline and pinned by a Content-Security-Policy hash). Every string that comes from a
result file or published.toml is HTML-escaped (text and attribute values alike) and never placed in a script.

Table sorting: click a column header (again to reverse), or open a page with `#sort=<column>:<asc|desc>`
(e.g. `vggss.html#sort=auc:desc`); the board's current order is kept in the URL so it can be shared.

    >>> from avsl_bench.leaderboard import build_site
    >>> build_site("leaderboard", "site")          # doctest: +SKIP
    PosixPath('site/index.html')
"""

from __future__ import annotations

import base64
import hashlib
import html
import json
import os
import re
import shutil
import tempfile
from pathlib import Path
from typing import Iterable, Sequence

from ..errors import UsageError
from ..files import write_text_atomic
from . import plots
from .published import Published, load_published
from .rows import (FLAGS, NEGATIVE_STRATA, SIZE_STRATA, Board, BenchmarkView, BoardRow, Value, build_board,
                   columns_for, fmt_ci, fmt_pct)
from .store import StoreEntry, entry_from_file, entry_id, load_store, validate_result

__all__ = ["build_site", "render_site", "SITE_MARKER", "esc"]

SITE_MARKER = ".avsl-leaderboard-site"
_LAYOUTS = {"a": "ids + maps", "b": "one array per id"}
_SAFE = re.compile(r"^[a-z0-9][a-z0-9._-]*$")


def esc(value: object) -> str:
    """HTML-escape any value for text and (double- or single-quoted) attribute positions."""
    return html.escape("" if value is None else str(value), quote=True)


def _safe_name(name: str) -> str:
    if _SAFE.match(name):
        return name
    slug = re.sub(r"[^a-z0-9]+", "-", name.lower()).strip("-")
    return (slug or "x") + "-" + hashlib.sha256(name.encode()).hexdigest()[:6]


# ---------------------------------------------------------------------------------------------------- assets

_CSS = """
:root{--fg:#111827;--muted:#6b7280;--line:#e5e7eb;--soft:#f8fafc;--accent:#1d4ed8}
*{box-sizing:border-box}
body{margin:0;color:var(--fg);background:#fff;font:15px/1.55 system-ui,-apple-system,"Segoe UI",Roboto,"Helvetica Neue","Noto Sans","Liberation Sans",Arial,sans-serif}
a{color:var(--accent);text-decoration:none}a:hover{text-decoration:underline}
.wrap{max-width:1280px;margin:0 auto;padding:0 28px}
header.top{border-bottom:1px solid var(--line);background:var(--soft)}
header.top .wrap{display:flex;flex-wrap:wrap;gap:6px 26px;align-items:baseline;padding-top:12px;padding-bottom:12px}
.brand{font-weight:700;color:var(--fg);letter-spacing:-.01em}
nav a{color:#4b5563;margin-right:14px;font-size:14px}nav a.current{color:var(--fg);font-weight:600}
h1{font-size:27px;line-height:1.25;margin:30px 0 6px;font-weight:650;letter-spacing:-.015em}
h2{font-size:19px;margin:40px 0 10px;font-weight:620;letter-spacing:-.01em}
h3{font-size:15.5px;margin:26px 0 8px;font-weight:600}
.protocol,code,.mono{font-family:ui-monospace,SFMono-Regular,Menlo,Consolas,"Liberation Mono",monospace;font-size:.86em}
h1 .protocol{color:var(--muted);font-weight:400;margin-left:10px;font-size:15px}
.lede{color:#374151;max-width:88ch;margin:6px 0 10px}
.scroll{overflow-x:auto}table.narrow{width:auto;min-width:min(640px,100%)}
table{border-collapse:collapse;width:100%;font-size:14px}
th,td{padding:7px 10px;border-bottom:1px solid var(--line);vertical-align:top;text-align:left}
thead th{border-bottom:2px solid #cbd5e1;font-weight:600;font-size:13px;color:#1f2937;white-space:nowrap;vertical-align:bottom}
th[data-key]{cursor:pointer;user-select:none}th[data-key]:hover,th[data-key]:focus{color:var(--accent);outline:none}
th[aria-sort=descending]::after{content:" \\25BC";font-size:9px;color:var(--accent)}
th[aria-sort=ascending]::after{content:" \\25B2";font-size:9px;color:var(--accent)}
th.num,td.num{text-align:right;font-variant-numeric:tabular-nums;white-space:nowrap}
td.num .v{display:block;font-weight:520}
td.num .ci{display:block;font-size:11.5px;color:var(--muted);line-height:1.3}
td.best .v{font-weight:700}
td.rank{color:var(--muted);font-variant-numeric:tabular-nums;width:2.4em}
td.method{min-width:12em}
td.method a{font-weight:600}
tbody tr:hover{background:#f8fafc}
tr.k-reproduced td:first-child{box-shadow:inset 3px 0 0 #16a34a}
tr.k-published td.method{color:#1f2937}
.sub{display:block;font-size:12px;color:var(--muted);line-height:1.35}
sup.fn{font-size:10.5px;margin-left:2px}
.badge{display:inline-block;font-size:11px;line-height:1;padding:3px 7px;border-radius:999px;margin:1px 3px 2px 0;white-space:nowrap;border:1px solid transparent;font-weight:550}
.b-good{background:#dcfce7;color:#166534}.b-info{background:#e0e7ff;color:#3730a3}
.b-warn{background:#ffedd5;color:#9a3412}.b-bad{background:#fee2e2;color:#991b1b}
.b-legacy{background:#fef9c3;color:#854d0e}.b-unverified{background:#fff;color:#6b21a8;border:1px dashed #a855f7}
.b-muted{background:#f3f4f6;color:#4b5563}
td.flags{min-width:9em}
td.src{font-size:12.5px;color:#374151;min-width:10em}
.status{font-size:10.5px;text-transform:uppercase;letter-spacing:.04em;color:var(--muted)}
.controls{display:flex;flex-wrap:wrap;gap:6px 22px;font-size:13.5px;color:#374151;margin:14px 0 8px}
.controls label{cursor:pointer}
.hide-published tr.k-published,.hide-es tr.f-early-stopped,.hide-leaked tr.f-leaked,.hide-semi tr.f-semi-supervised{display:none}
.legend{display:grid;grid-template-columns:repeat(auto-fill,minmax(360px,1fr));gap:6px 24px;font-size:12.5px;color:#374151;margin:8px 0 0;padding:0;list-style:none}
.legend .badge{margin-right:6px}
ol.notes{font-size:12.5px;color:#374151;padding-left:22px;margin:10px 0}
.plots{display:grid;grid-template-columns:repeat(auto-fill,minmax(540px,1fr));gap:22px 28px;margin-top:8px}
figure{margin:0}figure img{width:100%;height:auto;border:1px solid var(--line);border-radius:8px;background:#fff;padding:6px}
figcaption{font-size:12.5px;color:var(--muted);margin-top:4px}
.cards{display:grid;grid-template-columns:repeat(auto-fill,minmax(270px,1fr));gap:16px;margin-top:12px}
.card{border:1px solid var(--line);border-radius:10px;padding:14px 16px;background:#fff}
.card h3{margin:0 0 2px}.card .big{font-size:24px;font-weight:650;font-variant-numeric:tabular-nums}
.metric-cards{display:grid;grid-template-columns:repeat(auto-fill,minmax(150px,1fr));gap:12px;margin:14px 0}
.metric-cards .card{padding:10px 14px}.metric-cards .label{font-size:12px;color:var(--muted)}
.metric-cards .big{font-size:22px;font-weight:650;font-variant-numeric:tabular-nums}.metric-cards .ci{font-size:12px;color:var(--muted)}
dl.kv{display:grid;grid-template-columns:max-content 1fr;gap:5px 20px;font-size:13.5px;margin:8px 0}
dl.kv dt{color:var(--muted)}dl.kv dd{margin:0;word-break:break-all}
pre{background:var(--soft);border:1px solid var(--line);padding:10px 12px;border-radius:8px;overflow:auto;font-size:12.5px;max-height:28em}
.muted{color:var(--muted)}.small{font-size:12.5px}.nowrap{white-space:nowrap}
.crumbs{font-size:13px;color:var(--muted);margin-top:18px}
footer.wrap{margin:56px auto 26px;color:var(--muted);font-size:12.5px;border-top:1px solid var(--line);padding-top:12px}
""".strip()

_JS = r"""
(function () {
  "use strict";
  var HASH = /^#sort=([a-z0-9_]+):(asc|desc)$/;
  function rows(table) { return Array.prototype.slice.call(table.tBodies[0].rows); }
  function value(row, index, type) {
    var cell = row.cells[index];
    if (!cell) { return null; }
    var raw = cell.getAttribute("data-value");
    if (raw === null) { raw = cell.textContent.trim(); }
    if (type === "text") { return raw.toLowerCase(); }
    if (raw === "") { return null; }
    var v = parseFloat(raw);
    return isNaN(v) ? null : v;
  }
  function renumber(table) {
    var n = 0;
    rows(table).forEach(function (row) {
      var cell = row.querySelector("td.rank");
      if (!cell) { return; }
      cell.textContent = window.getComputedStyle(row).display === "none" ? "" : String(++n);
    });
  }
  function sortTable(table, key, dir) {
    var th = null;
    Array.prototype.forEach.call(table.tHead.rows[0].cells, function (h) {
      if (h.getAttribute("data-key") === key) { th = h; }
    });
    if (th === null) { return false; }
    var index = th.cellIndex, type = th.getAttribute("data-type") || "num", sign = dir === "asc" ? 1 : -1;
    var list = rows(table);
    list.forEach(function (row, i) { if (!row.hasAttribute("data-order")) { row.setAttribute("data-order", String(i)); } });
    list.sort(function (a, b) {
      var va = value(a, index, type), vb = value(b, index, type);
      var tie = Number(a.getAttribute("data-order")) - Number(b.getAttribute("data-order"));
      if (va === null || vb === null) { return va === vb ? tie : (va === null ? 1 : -1); }
      if (va < vb) { return -sign; }
      if (va > vb) { return sign; }
      return tie;
    });
    list.forEach(function (row) { table.tBodies[0].appendChild(row); });
    Array.prototype.forEach.call(table.tHead.rows[0].cells, function (h) { h.removeAttribute("aria-sort"); });
    th.setAttribute("aria-sort", dir === "asc" ? "ascending" : "descending");
    table.setAttribute("data-sorted", key + ":" + dir);
    renumber(table);
    return true;
  }
  function fromHash() {
    var board = document.getElementById("board"), m = HASH.exec(window.location.hash);
    if (board && m) { sortTable(board, m[1], m[2]); }
  }
  Array.prototype.forEach.call(document.querySelectorAll("table.sortable"), function (table) {
    Array.prototype.forEach.call(table.tHead.rows[0].cells, function (th) {
      var key = th.getAttribute("data-key");
      if (!key) { return; }
      th.tabIndex = 0;
      function activate() {
        var now = th.getAttribute("aria-sort");
        var dir = now === "descending" ? "asc" : now === "ascending" ? "desc" : (th.getAttribute("data-first") || "desc");
        sortTable(table, key, dir);
        if (table.id === "board" && window.history && window.history.replaceState) {
          window.history.replaceState(null, "", "#sort=" + key + ":" + dir);
        }
      }
      th.addEventListener("click", activate);
      th.addEventListener("keydown", function (ev) {
        if (ev.key === "Enter" || ev.key === " ") { ev.preventDefault(); activate(); }
      });
    });
  });
  Array.prototype.forEach.call(document.querySelectorAll("input[data-hide]"), function (box) {
    var table = document.getElementById(box.getAttribute("data-table"));
    function apply() { table.classList.toggle("hide-" + box.getAttribute("data-hide"), !box.checked); renumber(table); }
    box.addEventListener("change", apply);
    apply();
  });
  window.addEventListener("hashchange", fromHash);
  fromHash();
}());
""".strip()


def _csp_hash(text: str) -> str:
    return "'sha256-" + base64.b64encode(hashlib.sha256(text.encode()).digest()).decode() + "'"


_CSP = ("default-src 'none'; img-src 'self' file: data:; style-src " + _csp_hash(_CSS) + "; script-src "
        + _csp_hash(_JS) + "; base-uri 'none'; form-action 'none'")


# ---------------------------------------------------------------------------------------------------- pieces


def _page(title: str, body: str, *, root: str, nav: str, footer: str) -> str:
    return (
        "<!doctype html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n"
        "<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n"
        f"<meta http-equiv=\"Content-Security-Policy\" content=\"{esc(_CSP)}\">\n"
        "<meta name=\"referrer\" content=\"no-referrer\">\n"
        f"<title>{esc(title)}</title>\n<style>{_CSS}</style>\n</head>\n<body>\n"
        f"<header class=\"top\"><div class=\"wrap\"><a class=\"brand\" href=\"{esc(root)}index.html\">avsl-bench "
        f"leaderboard</a><nav>{nav}</nav></div></header>\n<main class=\"wrap\">\n{body}\n</main>\n"
        f"<footer class=\"wrap\">{footer}</footer>\n<script>{_JS}</script>\n</body>\n</html>\n"
    )


def _badge(flag: str) -> str:
    info = FLAGS[flag]
    return f"<span class=\"badge b-{esc(info.tone)}\" title=\"{esc(info.legend)}\">{esc(info.label)}</span>"


def _legend(flags: Iterable[str]) -> str:
    items = "".join(f"<li>{_badge(f)}{esc(FLAGS[f].legend)}</li>" for f in FLAGS if f in set(flags))
    return f"<ul class=\"legend\">{items}</ul>" if items else ""


def _num_cell(v: Value | None, *, best: bool = False) -> str:
    if v is None or v.value is None:
        return "<td class=\"num\" data-value=\"\"><span class=\"v muted\">–</span></td>"
    ci = fmt_ci(v)
    ci_html = f"<span class=\"ci\" title=\"95 % bootstrap CI\">{esc(ci)}</span>" if ci else ""
    cls = "num best" if best else "num"
    return f"<td class=\"{cls}\" data-value=\"{esc(repr(float(v.value)))}\"><span class=\"v\">{esc(fmt_pct(v.value))}" \
           f"</span>{ci_html}</td>"


def _img(src: str, alt: str, caption: str) -> str:
    return (f"<figure><img src=\"{esc(src)}\" alt=\"{esc(alt)}\">"
            f"<figcaption>{esc(caption)}</figcaption></figure>")


def _kv(items: Sequence[tuple[str, object]]) -> str:
    rows = "".join(f"<dt>{esc(k)}</dt><dd>{'–' if v is None or v == '' else esc(v)}</dd>" for k, v in items)
    return f"<dl class=\"kv\">{rows}</dl>"


class _Site:
    """Writes one site into `out` (a fresh temporary directory)."""

    def __init__(self, board: Board, out: Path, footer: str) -> None:
        self.board = board
        self.out = out
        self.footer = footer
        self.entry_pages: dict[int, str] = {}  # id(row) -> path relative to site root

    # -------------------------------------------------------------- navigation
    def nav(self, root: str, current: str | None = None) -> str:
        links = []
        for view in self.board.benchmarks:
            cls = " class=\"current\"" if view.name == current else ""
            links.append(f"<a{cls} href=\"{esc(root)}{esc(_safe_name(view.name))}.html\">{esc(view.title)}</a>")
        return "".join(links)

    def write(self, rel: str, text: str) -> None:
        write_text_atomic(self.out / rel, text)

    # -------------------------------------------------------------- benchmark page
    def _reproduced_colors(self, view: BenchmarkView) -> list[tuple[BoardRow, str]]:
        return [(row, plots.color_of(i)) for i, row in enumerate(view.reproduced)]

    def _method_cell(self, row: BoardRow, root: str, notes: list[str]) -> str:
        name = esc(row.method)
        page = self.entry_pages.get(id(row))
        head = f"<a href=\"{esc(root)}{esc(page)}\">{name}</a>" if page else name
        if row.note:
            if row.note not in notes:
                notes.append(row.note)
            number = notes.index(row.note) + 1
            head += f"<sup class=\"fn\"><a href=\"#note-{number}\">{number}</a></sup>"
        sub = ""
        if row.entry is not None and row.entry.result.get("options", {}).get("binarize") not in (None, "top50"):
            sub = f"<span class=\"sub\">binarize {esc(row.entry.result['options']['binarize'])}</span>"
        return f"<td class=\"method\" data-value=\"{esc(row.method.lower())}\">{head}{sub}</td>"

    def _source_cell(self, row: BoardRow, root: str) -> str:
        if row.kind == "reproduced":
            page = self.entry_pages.get(id(row))
            link = f"<a href=\"{esc(root)}{esc(page)}\">run details</a>" if page else ""
            return f"<td class=\"src\">{esc(row.citation)}<span class=\"sub\">{link}</span></td>"
        text = esc(row.citation)
        if row.citation_url:
            text = f"<a href=\"{esc(row.citation_url)}\" rel=\"noreferrer\">{text}</a>"
        title = esc(row.published.source.citation) if row.published else ""
        return f"<td class=\"src\" title=\"{title}\">{text}<span class=\"sub status\">{esc(row.status)}</span></td>"

    def _board_table(self, view: BenchmarkView, rows: list[BoardRow], table_id: str, root: str,
                     notes: list[str]) -> str:
        columns = [c for c in columns_for(view.extended) if any(c.key in r.metrics for r in rows)]
        best = {}
        for c in columns:
            values = [r.metrics[c.key].value for r in rows if c.key in r.metrics and r.metrics[c.key].value is not None]
            if values:
                best[c.key] = min(values) if c.lower_is_better else max(values)
        head = ["<th class=\"rank\">#</th>",
                "<th data-key=\"method\" data-type=\"text\" data-first=\"asc\">Method</th>",
                "<th data-key=\"train\" data-type=\"text\" data-first=\"asc\">Training set</th>"]
        for c in columns:
            first = "asc" if c.lower_is_better else "desc"
            arrow = " ↓" if c.lower_is_better else ""
            head.append(f"<th class=\"num\" data-key=\"{esc(c.key)}\" data-first=\"{first}\" title=\"{esc(c.title)}\">"
                        f"{esc(c.label)}{arrow}</th>")
        head += ["<th>Flags</th>", "<th>Source</th>"]
        body = []
        for i, row in enumerate(rows, 1):
            classes = " ".join([f"k-{row.kind}"] + [f"f-{f}" for f in row.flags])
            cells = [f"<td class=\"rank\">{i}</td>", self._method_cell(row, root, notes)]
            note = f"<span class=\"sub\">{esc(row.training_note)}</span>" if row.training_note else ""
            train = f"<span class=\"nowrap\">{esc(row.training_set)}</span>{note}"
            cells.append(f"<td data-value=\"{esc(row.training_set.lower())}\">{train}</td>")
            for c in columns:
                v = row.metrics.get(c.key)
                cells.append(_num_cell(v, best=v is not None and v.value is not None and v.value == best.get(c.key)))
            cells.append("<td class=\"flags\">" + "".join(_badge(f) for f in row.flags) + "</td>")
            cells.append(self._source_cell(row, root))
            body.append(f"<tr class=\"{esc(classes)}\">{''.join(cells)}</tr>")
        return (f"<div class=\"scroll\"><table id=\"{esc(table_id)}\" class=\"sortable\">"
                f"<thead><tr>{''.join(head)}</tr></thead><tbody>{''.join(body)}</tbody></table></div>")

    def _strata_table(self, rows: list[BoardRow], names: list[str], keys: Sequence[str], table_id: str,
                      root: str) -> str:
        rows = [r for r in rows if any(n in r.strata for n in names)]
        if not rows or not names:
            return ""
        labels = {"loc_acc": "LocAcc", "auc": "AUC", "mean_ciou": "mean cIoU", "max_f1": "max-F1"}
        head = ["<th data-key=\"method\" data-type=\"text\" data-first=\"asc\">Method</th>",
                "<th data-key=\"train\" data-type=\"text\" data-first=\"asc\">Training set</th>"]
        present = [(n, k) for n in names for k in keys if any(k in r.strata.get(n, {}) for r in rows)]
        for n, k in present:
            head.append(f"<th class=\"num\" data-key=\"{esc(_safe_key(n + '_' + k))}\">{esc(n)}<span class=\"sub\">"
                        f"{esc(labels.get(k, k))}</span></th>")
        head.append("<th>Flags</th>")
        body = []
        for row in rows:
            page = self.entry_pages.get(id(row))
            name = f"<a href=\"{esc(root)}{esc(page)}\">{esc(row.method)}</a>" if page else esc(row.method)
            cells = [f"<td class=\"method\" data-value=\"{esc(row.method.lower())}\">{name}</td>",
                     f"<td data-value=\"{esc(row.training_set.lower())}\">{esc(row.training_set)}</td>"]
            cells += [_num_cell(row.strata.get(n, {}).get(k)) for n, k in present]
            cells.append("<td class=\"flags\">" + "".join(_badge(f) for f in row.flags) + "</td>")
            body.append(f"<tr class=\"k-{esc(row.kind)}\">{''.join(cells)}</tr>")
        return (f"<div class=\"scroll\"><table id=\"{esc(table_id)}\" class=\"sortable\"><thead><tr>{''.join(head)}"
                f"</tr></thead><tbody>{''.join(body)}</tbody></table></div>")

    def benchmark_page(self, view: BenchmarkView) -> None:
        root = ""
        name = _safe_name(view.name)
        notes: list[str] = []
        n_rep, n_pub = len(view.reproduced), sum(r.kind == "published" for r in view.rows)
        parts = [f"<h1>{esc(view.title)}<span class=\"protocol\">{esc(view.protocol)}</span></h1>"]
        summary = (f"{n_rep} reproduced {'entry' if n_rep == 1 else 'entries'} and {n_pub} published "
                   f"{'row' if n_pub == 1 else 'rows'}. Values ×100; reproduced numbers show their 95 % bootstrap CI "
                   "below the value. Click a column header to sort.")
        parts.append(f"<p class=\"lede\">{esc(summary)}</p>")
        if view.extended:
            parts.append("<p class=\"lede small muted\">AP and max-F1 use the legacy threshold sub-sampling of the "
                         "published evaluator (comparable with published numbers); AP full and F1 full are "
                         "avsl-bench's full-sweep definitions.</p>")
        if view.note:
            parts.append(f"<p class=\"lede\"><strong>Note.</strong> {esc(view.note)}</p>")
        main = view.main_rows
        flags_present = {f for r in view.rows for f in r.flags}
        toggles = [("published", "published rows", "published"), ("es", "early-stopped rows", "early-stopped"),
                   ("leaked", "leaked training lists", "leaked"), ("semi", "semi-supervised", "semi-supervised")]
        boxes = [f"<label><input type=\"checkbox\" checked data-table=\"board\" data-hide=\"{key}\"> show {label}"
                 "</label>" for key, label, flag in toggles if flag in {f for r in main for f in r.flags}]
        if boxes:
            parts.append(f"<div class=\"controls\">{''.join(boxes)}</div>")
        parts.append(self._board_table(view, main, "board", root, notes))
        if notes:
            parts.append("<ol class=\"notes\">" + "".join(f"<li id=\"note-{i}\">{esc(n)}</li>"
                                                           for i, n in enumerate(notes, 1)) + "</ol>")
        parts.append("<h3>Badges</h3>" + _legend(flags_present))
        colored = self._reproduced_colors(view)
        figures = []
        plot_dir = f"plots/{name}"
        if view.extended:
            if plots.plot_f1(colored, self.out / plot_dir / "f1.svg"):
                figures.append(_img(f"{plot_dir}/f1.svg", "F1 against confidence threshold",
                                    "F1 vs confidence threshold (reproduced entries; dot = max-F1 of the full sweep)."))
            if plots.plot_pr(colored, self.out / plot_dir / "pr.svg"):
                figures.append(_img(f"{plot_dir}/pr.svg", "Precision-recall curves",
                                    "Precision–recall over every distinct confidence (reproduced entries)."))
        counts = plots.size_counts(colored[0][0].entry.table) if colored else None
        if plots.plot_size(colored, self.out / plot_dir / "size.svg", counts):
            figures.append(_img(f"{plot_dir}/size.svg", "LocAcc by object size",
                                "LocAcc by GT area bucket with 95 % CI (reproduced entries)."))
        if figures:
            parts.append("<h2>Plots</h2><div class=\"plots\">" + "".join(figures) + "</div>")
        size_names = view.strata_names(SIZE_STRATA)
        if size_names:
            parts.append("<h2>By object size</h2>")
            parts.append(self._strata_table(view.rows, size_names, ("loc_acc", "auc"), "by-size", root))
        subset_names = view.strata_names()
        if subset_names:
            parts.append("<h2>By test subset</h2>")
            parts.append(self._strata_table(view.rows, subset_names, ("loc_acc", "auc"), "by-subset", root))
        negative_names = view.strata_names(NEGATIVE_STRATA)
        if negative_names:
            parts.append("<h2>max-F1 by negative type</h2><p class=\"lede small muted\">Each negative type paired "
                         "with as many positives (fixed seed), as in SLAVC's Table 5.</p>")
            parts.append(self._strata_table(view.rows, negative_names, ("max_f1",), "by-negative", root))
        if view.ablation_rows:
            parts.append("<h2>Ablations</h2>")
            parts.append(self._board_table(view, view.ablation_rows, "ablations", root, []))
        self.write(f"{name}.html", _page(f"{view.title} · avsl-bench leaderboard", "\n".join(parts), root=root,
                                         nav=self.nav(root, view.name), footer=self.footer))

    # -------------------------------------------------------------- entry page
    def entry_page(self, view: BenchmarkView, row: BoardRow, color: str) -> None:
        entry = row.entry
        result = entry.result
        rel = self.entry_pages[id(row)]
        root = "../../"
        bench = _safe_name(view.name)
        ename = _safe_name(entry.entry_id)
        method = result.get("method") or {}
        parts = [f"<div class=\"crumbs\"><a href=\"{root}index.html\">Leaderboard</a> › <a href=\"{root}"
                 f"{esc(bench)}.html\">{esc(view.title)}</a> › {esc(entry.entry_id)}</div>",
                 f"<h1>{esc(row.method)}<span class=\"protocol\">{esc(result.get('protocol'))}</span></h1>",
                 "<p>" + "".join(_badge(f) for f in row.flags) + "</p>"]
        if not entry.in_store:
            parts.append("<p class=\"lede\">This result was given to this build only; it is not in the leaderboard "
                         "store.</p>")
        cards = []
        for c in columns_for(view.extended):
            v = row.metrics.get(c.key)
            if v is None:
                continue
            ci = fmt_ci(v, 2)
            cards.append(f"<div class=\"card\"><div class=\"label\">{esc(c.label)}</div><div class=\"big\">"
                         f"{esc(fmt_pct(v.value))}</div><div class=\"ci\">{esc(ci and '95 % CI ' + ci)}</div></div>")
        parts.append("<div class=\"metric-cards\">" + "".join(cards) + "</div>")
        counts = plots.size_counts(entry.table)
        # plots
        figures = []
        plot_dir = f"plots/{bench}/{ename}"
        single = [(row, color)]
        if view.extended and plots.plot_f1(single, self.out / plot_dir / "f1.svg", raw_threshold=True):
            figures.append(_img(f"{root}{plot_dir}/f1.svg", "F1 against confidence threshold",
                                "F1 vs raw confidence threshold (full sweep; dot = maximum). PR curves of all entries "
                                "are on the benchmark page."))
        if plots.plot_size(single, self.out / plot_dir / "size.svg", counts):
            figures.append(_img(f"{root}{plot_dir}/size.svg", "LocAcc by object size",
                                "LocAcc by GT area bucket with 95 % CI."))
        if entry.overfit is not None:
            plots.plot_overfit(entry.overfit, self.out / plot_dir / "overfit.svg")
            gaps = "; ".join(f"{k}: best epoch {e}, +{100 * g:.2f} pts over the final checkpoint"
                             for k in sorted(entry.overfit.scores) for e, _, g in [entry.overfit.gap(k)])
            figures.append(_img(f"{root}{plot_dir}/overfit.svg", "Per-epoch scores and early-stop gap",
                                f"Early-stop gap (diagnostic only; the reported number is the final checkpoint): "
                                f"{gaps}."))
        if figures:
            parts.append("<h2>Plots</h2><div class=\"plots\">" + "".join(figures) + "</div>")
        # strata
        strata_sections = [("By object size", [n for n in SIZE_STRATA if n in row.strata], ("loc_acc", "auc",
                                                                                            "mean_ciou")),
                           ("By test subset", sorted(n for n in row.strata if n not in SIZE_STRATA
                                                     and n not in NEGATIVE_STRATA), ("loc_acc", "auc", "mean_ciou")),
                           ("max-F1 by negative type", [n for n in NEGATIVE_STRATA if n in row.strata], ("max_f1",))]
        for title, names, keys in strata_sections:
            if not names:
                continue
            head = "".join(f"<th class=\"num\">{esc(k)}</th>" for k in keys)
            body = []
            for n in names:
                label = f"{n} (n = {counts[n]:,})" if n in counts else n
                body.append(f"<tr><td>{esc(label)}</td>" + "".join(_num_cell(row.strata[n].get(k)) for k in keys)
                            + "</tr>")
            parts.append(f"<h2>{esc(title)}</h2><div class=\"scroll\"><table class=\"narrow\"><thead><tr>"
                         f"<th>stratum</th>{head}</tr></thead><tbody>{''.join(body)}</tbody></table></div>")
        # all metrics
        mrows = []
        for key, entry_value in sorted((result.get("metrics") or {}).items()):
            v = row.metrics.get(key, Value(None))
            extra = ""
            if isinstance(entry_value, dict) and entry_value.get("published_rounding") is not None:
                extra = f" (published rounding {fmt_pct(entry_value['published_rounding'], 1)})"
            mrows.append(f"<tr><td class=\"mono\">{esc(key)}</td><td class=\"num\">{esc(fmt_pct(v.value))}</td>"
                         f"<td class=\"small muted\">{esc(fmt_ci(v, 2))}{esc(extra)}</td></tr>")
        parts.append("<h2>All metrics</h2><div class=\"scroll\"><table class=\"narrow\"><thead><tr><th>metric</th>"
                     "<th class=\"num\">value ×100</th><th>95 % CI</th></tr></thead><tbody>" + "".join(mrows)
                     + "</tbody></table></div>")
        # provenance
        bench_info = result.get("benchmark") or {}
        sub = result.get("submission") or {}
        tool = result.get("tool") or {}
        counts_info = result.get("counts") or {}
        parts.append("<h2>Provenance</h2>")
        parts.append(_kv([
            ("protocol", result.get("protocol")), ("benchmark", bench_info.get("title")),
            ("ground truth sha256", bench_info.get("ground_truth_sha256")),
            ("definition sha256", bench_info.get("definition_sha256")),
            ("submission", f"{sub.get('file', '')} · layout {_LAYOUTS.get(sub.get('layout'), sub.get('layout'))} · "
                           f"{sub.get('dtype', '')} · "
                           f"{'×'.join(str(x) for x in sub.get('map_shape') or [])}"),
            ("submission sha256", sub.get("sha256")),
            ("samples", f"{counts_info.get('scored', '–')} scored of {counts_info.get('expected', '–')} "
                        f"({counts_info.get('positives', '–')} positives, {counts_info.get('negatives', '–')} "
                        f"negatives, {counts_info.get('missing', '–')} missing, {counts_info.get('nan_ciou', '–')} NaN "
                        "cIoU)"),
            ("tool", f"{tool.get('name', '')} {tool.get('version', '')} · commit {tool.get('git_commit') or 'unknown'}"),
        ]))
        parts.append("<h2>Method and recipe</h2>")
        parts.append(_kv([
            ("method", method.get("name")), ("training set", method.get("training_set")),
            ("training set sha256", method.get("training_set_sha256")),
            ("training list leaky", "n/a (no training set)" if not method.get("training_set") else
             {True: "yes", False: "no"}.get(method.get("training_set_leaky"), "unknown")),
            ("checkpoint sha256", method.get("checkpoint_sha256")),
            ("checkpoint selection", method.get("checkpoint_selection")),
        ]))
        extra = method.get("extra") or {}
        if extra:
            parts.append("<h3>Recipe and run details</h3><pre>" + esc(json.dumps(extra, indent=2, sort_keys=True,
                                                                               ensure_ascii=False)) + "</pre>")
        options = result.get("options") or {}
        boot = options.get("bootstrap") or {}
        parts.append("<h2>Scoring options</h2>")
        parts.append(_kv([
            ("binarisation", options.get("binarize")), ("resize", options.get("resize")),
            ("align_corners", options.get("align_corners")), ("confidence", options.get("confidence")),
            ("γ", options.get("gamma")), ("allow missing", options.get("allow_missing")),
            ("bootstrap", f"{boot.get('resamples')} resamples, seed {boot.get('seed')}, level {boot.get('level')}, "
                          f"{boot.get('method', '')}"),
        ]))
        data_dir = f"data/{bench}/{ename}"
        files = [("result.json", "result.json")]
        files.append((result["per_sample"]["path"], "per-sample table (parquet)"))
        if entry.overfit is not None and (entry.path.parent / "overfit.json").is_file():
            files.append(("overfit.json", "overfit diagnostic"))
        for fname, _ in files:
            target = self.out / data_dir / fname
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(entry.path if fname == "result.json" else entry.path.parent / fname, target)
        links = " · ".join(f"<a href=\"{root}{esc(data_dir)}/{esc(f)}\">{esc(label)}</a>" for f, label in files)
        parts.append(f"<h2>Files</h2><p>{links}</p>")
        self.write(rel, _page(f"{row.method} on {view.title} · avsl-bench leaderboard", "\n".join(parts), root=root,
                              nav=self.nav(root, view.name), footer=self.footer))

    # -------------------------------------------------------------- index
    def index_page(self) -> None:
        parts = ["<h1>Audio-visual sound source localization leaderboard</h1>",
                 "<p class=\"lede\">Reproduced entries are scored by avsl-bench from submitted maps: fixed training "
                 "schedules, the <strong>final</strong> checkpoint (early stopping on the test set is refused), "
                 "metrics recomputed from the per-sample table, 95 % bootstrap confidence intervals. Published rows "
                 "are copied from papers and READMEs with their citation and flags: many were early-stopped on the "
                 "test set, trained on lists that contain test clips, or computed with a legacy evaluator.</p>",
                 "<div class=\"cards\">"]
        for view in self.board.benchmarks:
            primary = "AP" if view.extended else "LocAcc"
            rep = [r for r in view.main_rows if r.kind == "reproduced" and r.metrics.get(view.primary)]
            best = max(rep, key=lambda r: r.metrics[view.primary].value or 0.0) if rep else None
            best_html = (f"<div class=\"big\">{esc(fmt_pct(best.metrics[view.primary].value))}</div><div class=\"sub\">"
                         f"best reproduced {esc(primary)}: {esc(best.method)}</div>") if best else \
                "<div class=\"sub\">no reproduced entry yet</div>"
            counts = (f"{len(view.reproduced)} reproduced · {sum(r.kind == 'published' for r in view.rows)} "
                      "published")
            parts.append(f"<div class=\"card\"><h3><a href=\"{esc(_safe_name(view.name))}.html\">{esc(view.title)}"
                         f"</a></h3><div class=\"sub mono\">{esc(view.protocol)}</div>{best_html}"
                         f"<div class=\"sub\">{esc(counts)}</div></div>")
        parts.append("</div>")
        parts.append("<h2>Badges</h2>" + _legend(FLAGS))
        pending = self.board.published.pending
        if pending:
            parts.append("<h2>Named, no checked number yet</h2><ul>" + "".join(
                f"<li><strong>{esc(p.method)}</strong> — {esc(p.reason)}</li>" for p in pending) + "</ul>")
        evaluators = self.board.published.evaluators
        if evaluators:
            parts.append("<h2>Evaluators of published numbers</h2>" + _kv(
                [(f"{e.id} ({e.convention})", e.description) for e in evaluators.values()]))
        self.write("index.html", _page("avsl-bench leaderboard", "\n".join(parts), root="", nav=self.nav(""),
                                       footer=self.footer))

    def render(self) -> Path:
        for view in self.board.benchmarks:
            for row in view.reproduced:
                self.entry_pages[id(row)] = f"entries/{_safe_name(view.name)}/{_safe_name(row.entry.entry_id)}.html"
        for view in self.board.benchmarks:
            self.benchmark_page(view)
            for row, color in self._reproduced_colors(view):
                self.entry_page(view, row, color)
        self.index_page()
        (self.out / SITE_MARKER).write_text("generated by avsl-bench leaderboard build\n", encoding="utf-8")
        return self.out / "index.html"


def _safe_key(text: str) -> str:
    return re.sub(r"[^a-z0-9_]+", "_", text.lower())


# ---------------------------------------------------------------------------------------------------- build


def _footer() -> str:
    from ..provenance import tool_info

    tool = tool_info()
    commit = tool.get("git_commit")
    return (f"Generated by avsl-bench {esc(tool.get('version'))}" + (f" (commit {esc(commit)})" if commit else "")
            + " · static files, no network needed · values ×100")


def _extra_entries(paths: Sequence[str | os.PathLike], taken: set[str], stored_digests: set[str],
                   mirror, flickr_annotations) -> list[StoreEntry]:
    from ..files import sha256_file

    entries = []
    for path in paths:
        path = Path(path)
        checked = validate_result(path, mirror=mirror, flickr_annotations=flickr_annotations)
        if sha256_file(path) in stored_digests:
            continue
        base = entry_id(checked.result)
        name, k = base, 2
        while f"{checked.result['benchmark']['name']}/{name}" in taken:
            name, k = f"{base}-{k}", k + 1
        entry = entry_from_file(path, name, in_store=False)
        taken.add(f"{entry.benchmark}/{name}")
        entries.append(entry)
    return entries


def render_site(board: Board, out: str | os.PathLike) -> Path:
    """Render a board into `out`, replacing a previous leaderboard site there; returns the index path."""
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise UsageError(f"{out}: exists and is not a directory")
    if out.is_dir() and any(out.iterdir()) and not (out / SITE_MARKER).is_file():
        raise UsageError(f"{out}: not empty and not a leaderboard site; choose a new or empty directory")
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.", suffix=".tmp", dir=out.parent))
    try:
        _Site(board, tmp, _footer()).render()
        for path in [tmp, *tmp.rglob("*")]:  # atomic writes leave private files; a site is meant to be served
            os.chmod(path, 0o755 if path.is_dir() else 0o644)
        if out.exists():
            old = Path(tempfile.mkdtemp(prefix=f".{out.name}.", suffix=".old", dir=out.parent))
            os.replace(out, old / "site")
            os.replace(tmp, out)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.replace(tmp, out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return out / "index.html"


def build_site(
    store: str | os.PathLike = "leaderboard", out: str | os.PathLike = "site", *,
    extra_results: Sequence[str | os.PathLike] = (), published: str | os.PathLike | Published | None = None,
    markdown: str | os.PathLike | None = None, mirror: str | os.PathLike | None = None,
    flickr_annotations: str | os.PathLike | None = None,
) -> Path:
    """Build the static leaderboard site from a store (+ extra result files) and return the index path.

    `extra_results` (e.g. the results of `make demo`) pass the same checks as `leaderboard add` and are shown
    with a "not stored" note; they are never written to the store nor to the Markdown table. `published`
    defaults to `<store>/published.toml`, else the repository's `leaderboard/published.toml`. With `markdown`,
    the store's tables are also written there as Markdown (store + published rows only).
    """
    from .markdown import write_markdown

    store = Path(store)
    if isinstance(published, Published):
        pub = published
    elif published is not None:
        pub = load_published(published)
    else:
        own = store / "published.toml"
        pub = load_published(own if own.is_file() else None)
    entries = load_store(store)
    from ..files import sha256_file

    taken = {f"{e.benchmark}/{e.entry_id}" for e in entries}
    digests = {sha256_file(e.path) for e in entries}
    extras = _extra_entries(extra_results, taken, digests, mirror, flickr_annotations)
    index = render_site(build_board(entries + extras, pub), out)
    if markdown is not None:
        write_markdown(build_board(entries, pub), markdown)
    return index
