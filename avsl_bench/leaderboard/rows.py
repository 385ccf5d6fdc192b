"""The board: reproduced entries and published rows merged into one table model per benchmark.

Both renderers (site.py, markdown.py) read only this model, so the HTML page and the README always agree on
columns, flags and order. Values are fractions (published percentages are divided by 100).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from .published import Published, PublishedRow, Track
from .store import LOWER_IS_BETTER, StoreEntry

__all__ = ["Value", "Column", "Flag", "FLAGS", "BoardRow", "BenchmarkView", "Board", "build_board",
           "columns_for", "SIZE_STRATA", "NEGATIVE_STRATA", "fmt_pct", "fmt_ci"]


@dataclass(frozen=True)
class Value:
    """A metric value (fraction) with its 95 % CI, if known."""

    value: float | None
    lo: float | None = None
    hi: float | None = None


@dataclass(frozen=True)
class Column:
    key: str
    label: str
    title: str
    lower_is_better: bool = False


_COLUMNS = {
    "loc_acc": Column("loc_acc", "LocAcc", "fraction of positives with cIoU ≥ 0.5 (papers: cIoU@0.5 / Precision)"),
    "auc": Column("auc", "AUC", "area under the success-rate curve over cIoU thresholds 0, 0.05, …, 1"),
    "ap": Column("ap", "AP", "average precision with negatives, legacy threshold sub-sampling (as published)"),
    "max_f1": Column("max_f1", "max-F1", "max F1 over the legacy ~10 confidence thresholds (as published)"),
    "ap_full": Column("ap_full", "AP full", "average precision over every distinct confidence (avsl-bench)"),
    "max_f1_full": Column("max_f1_full", "F1 full", "max F1 over every distinct confidence (avsl-bench)"),
    "mse": Column("mse", "MSE", "pixel MSE of the min-max map against the GT, lower is better", True),
}
SIZE_STRATA = ("small", "medium", "large", "huge")
#: Page order: the real benchmarks first, then other tracks, synthetic last.
BENCHMARK_ORDER = ("vggss", "vggss-ext", "flickr", "flickr-249", "flickr-ext")
NEGATIVE_STRATA = ("real", "easy", "hard", "mismatched", "silent", "offscreen")


def columns_for(extended: bool) -> list[Column]:
    """Table columns of a benchmark page: positives-only metrics, plus the extended ones with negatives."""
    keys = ["ap", "max_f1", "loc_acc", "auc", "ap_full", "max_f1_full", "mse"] if extended else ["loc_acc", "auc", "mse"]
    return [_COLUMNS[k] for k in keys]


@dataclass(frozen=True)
class Flag:
    key: str
    label: str
    legend: str
    tone: str  # css class suffix


FLAGS = {f.key: f for f in (
    Flag("reproduced", "reproduced", "scored by avsl-bench from submitted maps, checkpoint selection 'final', "
         "metrics re-checked from the per-sample table", "good"),
    Flag("published", "published", "number copied from a paper or README (citation in the row)", "info"),
    Flag("early-stopped", "early-stopped", "checkpoint chosen on the test set (forbidden for reproduced entries)",
         "warn"),
    Flag("es-unknown", "ES?", "the source does not say how the checkpoint was chosen", "muted"),
    Flag("leaked", "leaked", "the training list contains clips of this test set (data spec §5.3)", "bad"),
    Flag("leak-unknown", "leak?", "training list overlap with this test set unknown", "muted"),
    Flag("legacy-eval", "legacy eval", "evaluated with a legacy convention (e.g. cIoU > 0.5, fixed binarisation "
         "threshold, non-default map options); comparable only approximately", "legacy"),
    Flag("eval-unchecked", "eval?", "evaluation code unreleased or not compared with avsl-bench's", "muted"),
    Flag("unverified", "unverified", "not checked against the paper (status 'recalled' or marked so)", "unverified"),
    Flag("semi-supervised", "semi-sup", "trained with labelled boxes (semi-supervised track)", "info"),
    Flag("stale", "stale", "the benchmark definition changed since this entry was checked; re-add it", "bad"),
    Flag("not-stored", "not stored", "given to this build only (e.g. `make demo`); not in the leaderboard store",
         "muted"),
    Flag("missing", "missing ids", "some test samples had no map and count as failures", "warn"),
)}


@dataclass
class BoardRow:
    """One table row: a reproduced entry or a published row."""

    kind: str  # reproduced | published
    method: str
    benchmark: str
    training_set: str
    metrics: dict[str, Value]
    strata: dict[str, dict[str, Value]]
    flags: list[str]
    training_note: str = ""
    citation: str = ""
    citation_url: str | None = None
    note: str = ""
    status: str = ""
    ablation: bool = False
    entry: StoreEntry | None = None
    published: PublishedRow | None = None

    @property
    def has_headline(self) -> bool:
        return any(v.value is not None for v in self.metrics.values())


@dataclass
class BenchmarkView:
    name: str
    title: str
    protocol: str
    extended: bool
    defined: bool  # has an avsl-bench benchmark definition
    note: str
    rows: list[BoardRow] = field(default_factory=list)

    @property
    def main_rows(self) -> list[BoardRow]:
        return [r for r in self.rows if r.has_headline and not r.ablation]

    @property
    def ablation_rows(self) -> list[BoardRow]:
        return [r for r in self.rows if r.has_headline and r.ablation]

    @property
    def reproduced(self) -> list[BoardRow]:
        return [r for r in self.rows if r.kind == "reproduced"]

    def strata_names(self, family: tuple[str, ...] | None = None) -> list[str]:
        """Stratum names present in any row (restricted to `family` and ordered as it when given)."""
        names = {n for r in self.rows for n in r.strata}
        if family is not None:
            return [n for n in family if n in names]
        known = set(SIZE_STRATA) | set(NEGATIVE_STRATA)
        return sorted(n for n in names if n not in known)

    @property
    def primary(self) -> str:
        return "ap" if self.extended else "loc_acc"


@dataclass
class Board:
    benchmarks: list[BenchmarkView]
    published: Published

    def view(self, name: str) -> BenchmarkView:
        return next(b for b in self.benchmarks if b.name == name)


# ------------------------------------------------------------------------------------------------ conversion


def _value(entry) -> Value:
    if not isinstance(entry, dict):
        return Value(None)
    ci = entry.get("ci95") or [None, None]
    return Value(entry.get("value"), ci[0], ci[1])


def _entry_row(entry: StoreEntry) -> BoardRow:
    result = entry.result
    method = result.get("method") or {}
    options = result.get("options") or {}
    flags = ["reproduced"]
    leaky = method.get("training_set_leaky")
    if leaky is True:
        flags.append("leaked")
    elif leaky is None and method.get("training_set"):
        flags.append("leak-unknown")
    if (options.get("binarize"), options.get("resize"), options.get("align_corners")) != ("top50", "bicubic", False):
        flags.append("legacy-eval")
    if (result.get("counts") or {}).get("missing"):
        flags.append("missing")
    if entry.stale:
        flags.append("stale")
    if not entry.in_store:
        flags.append("not-stored")
    strata = {name: {k: _value(v) for k, v in values.items()} for name, values in (result.get("strata") or {}).items()}
    extra = method.get("extra") or {}
    seed = extra.get("seed") if isinstance(extra, dict) else None
    tool = result.get("tool") or {}
    return BoardRow(
        kind="reproduced", method=entry.method, benchmark=entry.benchmark,
        training_set=str(method.get("training_set") or "none"),
        metrics={k: _value(v) for k, v in (result.get("metrics") or {}).items()}, strata=strata, flags=flags,
        training_note=f"seed {seed}" if seed is not None else "",
        citation=f"avsl-bench {tool.get('version') or ''}".strip(), entry=entry,
    )


def _published_row(row: PublishedRow) -> BoardRow:
    flags = ["published"]
    if row.early_stopped is True:
        flags.append("early-stopped")
    elif row.early_stopped == "unknown":
        flags.append("es-unknown")
    if row.leaky_training_list is True:
        flags.append("leaked")
    elif row.leaky_training_list == "unknown":
        flags.append("leak-unknown")
    if row.evaluator.convention == "legacy":
        flags.append("legacy-eval")
    elif row.evaluator.convention == "unchecked":
        flags.append("eval-unchecked")
    if row.supervision == "semi":
        flags.append("semi-supervised")
    if row.unverified:
        flags.append("unverified")
    metrics, strata = {}, {}
    for key, pct in row.metrics.items():
        stratum, _, metric = key.rpartition(".")
        if stratum:
            strata.setdefault(stratum, {})[metric] = Value(pct / 100.0)
        else:
            metrics[key] = Value(pct / 100.0)
    return BoardRow(
        kind="published", method=row.method, benchmark=row.benchmark, training_set=row.training_set,
        metrics=metrics, strata=strata, flags=flags, training_note=row.training_note, citation=row.citation,
        citation_url=row.source.url, note=row.note, status=row.status, ablation=row.kind == "ablation",
        published=row,
    )


def _sort_key(view_primary: str):
    def key(row: BoardRow):
        value = row.metrics.get(view_primary, Value(None)).value
        if value is None:
            value = row.metrics.get("loc_acc", Value(None)).value
        sign = 1.0 if view_primary in LOWER_IS_BETTER else -1.0
        return (value is None, sign * (value or 0.0), row.kind != "reproduced", row.method.lower(), row.training_set)
    return key


def build_board(entries: list[StoreEntry], published: Published) -> Board:
    """Group entries and published rows by benchmark: defined benchmarks in registry order, then other tracks."""
    from ..benchmarks.spec import benchmark_registry

    registry = benchmark_registry()
    rows = [_entry_row(e) for e in entries] + [_published_row(r) for r in published.rows]
    names = sorted({r.benchmark for r in rows}, key=lambda n: (
        BENCHMARK_ORDER.index(n) if n in BENCHMARK_ORDER else len(BENCHMARK_ORDER), n.startswith("synthetic"),
        n not in registry, n))
    views = []
    for name in names:
        if name in registry:
            spec = registry.get(name)
            view = BenchmarkView(name, spec.title, spec.protocol, spec.extended, True, "")
        else:
            track = published.tracks.get(name, Track(name, name, ""))
            extended = any(k in ("ap", "max_f1") for r in rows if r.benchmark == name for k in r.metrics)
            view = BenchmarkView(name, track.title, name, extended, False,
                                 track.note or "No avsl-bench benchmark definition for this track yet.")
        view.rows = sorted((r for r in rows if r.benchmark == name), key=_sort_key(view.primary))
        views.append(view)
    return Board(views, published)


# ------------------------------------------------------------------------------------------------ formatting


def fmt_pct(value: float | None, digits: int = 2) -> str:
    """A fraction as percent text; '–' for missing."""
    return "–" if value is None else f"{100.0 * value:.{digits}f}"


def fmt_ci(v: Value, digits: int = 1) -> str:
    """Compact CI text '36.5–39.1' (percent), or '' without a CI."""
    if v.lo is None or v.hi is None:
        return ""
    return f"{100.0 * v.lo:.{digits}f}–{100.0 * v.hi:.{digits}f}"
