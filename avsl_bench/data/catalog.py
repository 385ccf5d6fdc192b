"""What `avsl-bench prepare NAME` prepares: name → splits → `PlanRow`s, and how their samples are produced.

Every preparable name resolves to a `CatalogPlan`: the output directory (`<out>/<directory>/<split>/`), one
`SplitSpec` per split (rows, input-list sha256, annotation checksums) and a *producer*:

* ``source``    VGGSound clips acquired by a media source (yt-dlp or a mirror), cut by ffmpeg (spec §3, §4, §7);
* ``synthetic`` rendered from the seed (spec §10), `data.synthetic.sample_blobs_batch`;
* ``flickr``    read from the user's Flickr-SoundNet archive (`data.flickr`).

| name | directory / splits | rows |
|---|---|---|
| `synthetic`, `synthetic-tiny` | `<size>/{train,val,val-neg,test,test-neg}` | `synthetic_annotations` |
| `vggss` | `vggss/test` | 5,158 positives from `vggss.normalized.json` (boxes, class, defects, gt_empty) |
| `vggss-ext` | `vggss/test` + `vggss/test-neg` | + SLAVC's 5,158 negatives typed real/easy/hard |
| `flickr` | `flickr/test` | SLAVC's 250 ids (boxes from the archive's XML at prepare time) |
| `flickr-ext` | `flickr/test` + `flickr/test-neg` | + SLAVC's 250 mismatched negatives |
| `vggss-semisup250` | `vggss-semisup250/test` | the 250 test clips of the semi-supervised VGG-SS split |
| training sets (`vggsound-144k`, `flickr-10k`, …, each also `-noleak`) | `<name>/train` | the verified list |
| `flickr-sup-train`, `vggss-semisup250-train` | `<name>/{train,val}` | L (4,250, `"labelled": true`) + val (500) |
| `flickr-144k-semisup-u`, `flickr-10k-semisup-u` | `<name>/train` | U: `-noleak` minus every flickr_sup_train id |

Semi-supervised label splits (baselines spec §3.7, `benchmarks.semisup`): fixed sha256 ranks of flickr_sup_train
(500 val, 4,250 L) and of the VGG-SS test list (250 test, 500 val, 4,250 L, 158 unused). `val` splits are for the
user's own analysis: the trainer refuses them (`train.data.check_training_data`). The VGG-SS unlabelled pool is
`vggsound-144k-noleak`, which holds no VGG-SS clip.

Views are not prepared on their own: `synthetic-ext` (`synthetic-tiny-ext`) is the scoring view
`synthetic/test` + `synthetic/test-neg` of the same five splits, `vggss-heard` / `vggss-unheard` are id filters over
`vggss/test`, `flickr-249` is an id filter over `flickr/test`; preparing a view prepares what it views.
Extended benchmarks share the directory of their base (spec §6.1: `<b>-ext` = `<b>/test` + `<b>/test-neg`), so
`vggss` and `vggss-ext` never cut a clip twice.

    >>> plan = plan_benchmark("synthetic-tiny")                 # doctest: +SKIP
    >>> [(s.split, len(s.rows)) for s in plan.splits]           # doctest: +SKIP
    [('train', 256), ('val', 64), ('val-neg', 64), ('test', 64), ('test-neg', 64)]
"""

from __future__ import annotations

import json
import os
from collections import Counter
from dataclasses import dataclass, field, replace
from typing import Any, Callable, Mapping, Sequence

from ..errors import DataFileError, UsageError
from ..files import canonical_json, sha256_bytes, sha256_file
from ..registry import Registry
from .plan import PlanRow

__all__ = [
    "AUDIO_WINDOWS",
    "CatalogPlan",
    "EXTENDED",
    "PRODUCERS",
    "SYNTHETIC_SPLITS",
    "SplitSpec",
    "VIEWS",
    "catalog_names",
    "plan_benchmark",
]

PRODUCERS = ("source", "synthetic", "flickr")
SYNTHETIC_SPLITS = ("train", "val", "val-neg", "test", "test-neg")
AUDIO_WINDOWS = (10.0, 3.0)
#: Names that are scoring views of another prepared benchmark (nothing of their own to prepare).
VIEWS = {
    "synthetic-ext": "synthetic",
    "synthetic-tiny-ext": "synthetic-tiny",
    "vggss-heard": "vggss",
    "vggss-unheard": "vggss",
    "flickr-249": "flickr",
}
#: Extended benchmarks: their base's `test` split plus a `test-neg` split, in the base's directory.
EXTENDED = {"vggss-ext": "vggss", "flickr-ext": "flickr"}
#: SLAVC's VGG-SS negatives as `prepare` types them (data spec §6.1).
VGGSS_EXT_TYPES = {"real": 379, "easy": 3594, "hard": 1185}
FLICKR_EXT_TYPES = {"mismatched": 250}
#: Unlabelled pools U of the semi-supervised Flickr setting (baselines spec §3.7): the `-noleak` list minus every
#: flickr_sup_train id (the labelled set L and its val split).
SEMISUP_UNLABELLED = {"flickr-144k-semisup-u": "flickr-144k-noleak", "flickr-10k-semisup-u": "flickr-10k-noleak"}


@dataclass(frozen=True)
class SplitSpec:
    """One split to prepare: `<out>/<directory>/<split>/` from `rows` (any order; the plan sorts them)."""

    directory: str
    split: str
    rows: tuple[PlanRow, ...] = field(repr=False)
    input_sha256: str
    annotations: Mapping[str, str] = field(default_factory=dict)
    n_total: int = 0  # rows before --limit


@dataclass
class CatalogPlan:
    """Everything `prepare` needs to know about one name (no file is written while building it)."""

    name: str  # as requested
    directory: str  # `<out>/<directory>/<split>`
    kind: str  # synthetic | test | training
    producer: str  # one of PRODUCERS
    splits: list[SplitSpec]
    audio_window: float = 10.0
    view_of: str | None = None
    notes: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    defects: Any = None  # benchmarks.normalize.DefectReport for VGG-SS
    vggss_json: str | None = None  # path of the raw vggss.json (the normalised copy is written beside the shards)
    training_set: Any = None  # benchmarks.training.TrainingSet for training sets
    flickr_xml: str = "none"  # flickr producer: required | none
    disjoint_check: bool = False  # synthetic: no val/test hash may occur in train (spec §10)

    @property
    def split_names(self) -> list[str]:
        return [s.split for s in self.splits]


# ------------------------------------------------------------------------------------------------- registry


@dataclass(frozen=True)
class _Options:
    source_kind: str
    audio_window: float | None
    upstream: str | os.PathLike | None
    list_path: str | os.PathLike | None


Builder = Callable[[str, _Options], CatalogPlan]


def _registry() -> Registry[Builder]:
    from ..benchmarks.training import training_names

    reg: Registry[Builder] = Registry("benchmark or training set")
    for size in ("synthetic", "synthetic-tiny"):
        reg.add(size, _synthetic)
    reg.add("vggss", _vggss)
    reg.add("vggss-ext", _vggss)
    reg.add("vggss-semisup250", _vggss_semisup)
    reg.add("vggss-semisup250-train", _vggss_semisup)
    reg.add("flickr", _flickr)
    reg.add("flickr-ext", _flickr)
    for name in training_names():
        reg.add(name, _training)
    for name in SEMISUP_UNLABELLED:
        reg.add(name, _semisup_unlabelled)
    for view in VIEWS:
        reg.add(view, _view)
    return reg


def catalog_names() -> list[str]:
    """Every name `prepare` accepts (benchmarks, their views, training sets with `-noleak` variants)."""
    return _registry().names()


def plan_benchmark(
    name: str,
    *,
    source_kind: str = "youtube",
    audio_window: float | None = None,
    upstream: str | os.PathLike | None = None,
    list_path: str | os.PathLike | None = None,
    limit: int | None = None,
) -> CatalogPlan:
    """The splits and rows of `name` (a benchmark, a view, or a training set).

    `source_kind` (youtube | mirror) is recorded in the rows of VGGSound clips; `audio_window` is None (the
    default: 10 s) or 10 / 3 (3 only for training sets); `list_path` is a user-supplied training list (required for
    `vggsound`: its `vggsound.csv`); `limit` keeps the first N rows of each split in key order (for trials).
    Raises `UnknownNameError` (with suggestions), `UsageError` or `DataFileError`.
    """
    base = name.partition("@")[0]
    if base != name:
        from ..benchmarks.spec import get_spec

        get_spec(name)  # checks the version
    if limit is not None and limit < 1:
        raise UsageError(f"--limit must be >= 1, got {limit}")
    if audio_window is not None and float(audio_window) not in AUDIO_WINDOWS:
        raise UsageError(f"--audio-window must be 10 or 3 (seconds), got {audio_window:g}")
    if source_kind not in ("youtube", "mirror"):
        raise UsageError(f"source kind must be youtube or mirror, got {source_kind!r}")
    builder = _registry().get(base)
    options = _Options(source_kind, None if audio_window is None else float(audio_window), upstream, list_path)
    plan = builder(base, options)
    if plan.kind != "training" and list_path is not None:
        raise UsageError(f"--list applies to training sets only, not to {name}")
    if plan.kind != "training" and options.audio_window not in (None, 10.0):
        raise UsageError(f"{name} is a test benchmark: it stores the whole 10 s clip (--audio-window 3 is for "
                         "training sets)")  # fmt: skip
    if limit is not None:
        plan.splits = [_limited(s, limit) for s in plan.splits]
        plan.notes.append(f"--limit {limit}: only the first {limit} rows (key order) of each split are prepared")
    return plan


def _limited(split: SplitSpec, limit: int) -> SplitSpec:
    rows = tuple(sorted(split.rows, key=lambda r: r.key)[:limit])
    return SplitSpec(split.directory, split.split, rows, split.input_sha256, split.annotations, split.n_total)


def _view(name: str, options: _Options) -> CatalogPlan:
    target = VIEWS[name]
    plan = _registry().get(target)(target, options)
    plan.name, plan.view_of = name, target
    what = {
        "synthetic": "the scoring view synthetic/test + synthetic/test-neg",
        "synthetic-tiny": "the scoring view synthetic-tiny/test + synthetic-tiny/test-neg",
        "vggss": "an id filter over vggss/test",
        "flickr": "an id filter over flickr/test (249 of the 250 ids)",
    }[target]
    plan.notes.insert(0, f"{name} is {what}: preparing {target}")
    return plan


# ------------------------------------------------------------------------------------------------ synthetic


def _synthetic(size: str, options: _Options) -> CatalogPlan:
    from ..benchmarks.spec import get_spec
    from ..benchmarks.synthetic import GENERATOR_VERSION, synthetic_annotations
    from .synthetic import plan_row

    if options.audio_window is not None:
        raise UsageError("synthetic clips are 3 s long and stored whole: --audio-window does not apply")
    seed = get_spec(size).seed
    splits = []
    for base in ("train", "val", "test"):
        rows = synthetic_annotations(size, base, seed, negatives=base != "train")
        for split in (base,) if base == "train" else (base, f"{base}-neg"):
            mine = sorted((r for r in rows if r["split"] == split), key=lambda r: r["key"])
            digest = sha256_bytes(canonical_json(mine).encode("ascii"))
            annotations = {"synthetic_rows": digest, "synthetic_generator": f"synthetic@{GENERATOR_VERSION}",
                           "synthetic_seed": str(seed)}  # fmt: skip
            splits.append(SplitSpec(size, split, tuple(plan_row(r) for r in mine), digest, annotations, len(mine)))
    return CatalogPlan(name=size, directory=size, kind="synthetic", producer="synthetic", splits=splits,
                       audio_window=3.0, disjoint_check=True)  # fmt: skip


# ---------------------------------------------------------------------------------------------------- VGG-SS


@dataclass(frozen=True)
class _VggssAnnotations:
    spec: Any  # BenchmarkSpec of `vggss`
    ids: list[str]  # vggss_test order
    by_id: dict[str, dict]  # normalised entries
    annotations: dict[str, str]
    raw: bytes = field(repr=False)
    json_path: str = ""


def _vggss_annotations(options: _Options) -> _VggssAnnotations:
    from ..benchmarks.lists import read_id_list
    from ..benchmarks.normalize import normalize_entries, normalized_bytes
    from ..benchmarks.spec import get_spec
    from ..benchmarks.upstream import resolve

    spec = get_spec("vggss")
    list_path = resolve(spec.files["vggss_test"], options.upstream)
    json_path = resolve(spec.files["vggss_json"], options.upstream)
    raw = json_path.read_bytes()
    try:
        entries = normalize_entries(json.loads(raw.decode("utf-8")))
    except (UnicodeDecodeError, ValueError) as exc:
        raise DataFileError(f"{json_path}: unreadable VGG-SS annotations: {exc}") from exc
    by_id = {e["file"]: e for e in entries}
    ids = read_id_list(list_path, "vggsound")
    unknown = [i for i in ids if i not in by_id]
    if unknown:
        raise DataFileError(f"{json_path}: no boxes for {len(unknown)} test ids, e.g. {unknown[0]}")
    annotations = {
        "vggss_test": sha256_file(list_path),
        "vggss_json": sha256_bytes(raw),
        "vggss.normalized.json": sha256_bytes(normalized_bytes(raw)),
    }
    return _VggssAnnotations(spec, ids, by_id, annotations, raw, str(json_path))


def _vggss_rows(va: _VggssAnnotations, ids: Sequence[str], *, benchmark: str, split: str, protocol: str,
                source_kind: str, extra: Mapping[str, Any] | None = None) -> tuple[PlanRow, ...]:  # fmt: skip
    by_id = va.by_id
    return tuple(
        PlanRow(
            key=i, video_id=i, audio_id=i, benchmark=benchmark, split=split, protocol=protocol,
            class_name=by_id[i]["class"], boxes=tuple(tuple(b) for b in by_id[i]["bbox"]), source_kind=source_kind,
            extra={"gt_rule": "vggss", "defects": by_id[i]["defects"], "gt_empty": by_id[i]["gt_empty"],
                   **(extra or {})},
        )  # fmt: skip
        for i in ids
    )


def _vggss(name: str, options: _Options) -> CatalogPlan:
    from ..benchmarks.normalize import defect_report

    va = _vggss_annotations(options)
    rows = _vggss_rows(va, va.ids, benchmark="vggss", split="test", protocol=va.spec.protocol,
                       source_kind=options.source_kind)  # fmt: skip
    splits = [SplitSpec("vggss", "test", rows, va.annotations["vggss_test"], va.annotations, len(rows))]
    if name == "vggss-ext":
        splits.append(_vggss_negatives(va.by_id, va.annotations, options))
    return CatalogPlan(name=name, directory="vggss", kind="test", producer="source", splits=splits,
                       defects=defect_report(va.raw), vggss_json=va.json_path)  # fmt: skip


def _vggss_semisup(name: str, options: _Options) -> CatalogPlan:
    """`vggss-semisup250` (its 250 test clips) and `vggss-semisup250-train` (4,250 labelled + 500 val); spec §3.7.

    Both are cut from VGGSound like `vggss`, with VGG-SS boxes; the 158 unused clips are prepared nowhere.
    """
    from ..benchmarks.semisup import VGGSS_SEMISUP250 as partition
    from ..benchmarks.spec import get_spec

    va = _vggss_annotations(options)
    parts = partition.split(va.ids, where=va.spec.files["vggss_test"].path)
    bench = get_spec("vggss-semisup250")
    if options.list_path is not None:
        raise UsageError(f"--list does not apply to {name}: its clips are a fixed split of the VGG-SS test list")
    if name == "vggss-semisup250":
        wanted = [("test", "test", {})]
        kind, protocol = "test", bench.protocol
    else:
        wanted = [("train", "labelled", {"labelled": True}), ("val", "val", {})]
        kind, protocol = "training", f"{name}@{bench.version}"
    splits, notes = [], []
    members = {part: set(ids) for part, ids in parts.items()}
    for split, part, extra in wanted:
        ids = [i for i in va.ids if i in members[part]]  # vggss_test order (the plan sorts by key)
        rows = _vggss_rows(va, ids, benchmark=name, split=split, protocol=protocol, source_kind=options.source_kind,
                           extra=extra)  # fmt: skip
        annotations = {**va.annotations, "semisup_split": partition.describe(part)}
        splits.append(SplitSpec(name, split, rows, va.annotations["vggss_test"], annotations, len(rows)))
        defective = sum(1 for i in ids if va.by_id[i]["defects"])
        empty = sum(1 for i in ids if va.by_id[i]["gt_empty"])
        notes.append(f"{name}/{split}: {len(ids):,} clips = {partition.describe(part)}; {defective} with §5.1 box "
                     f"defects, {empty} with an empty GT")  # fmt: skip
    if name == "vggss-semisup250":
        notes.append("separate track: 250 test clips of a fixed split, not comparable with 5,158-clip VGG-SS results")
    else:
        notes.append("split val is for your own analysis only: the trainer refuses it (no early stopping)")
    return CatalogPlan(name=name, directory=name, kind=kind, producer="source", splits=splits,
                       audio_window=options.audio_window or 10.0, notes=notes, vggss_json=va.json_path)  # fmt: skip


def _vggss_negatives(by_id: Mapping[str, dict], annotations: Mapping[str, str], options: _Options) -> SplitSpec:
    from ..benchmarks.negatives import official_negatives
    from ..benchmarks.spec import get_spec
    from ..benchmarks.upstream import resolve

    spec = get_spec("vggss-ext")
    neg_path = resolve(spec.files["vggss_ext_neg"], options.upstream)
    typed = official_negatives("vggss-ext", mirror=options.upstream)
    _check_types(neg_path, typed, VGGSS_EXT_TYPES)
    rows = []
    for r in typed:
        video, audio = by_id.get(r.video), by_id.get(r.audio)
        rows.append(PlanRow(
            key=r.key, video_id=r.video, audio_id=r.audio, benchmark="vggss", split="test-neg",
            protocol=spec.protocol, label="non-sounding", negative=True, negative_type=r.negative_type,
            class_name=video["class"] if video else None, audio_class=audio["class"] if audio else None,
            source_kind=options.source_kind,
            extra={"gt_rule": "vggss", "gt_empty": None, "frame_boxes": [list(b) for b in video["bbox"]] if video else []},
        ))  # fmt: skip
    digest = sha256_file(neg_path)
    return SplitSpec("vggss", "test-neg", tuple(rows), digest, {**annotations, "vggss_ext_neg": digest}, len(rows))


def _check_types(path, typed: Sequence, expected: Mapping[str, int]) -> None:
    got = dict(Counter(r.negative_type for r in typed))
    if got != dict(expected):
        raise DataFileError(f"{path}: negatives typed {got}, expected {dict(expected)} (data spec §6.1)")


# --------------------------------------------------------------------------------------------------- Flickr


def _flickr(name: str, options: _Options) -> CatalogPlan:
    from ..benchmarks.lists import read_id_list
    from ..benchmarks.negatives import official_negatives
    from ..benchmarks.spec import get_spec
    from ..benchmarks.upstream import resolve

    spec = get_spec("flickr")
    list_path = resolve(spec.files["flickr_test"], options.upstream)
    ids = read_id_list(list_path, "flickr")
    if len(set(ids)) != len(ids):
        raise DataFileError(f"{list_path}: duplicate Flickr ids")
    annotations = {"flickr_test": sha256_file(list_path)}
    rows = tuple(
        PlanRow(key=i, video_id=i, audio_id=i, benchmark="flickr", split="test", protocol=spec.protocol,
                source_kind="flickr", extra={"gt_rule": "flickr"})
        for i in ids
    )  # fmt: skip
    splits = [SplitSpec("flickr", "test", rows, annotations["flickr_test"], annotations, len(rows))]
    if name == "flickr-ext":
        ext = get_spec("flickr-ext")
        neg_path = resolve(ext.files["flickr_ext_neg"], options.upstream)
        typed = official_negatives("flickr-ext", mirror=options.upstream)
        _check_types(neg_path, typed, FLICKR_EXT_TYPES)
        neg_rows = tuple(
            PlanRow(key=r.key, video_id=r.video, audio_id=r.audio, benchmark="flickr", split="test-neg",
                    protocol=ext.protocol, label="non-sounding", negative=True, negative_type=r.negative_type,
                    source_kind="flickr", extra={"gt_rule": "flickr", "gt_empty": None})
            for r in typed
        )  # fmt: skip
        digest = sha256_file(neg_path)
        splits.append(SplitSpec("flickr", "test-neg", neg_rows, digest, {**annotations, "flickr_ext_neg": digest},
                                len(neg_rows)))  # fmt: skip
    return CatalogPlan(name=name, directory="flickr", kind="test", producer="flickr", splits=splits,
                       flickr_xml="required")  # fmt: skip


# ------------------------------------------------------------------------------------------------- training


def _training(name: str, options: _Options) -> CatalogPlan:
    from ..benchmarks.training import load_training_set

    ts = load_training_set(name, mirror=options.upstream, list_path=options.list_path)
    spec = ts.spec
    notes: list[str] = []
    ids = list(ts.ids)
    class_of: dict[str, str] = {}
    annotations = dict(ts.file_sha256)
    if spec.list_file.format == "vggsound_csv":
        from ..benchmarks.lists import read_vggsound_csv
        from ..benchmarks.upstream import resolve

        path = options.list_path or resolve(spec.list_file.upstream, options.upstream)
        class_of = {clip: label for clip, label, split in read_vggsound_csv(path) if split == spec.split}
        fid = spec.list_file.file_id
        annotations[f"{fid}.bytes"] = str(ts.list_size)
        annotations[f"{fid}.rows"] = str(ts.list_rows)
        notes.append(f"{spec.list_file.upstream.path}: git blob verified; sha256 {ts.list_sha256}, "
                     f"{ts.list_size:,} bytes, {ts.list_rows:,} rows ({len(ids):,} in split {spec.split!r})")
        unique = list(dict.fromkeys(ids))
        if len(unique) != len(ids):
            notes.append(f"{len(ids) - len(unique):,} duplicate clip ids in the list: the first of each is kept")
            ids = unique
    flickr = spec.dataset == "flickr"
    source_kind = "flickr" if flickr else options.source_kind
    protocol = f"{name}@{spec.version}"
    rows = tuple(
        PlanRow(key=i, video_id=i, audio_id=i, benchmark=name, split="train", protocol=protocol,
                class_name=class_of.get(i), source_kind=source_kind,
                extra={"gt_rule": None, "gt_empty": None})
        for i in ids
    )  # fmt: skip
    xml = "none"
    if name.startswith("flickr-sup-train"):
        splits = _flickr_semisup_splits(name, rows, ts, annotations, notes)
        xml = "required"  # labelled samples need their boxes: archive Annotations/ or --flickr-annotations
    else:
        splits = [SplitSpec(name, "train", rows, ts.list_sha256, annotations, len(rows))]
    plan = CatalogPlan(name=name, directory=name, kind="training", producer="flickr" if flickr else "source",
                       splits=splits, audio_window=options.audio_window or 10.0, notes=notes,
                       training_set=ts, flickr_xml=xml)  # fmt: skip
    if ts.warning:
        plan.warnings.append(ts.warning)
    return plan


def _flickr_semisup_splits(name: str, rows: Sequence[PlanRow], ts: Any, annotations: Mapping[str, str],
                           notes: list[str]) -> list[SplitSpec]:  # fmt: skip
    """flickr_sup_train → `train` (the 4,250 labelled ids, `"labelled": true`) + `val` (500); spec §3.7."""
    from ..benchmarks.semisup import FLICKR_SEMISUP as partition

    parts = partition.split([r.key for r in rows], where=ts.spec.list_file.upstream.path)
    splits = []
    for split, part, extra in (("train", "labelled", {"labelled": True}), ("val", "val", {})):
        members = set(parts[part])
        mine = tuple(replace(r, split=split, extra={**r.extra, **extra})
                     for r in rows if r.key in members)  # fmt: skip
        split_annotations = {**annotations, "semisup_split": partition.describe(part)}
        splits.append(SplitSpec(name, split, mine, ts.list_sha256, split_annotations, len(mine)))
        notes.append(f"{name}/{split}: {len(mine):,} ids = {partition.describe(part)}")
    notes.append("split val is for your own analysis only: the trainer refuses it (no early stopping); the "
                 "unlabelled pool is flickr-144k-semisup-u or flickr-10k-semisup-u")  # fmt: skip
    return splits


def _semisup_unlabelled(name: str, options: _Options) -> CatalogPlan:
    """U of the semi-supervised Flickr setting: the `-noleak` list minus every flickr_sup_train id (L and val)."""
    from ..benchmarks.training import load_training_set

    base = SEMISUP_UNLABELLED[name]
    plan = _training(base, options)
    sup = load_training_set("flickr-sup-train", mirror=options.upstream)
    labelled = set(sup.ids)
    (split,) = plan.splits
    protocol = f"{name}@{plan.training_set.spec.version}"
    rows = tuple(replace(r, benchmark=name, protocol=protocol, extra={**r.extra, "labelled": False})
                 for r in split.rows if r.key not in labelled)  # fmt: skip
    annotations = {**split.annotations, **sup.file_sha256}
    plan.splits = [SplitSpec(name, "train", rows, split.input_sha256, annotations, len(rows))]
    plan.name, plan.directory = name, name
    plan.notes.append(f"{name} = {base} ({len(split.rows):,} ids) minus the {len(split.rows) - len(rows):,} ids of "
                      f"flickr_sup_train (labelled set and val, baselines spec §3.7): {len(rows):,} unlabelled ids")
    return plan
