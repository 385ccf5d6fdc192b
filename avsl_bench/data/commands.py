"""The data commands as library functions: `prepare_benchmark`, `negatives_command`, `audit_command`.

The CLI (`avsl-bench prepare | negatives | audit`) parses options, calls one of these and prints what it returns;
everything here raises typed errors (`avsl_bench.errors`, `MergeError`, `SplitLeakError`). `prepare_benchmark`
prints only through the `console` it is given (progress bars, notes, the leakage warning) and may be called
without one.

    >>> report = prepare_benchmark("synthetic-tiny", "/data/avsl")      # doctest: +SKIP
    >>> [(s.split, s.counts["success"]) for s in report.splits]         # doctest: +SKIP
    [('train', 256), ('val', 64), ('val-neg', 64), ('test', 64), ('test-neg', 64)]
"""

from __future__ import annotations

import functools
import json
import os
import tarfile
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator

from ..errors import DataFileError, UnknownNameError, UsageError
from ..files import sha256_file, write_json_atomic
from .catalog import CatalogPlan, SplitSpec, plan_benchmark
from .cut import cuts_in_processes, resolve_cutter
from .manifest import MergeError, merge
from .plan import DEFAULT_SAMPLES_PER_SHARD, check_part, make_plan
from .prepare import RETRY_MODES, PrepareSummary, run_prepare
from .shards import read_stats
from .sources.base import Status
from .synthetic import BATCH_CLIPS

__all__ = [
    "AuditResult",
    "NegativesReport",
    "PrepareReport",
    "SplitReport",
    "audit_command",
    "check_synthetic_disjoint",
    "negatives_command",
    "parse_source",
    "prepare_benchmark",
]

DISJOINT_FILE = "disjoint_splits.json"
YOUTUBE_WORKERS = 4
SYNTHETIC_MIN_BATCH = 8  # rows per synthetic blob task, at least
FLICKR_BATCH = 4


# ------------------------------------------------------------------------------------------------ reports


@dataclass
class SplitReport:
    """One split of a prepare call: what this part did (`summary`) and, once merged, its `manifest.json`."""

    directory: str
    split: str
    split_dir: Path
    n_rows: int
    summary: PrepareSummary | None = None
    manifest: dict | None = None
    errors: dict[str, int] = field(default_factory=dict)  # "<status>:<reason>" -> rows, over the shards present

    @property
    def name(self) -> str:
        return f"{self.directory}/{self.split}"

    @property
    def counts(self) -> dict[str, int]:
        if self.manifest is not None:
            return dict(self.manifest["counts"])
        return dict(self.summary.counts) if self.summary is not None else {}


@dataclass
class PrepareReport:
    """What `prepare_benchmark` did, split by split."""

    name: str
    out: Path
    plan: CatalogPlan
    splits: list[SplitReport]
    merged: bool
    num_parts: int = 1
    part: int = 0
    normalized: Any = None  # benchmarks.normalize.NormalizedFile (VGG-SS)
    disjoint: dict | None = None  # synthetic: the §10 split check
    inputs: dict[str, str] = field(default_factory=dict)  # facts printed for the user (vggsound.csv, archive)

    @property
    def summaries(self) -> list[PrepareSummary]:
        return [s.summary for s in self.splits if s.summary is not None]

    @property
    def warnings(self) -> list[str]:
        return list(self.plan.warnings)

    @property
    def notes(self) -> list[str]:
        return list(self.plan.notes)

    def table(self):
        """A rich Table: rows per status and shards of every split, the most frequent errors as its caption."""
        from rich.table import Table

        where = "merged" if self.merged else f"part {self.part} of {self.num_parts}, not merged"
        table = Table(title=f"prepare {self.name} → {self.out / self.plan.directory} ({where})")
        table.add_column("split", no_wrap=True)
        table.add_column("rows", justify="right")
        for status in Status:
            table.add_column(status.value.replace("_", " "), justify="right")
        table.add_column("shards", justify="right")
        errors = []
        for s in self.splits:
            counts = s.counts
            if s.summary is not None:
                shards = f"{len(s.summary.shards)} ({len(s.summary.written)} new)"
            else:
                shards = f"{len(s.manifest['shards'])}" if s.manifest is not None else "–"
            table.add_row(s.split, f"{s.n_rows:,}", *(f"{counts.get(st.value, 0):,}" for st in Status), shards)
            top = sorted(s.errors.items(), key=lambda kv: (-kv[1], kv[0]))[:5]
            if top:
                errors.append(f"{s.split}: " + ", ".join(f"{reason} ×{n:,}" for reason, n in top))
        if errors:
            table.caption = "most frequent errors — " + "; ".join(errors)
        return table


# ------------------------------------------------------------------------------------------------- prepare


def parse_source(spec: str | None) -> tuple[str, Path | None]:
    """`youtube` → ("youtube", None); `mirror:PATH` → ("mirror", PATH); None means youtube."""
    if spec is None or spec == "youtube":
        return "youtube", None
    kind, sep, path = spec.partition(":")
    if kind == "mirror" and sep and path:
        return "mirror", Path(path).expanduser()
    raise UsageError(f"--source must be youtube or mirror:PATH, got {spec!r}")


def prepare_benchmark(
    name: str,
    out: str | os.PathLike,
    *,
    source_spec: str | None = None,
    workers: int | None = None,
    num_parts: int = 1,
    part: int = 0,
    limit: int | None = None,
    merge_only: bool = False,
    url_template: str | None = None,
    cookies: str | os.PathLike | None = None,
    proxy: str | None = None,
    ffmpeg: str | None = None,
    timeout: float = 180.0,
    cut_timeout: float = 60.0,
    cutter: str | None = None,
    retry_failed: str | None = None,
    audio_window: float | None = None,
    samples_per_shard: int = DEFAULT_SAMPLES_PER_SHARD,
    mirror_layout: str = "clip",
    upstream: str | os.PathLike | None = None,
    flickr_archive: str | os.PathLike | None = None,
    flickr_annotations: str | os.PathLike | None = None,
    list_path: str | os.PathLike | None = None,
    allow_mixed_ffmpeg: bool = False,
    progress: bool = True,
    console: Any = None,
) -> PrepareReport:
    """Prepare every split of `name` under `out` (this part's shards), then merge them when `num_parts == 1`.

    `merge_only` runs nothing: it checks and merges every split (`MergeError` lists incomplete shards; re-running
    their parts resumes them). `source_spec` is `youtube` (default) or `mirror:PATH` (VGGSound clips only);
    `flickr_archive` is the user's Flickr-SoundNet archive (directory or tar.gz; Flickr names only),
    `flickr_annotations` a directory of `<id>.xml` overriding the archive's. `limit` keeps the first N rows of each
    split in key order. `timeout` is the per-clip acquisition limit (seconds), `cut_timeout` the limit of each
    cut (seconds; VGGSound and Flickr media). `cutter` (`pyav` | `ffmpeg`, default `cut.resolve_cutter`: pyav
    unless $AVSL_BENCH_CUTTER says otherwise; resolved here, once) cuts VGGSound clips and Flickr videos and
    encodes the synthetic FLACs: `pyav` in-process (the ffmpeg binary only for files PyAV cannot cut), `ffmpeg`
    through the ffmpeg binary, as before PyAV. `retry_failed` (`transient` | `all`) redoes the failed rows of
    committed shards that another run may cure (`all`: every failed row; see `prepare.retryable_failure`); without
    it committed shards are skipped. See `catalog.plan_benchmark` for the names.
    """
    check_part(num_parts, part)
    if samples_per_shard < 1:
        raise UsageError(f"--samples-per-shard must be >= 1, got {samples_per_shard}")
    if workers is not None and workers < 1:
        raise UsageError(f"--workers must be >= 1, got {workers}")
    if timeout <= 0:
        raise UsageError(f"--timeout must be > 0 seconds, got {timeout:g}")
    if not cut_timeout > 0:
        raise UsageError(f"--cut-timeout must be > 0 seconds, got {cut_timeout:g}")
    if retry_failed is not None and retry_failed not in RETRY_MODES:
        raise UsageError(f"--retry-failed must be one of {', '.join(RETRY_MODES)}, got {retry_failed!r}")
    try:
        cutter = resolve_cutter(cutter)
    except ValueError as exc:
        raise UsageError(f"--{exc}" if str(exc).startswith("cutter") else str(exc)) from None
    source_kind, mirror_path = parse_source(source_spec)
    plan = plan_benchmark(name, source_kind=source_kind, audio_window=audio_window, upstream=upstream,
                          list_path=list_path, limit=limit)  # fmt: skip
    if plan.producer != "source" and source_spec is not None:
        what = "from --flickr-archive" if plan.producer == "flickr" else "generated (no network)"
        raise UsageError(f"--source does not apply to {name}: its media are {what}")
    if plan.producer != "flickr" and (flickr_archive is not None or flickr_annotations is not None):
        raise UsageError(f"--flickr-archive / --flickr-annotations apply to Flickr names only, not to {name}")
    out = Path(out)
    _announce(console, plan)
    report = PrepareReport(name, out, plan, [], merged=False, num_parts=num_parts, part=part)
    if plan.vggss_json is not None:
        report.normalized = _write_normalized(out / plan.directory, plan)

    if not merge_only:
        annotations, producer = _producer(plan, out, source_kind=source_kind, mirror_path=mirror_path,
                                          workers=workers, url_template=url_template, cookies=cookies, proxy=proxy,
                                          ffmpeg=ffmpeg, timeout=timeout, cut_timeout=cut_timeout, cutter=cutter,
                                          mirror_layout=mirror_layout, flickr_archive=flickr_archive,
                                          flickr_annotations=flickr_annotations)  # fmt: skip
        report.inputs.update(annotations.pop("_inputs", {}))
        for split in plan.splits:
            if console is not None:
                console.print(f"[bold]{plan.directory}/{split.split}[/]: {len(split.rows):,} rows")
            if plan.producer == "synthetic":  # one FLAC encoder run per task: large tasks, but >= 2 per worker
                rows_per_task = -(-min(len(split.rows), samples_per_shard) // (2 * producer["workers"]))
                producer["blob_batch_size"] = max(SYNTHETIC_MIN_BATCH, min(BATCH_CLIPS, rows_per_task))
            summary = run_prepare(
                split.rows, split_dir=out / plan.directory / split.split, cache_dir=out / "_cache",
                num_parts=num_parts, part=part, samples_per_shard=samples_per_shard, ffmpeg=ffmpeg,
                audio_window=plan.audio_window, input_sha256=split.input_sha256,
                annotations={**split.annotations, **annotations.get(split.split, {})}, progress=progress,
                console=console, retry_failed=retry_failed, cutter=cutter, **producer,
            )  # fmt: skip
            report.splits.append(SplitReport(plan.directory, split.split, summary.split_dir, len(split.rows), summary))
    else:
        report.splits = [SplitReport(plan.directory, s.split, out / plan.directory / s.split, len(s.rows))
                         for s in plan.splits]  # fmt: skip

    if merge_only or num_parts == 1:
        _merge_all(report, samples_per_shard, allow_mixed_ffmpeg)
        report.merged = True
        if plan.disjoint_check:
            report.disjoint = check_synthetic_disjoint(out / plan.directory, plan.split_names)
    for s in report.splits:
        s.errors = _errors(s.split_dir)
    return report


def _announce(console, plan: CatalogPlan) -> None:
    if console is None:
        return
    from rich.panel import Panel
    from rich.text import Text

    for note in plan.notes:
        console.print(f"[cyan]note:[/] {note}", highlight=False)
    for warning in plan.warnings:
        console.print(Panel(Text(warning, style="bold yellow"), title="TRAIN/TEST LEAKAGE", border_style="red"))


def _write_normalized(directory: Path, plan: CatalogPlan):
    from ..benchmarks.normalize import NORMALIZED_NAME, write_normalized
    from ..errors import ChecksumError

    directory.mkdir(parents=True, exist_ok=True)
    written = write_normalized(directory / NORMALIZED_NAME, raw=plan.vggss_json)
    expected = plan.splits[0].annotations.get(NORMALIZED_NAME)
    if expected is not None and written.sha256 != expected:  # pragma: no cover - same function, same bytes
        raise ChecksumError(f"{written.path}: sha256 {written.sha256} differs from the planned {expected}")
    return written


def _producer(plan: CatalogPlan, out: Path, *, source_kind, mirror_path, workers, url_template, cookies, proxy,
              ffmpeg, timeout, cut_timeout, cutter, mirror_layout, flickr_archive,
              flickr_annotations) -> tuple[dict, dict]:  # fmt: skip
    """(extra annotations per split name, run_prepare keyword arguments) of the plan's producer.

    `cutter` is resolved: synthetic FLACs are encoded by it (`pyav` in-process, `ffmpeg` by the binary), Flickr
    videos cut by it.
    """
    cpus = os.cpu_count() or 1
    if plan.producer == "synthetic":
        from .ffmpeg import find_ffmpeg
        from .synthetic import sample_blobs_batch

        batch = functools.partial(sample_blobs_batch, exe=find_ffmpeg(ffmpeg), flac_encoder=cutter)
        return {}, {"make_blobs_batch": batch, "blob_executor": "process", "workers": workers or cpus}
    if plan.producer == "flickr":
        return _flickr_producer(plan, out, workers=workers or cpus, ffmpeg=ffmpeg, cut_timeout=cut_timeout,
                                cutter=cutter, archive_path=flickr_archive, xml_dir=flickr_annotations)  # fmt: skip
    if source_kind == "mirror":
        from .sources.mirror import MirrorSource

        source = MirrorSource(mirror_path, layout=mirror_layout, index_cache_dir=out / "_cache" / "mirror-index")
        return {}, {"source": source, "workers": workers or cpus, "cut_timeout": cut_timeout}
    from .sources.youtube import DEFAULT_URL_TEMPLATE, YoutubeSource

    try:
        source = YoutubeSource(url_template=url_template or DEFAULT_URL_TEMPLATE, timeout=timeout, cookies=cookies,
                               proxy=proxy, ffmpeg=ffmpeg)  # fmt: skip
    except ValueError as exc:
        raise UsageError(str(exc)) from None
    return {}, {"source": source, "workers": workers or YOUTUBE_WORKERS, "cut_timeout": cut_timeout}


def _flickr_producer(plan: CatalogPlan, out: Path, *, workers: int, ffmpeg, cut_timeout, cutter: str, archive_path,
                     xml_dir) -> tuple[dict, dict]:  # fmt: skip
    """The Flickr producer's annotations and `FlickrBlobs`; `cutter` (resolved) cuts the archive's videos."""
    from .cut import cut_variant, cutter_info
    from .ffmpeg import ffmpeg_info, find_ffmpeg
    from .flickr import FlickrArchive, FlickrBlobs, flickr_boxes, xml_digest

    if archive_path is None:
        raise DataFileError(f"{plan.name}: Flickr-SoundNet media are not public (bring your own): pass "
                            "--flickr-archive DIR|FILE.tar.gz holding frames/<id>.jpg and audio/<id>.wav|mp3 "
                            "(or videos <id>.mp4)"
                            + (" and Annotations/<id>.xml" if plan.flickr_xml == "required" else ""))  # fmt: skip
    archive = FlickrArchive(archive_path)
    ids = sorted({cid for s in plan.splits for r in s.rows for cid in (r.video_id, r.audio_id)})
    media = archive.media(ids, out / "_cache" / "flickr")
    if xml_dir is not None:
        xml_dir = Path(xml_dir)
        if not xml_dir.is_dir():
            raise DataFileError(f"{xml_dir}: --flickr-annotations must be a directory of <id>.xml files")
        for cid in ids:
            entry = media.setdefault(cid, {})
            entry.pop("xml", None)
            if (xml_dir / f"{cid}.xml").is_file():
                entry["xml"] = str(xml_dir / f"{cid}.xml")
    frames = sorted({r.video_id for s in plan.splits for r in s.rows})
    with_xml = {cid: media[cid]["xml"] for cid in frames if "xml" in media.get(cid, {})}
    mode = plan.flickr_xml
    if mode == "required" and not with_xml:
        where = xml_dir if xml_dir is not None else f"{archive.path} (Annotations/<id>.xml)"
        raise DataFileError(f"no Flickr annotation XML for any of the {len(frames)} frames in {where}")
    for path in with_xml.values() if mode == "required" else ():
        flickr_boxes(path)  # a malformed XML fails here, before anything is written (spec §1.2)
    exe = find_ffmpeg(ffmpeg)
    # the cutter is part of the variant, as for VGGSound cuts: a cache must not serve another cutter's cuts
    variant = cut_variant({"audio_window": plan.audio_window, "ffmpeg": ffmpeg_info(exe)["sha256"],
                           "cutter": cutter_info(cutter)})  # fmt: skip
    maker = FlickrBlobs(media=media, exe=exe, audio_window=plan.audio_window, xml=mode, timeout=cut_timeout,
                        cutter=cutter, cut_dir=str(out / "_cache" / "flickr-cuts" / variant),
                        archive=str(archive.path))  # fmt: skip
    annotations: dict[str, Any] = {"_inputs": dict(archive.facts)}
    for split in plan.splits:
        extra = dict(archive.facts)
        if mode == "required":
            used = {r.video_id: with_xml[r.video_id] for r in split.rows if r.video_id in with_xml}
            extra.update({"flickr_xml.sha256": xml_digest(used), "flickr_xml.files": str(len(used))})
        annotations[split.split] = extra
    executor = "process" if cuts_in_processes(cutter) else "thread"
    return annotations, {"make_blobs_batch": maker, "blob_batch_size": FLICKR_BATCH, "blob_executor": executor,
                         "workers": workers, "cut_timeout": cut_timeout}  # fmt: skip


def _merge_all(report: PrepareReport, samples_per_shard: int, allow_mixed_ffmpeg: bool) -> None:
    """Merge every split; one MergeError naming each split's problems (incomplete shards first)."""
    problems: list[str] = []
    specs: dict[str, SplitSpec] = {s.split: s for s in report.plan.splits}
    for s in report.splits:
        spec = specs[s.split]
        expected = make_plan(spec.rows, samples_per_shard=samples_per_shard, input_sha256=spec.input_sha256)[0]
        try:
            s.manifest = merge(s.split_dir, allow_mixed_ffmpeg=allow_mixed_ffmpeg,
                               expected_plan_hash=expected.plan_hash)  # fmt: skip
        except MergeError as exc:
            if exc.incomplete:
                names = ", ".join(f"{i:06d}" for i in exc.incomplete)
                problems.append(f"{s.name}: incomplete shards {names}")
            problems.extend(f"{s.name}: {p}" for p in exc.problems)
    if problems:
        raise MergeError(problems)


def _errors(split_dir: Path) -> dict[str, int]:
    total: Counter[str] = Counter()
    for stats in sorted(split_dir.glob("*_stats.json")):
        try:
            total.update(read_stats(split_dir, int(stats.name[:6])).get("errors", {}))
        except (OSError, ValueError):
            continue
    return dict(total)


def iter_sample_meta(split_dir: str | os.PathLike) -> Iterator[dict]:
    """The `.json` record of every sample in a split directory's shards (shard order)."""
    for tar_path in sorted(Path(split_dir).glob("[0-9]*.tar")):
        with tarfile.open(tar_path) as tar:
            for member in tar:
                if member.name.endswith(".json"):
                    handle = tar.extractfile(member)
                    assert handle is not None
                    yield json.loads(handle.read())


def check_synthetic_disjoint(base: str | os.PathLike, splits) -> dict:
    """The §10 check on prepared synthetic shards: no RGB/PCM hash of val/test (negatives included) in train.

    Raises `SplitLeakError`; on success writes `<base>/disjoint_splits.json` and returns its content.
    """
    from .synthetic import assert_disjoint_splits, meta_hashes

    base = Path(base)
    hashes: dict[str, list[str]] = {}
    for split in splits:
        hashes[split] = [h for meta in iter_sample_meta(base / split) for h in meta_hashes(meta)]
    assert_disjoint_splits(hashes)
    result = {
        "check": "no raw-RGB or PCM sha256 of another split occurs in train (data spec §10)",
        "reference": "train",
        "samples": {split: len(values) // 2 for split, values in hashes.items()},
        "ok": True,
    }
    write_json_atomic(base / DISJOINT_FILE, result)
    return result


# ----------------------------------------------------------------------------------------------- negatives


@dataclass
class NegativesReport:
    """A negative list written by `negatives_command`: its files, Table-1 stats and provenance."""

    base: str
    kind: str  # generated | official
    files: Any  # benchmarks.negatives.NegativeListFiles
    table1: dict
    types: dict[str, int]
    notes: list[str] = field(default_factory=list)

    @property
    def sha256(self) -> str:
        return self.files.sha256


def negatives_command(
    base: str,
    out: str | os.PathLike,
    *,
    seed: int = 0,
    hard_fraction: float = 0.25,
    n: int | None = None,
    real_negatives: str | os.PathLike | None = None,
    upstream: str | os.PathLike | None = None,
    flickr_annotations: str | os.PathLike | None = None,
) -> NegativesReport:
    """Write a typed negative list `<out>.csv|.sha256|.stats.json` (data spec §6).

    `base` is `vggss-ext` / `flickr-ext` (SLAVC's official list, typed as `prepare` types it), a benchmark with
    classes (`vggss`, `synthetic`, ...: a new list by the §6.3 generator with `seed`, `n`, `hard_fraction`,
    `real_negatives`), or the directory of a prepared benchmark or split (positives read from its shards).
    """
    from ..benchmarks.spec import benchmark_registry

    bare = base.partition("@")[0]
    if bare in ("vggss-ext", "flickr-ext"):
        if real_negatives is not None or n is not None:
            raise UsageError(f"{bare}: the official list is written as is (--n / --real-negatives do not apply)")
        return _official_negatives(bare, out, upstream=upstream, flickr_annotations=flickr_annotations)
    if bare in benchmark_registry():
        positives, buckets, inputs, kind = _benchmark_positives(base, upstream, flickr_annotations)
    elif Path(base).is_dir():
        positives, buckets, inputs, kind = _prepared_positives(Path(base))
    else:
        names = ", ".join(benchmark_registry().names())
        raise UnknownNameError(f"{base!r} is neither a benchmark ({names}) nor a prepared benchmark directory")
    return _generated_negatives(base, out, positives, buckets, inputs, kind, seed=seed, n=n,
                                hard_fraction=hard_fraction, real_negatives=real_negatives)  # fmt: skip


def _benchmark_positives(base, upstream, flickr_annotations):
    from ..benchmarks.load import load_benchmark
    from ..benchmarks.negatives import frame_buckets, positives_from_benchmark

    data = load_benchmark(base, mirror=upstream, flickr_annotations=flickr_annotations)
    if data.spec.extended:
        raise UsageError(f"{base} already has negatives; generate new ones from its positives' benchmark "
                         f"(e.g. {data.spec.name.removesuffix('-ext')})")  # fmt: skip
    try:
        positives = positives_from_benchmark(data)
    except ValueError as exc:
        raise UsageError(f"{exc} (Flickr positives have no classes)") from None
    kind = "vggsound" if data.spec.loader == "vggss" else None
    return positives, frame_buckets(data), dict(data.file_sha256), kind


def _prepared_positives(path: Path):
    """PositiveRefs and size buckets of the positives in a prepared split directory (or a benchmark's `test/`)."""
    from ..benchmarks.gt import normalized_to_grid, rasterize, size_bucket
    from ..benchmarks.lists import VGGSOUND_ID
    from ..benchmarks.negatives import PositiveRef

    if list(path.glob("[0-9]*.tar")):
        split_dir = path  # a split directory
    elif list((path / "test").glob("[0-9]*.tar")):
        split_dir = path / "test"  # a benchmark directory: its test positives
    else:
        raise DataFileError(f"{path}: no prepared shards (NNNNNN.tar) here or in {path / 'test'}")
    positives, buckets, inputs = [], {}, {}
    manifest = split_dir / "manifest.json"
    if manifest.is_file():
        inputs[f"{split_dir.parent.name}/{split_dir.name}/manifest.json"] = sha256_file(manifest)
    for meta in iter_sample_meta(split_dir):
        if meta.get("negative"):
            continue
        key, label = meta["key"], meta.get("class")
        if not label:
            raise UsageError(f"{split_dir}: positive {key!r} has no class; the §6.3 generator needs classes")
        video = (meta.get("source") or {}).get("ytid") or key
        positives.append(PositiveRef(key, label, video))
        boxes = [normalized_to_grid(b) for b in meta.get("boxes") or []]
        rule = "flickr" if meta.get("gt_rule") == "flickr" else "vggss"
        buckets[key] = size_bucket(float(rasterize(boxes, rule).sum(dtype="float64"))) if boxes else "n/a"
    if not positives:
        raise DataFileError(f"{path}: no prepared positives found (expected NNNNNN.tar shards)")
    kind = "vggsound" if all(VGGSOUND_ID.match(p.id) for p in positives) else None
    return positives, buckets, inputs, kind


def _generated_negatives(base, out, positives, buckets, inputs, kind, *, seed, n, hard_fraction, real_negatives):
    from ..benchmarks.lists import normalize_id, read_id_list
    from ..benchmarks.negatives import generate_negatives, write_negative_list

    real = None
    inputs = dict(inputs)
    if real_negatives is not None:
        path = Path(real_negatives)
        if not path.is_file():
            raise DataFileError(f"{path}: no such file (--real-negatives)")
        if kind is not None:
            real = read_id_list(path, kind)
        else:
            real = [normalize_id(line) for line in path.read_text("utf-8").splitlines() if line.strip()]
        inputs["real_negatives_file"] = sha256_file(path)
    try:
        rows = generate_negatives(positives, seed=seed, n=n, hard_fraction=hard_fraction, real_negatives=real)
        files = write_negative_list(rows, out, positives=positives, seed=seed, n=n, hard_fraction=hard_fraction,
                                    input_sha256=inputs, buckets=buckets)  # fmt: skip
    except ValueError as exc:
        raise UsageError(str(exc)) from None
    return NegativesReport(base, "generated", files, files.stats["table1"], dict(Counter(r.negative_type for r in rows)))


def _official_negatives(base: str, out, *, upstream, flickr_annotations) -> NegativesReport:
    from ..benchmarks.lists import read_id_list
    from ..benchmarks.load import load_benchmark
    from ..benchmarks.negatives import (
        PositiveRef, official_negatives, positives_from_benchmark, reuse_stats, table1_stats, write_negative_list,
    )  # fmt: skip
    from ..benchmarks.spec import get_spec
    from ..benchmarks.upstream import resolve

    spec = get_spec(base)
    rows = official_negatives(base, mirror=upstream)
    notes = []
    if spec.loader == "vggss" or flickr_annotations is not None:
        data = load_benchmark(base, mirror=upstream, flickr_annotations=flickr_annotations)
        table1 = table1_stats(data)
        positives = positives_from_benchmark(data) if spec.loader == "vggss" else [
            PositiveRef(i, "", i) for i, p in zip(data.ids, data.positive) if p
        ]  # fmt: skip
    else:
        ids = read_id_list(resolve(spec.files[spec.positives], upstream), "flickr")
        positives = [PositiveRef(i, "", i) for i in ids]
        table1 = table1_stats(rows, positives=positives, buckets={})
        notes.append("size buckets need the Flickr boxes: pass --flickr-annotations DIR (shown as n/a)")
    inputs = {fid: f.sha256 for fid, f in spec.files.items() if f.sha256}
    files = write_negative_list(rows, out, positives=positives, seed=0, input_sha256=inputs)
    types = dict(Counter(r.negative_type for r in rows))
    stats = {
        "source": f"official SLAVC list of {spec.protocol}, typed as prepare types it (data spec §6.1)",
        "benchmark": spec.protocol,
        "negatives_file": spec.negatives,
        "input_sha256": dict(sorted(inputs.items())),
        "csv": files.csv.name,
        "csv_sha256": files.sha256,
        "types": dict(sorted(types.items())),
        "reuse": reuse_stats(rows),
        "table1": table1,
    }
    write_json_atomic(files.stats_file, stats)
    files = type(files)(files.csv, files.sha256_file, files.stats_file, files.sha256, stats)
    return NegativesReport(base, "official", files, table1, types, notes)


# --------------------------------------------------------------------------------------------------- audit


@dataclass
class AuditResult:
    """A leakage audit (`report`, a `benchmarks.training.AuditReport`) and the warning to print, if any."""

    report: Any
    warning: str | None = None


def audit_command(train_list: str, against: str = "vggss", *, upstream: str | os.PathLike | None = None) -> AuditResult:
    """Audit a training list (a training-set name, or a file of ids) against the test lists of `against`.

    For a `-noleak` name the ids actually in the set are audited (so its leaks are 0).
    """
    from ..benchmarks.training import audit, leakage_references, load_training_set, training_registry

    references = leakage_references()
    if against not in references:
        raise UsageError(f"--against must be one of {', '.join(sorted(references))}, got {against!r}")
    if train_list in training_registry():
        ts = load_training_set(train_list, mirror=upstream)
        if ts.spec.leakage != against:
            raise UsageError(f"{train_list} is a {ts.spec.dataset} list: audit it --against {ts.spec.leakage}")
        report = audit(list(ts.ids), against, mirror=upstream, name=train_list) if ts.noleak else ts.audit
        return AuditResult(report, ts.warning)
    path = Path(train_list)
    if not path.is_file():
        try:
            training_registry().get(train_list)
        except UnknownNameError as exc:
            raise UnknownNameError(f"{exc} (and no file {train_list!r} exists)") from None
    report = audit(path, against, mirror=upstream, name=str(path))
    warning = None
    if report.leaks:
        drops = ", ".join(f.file_id for f in references[against].drop)
        warning = (f"{path}: {report.dropped:,} of its {report.rows:,} ids are test ids ({drops}); drop them "
                   f"(as the -noleak lists do: {report.noleak_rows:,} rows left) before training")  # fmt: skip
    return AuditResult(report, warning)
