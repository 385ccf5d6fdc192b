"""Published numbers: `leaderboard/published.toml` → validated, frozen rows (schema `avsl-bench/published@1`).

The file's header comment documents the schema. Parsing is strict: unknown keys, unknown sources or evaluators,
metric keys outside the result-file vocabulary, values outside [0, 100] and malformed flags are errors that name
the file and the row. Values stay in percent here (as printed); the board converts them to fractions.

    >>> pub = load_published()                                   # doctest: +SKIP
    >>> [r.method for r in pub.rows if r.benchmark == "vggss"][:2]  # doctest: +SKIP
    ['Center Prior', 'All-ones map']
"""

from __future__ import annotations

import re
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Union

from ..errors import DataFileError

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

__all__ = [
    "PUBLISHED_SCHEMA", "STATUSES", "HEADLINE_KEYS", "Source", "Evaluator", "Track", "PublishedRow", "Pending",
    "Published", "default_published_path", "load_published", "parse_published",
]

PUBLISHED_SCHEMA = "avsl-bench/published@1"
STATUSES = ("exact", "paper", "README", "recalled")
CONVENTIONS = ("standard", "legacy", "unchecked")
SUPERVISION = ("weak", "semi", "none")
KINDS = ("main", "ablation")
#: Metric keys of result.json (protocol §8) a published row may carry.
HEADLINE_KEYS = ("loc_acc", "loc_acc_strict", "mean_ciou", "auc", "mse", "ap", "max_f1", "ap_full", "max_f1_full", "ap75")
STRATUM_KEYS = ("loc_acc", "auc", "mean_ciou", "max_f1")
_NAME_RE = re.compile(r"^[a-z0-9][a-z0-9._-]*$")
_URL_RE = re.compile(r"^https?://[^\s\"'<>]+$")

Tristate = Union[bool, str]  # True, False or "unknown"

_TOP_KEYS = {"schema", "sources", "evaluators", "benchmarks", "row", "pending"}
_SOURCE_KEYS = {"citation", "short", "url", "bib_checked"}
_EVALUATOR_KEYS = {"description", "convention"}
_TRACK_KEYS = {"title", "note"}
_ROW_REQUIRED = {"method", "benchmark", "training_set", "metrics", "source", "table", "status", "evaluator",
                 "early_stopped", "leaky_training_list"}
_ROW_OPTIONAL = {"training_note", "supervision", "kind", "unverified", "note"}
_PENDING_KEYS = {"method", "reason"}


@dataclass(frozen=True)
class Source:
    """A paper or README that published numbers."""

    id: str
    citation: str
    short: str
    url: str | None = None
    bib_checked: bool = False


@dataclass(frozen=True)
class Evaluator:
    """The evaluation code that produced a published number and how it relates to avsl-bench's protocol."""

    id: str
    description: str
    convention: str  # standard | legacy | unchecked


@dataclass(frozen=True)
class Track:
    """A benchmark avsl-bench does not define (yet), described for its page."""

    name: str
    title: str
    note: str = ""


@dataclass(frozen=True)
class PublishedRow:
    """One published result: a method on one benchmark with one training set, from one table of one source."""

    method: str
    benchmark: str
    training_set: str
    metrics: dict[str, float]  # percent; keys in HEADLINE_KEYS or "<stratum>.<key>"
    source: Source
    table: str
    status: str
    evaluator: Evaluator
    early_stopped: Tristate
    leaky_training_list: Tristate
    training_note: str = ""
    supervision: str = "weak"
    kind: str = "main"
    unverified_flag: bool = False
    note: str = ""

    @property
    def unverified(self) -> bool:
        """Recalled numbers and rows explicitly marked as not checked against their paper."""
        return self.status == "recalled" or self.unverified_flag

    @property
    def citation(self) -> str:
        return f"{self.source.short}, {self.table}" if self.table not in self.source.short else self.source.short


@dataclass(frozen=True)
class Pending:
    """A method named for the leaderboard without a checked number."""

    method: str
    reason: str


@dataclass(frozen=True)
class Published:
    """Everything in published.toml."""

    path: Path
    sources: dict[str, Source]
    evaluators: dict[str, Evaluator]
    tracks: dict[str, Track]
    rows: tuple[PublishedRow, ...]
    pending: tuple[Pending, ...]


def default_published_path(store: str | Path) -> Path:
    """`<store>/published.toml`."""
    return Path(store) / "published.toml"


def _err(path: Path, where: str, problem: str) -> DataFileError:
    return DataFileError(f"{path}: {where}: {problem}")


def _check_keys(path: Path, where: str, raw: Any, allowed: set[str], required: set[str] = frozenset()) -> dict:
    if not isinstance(raw, dict):
        raise _err(path, where, f"expected a table, got {type(raw).__name__}")
    unknown = sorted(set(raw) - allowed)
    if unknown:
        raise _err(path, where, f"unknown keys {unknown}")
    missing = sorted(required - set(raw))
    if missing:
        raise _err(path, where, f"missing keys {missing}")
    return raw


def _text(path: Path, where: str, raw: dict, key: str, default: str | None = None) -> str:
    value = raw.get(key, default)
    if not isinstance(value, str) or (default is None and not value.strip()):
        raise _err(path, where, f"{key} must be a non-empty string")
    return value


def _tristate(path: Path, where: str, value: Any, key: str) -> Tristate:
    if isinstance(value, bool) or value == "unknown":
        return value
    raise _err(path, where, f"{key} must be true, false or \"unknown\", got {value!r}")


def _choice(path: Path, where: str, value: Any, key: str, choices: tuple[str, ...]) -> str:
    if value not in choices:
        raise _err(path, where, f"{key} must be one of {list(choices)}, got {value!r}")
    return value


def _flatten_metrics(path: Path, where: str, raw: Any) -> dict[str, float]:
    if not isinstance(raw, dict) or not raw:
        raise _err(path, where, "metrics must be a non-empty table")
    flat: dict[str, Any] = {}
    for key, value in raw.items():
        if isinstance(value, dict):  # `heard = { loc_acc = … }` or unquoted dotted keys
            flat.update({f"{key}.{sub}": v for sub, v in value.items()})
        else:
            flat[key] = value
    out = {}
    for key, value in flat.items():
        stratum, _, metric = key.rpartition(".")
        valid = key in HEADLINE_KEYS if not stratum else (metric in STRATUM_KEYS and bool(_NAME_RE.match(stratum)))
        if not valid:
            raise _err(path, where, f"unknown metric key {key!r} (use {', '.join(HEADLINE_KEYS)} or <stratum>.<key>)")
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0.0 <= float(value) <= 100.0:
            raise _err(path, where, f"metrics.{key} must be a number in [0, 100] (percent), got {value!r}")
        out[key] = float(value)
    return out


def _row(path: Path, index: int, raw: Any, sources, evaluators) -> PublishedRow:
    where = f"row {index + 1}"
    raw = _check_keys(path, where, raw, _ROW_REQUIRED | _ROW_OPTIONAL, _ROW_REQUIRED)
    method = _text(path, where, raw, "method")
    where = f"row {index + 1} ({method})"
    benchmark = _text(path, where, raw, "benchmark")
    if not _NAME_RE.match(benchmark):
        raise _err(path, where, f"benchmark {benchmark!r} is not a protocol name (lower case, digits, '-')")
    if raw["source"] not in sources:
        raise _err(path, where, f"source {raw['source']!r} is not defined under [sources]")
    if raw["evaluator"] not in evaluators:
        raise _err(path, where, f"evaluator {raw['evaluator']!r} is not defined under [evaluators]")
    unverified = raw.get("unverified", False)
    if not isinstance(unverified, bool):
        raise _err(path, where, "unverified must be true or false")
    return PublishedRow(
        method=method, benchmark=benchmark, training_set=_text(path, where, raw, "training_set"),
        metrics=_flatten_metrics(path, where, raw["metrics"]), source=sources[raw["source"]],
        table=_text(path, where, raw, "table"), status=_choice(path, where, raw["status"], "status", STATUSES),
        evaluator=evaluators[raw["evaluator"]],
        early_stopped=_tristate(path, where, raw["early_stopped"], "early_stopped"),
        leaky_training_list=_tristate(path, where, raw["leaky_training_list"], "leaky_training_list"),
        training_note=_text(path, where, raw, "training_note", ""),
        supervision=_choice(path, where, raw.get("supervision", "weak"), "supervision", SUPERVISION),
        kind=_choice(path, where, raw.get("kind", "main"), "kind", KINDS),
        unverified_flag=unverified, note=_text(path, where, raw, "note", ""),
    )


def parse_published(text: str, path: Path = Path("published.toml")) -> Published:
    """Parse and validate the text of a published.toml."""
    try:
        raw = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise DataFileError(f"{path}: not valid TOML: {exc}") from exc
    _check_keys(path, "top level", raw, _TOP_KEYS, {"schema"})
    if raw["schema"] != PUBLISHED_SCHEMA:
        raise _err(path, "schema", f"expected {PUBLISHED_SCHEMA!r}, got {raw['schema']!r}")
    sources = {}
    for sid, entry in raw.get("sources", {}).items():
        entry = _check_keys(path, f"sources.{sid}", entry, _SOURCE_KEYS, {"citation", "short"})
        url = entry.get("url")
        if url is not None and not (isinstance(url, str) and _URL_RE.match(url)):
            raise _err(path, f"sources.{sid}", f"url must be an http(s) URL, got {url!r}")
        checked = entry.get("bib_checked", False)
        if not isinstance(checked, bool):
            raise _err(path, f"sources.{sid}", "bib_checked must be true or false")
        sources[sid] = Source(sid, _text(path, f"sources.{sid}", entry, "citation"),
                              _text(path, f"sources.{sid}", entry, "short"), url, checked)
    evaluators = {}
    for eid, entry in raw.get("evaluators", {}).items():
        entry = _check_keys(path, f"evaluators.{eid}", entry, _EVALUATOR_KEYS, _EVALUATOR_KEYS)
        evaluators[eid] = Evaluator(eid, _text(path, f"evaluators.{eid}", entry, "description"),
                                    _choice(path, f"evaluators.{eid}", entry["convention"], "convention", CONVENTIONS))
    tracks = {}
    for name, entry in raw.get("benchmarks", {}).items():
        entry = _check_keys(path, f"benchmarks.{name}", entry, _TRACK_KEYS, {"title"})
        if not _NAME_RE.match(name):
            raise _err(path, f"benchmarks.{name}", "not a protocol name")
        tracks[name] = Track(name, _text(path, f"benchmarks.{name}", entry, "title"),
                             _text(path, f"benchmarks.{name}", entry, "note", ""))
    rows_raw = raw.get("row", [])
    if not isinstance(rows_raw, list):
        raise _err(path, "row", "use [[row]] tables")
    rows = tuple(_row(path, i, r, sources, evaluators) for i, r in enumerate(rows_raw))
    pending = []
    for i, entry in enumerate(raw.get("pending", [])):
        entry = _check_keys(path, f"pending {i + 1}", entry, _PENDING_KEYS, _PENDING_KEYS)
        pending.append(Pending(_text(path, f"pending {i + 1}", entry, "method"),
                               _text(path, f"pending {i + 1}", entry, "reason")))
    return Published(path, sources, evaluators, tracks, rows, tuple(pending))


def load_published(path: str | Path | None = None) -> Published:
    """Read published.toml (default: the repository's `leaderboard/published.toml`); a missing file is empty."""
    path = Path(path) if path is not None else Path(__file__).resolve().parents[2] / "leaderboard" / "published.toml"
    if not path.is_file():
        return Published(path, {}, {}, {}, (), ())
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise DataFileError(f"{path}: unreadable: {exc}") from exc
    return parse_published(text, path)
