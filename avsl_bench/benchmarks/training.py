"""Training lists (data spec §2, §5.3): definitions as data, the leakage audit and `-noleak` filtering.

Each training set is a TOML file in `manifests/training/` naming one pinned upstream list; the test
lists a training list is audited against live in `manifests/training/leakage.toml` (two references:
`vggss` for VGGSound lists, `flickr` for Flickr-SoundNet lists). `<name>-noleak` is the legacy list
with every id of the reference's `drop` lists removed, in list order, without top-up.

    >>> ts = load_training_set("vggsound-144k-noleak")      # doctest: +SKIP
    >>> len(ts.ids), ts.audit.in_test, ts.audit.in_benchmark  # doctest: +SKIP
    (132837, 11163, 3709)
"""

from __future__ import annotations

import os
import re
import sys
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Iterable, Sequence

from ..errors import DataFileError
from ..files import sha256_file
from ..registry import Registry
from .lists import ID_PATTERNS, read_id_list, read_negative_pairs, read_vggsound_csv, read_vggsound_split_csv
from .spec import RAW_URL_RE, manifests_dir
from .upstream import UpstreamFile, resolve, upstream_dir, verify

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

__all__ = [
    "NOLEAK_SUFFIX",
    "AuditReport",
    "LeakageReference",
    "ListFile",
    "TrainingSet",
    "TrainingSpec",
    "audit",
    "get_training_spec",
    "leak_warning",
    "leakage_files",
    "leakage_references",
    "leakage_table",
    "load_training_set",
    "parse_training_spec",
    "read_list_file",
    "render_audit_table",
    "source_video",
    "training_manifests_dir",
    "training_names",
    "training_registry",
]

NOLEAK_SUFFIX = "-noleak"
LEAKAGE_MANIFEST = "leakage.toml"
FORMATS = ("ids", "vggsound_split_csv", "negative_pairs", "vggsound_csv")
_TRAINING_KEYS = {"name", "version", "title", "dataset", "list", "split", "leakage", "expected_noleak_rows", "files"}
_FILE_KEYS = {"url", "sha256", "git_blob", "format", "rows", "size", "vendorable"}
_REFERENCE_KEYS = {"dataset", "test", "benchmark", "drop"}


# --------------------------------------------------------------------------------------------- definitions


@dataclass(frozen=True)
class ListFile:
    """A pinned upstream list plus how to parse it and how many rows it must have (None: unknown)."""

    upstream: UpstreamFile
    format: str
    rows: int | None = None
    size: int | None = None

    @property
    def file_id(self) -> str:
        return self.upstream.file_id


@dataclass(frozen=True)
class TrainingSpec:
    """One training set (`manifests/training/<name>.toml`)."""

    name: str
    version: int
    title: str
    dataset: str  # "vggsound" | "flickr": id pattern
    list_file: ListFile
    leakage: str  # reference in leakage.toml: "vggss" | "flickr"
    source: Path
    split: str | None = None  # vggsound_csv only: the split kept
    expected_noleak_rows: int | None = None


@dataclass(frozen=True)
class LeakageReference:
    """Test lists one family of training lists is audited against (`[references.<name>]`)."""

    name: str
    dataset: str
    test: tuple[ListFile, ...]  # "in test" = inside any of these
    drop: tuple[ListFile, ...]  # `-noleak` drops every id of these
    benchmark: ListFile | None = None  # "of which <benchmark>" (VGG-SS)

    @property
    def files(self) -> dict[str, ListFile]:
        out = {f.file_id: f for f in (*self.test, *self.drop)}
        if self.benchmark is not None:
            out[self.benchmark.file_id] = self.benchmark
        return out


def training_manifests_dir() -> Path:
    """`manifests/training/` (under `AVSL_BENCH_MANIFESTS` when set)."""
    return manifests_dir() / "training"


def _read_toml(path: Path) -> dict:
    try:
        return tomllib.loads(path.read_text(encoding="utf-8"))
    except (OSError, tomllib.TOMLDecodeError) as exc:
        raise DataFileError(f"{path}: cannot read training definition: {exc}") from exc


def _list_file(path: Path, file_id: str, entry: dict) -> ListFile:
    unknown = set(entry) - _FILE_KEYS
    if unknown:
        raise DataFileError(f"{path}: files.{file_id}: unknown keys {sorted(unknown)}")
    match = RAW_URL_RE.match(str(entry.get("url", "")))
    sha256, blob = entry.get("sha256"), entry.get("git_blob")
    if not match:
        raise DataFileError(f"{path}: files.{file_id} needs a pinned raw.githubusercontent.com url")
    if sha256 is not None and not re.fullmatch(r"[0-9a-f]{64}", str(sha256)):
        raise DataFileError(f"{path}: files.{file_id}: sha256 must be 64 hex digits, got {sha256!r}")
    if blob is not None and not re.fullmatch(r"[0-9a-f]{40}", str(blob)):
        raise DataFileError(f"{path}: files.{file_id}: git_blob must be 40 hex digits, got {blob!r}")
    if sha256 is None and blob is None:
        raise DataFileError(f"{path}: files.{file_id} needs a sha256 (or, until it is known, a git_blob)")
    if entry.get("format") not in FORMATS:
        raise DataFileError(f"{path}: files.{file_id}: format must be one of {FORMATS}, got {entry.get('format')!r}")
    repo, commit, rel = match.groups()
    upstream = UpstreamFile(
        file_id=file_id, repo=repo, commit=commit, path=rel, sha256=sha256, git_blob=blob,
        vendorable=bool(entry.get("vendorable", True)),
    )
    rows = entry.get("rows")
    size = entry.get("size")
    return ListFile(upstream, entry["format"], None if rows is None else int(rows), None if size is None else int(size))


def _check_dataset(path: Path, value: object) -> str:
    if value not in ID_PATTERNS:
        raise DataFileError(f"{path}: dataset must be one of {sorted(ID_PATTERNS)}, got {value!r}")
    return str(value)


def parse_training_spec(path: Path) -> TrainingSpec:
    """Read and validate one training-set TOML file (unknown keys are errors)."""
    raw = _read_toml(path)
    unknown = set(raw) - _TRAINING_KEYS
    if unknown:
        raise DataFileError(f"{path}: unknown keys {sorted(unknown)}")
    for key in ("name", "version", "dataset", "list", "leakage"):
        if key not in raw:
            raise DataFileError(f"{path}: missing key {key!r}")
    files = {fid: _list_file(path, fid, entry) for fid, entry in raw.get("files", {}).items()}
    if set(files) != {raw["list"]}:
        raise DataFileError(f"{path}: [files] must hold exactly the list {raw['list']!r}, got {sorted(files)}")
    list_file = files[raw["list"]]
    split = raw.get("split")
    if (list_file.format == "vggsound_csv") != (split is not None):
        raise DataFileError(f"{path}: `split` is required for, and only for, a vggsound_csv list")
    if list_file.format not in ("ids", "vggsound_csv"):
        raise DataFileError(f"{path}: a training list has format ids or vggsound_csv, not {list_file.format!r}")
    noleak = raw.get("expected_noleak_rows")
    return TrainingSpec(
        name=str(raw["name"]), version=int(raw["version"]), title=str(raw.get("title", raw["name"])),
        dataset=_check_dataset(path, raw["dataset"]), list_file=list_file, leakage=str(raw["leakage"]),
        source=path, split=split, expected_noleak_rows=None if noleak is None else int(noleak),
    )


def _parse_leakage(path: Path) -> tuple[dict[str, LeakageReference], dict[str, ListFile]]:
    raw = _read_toml(path)
    unknown = set(raw) - {"references", "files"}
    if unknown:
        raise DataFileError(f"{path}: unknown keys {sorted(unknown)}")
    files = {fid: _list_file(path, fid, entry) for fid, entry in raw.get("files", {}).items()}

    def pick(name: str, fid: str) -> ListFile:
        if fid not in files:
            raise DataFileError(f"{path}: references.{name} names {fid!r}, which has no [files] entry")
        return files[fid]

    references = {}
    for name, entry in raw.get("references", {}).items():
        extra = set(entry) - _REFERENCE_KEYS
        if extra:
            raise DataFileError(f"{path}: references.{name}: unknown keys {sorted(extra)}")
        benchmark = entry.get("benchmark")
        references[name] = LeakageReference(
            name=name, dataset=_check_dataset(path, entry.get("dataset")),
            test=tuple(pick(name, f) for f in entry.get("test", [])),
            drop=tuple(pick(name, f) for f in entry.get("drop", [])),
            benchmark=None if benchmark is None else pick(name, benchmark),
        )
        if any(f.format == "vggsound_csv" for f in references[name].files.values()):
            raise DataFileError(f"{path}: references.{name}: a reference list cannot be a vggsound_csv")
    return references, files


@lru_cache(maxsize=None)
def _leakage_manifest(directory: str) -> tuple[dict[str, LeakageReference], dict[str, ListFile]]:
    return _parse_leakage(Path(directory) / LEAKAGE_MANIFEST)


def leakage_references(directory: str | os.PathLike | None = None) -> dict[str, LeakageReference]:
    """The audit references (`vggss`, `flickr`) of `manifests/training/leakage.toml`."""
    return _leakage_manifest(str(directory or training_manifests_dir()))[0]


def leakage_files(directory: str | os.PathLike | None = None) -> dict[str, ListFile]:
    """Every pinned file of `leakage.toml` (references plus related lists such as `senocak_144k`)."""
    return _leakage_manifest(str(directory or training_manifests_dir()))[1]


@lru_cache(maxsize=None)
def _training_registry(directory: str) -> Registry[TrainingSpec]:
    registry: Registry[TrainingSpec] = Registry("training set")
    references = leakage_references(directory)
    for path in sorted(Path(directory).glob("*.toml")):
        if path.name == LEAKAGE_MANIFEST:
            continue
        spec = parse_training_spec(path)
        if spec.name != path.stem:
            raise DataFileError(f"{path}: name {spec.name!r} differs from the file name")
        if spec.name.endswith(NOLEAK_SUFFIX):
            raise DataFileError(f"{path}: a training set name must not end in {NOLEAK_SUFFIX!r}")
        reference = references.get(spec.leakage)
        if reference is None or reference.dataset != spec.dataset:
            raise DataFileError(
                f"{path}: leakage = {spec.leakage!r} names no {spec.dataset} reference in {LEAKAGE_MANIFEST}"
            )
        registry.add(spec.name, spec)
        registry.add(spec.name + NOLEAK_SUFFIX, spec)
    return registry


def training_registry(directory: str | os.PathLike | None = None) -> Registry[TrainingSpec]:
    """Every training set, by name; each is registered twice (`<name>` and `<name>-noleak`)."""
    return _training_registry(str(directory or training_manifests_dir()))


def training_names(*, noleak: bool = True) -> list[str]:
    """Known training-set names (with the `-noleak` variants unless `noleak=False`)."""
    names = training_registry().names()
    return names if noleak else [n for n in names if not n.endswith(NOLEAK_SUFFIX)]


def get_training_spec(name: str) -> tuple[TrainingSpec, bool]:
    """(definition, is the `-noleak` variant) of a training-set name."""
    spec = training_registry().get(name)
    return spec, name.endswith(NOLEAK_SUFFIX)


# ------------------------------------------------------------------------------------------------ parsing


def source_video(clip_id: str) -> str:
    """The YouTube id of a VGGSound clip id (`<ytid>_<start:06d>` → `<ytid>`)."""
    return clip_id.rsplit("_", 1)[0]


def read_list_file(
    list_file: ListFile, path: str | os.PathLike, dataset: str, *, split: str | None = None
) -> tuple[list[str], int]:
    """(ids, rows in the file) of a pinned list; ids in file order. Checks the pinned row count.

    Formats: `ids` (one id per line, or a CSV whose first column is the id), `vggsound_split_csv`
    (`test.csv`), `negative_pairs` (`video,audio,label`: every video and audio id, pairs in order),
    `vggsound_csv` (`vggsound.csv`: the ids of rows whose split is `split`, all rows when None).
    """
    path = Path(path)
    key = (sha256_file(path), list_file.format, dataset, split)
    if key not in _PARSED:  # parsed once per file content
        if len(_PARSED) >= 32:
            _PARSED.pop(next(iter(_PARSED)))
        _PARSED[key] = _parse_list(path, list_file.format, dataset, split)
    ids, rows = _PARSED[key]
    if list_file.rows is not None and rows != list_file.rows:
        raise DataFileError(f"{path}: {list_file.file_id} should have {list_file.rows} rows, got {rows}")
    return list(ids), rows


_PARSED: dict[tuple[str, str, str, str | None], tuple[tuple[str, ...], int]] = {}


def _parse_list(path: Path, fmt: str, dataset: str, split: str | None) -> tuple[tuple[str, ...], int]:
    if fmt == "ids":
        ids = read_id_list(path, dataset)
        rows = len(ids)
    elif fmt == "vggsound_split_csv":
        ids = [clip for clip, _ in read_vggsound_split_csv(path)]
        rows = len(ids)
    elif fmt == "negative_pairs":
        pairs = read_negative_pairs(path, dataset)
        ids = [i for pair in pairs for i in (pair.video, pair.audio)]
        rows = len(pairs)
    elif fmt == "vggsound_csv":
        table = read_vggsound_csv(path)
        ids = [clip for clip, _, row_split in table if split is None or row_split == split]
        rows = len(table)
    else:  # pragma: no cover - rejected when parsing the manifest
        raise DataFileError(f"{path}: unknown list format {fmt!r}")
    return tuple(ids), rows


@dataclass(frozen=True)
class _ReferenceIds:
    reference: LeakageReference
    ids: dict[str, frozenset[str]]
    sha256: dict[str, str]

    def union(self, files: Iterable[ListFile]) -> frozenset[str]:
        out: set[str] = set()
        for f in files:
            out |= self.ids[f.file_id]
        return frozenset(out)


def _load_reference(against: str, mirror: str | os.PathLike | None) -> _ReferenceIds:
    references = leakage_references()
    if against not in references:
        raise DataFileError(f"unknown leakage reference {against!r}; known: {', '.join(sorted(references))}")
    reference = references[against]
    ids, sha = {}, {}
    for fid, list_file in reference.files.items():
        path = resolve(list_file.upstream, mirror)
        ids[fid] = frozenset(read_list_file(list_file, path, reference.dataset)[0])
        sha[fid] = list_file.upstream.sha256 or sha256_file(path)
    return _ReferenceIds(reference, ids, sha)


# -------------------------------------------------------------------------------------------------- audit


@dataclass(frozen=True)
class AuditReport:
    """Overlap of one training list with the test lists of a leakage reference (data spec §5.3)."""

    list_name: str
    against: str  # "vggss" | "flickr"
    rows: int
    unique: int
    in_test: int  # rows whose id is in any test list of the reference (VGGSound test; Flickr test lists)
    overlaps: dict[str, int]  # reference file id -> rows inside it
    dropped: int  # rows `-noleak` removes (ids of any `drop` list)
    noleak_rows: int
    leaked_ids: tuple[str, ...] = field(repr=False)  # sorted distinct ids `-noleak` removes
    in_benchmark: int | None = None  # vggss: of which VGG-SS test clips
    benchmark_size: int | None = None  # vggss: 5,158
    same_video_other_segment: int | None = None  # vggss: kept rows from the YouTube video of a dropped id
    reference_sha256: dict[str, str] = field(default_factory=dict, repr=False)

    @property
    def leaks(self) -> bool:
        return self.dropped > 0

    @property
    def benchmark_fraction(self) -> float | None:
        """Share of the benchmark's clips inside the list (3,709 / 5,158 ≈ 0.72 for vggss_144k)."""
        if self.in_benchmark is None or not self.benchmark_size:
            return None
        return self.in_benchmark / self.benchmark_size

    def __rich__(self):
        return render_audit_table([self])


def audit(
    train: Sequence[str] | str | os.PathLike,
    against: str = "vggss",
    *,
    mirror: str | os.PathLike | None = None,
    name: str | None = None,
) -> AuditReport:
    """Audit training ids (or an id-list file) against the test lists of `against` ('vggss' | 'flickr').

    A path is parsed as a one-id-per-line list (first CSV column; `.wav`/`.png`/`.mp4` and directories
    stripped) and validated with the reference's id pattern.
    """
    reference = _load_reference(against, mirror)
    dataset = reference.reference.dataset
    if isinstance(train, (str, os.PathLike)):
        name = name or str(train)
        train = read_id_list(train, dataset)
    ids = list(train)
    test = reference.union(reference.reference.test)
    drop = reference.union(reference.reference.drop)
    kept = [i for i in ids if i not in drop]
    report = dict(
        list_name=name or "<ids>", against=against, rows=len(ids), unique=len(set(ids)),
        in_test=sum(1 for i in ids if i in test),
        overlaps={fid: sum(1 for i in ids if i in members) for fid, members in sorted(reference.ids.items())},
        dropped=len(ids) - len(kept), noleak_rows=len(kept), leaked_ids=tuple(sorted(set(ids) & drop)),
        reference_sha256=dict(sorted(reference.sha256.items())),
    )
    benchmark = reference.reference.benchmark
    if benchmark is not None:
        members = reference.ids[benchmark.file_id]
        report["in_benchmark"] = sum(1 for i in ids if i in members)
        report["benchmark_size"] = len(members)
    if dataset == "vggsound":
        videos = {source_video(i) for i in drop}
        report["same_video_other_segment"] = sum(1 for i in kept if source_video(i) in videos)
    return AuditReport(**report)


def render_audit_table(reports: Sequence[AuditReport]):
    """A rich Table with the §5.3 columns, one row per audited list."""
    from rich.table import Table

    table = Table(title="Train/test leakage (data spec §5.3; in test = VGGSound test split, resp. Flickr test lists)")
    for column in ("training list", "rows", "in test", "of which VGG-SS", "same video, other segment", "-noleak rows"):
        table.add_column(column, justify="left" if column == "training list" else "right")
    for r in reports:
        test = f"{r.in_test:,}"
        bench = "–" if r.in_benchmark is None else f"{r.in_benchmark:,} ({r.benchmark_fraction:.0%})"
        same = "–" if r.same_video_other_segment is None else f"{r.same_video_other_segment:,}"
        table.add_row(r.list_name, f"{r.rows:,}", test, bench, same, f"{r.noleak_rows:,}")
    return table


# ------------------------------------------------------------------------------------------ training sets


@dataclass(frozen=True)
class TrainingSet:
    """A training list as loaded: ids in list order (filtered for `-noleak`) and its audit."""

    name: str  # as requested, e.g. "vggsound-144k-noleak"
    spec: TrainingSpec
    noleak: bool
    ids: tuple[str, ...] = field(repr=False)
    audit: AuditReport = field(repr=False)  # of the full legacy list (also for `-noleak`)
    list_sha256: str = ""  # sha256 of the upstream list file (recorded for vggsound.csv)
    list_size: int = 0  # bytes
    list_rows: int = 0  # data rows of the file (all splits for vggsound.csv)
    file_sha256: dict[str, str] = field(default_factory=dict, repr=False)  # list + reference files

    @property
    def dataset(self) -> str:
        return self.spec.dataset

    @property
    def warning(self) -> str | None:
        """The §5.3 leakage warning for a legacy list, None for `-noleak` or a clean list."""
        return None if self.noleak else _warning_text(self.spec, self.audit)

    def __rich__(self):
        from rich.console import Group
        from rich.table import Table
        from rich.text import Text

        table = Table(title=f"Training set {self.name}", show_header=False)
        table.add_column("field")
        table.add_column("value")
        upstream = self.spec.list_file.upstream
        table.add_row("list", f"{upstream.file_id} ({upstream.repo}@{upstream.commit[:7]}:{upstream.path})")
        table.add_row("list sha256", self.list_sha256)
        table.add_row("list size / rows", f"{self.list_size:,} bytes / {self.list_rows:,} rows")
        if self.spec.split is not None:
            table.add_row("split", self.spec.split)
        dropped = f" ({self.audit.dropped:,} leaked ids dropped)" if self.noleak else ""
        table.add_row("ids", f"{len(self.ids):,}{dropped}")
        parts = [table, render_audit_table([self.audit])]
        if self.warning:
            parts.append(Text(self.warning, style="yellow"))
        return Group(*parts)


def _resolve_list(spec: TrainingSpec, mirror, list_path) -> Path:
    upstream = spec.list_file.upstream
    if list_path is not None:
        path = Path(list_path)
        if not path.is_file():
            raise DataFileError(f"{path}: no such file (list of training set {spec.name})")
        verify(upstream, path)
        return path
    try:
        return resolve(upstream, mirror)
    except DataFileError as exc:
        if upstream_dir(mirror) is None or upstream.sha256 is not None:
            raise
        raise DataFileError(f"{exc} (download {upstream.url} and pass its path, or unset the mirror)") from exc


def load_training_set(
    name: str, *, mirror: str | os.PathLike | None = None, list_path: str | os.PathLike | None = None
) -> TrainingSet:
    """Load a training set by name (`vggsound-144k`, `vggsound-144k-noleak`, ...): verified list → ids + audit.

    `list_path` supplies the list file directly (checked against its pin: sha256, else git blob id);
    otherwise it comes from the mirror (`AVSL_BENCH_UPSTREAM`) or the download cache.
    """
    spec, noleak = get_training_spec(name)
    path = _resolve_list(spec, mirror, list_path)
    ids, file_rows = read_list_file(spec.list_file, path, spec.dataset, split=spec.split)
    report = audit(ids, spec.leakage, mirror=mirror, name=spec.name)
    if noleak:
        drop = set(report.leaked_ids)
        ids = [i for i in ids if i not in drop]
        if spec.expected_noleak_rows is not None and len(ids) != spec.expected_noleak_rows:
            raise DataFileError(
                f"{spec.source}: expected {spec.expected_noleak_rows} rows in {name}, got {len(ids)}"
            )
    sha = sha256_file(path)
    files = {spec.list_file.file_id: sha, **report.reference_sha256}
    return TrainingSet(
        name=name, spec=spec, noleak=noleak, ids=tuple(ids), audit=report, list_sha256=sha,
        list_size=path.stat().st_size, list_rows=file_rows, file_sha256=files,
    )


def _warning_text(spec: TrainingSpec, r: AuditReport) -> str | None:
    if not r.leaks:
        return None
    variant = f"{spec.name}{NOLEAK_SUFFIX}"
    drop_files = [f.file_id for f in leakage_references()[spec.leakage].drop]
    drops = ", ".join(drop_files[:-1]) + (" and " if len(drop_files) > 1 else "") + drop_files[-1]
    if spec.dataset == "vggsound":
        found = f"{r.in_test:,} of its {r.rows:,} clips are in the VGGSound test split"
        if r.in_benchmark:
            found += f", {r.in_benchmark:,} of them VGG-SS test clips ({r.benchmark_fraction:.0%} of VGG-SS)"
        if r.dropped != r.in_test:
            found += f"; {r.dropped:,} clips are in {drops}"
        if r.same_video_other_segment:
            found += (
                f"; {r.same_video_other_segment:,} more come from the YouTube video of a test clip "
                "(other segment, kept)"
            )
    else:
        per_list = ", ".join(f"{fid}: {n:,}" for fid, n in r.overlaps.items())
        verb = "is a Flickr-SoundNet test id" if r.in_test == 1 else "are Flickr-SoundNet test ids"
        found = f"{r.in_test:,} of its {r.rows:,} ids {verb} ({per_list})"
    return (
        f"training list {spec.name} ({spec.list_file.file_id}) leaks test data: {found}. "
        f"Use {variant} ({r.noleak_rows:,} {'clips' if spec.dataset == 'vggsound' else 'ids'}: every id of "
        f"{drops} dropped, no top-up) and name the list with every result."
    )


def leak_warning(name: str, *, mirror: str | os.PathLike | None = None, list_path=None) -> str | None:
    """The warning to print when preparing training set `name`: the §5.3 counts and the `-noleak` variant.

    None for a `-noleak` name and for a list without leaked ids.
    """
    spec, noleak = get_training_spec(name)
    if noleak:
        return None
    return load_training_set(name, mirror=mirror, list_path=list_path).warning


def leakage_table(names: Sequence[str] | None = None, *, mirror: str | os.PathLike | None = None) -> list[AuditReport]:
    """Audit reports of the given training sets (default: every one pinned by sha256, i.e. all but `vggsound`,
    whose file is not in the offline mirror)."""
    if names is None:
        names = [n for n in training_names(noleak=False) if training_registry().get(n).list_file.upstream.sha256]
    return [load_training_set(n, mirror=mirror).audit for n in names]
