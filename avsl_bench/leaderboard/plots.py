"""Leaderboard plots (matplotlib object API; pyplot's global state is never touched, no GUI backend needed).

Every plot is a deterministic SVG (fixed hash salt, no date, glyphs drawn as paths so no font file is needed)
written atomically. The layout is computed once in inches (no constrained layout, no tight bbox: one draw per
plot). Labels from result files go through :func:`mpl_text` so `$…$` is not read as mathtext.
"""

from __future__ import annotations

import functools
import io
from pathlib import Path
from typing import Sequence

import matplotlib
import numpy as np
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator

from ..files import write_bytes_atomic
from .rows import SIZE_STRATA, BoardRow
from .store import LOWER_IS_BETTER, Overfit

__all__ = ["mpl_text", "plot_f1", "plot_pr", "plot_size", "plot_overfit", "size_counts", "color_of", "MAX_CURVES"]

MAX_CURVES = 10
_POINTS = 400
PALETTE = ("#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e", "#17becf", "#8c564b", "#e377c2", "#7f7f7f",
           "#bcbd22")
_RC = {
    "svg.hashsalt": "avsl-bench", "svg.fonttype": "path", "font.family": "DejaVu Sans", "font.size": 9.0,
    "axes.titlesize": 10.0, "axes.titlelocation": "left", "axes.titleweight": "bold", "axes.labelsize": 9.0,
    "legend.fontsize": 8.0, "axes.spines.top": False, "axes.spines.right": False, "axes.grid": True,
    "grid.color": "#e5e7eb", "grid.linewidth": 0.7, "axes.edgecolor": "#6b7280", "axes.axisbelow": True,
    "xtick.color": "#374151", "ytick.color": "#374151", "axes.labelcolor": "#111827",
}
_W = 6.4  # figure width, inches
_LEFT, _RIGHT, _TOP, _BOTTOM, _ROW = 0.7, 0.25, 0.4, 0.55, 0.19  # margins and legend row height, inches


def color_of(index: int) -> str:
    """The colour of the `index`-th reproduced row of a benchmark (the same in every plot of that benchmark)."""
    return PALETTE[index % len(PALETTE)]


def mpl_text(text: str) -> str:
    """Make arbitrary text safe for matplotlib: no mathtext, no legend-hiding leading underscore."""
    text = str(text).replace("\\", "\\\\").replace("$", r"\$")
    return "\u200b" + text if text.startswith("_") else text


def _label(row: BoardRow, width: int) -> str:
    parts = [row.training_set] if row.training_set and row.training_set != "none" else []
    if row.training_note:
        parts.append(row.training_note)
    label = row.method + (f" ({', '.join(parts)})" if parts else "")
    return mpl_text(label if len(label) <= width else label[:width - 1] + "…")


def _columns(n: int) -> tuple[int, int]:
    """(legend columns, label width in characters) for `n` legend entries."""
    return (1, 80) if n <= 4 else (2, 36)


def _thin(*arrays: np.ndarray) -> list[np.ndarray]:
    n = len(arrays[0])
    if n <= _POINTS:
        return list(arrays)
    idx = np.unique(np.linspace(0, n - 1, _POINTS).round().astype(int))
    return [a[idx] for a in arrays]


def _styled(plot):
    """Run a plot function under the leaderboard's rc settings (creation and saving alike)."""

    @functools.wraps(plot)
    def wrapper(*args, **kwargs):
        with matplotlib.rc_context(_RC):
            return plot(*args, **kwargs)

    return wrapper


def _axes(n_legend: int, *, height: float = 2.6, extra_bottom: float = 0.0, ncols: int = 2):
    """A figure whose axes leave room for a legend of `n_legend` entries below them."""
    rows = -(-n_legend // ncols) if n_legend else 0
    bottom = _BOTTOM + extra_bottom + rows * _ROW + (0.1 if rows else 0.0)
    total = height + bottom + _TOP
    fig = Figure(figsize=(_W, total))
    ax = fig.add_axes((_LEFT / _W, bottom / total, 1 - (_LEFT + _RIGHT) / _W, height / total))
    return fig, ax


def _legend(fig: Figure, ax, ncols: int) -> None:
    handles, labels = ax.get_legend_handles_labels()
    if handles:
        fig.legend(handles, labels, loc="lower left", bbox_to_anchor=(_LEFT / _W - 0.01, 0.01), ncols=ncols,
                   frameon=False, handlelength=1.6, columnspacing=1.4)


def _save(fig: Figure, path: Path) -> Path:
    buffer = io.BytesIO()
    fig.savefig(buffer, format="svg", metadata={"Date": None})
    write_bytes_atomic(path, buffer.getvalue())
    return path


def _with_curve(rows: Sequence[tuple[BoardRow, str]], name: str) -> list[tuple[BoardRow, str]]:
    return [(r, c) for r, c in rows if r.entry is not None and (r.entry.result.get("curves") or {}).get(name)]


@_styled
def plot_f1(rows: Sequence[tuple[BoardRow, str]], path: Path, *, raw_threshold: bool = False) -> Path | None:
    """F1 against the confidence threshold. By default x = share of samples detected (confidence ≥ threshold),
    comparable across methods whose confidences have different scales; `raw_threshold` plots the threshold."""
    curves = _with_curve(rows, "f1")[:MAX_CURVES]
    if not curves:
        return None
    ncols, width = _columns(len(curves))
    fig, ax = _axes(len(curves), ncols=ncols)
    for row, color in curves:
        f1 = row.entry.result["curves"]["f1"]
        t, y = np.asarray(f1["thresholds"], float), np.asarray(f1["f1"], float)
        if raw_threshold:
            x = t
        else:
            conf = np.sort(row.entry.table["confidence"].to_numpy(np.float64))
            x = 1.0 - np.searchsorted(conf, t, side="left") / max(len(conf), 1)
        x_thin, y_thin = _thin(x, y)
        ax.plot(x_thin, 100 * y_thin, color=color, lw=1.6, label=_label(row, width))
        if len(y):
            best = int(np.argmax(y))
            ax.plot([x[best]], [100 * y[best]], "o", color=color, ms=4.5)
    ax.set_xlabel("confidence threshold" if raw_threshold else "share of samples detected (confidence ≥ threshold)")
    ax.set_ylabel("F1 (%)")
    ax.set_ylim(0, 102)
    ax.set_title("F1 vs confidence threshold")
    _legend(fig, ax, ncols)
    return _save(fig, path)


@_styled
def plot_pr(rows: Sequence[tuple[BoardRow, str]], path: Path) -> Path | None:
    """Precision–recall curves of the full sweep (every distinct confidence)."""
    curves = _with_curve(rows, "pr")[:MAX_CURVES]
    if not curves:
        return None
    ncols, width = _columns(len(curves))
    fig, ax = _axes(len(curves), ncols=ncols)
    for row, color in curves:
        pr = row.entry.result["curves"]["pr"]
        recall, precision = _thin(np.asarray(pr["recall"], float), np.asarray(pr["precision"], float))
        ax.plot(100 * recall, 100 * precision, color=color, lw=1.6, label=_label(row, width), drawstyle="steps-post")
    ax.set_xlabel("recall (%)")
    ax.set_ylabel("precision (%)")
    ax.set_xlim(0, 100)
    ax.set_ylim(0, 102)
    ax.set_title("Precision–recall (hit: positive detected with cIoU ≥ 0.5)")
    _legend(fig, ax, ncols)
    return _save(fig, path)


@_styled
def plot_size(rows: Sequence[tuple[BoardRow, str]], path: Path, counts: dict[str, int] | None = None) -> Path | None:
    """LocAcc by object size (GT area buckets), grouped bars with 95 % CI whiskers."""
    bars = [(r, c) for r, c in rows if any("loc_acc" in r.strata.get(b, {}) for b in SIZE_STRATA)][:MAX_CURVES]
    if not bars:
        return None
    buckets = [b for b in SIZE_STRATA if any(b in r.strata for r, _ in bars)]
    ncols, label_width = _columns(len(bars))
    fig, ax = _axes(len(bars), extra_bottom=0.15, ncols=ncols)
    width = 0.8 / len(bars)
    for i, (row, color) in enumerate(bars):
        x = np.arange(len(buckets)) + (i - (len(bars) - 1) / 2) * width
        values = [row.strata.get(b, {}).get("loc_acc") for b in buckets]
        y = np.array([100 * v.value if v is not None and v.value is not None else np.nan for v in values])
        lo = np.array([100 * v.lo if v is not None and v.lo is not None else np.nan for v in values])
        hi = np.array([100 * v.hi if v is not None and v.hi is not None else np.nan for v in values])
        err = np.nan_to_num(np.vstack([y - lo, hi - y]))
        ax.bar(x, np.nan_to_num(y), width * 0.9, color=color, label=_label(row, label_width), yerr=err,
               error_kw={"elinewidth": 0.9, "capsize": 2.0, "ecolor": "#111827"})
    ticks = [f"{b}\nn = {counts[b]:,}" if counts and b in counts else b for b in buckets]
    ax.set_xticks(np.arange(len(buckets)), ticks)
    ax.set_ylabel("LocAcc (%)")
    ax.set_ylim(0, 104)
    ax.set_yticks(np.arange(0, 101, 20))
    ax.grid(axis="x", visible=False)
    ax.set_title("LocAcc by object size (GT area < 32², 96², 144², ≥ 144² px)")
    _legend(fig, ax, ncols)
    return _save(fig, path)


@_styled
def plot_overfit(overfit: Overfit, path: Path) -> Path:
    """Per-epoch scores with the best epoch (★) and the final, reported checkpoint (○): the early-stop gap."""
    metrics = sorted(overfit.scores)
    fig, ax = _axes(len(metrics), ncols=1)
    epochs = np.asarray(overfit.epochs)
    final_index = list(overfit.epochs).index(overfit.final_epoch)
    for i, metric in enumerate(metrics):
        color = color_of(i)
        y = 100 * np.asarray(overfit.scores[metric])
        best_epoch, best, gap = overfit.gap(metric)
        sign = "−" if metric in LOWER_IS_BETTER else "+"
        ax.plot(epochs, y, color=color, lw=1.6, marker="." if len(epochs) <= 60 else None,
                label=mpl_text(f"{metric}: early-stop gap {sign}{100 * gap:.2f} pts (best epoch {best_epoch} vs final "
                               f"{overfit.final_epoch})"))
        ax.axhline(y[final_index], color=color, lw=0.9, ls="--")
        ax.plot([best_epoch], [100 * best], marker="*", ms=11, color=color, ls="none")
        ax.plot([overfit.final_epoch], [y[final_index]], marker="o", ms=7, mfc="white", mec=color, mew=1.5, ls="none")
    ax.set_xlabel("epoch" + (f" (scores on {mpl_text(overfit.split)})" if overfit.split else ""))
    ax.set_ylabel("score (%)")
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_title("Per-epoch scores: ★ best epoch, ○ final checkpoint (reported)")
    _legend(fig, ax, ncols=1)
    return _save(fig, path)


def size_counts(table) -> dict[str, int]:
    """Positives per size bucket in a per-sample table."""
    positives = table[table["positive"].astype(bool)]
    counts = positives["size_bucket"].value_counts()
    return {b: int(counts[b]) for b in SIZE_STRATA if counts.get(b, 0)}
