"""The prepare engine: plan, then per shard (a) acquire clips, (b) cut them and commit the shard (spec §7-§9).

Resumable (shards with a stats file are skipped, `.tmp` leftovers deleted) and partable (`num_parts`/`part`).
With `retry_failed`, a committed shard whose failed rows include retryable ones (`retryable_failure`) is redone
for those rows only: its other rows and their samples are kept as committed, and the shard is committed again.
Acquisition runs ahead in a thread pool over all clips of the part; cutting runs per shard in a second pool, created
once per run (`cut.cut_pool`), each worker cutting one clip at a time with the `cutter` (`pyav`: processes cutting
in-process, an ffmpeg process only for a file PyAV cannot cut; `ffmpeg`: threads running one process per clip). Cuts
are cached per clip id (`<cache>/cuts/<variant>/`, the variant hashing the cut facts, the ffmpeg build and the
cutter with its PyAV/libav* versions), so a negative `<video>__neg__<audio>` copies the frame of its video clip and
the audio of its audio clip. The cutter is recorded beside the ffmpeg build (part files, shard stats;
`manifest.merge` adds it to manifest.json and refuses mixed ones).
"""

from __future__ import annotations

import functools
import json
import os
import platform
import shutil
import socket
import threading
import time
from concurrent.futures import CancelledError, Executor, Future, ProcessPoolExecutor, ThreadPoolExecutor, as_completed
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

from ..errors import AvslBenchError, DataFileError, UsageError
from ..files import canonical_json, fsync_dir, sha256_bytes, write_json_atomic
from .cut import (
    CLIP_LENGTH, FRAME_TIME, SAMPLE_RATE, CutError, CutResult, audio_window_bounds, cut_outcome, cut_pool,
    cut_variant, cutter_info, cutter_name, resolve_cutter,
)  # fmt: skip
from .ffmpeg import ffmpeg_info, find_ffmpeg
from .manifest import environment_versions, toolkit_info
from .plan import DEFAULT_SAMPLES_PER_SHARD, Plan, PlanRow, clip_ref, make_plan, write_part_file
from .shards import (
    MANIFEST_SCHEMA, SampleBlobs, clean_leftovers, commit_shard, error_reason, read_shard_samples, read_stats,
    shard_done, shard_paths,
)  # fmt: skip
from .sources.base import AcquireResult, Source, Status

__all__ = [
    "AcquisitionAborted", "PlanRow", "PrepareSummary", "RETRY_MODES", "retryable_failure", "run_prepare", "sample_meta",
]  # fmt: skip

#: Consecutive "bot check" failures after which a part stops (spec §7).
BOT_CHECK_LIMIT = 20
#: `retry_failed` values: `transient` redoes failures another run may cure, `all` every failed row.
RETRY_MODES = ("transient", "all")
DEFAULT_CUT_TIMEOUT = 60.0
#: `failed_download` reasons a re-run would repeat: the source answered, and its answer does not change.
_PERMANENT_DOWNLOAD_REASONS = frozenset({"no_format", "unsupported_url"})
#: `failed_cut` reasons a re-run may not repeat; the others follow from the media.
_TRANSIENT_CUT_REASONS = frozenset({"timeout"})

MakeBlobs = Callable[[PlanRow], SampleBlobs]
MakeBlobsBatch = Callable[[Sequence[PlanRow]], Sequence[SampleBlobs]]


class AcquisitionAborted(AvslBenchError):
    """Acquisition was stopped (e.g. 20 consecutive bot checks); re-running the part resumes it."""


def retryable_failure(status: str, error: str | None, mode: str = "transient") -> bool:
    """Whether `retry_failed=mode` redoes a manifest row recorded with `status` and `error` ("<reason>: ...").

    `transient`: `failed_download` (connection, DNS, 429/5xx, timeout, bot check, corrupt or crashed download;
    not `no_format` / `unsupported_url`) and `failed_cut` timeouts. `unavailable` (private, removed, terminated,
    403/404/410, not in the mirror, missing from the archive) and the other cut failures are permanent: only
    `all` redoes them.

    >>> retryable_failure("failed_download", "read_timeout: timed out"), retryable_failure("unavailable", "private: x")
    (True, False)
    >>> retryable_failure("unavailable", "private: x", "all"), retryable_failure("success", None, "all")
    (True, False)
    """
    if mode not in RETRY_MODES:
        raise UsageError(f"--retry-failed must be one of {', '.join(RETRY_MODES)}, got {mode!r}")
    if status == Status.SUCCESS.value:
        return False
    if mode == "all":
        return True
    reason = error_reason(error)
    if status == Status.FAILED_DOWNLOAD.value:
        return reason not in _PERMANENT_DOWNLOAD_REASONS
    if status == Status.FAILED_CUT.value:
        return reason in _TRANSIENT_CUT_REASONS
    return False


@dataclass
class PrepareSummary:
    """What one `run_prepare` call did for its part (counts include shards skipped as already done)."""

    split_dir: Path
    part: int
    num_parts: int
    plan_hash: str
    shards: list[int]
    written: list[int] = field(default_factory=list)
    skipped: list[int] = field(default_factory=list)
    counts: dict[str, int] = field(default_factory=lambda: {s.value: 0 for s in Status})
    errors: dict[str, int] = field(default_factory=dict)
    elapsed_s: float = 0.0
    retried: dict[int, int] = field(default_factory=dict)  # shard -> failed rows redone (`retry_failed`)

    def add_stats(self, stats: Mapping[str, Any]) -> None:
        for status, n in stats.get("counts", {}).items():
            self.counts[status] = self.counts.get(status, 0) + int(n)
        for reason, n in stats.get("errors", {}).items():
            self.errors[reason] = self.errors.get(reason, 0) + int(n)

    def table(self):
        """A rich Table of counts per status and the most frequent errors (the CLI prints it)."""
        from rich.table import Table

        title = f"part {self.part} of {self.num_parts}: {len(self.written)} shards written, {len(self.skipped)} skipped"
        if self.retried:
            title += f", {sum(self.retried.values())} failed rows retried"
        table = Table(title=title)
        table.add_column("status")
        table.add_column("rows", justify="right")
        for status, n in self.counts.items():
            table.add_row(status, str(n))
        for reason, n in sorted(self.errors.items(), key=lambda kv: (-kv[1], kv[0]))[:10]:
            table.add_row(f"  {reason}", str(n), style="dim")
        return table


# --------------------------------------------------------------------------- sample records


def sample_meta(row: PlanRow, video: CutResult, audio: CutResult) -> dict[str, Any]:
    """The sample JSON of spec §8 from a row, the cut of its video clip and the cut of its audio clip."""
    ref = row.video_ref
    meta: dict[str, Any] = {
        "key": row.key,
        "benchmark": row.benchmark,
        "split": row.split,
        "protocol": row.protocol,
        "video_id": row.video_id,
        "audio_id": row.audio_id,
        "source": {"kind": row.source_kind, "ytid": ref.ytid, "start": ref.start},
        "class": row.class_name,
        "audio_class": _audio_class(row),
        "label": row.label,
        "negative": row.negative,
        "negative_type": row.negative_type,
        "boxes": [] if row.negative else [list(map(float, b)) for b in row.boxes],
        "box_group": None,
        "gt_rule": None,
        "defects": [],
        "gt_empty": None if row.negative else len(row.boxes) == 0,
        "frame": {"t": video.frame_time, "width": video.width, "height": video.height, "sha256": video.jpg_sha256},
        "audio": {
            "window": list(audio.audio_window),
            "sample_rate": audio.sample_rate,
            "samples": audio.samples,
            "sha256": audio.flac_sha256,
        },
    }
    meta.update(row.extra)
    if row.negative:
        meta.setdefault("frame_boxes", [])
    return meta


def _audio_class(row: PlanRow) -> str | None:
    """A positive's audio class defaults to its class; a negative's must be given."""
    return row.audio_class if (row.audio_class is not None or row.negative) else row.class_name


def _base_row(row: PlanRow) -> dict[str, Any]:
    ref = row.video_ref
    real_source = row.source_kind != "synthetic"
    return {
        "key": row.key, "video_id": row.video_id, "audio_id": row.audio_id, "attempts": 0,
        "source_kind": row.source_kind, "ytid": ref.ytid if real_source else None,
        "start": ref.start if real_source else None, "label": row.label, "negative": row.negative,
        "negative_type": row.negative_type, "class": row.class_name, "audio_class": _audio_class(row),
    }  # fmt: skip


def _row_from_blobs(row: PlanRow, blobs: SampleBlobs) -> dict[str, Any]:
    frame, audio = blobs.meta.get("frame") or {}, blobs.meta.get("audio") or {}
    window = audio.get("window") or [None, None]
    return _base_row(row) | {
        "status": Status.SUCCESS.value, "error": None,
        "frame_width": frame.get("width"), "frame_height": frame.get("height"),
        "audio_samples": audio.get("samples"), "audio_window_start": window[0], "audio_window_end": window[1],
        "clip_duration": blobs.meta.get("clip_duration"),
    }  # fmt: skip


# --------------------------------------------------------------------------- cut cache


class _CutCache:
    """Committed cuts per clip id: `<id>.jpg`, `<id>.flac`, then `<id>.json` (written last, checked on read)."""

    def __init__(self, root: Path | None) -> None:
        self.root = root
        if root is not None:
            root.mkdir(parents=True, exist_ok=True)

    def get(self, clip_id: str) -> CutResult | None:
        if self.root is None or not (self.root / f"{clip_id}.json").is_file():
            return None
        try:
            facts = json.loads((self.root / f"{clip_id}.json").read_text("utf-8"))
            jpg, flac = (self.root / f"{clip_id}.jpg").read_bytes(), (self.root / f"{clip_id}.flac").read_bytes()
        except (OSError, ValueError):
            return None
        if sha256_bytes(jpg) != facts.get("jpg_sha256") or sha256_bytes(flac) != facts.get("flac_sha256"):
            return None
        facts["audio_window"] = tuple(facts["audio_window"])
        return CutResult(jpg=jpg, flac=flac, **facts)

    def put(self, clip_id: str, cut: CutResult) -> None:
        """Store a cut (no fsync: a torn entry fails its digest check on `get` and is simply re-cut)."""
        if self.root is None:
            return
        facts = {
            "width": cut.width, "height": cut.height, "samples": cut.samples, "sample_rate": cut.sample_rate,
            "frame_time": cut.frame_time, "audio_window": list(cut.audio_window),
            "clip_duration": cut.clip_duration, "jpg_sha256": cut.jpg_sha256, "flac_sha256": cut.flac_sha256,
        }  # fmt: skip
        for suffix, data in ((".jpg", cut.jpg), (".flac", cut.flac), (".json", canonical_json(facts).encode())):
            target = self.root / f"{clip_id}{suffix}"
            tmp = target.with_name(f".{target.name}.{threading.get_ident()}.tmp")
            tmp.write_bytes(data)
            os.replace(tmp, target)


# --------------------------------------------------------------------------- engine


@dataclass
class _Run:
    """What the stages of one `run_prepare` call share."""

    plan: Plan
    rows: list[PlanRow]  # sorted by key
    pending: list[int]
    split_dir: Path
    shard_stats: dict[str, Any]
    summary: PrepareSummary
    bars: "_Progress"
    exe: str
    workers: int
    # source mode
    source: Source | None = None
    clips_dir: Path | None = None
    cut_cache: _CutCache | None = None
    cut_workers: int = 1
    full_length: bool = False
    frame_time: float = FRAME_TIME
    audio_window: float = CLIP_LENGTH
    cut_timeout: float = DEFAULT_CUT_TIMEOUT
    cut_tmp: Path | None = None
    cutter: str = "pyav"
    # blob mode
    make_blobs_batch: MakeBlobsBatch | None = None
    blob_batch_size: int = 1
    blob_executor: str = "thread"
    # retry_failed: committed shard -> keys of its rows to redo
    redo: dict[int, frozenset[str]] = field(default_factory=dict)

    def shard_rows(self, shard: int) -> list[PlanRow]:
        return [self.rows[i] for i in self.plan.shard_range(shard)]

    def work_rows(self, shard: int) -> list[PlanRow]:
        """The rows of a pending shard to produce now: all of them, or those retried in a committed shard."""
        rows = self.shard_rows(shard)
        return rows if shard not in self.redo else [r for r in rows if r.key in self.redo[shard]]

    def commit(self, shard: int, samples: list[SampleBlobs], manifest_rows: list[dict], durations: dict) -> None:
        if shard in self.redo:  # add what is kept of the committed shard, which stops counting as done first
            paths = shard_paths(self.split_dir, shard)
            kept_rows = [r for r in _read_shard_rows(self.split_dir, shard) if r["key"] not in self.redo[shard]]
            expected = read_stats(self.split_dir, shard)["tar_sha256"]
            success = any(r["status"] == Status.SUCCESS.value for r in kept_rows)
            kept = read_shard_samples(paths.tar, expected) if success else []
            paths.stats.unlink()
            fsync_dir(self.split_dir)
            samples, manifest_rows = [*kept, *samples], [*kept_rows, *manifest_rows]
            self.summary.retried[shard] = len(self.redo[shard])
        extra = {**self.shard_stats, "durations": durations}
        stats = commit_shard(self.split_dir, shard, samples, manifest_rows, extra)
        self.summary.written.append(shard)
        self.summary.add_stats(stats)
        self.bars.advance("shards")


def run_prepare(
    rows: Sequence[PlanRow],
    *,
    out_dir: str | os.PathLike | None = None,
    split_dir: str | os.PathLike | None = None,
    source: Source | None = None,
    make_blobs: MakeBlobs | None = None,
    make_blobs_batch: MakeBlobsBatch | None = None,
    blob_batch_size: int = 64,
    blob_executor: str = "thread",
    cache_dir: str | os.PathLike | None = None,
    workers: int = 4,
    cut_workers: int | None = None,
    num_parts: int = 1,
    part: int = 0,
    samples_per_shard: int = DEFAULT_SAMPLES_PER_SHARD,
    ffmpeg: str | None = None,
    frame_time: float = FRAME_TIME,
    audio_window: float = CLIP_LENGTH,
    cut_timeout: float | None = None,
    cutter: str | None = None,
    retry_failed: str | None = None,
    cache_cuts: bool = True,
    input_sha256: str | None = None,
    annotations: Mapping[str, str] | None = None,
    progress: bool = True,
    console: Any = None,
) -> PrepareSummary:
    """Prepare this part's shards of one split (skipping committed ones); return its summary.

    Exactly one of `source` (real clips: acquire into `<cache>/clips`, cut with `cutter`), `make_blobs` (callable
    row -> SampleBlobs, e.g. the synthetic generator) and `make_blobs_batch` (rows -> SampleBlobs in order, called
    with up to `blob_batch_size` rows) is given; with `blob_executor="process"` the callable is handed to each pool
    process once (so it must pickle where processes are not forked).
    `split_dir` defaults to `<out_dir>/<benchmark>/<split>`, `cache_dir` to `<out_dir>/_cache`.
    `workers` sizes the acquisition (or blob) pool, `cut_workers` (default: CPU count) the cut pool (`cut.cut_pool`:
    spawned processes for `pyav`, so a script calling this needs the `if __name__ == "__main__":` guard).
    A source with `needs_start_offset` (or `layout == "full"`) serves whole videos: the clip start is added to
    both seeks. A source with `acquire_many` (mirror) is called once with every clip of the part.
    `input_sha256` (digest of the input list) and `annotations` (name -> sha256) are recorded for the manifest.
    `cutter` (`pyav` | `ffmpeg`, default `cut.resolve_cutter`; resolved here, then passed down resolved) cuts in
    source mode; a blob producer applies it itself (given the same resolved name), and passes it here to be
    recorded (part file, shard stats, run record) beside the ffmpeg build.
    `cut_timeout` (seconds, default 60 in source mode) bounds each cut; a blob producer applies its own,
    and passes it here to be recorded. It goes to the part file, hence `manifest.json` (`params.cut_timeout_s`),
    to every shard's stats and to the run record.
    `retry_failed` (`transient` | `all`, see `retryable_failure`) redoes the matching failed rows of committed
    shards; without it a committed shard is skipped whatever its failures.
    """
    if sum(x is not None for x in (source, make_blobs, make_blobs_batch)) != 1:
        raise UsageError("run_prepare needs exactly one of `source`, `make_blobs` and `make_blobs_batch`")
    if blob_batch_size < 1 or blob_executor not in ("thread", "process"):
        raise UsageError(f"need blob_batch_size >= 1 and blob_executor thread|process, got {blob_batch_size}, "
                         f"{blob_executor!r}")
    if not rows:
        raise UsageError("no input rows to prepare")
    if retry_failed is not None and retry_failed not in RETRY_MODES:
        raise UsageError(f"--retry-failed must be one of {', '.join(RETRY_MODES)}, got {retry_failed!r}")
    if cut_timeout is not None and not cut_timeout > 0:
        raise UsageError(f"--cut-timeout must be > 0 seconds, got {cut_timeout:g}")
    if cut_timeout is None and source is not None:
        cut_timeout = DEFAULT_CUT_TIMEOUT
    params = {"cut_timeout_s": cut_timeout}
    try:
        cutter = resolve_cutter(cutter)
    except ValueError as exc:
        raise UsageError(str(exc)) from None
    cutter_rec = cutter_info(cutter)
    audio_window_bounds(audio_window, frame_time)  # validates
    started, t0 = datetime.now(timezone.utc), time.perf_counter()
    ident = _identity(rows)
    split_path = _split_dir(out_dir, split_dir, ident)
    cache_root = Path(cache_dir) if cache_dir is not None else _default_cache(out_dir, split_path)
    exe = find_ffmpeg(ffmpeg)
    info = ffmpeg_info(exe)
    ffmpeg_build = {"sha256": info["sha256"], "version_line": info["version_line"]}
    plan, ordered = make_plan(rows, samples_per_shard=samples_per_shard, input_sha256=input_sha256)
    shards = plan.part_shards(num_parts, part)

    split_path.mkdir(parents=True, exist_ok=True)
    clean_leftovers(split_path)
    full_length = bool(getattr(source, "needs_start_offset", getattr(source, "layout", "clip") == "full"))
    cut_facts = {"frame_time": frame_time, "audio_window": audio_window, "sample_rate": SAMPLE_RATE,
                 "full_length": full_length}  # fmt: skip
    write_part_file(split_path, plan, part=part, num_parts=num_parts, extra={
        **ident, "toolkit": toolkit_info(), "versions": environment_versions(), "ffmpeg": ffmpeg_build,
        "cutter": cutter_rec, "annotations": dict(sorted((annotations or {}).items())),
        "cut": cut_facts if source is not None else None,
        "source": getattr(source, "name", None) if source is not None else "make_blobs", "params": params,
    })  # fmt: skip

    summary = PrepareSummary(split_path, part, num_parts, plan.plan_hash, shards)
    pending, redo = [], {}
    for s in shards:
        if not shard_done(split_path, s):
            pending.append(s)
            continue
        retry = _rows_to_retry(split_path, s, plan.plan_hash, retry_failed) if retry_failed else frozenset()
        if retry:
            before = read_stats(split_path, s).get("cutter")
            if before and before != cutter_rec:  # kept rows would be another cutter's under this cutter's stats
                raise UsageError(f"shard {s:06d} was cut by {cutter_name(before)}: retry its failed rows with "
                                 f"--cutter {before['cutter']} (and that PyAV), not {cutter_name(cutter_rec)}")
            redo[s] = retry
            pending.append(s)
        else:
            summary.skipped.append(s)
            summary.add_stats(read_stats(split_path, s))
    shard_stats = {"plan_hash": plan.plan_hash, "part": part, "num_parts": num_parts, "ffmpeg": ffmpeg_build,
                   "cutter": cutter_rec, "params": params, **ident}  # fmt: skip
    # the cutter is part of the variant: the cutters agree on H.264/AAC, but a cache must not vouch for another
    variant = cut_variant({**cut_facts, "ffmpeg": info["sha256"], "cutter": cutter_rec})

    with _Progress(progress, console) as bars:
        bars.add("shards", len(shards), completed=len(summary.skipped))
        run = _Run(plan, ordered, pending, split_path, shard_stats, summary, bars, exe, max(1, workers), redo=redo)
        if source is not None:
            run.source, run.clips_dir = source, cache_root / "clips"
            run.cut_cache = _CutCache(cache_root / "cuts" / variant if cache_cuts else None)
            run.cut_workers = max(1, cut_workers or os.cpu_count() or 1)
            run.full_length, run.frame_time, run.audio_window = full_length, frame_time, audio_window
            run.cut_timeout, run.cutter = float(cut_timeout), cutter
            # private to this split and part; whatever a killed run left there is removed here
            run.cut_tmp = cache_root / "tmp" / f"{ident['benchmark']}-{ident['split']}-part-{part}-of-{num_parts}"
            shutil.rmtree(run.cut_tmp, ignore_errors=True)
            run.cut_tmp.mkdir(parents=True, exist_ok=True)
            try:
                _run_source(run)
            finally:
                shutil.rmtree(run.cut_tmp, ignore_errors=True)
        else:
            run.make_blobs_batch = make_blobs_batch if make_blobs_batch is not None else _OneRow(make_blobs)
            run.blob_batch_size = blob_batch_size if make_blobs_batch is not None else 1
            run.blob_executor = blob_executor
            _run_blobs(run)

    summary.elapsed_s = time.perf_counter() - t0
    _write_run_record(split_path, summary, started, {**params, "retry_failed": retry_failed}, cutter_rec)
    return summary


def _read_shard_rows(split_path: Path, shard: int) -> list[dict[str, Any]]:
    import pyarrow.parquet as pq

    return pq.read_table(shard_paths(split_path, shard).parquet, schema=MANIFEST_SCHEMA).to_pylist()


def _rows_to_retry(split_path: Path, shard: int, plan_hash: str, mode: str) -> frozenset[str]:
    """Keys of a committed shard's rows that `retry_failed=mode` redoes (empty: the shard stays as it is).

    A shard written under another plan is left alone (`merge` reports it); one whose parquet or tar is missing
    or unreadable is an error, as a shard is never half-committed.
    """
    import pyarrow as pa

    paths = shard_paths(split_path, shard)
    try:
        stats = read_stats(split_path, shard)
        if stats.get("plan_hash") != plan_hash:
            return frozenset()
        rows = _read_shard_rows(split_path, shard)
        if not paths.tar.is_file() or paths.tar.stat().st_size != stats.get("tar_bytes"):
            raise OSError(f"{paths.tar.name} is missing or not the size its stats recorded")
    except (OSError, ValueError, pa.ArrowException) as exc:
        raise DataFileError(f"{paths.stats}: committed shard is damaged ({exc}); delete this file to redo the "
                            "shard") from None  # fmt: skip
    return frozenset(r["key"] for r in rows if retryable_failure(r["status"], r["error"], mode))


def _identity(rows: Sequence[PlanRow]) -> dict[str, str]:
    ident = {}
    for name in ("benchmark", "split", "protocol"):
        values = {getattr(r, name) for r in rows}
        if len(values) != 1:
            raise UsageError(f"all rows of one prepare run must share {name}; got {sorted(map(str, values))[:5]}")
        ident[name] = values.pop()
    return ident


def _split_dir(out_dir, split_dir, ident) -> Path:
    if split_dir is not None:
        return Path(split_dir)
    if out_dir is None:
        raise UsageError("run_prepare needs `split_dir` or `out_dir`")
    return Path(out_dir) / ident["benchmark"] / ident["split"]


def _default_cache(out_dir, split_path: Path) -> Path:
    """`<out>/_cache`, where `<out>` is `out_dir` or the grandparent of `<out>/<benchmark>/<split>`."""
    return (Path(out_dir) if out_dir is not None else split_path.parent.parent) / "_cache"


# --------------------------------------------------------------------------- source mode


class _Acquirer:
    """Stage (a), running ahead of the cutter: acquires every clip of the pending shards.

    Sources with `acquire_many` (mirrors: one pass per archive) get one batch call; others get one call per
    clip in a thread pool. Consecutive bot checks (the source's `bot_checks` counter where it has one, else the
    `bot_check` error prefix) cancel everything not yet started and make `result` raise.
    """

    def __init__(self, source: Source, clip_ids: Sequence[str], clips_dir: Path, workers: int, bars: _Progress) -> None:
        self._source, self._bars = source, bars
        self._counter = getattr(source, "bot_checks", None)
        self._streak, self._aborted = 0, False
        self._lock = threading.RLock()  # held while submitting; a callback may run inline
        clips_dir.mkdir(parents=True, exist_ok=True)
        self._batch: Future | None = None
        self._futures: dict[str, Future] = {}
        if callable(getattr(source, "acquire_many", None)):
            self._pool = ThreadPoolExecutor(1, thread_name_prefix="acquire")
            if clip_ids:
                self._batch = self._pool.submit(source.acquire_many, [clip_ref(c) for c in clip_ids], clips_dir)
                self._batch.add_done_callback(lambda _f: bars.advance("acquire", len(clip_ids)))
        else:
            self._pool = ThreadPoolExecutor(max(1, workers), thread_name_prefix="acquire")
            with self._lock:
                for cid in clip_ids:
                    self._futures[cid] = fut = self._pool.submit(source.acquire, clip_ref(cid), clips_dir)
                    fut.add_done_callback(self._on_done)

    def _on_done(self, fut: Future) -> None:
        self._bars.advance("acquire")
        if fut.cancelled() or fut.exception() is not None:
            return
        result: AcquireResult = fut.result()
        with self._lock:
            bot = result.status == Status.FAILED_DOWNLOAD and (result.error or "").startswith("bot_check")
            self._streak = self._streak + 1 if bot else 0
            tripped = self._counter.tripped if self._counter is not None else self._streak >= BOT_CHECK_LIMIT
            if tripped and not self._aborted:
                self._aborted = True
                for other in self._futures.values():
                    other.cancel()

    def result(self, clip_id: str) -> AcquireResult:
        """The acquisition of one clip (waits for it); raises once acquisition was stopped."""
        if self._batch is not None:
            result = self._batch.result().get(clip_id)
            if result is None:
                error = f"source_error: {self._source.name} returned no result"
                return AcquireResult(Status.FAILED_DOWNLOAD, None, error, 0)
            return result
        fut = self._futures[clip_id]
        if self._aborted:
            self._raise_abort()
        try:
            return fut.result()
        except CancelledError:
            self._raise_abort()
            raise

    def _raise_abort(self) -> None:
        if self._counter is not None and hasattr(self._counter, "check"):
            self._counter.check()  # the source's own typed error (e.g. TooManyBotChecks)
        raise AcquisitionAborted(f"{BOT_CHECK_LIMIT} consecutive bot checks: stopping this part; re-run it to resume")

    def shutdown(self) -> None:
        self._pool.shutdown(wait=True, cancel_futures=True)


def _run_source(run: _Run) -> None:
    """Source mode: acquisition of every pending clip runs ahead; cutting and commit go shard by shard."""
    clip_ids = list(dict.fromkeys(cid for s in run.pending for row in run.work_rows(s) for cid in row.clip_ids()))
    run.bars.add("acquire", len(clip_ids))
    run.bars.add("cut", len(clip_ids))
    acquirer = _Acquirer(run.source, clip_ids, run.clips_dir, run.workers, run.bars)
    pool = cut_pool(run.cutter, run.cut_workers)
    try:
        for s in run.pending:
            t_shard = time.perf_counter()
            rows = run.work_rows(s)
            needed = list(dict.fromkeys(cid for r in rows for cid in r.clip_ids()))
            acquired = {cid: acquirer.result(cid) for cid in needed}
            t_cut = time.perf_counter()
            cuts = _cut_many(run, pool, [c for c in needed if acquired[c].status == Status.SUCCESS], acquired)
            t_commit = time.perf_counter()
            manifest_rows, samples = [], []
            for row in rows:
                mrow, blobs = _assemble(row, acquired, cuts)
                manifest_rows.append(mrow)
                if blobs is not None:
                    samples.append(blobs)
            run.commit(s, samples, manifest_rows, {"acquire_wait_s": t_cut - t_shard, "cut_s": t_commit - t_cut})
    finally:
        acquirer.shutdown()
        pool.shutdown(wait=True, cancel_futures=True)


def _cut_many(run: _Run, pool: Executor, clip_ids: list[str], acquired) -> dict[str, CutResult | CutError]:
    """Cut each clip once (cut cache first, then `cut_outcome` in the pool; this thread stores each new cut);
    failures come back as CutError values."""
    out: dict[str, CutResult | CutError] = {}
    todo = []
    for cid in clip_ids:
        cached = run.cut_cache.get(cid)
        if cached is not None:
            out[cid] = cached
            run.bars.advance("cut")
        else:
            todo.append(cid)

    futures = {
        pool.submit(
            cut_outcome, acquired[cid].path, start_offset=clip_ref(cid).start if run.full_length else 0.0,
            audio_window=run.audio_window, frame_time=run.frame_time, exe=run.exe, timeout=run.cut_timeout,
            tmp_dir=run.cut_tmp, cutter=run.cutter,
        ): cid
        for cid in todo
    }  # fmt: skip
    for fut in as_completed(futures):
        out[futures[fut]] = result = fut.result()
        if isinstance(result, CutResult):
            run.cut_cache.put(futures[fut], result)
        run.bars.advance("cut")
    return out


def _assemble(row: PlanRow, acquired: Mapping[str, AcquireResult], cuts: Mapping[str, CutResult | CutError]):
    """Manifest row and sample (None unless success) of one row from its clips' acquisitions and cuts."""
    base = _base_row(row)
    pair = row.negative and row.video_id != row.audio_id
    roles = [("video", row.video_id), ("audio", row.audio_id)] if pair else [("clip", row.video_id)]
    base["attempts"] = max(acquired[cid].attempts for _, cid in roles)
    for role, cid in roles:
        result = acquired[cid]
        if result.status != Status.SUCCESS:
            error = _role_error(result.error or result.status.value, role, cid)
            return base | {"status": result.status.value, "error": error}, None
    for role, cid in roles:
        cut = cuts[cid]
        if isinstance(cut, CutError):
            return base | {"status": Status.FAILED_CUT.value, "error": _role_error(str(cut), role, cid)}, None
    video, audio = cuts[row.video_id], cuts[row.audio_id]
    blobs = SampleBlobs(key=row.key, jpg=video.jpg, flac=audio.flac, meta=sample_meta(row, video, audio))
    mrow = base | {
        "status": Status.SUCCESS.value, "error": None, "frame_width": video.width, "frame_height": video.height,
        "audio_samples": audio.samples, "audio_window_start": audio.audio_window[0],
        "audio_window_end": audio.audio_window[1], "clip_duration": video.clip_duration,
    }  # fmt: skip
    return mrow, blobs


def _role_error(error: str, role: str, clip_id: str) -> str:
    """Keep the classified reason first; name the failing clip for a negative pair."""
    if role == "clip":
        return error
    reason, _, message = error.partition(":")
    return f"{reason}: [{role} {clip_id}] {message.strip()}".rstrip()


# --------------------------------------------------------------------------- blob mode


def _run_blobs(run: _Run) -> None:
    """Blob mode (synthetic, Flickr archives): rows -> SampleBlobs in batches; a CutError means failed_cut
    (reason `missing`: unavailable)."""
    run.bars.add("samples", sum(len(run.work_rows(s)) for s in run.pending))
    size = run.blob_batch_size
    if run.blob_executor == "process":  # the maker travels once per process, not with every batch
        pool: Executor = ProcessPoolExecutor(run.workers, initializer=_install_maker, initargs=(run.make_blobs_batch,))
        call: Callable[[Sequence[PlanRow]], list] = _call_installed
    else:
        pool, call = ThreadPoolExecutor(run.workers), functools.partial(_call_batch, run.make_blobs_batch)
    with pool:
        for s in run.pending:
            t_shard = time.perf_counter()
            rows = run.work_rows(s)
            chunks = [rows[i : i + size] for i in range(0, len(rows), size)]
            futures = [pool.submit(call, chunk) for chunk in chunks]
            results = []
            for fut in futures:
                got = fut.result()
                results.extend(got)
                run.bars.advance("samples", len(got))
            manifest_rows, samples = [], []
            for row, result in zip(rows, results, strict=True):
                if isinstance(result, CutError):
                    # a producer's "missing" (media absent from a bring-your-own archive) is permanent: unavailable
                    status = Status.UNAVAILABLE if result.reason == "missing" else Status.FAILED_CUT
                    manifest_rows.append(_base_row(row) | {"status": status.value, "error": str(result)})
                    continue
                if result.key != row.key:
                    raise ValueError(f"make_blobs returned key {result.key!r} for row {row.key!r}")
                manifest_rows.append(_row_from_blobs(row, result))
                samples.append(result)
            run.commit(s, samples, manifest_rows, {"make_blobs_s": time.perf_counter() - t_shard})


@dataclass(frozen=True)
class _OneRow:
    """Adapts a per-row callable to the batch interface (picklable when the callable is)."""

    make_blobs: MakeBlobs

    def __call__(self, rows: Sequence[PlanRow]) -> list[SampleBlobs]:
        return [self.make_blobs(row) for row in rows]


_INSTALLED_MAKER: MakeBlobsBatch | None = None  # the blob maker of a blob-pool process (`_install_maker`)


def _install_maker(make_blobs_batch: MakeBlobsBatch) -> None:
    """Initializer of a blob-pool process: keep its maker (a Flickr maker holds every clip's media paths)."""
    global _INSTALLED_MAKER
    _INSTALLED_MAKER = make_blobs_batch


def _call_installed(rows: Sequence[PlanRow]) -> list[SampleBlobs | CutError]:
    """`_call_batch` with this blob-pool process's installed maker."""
    return _call_batch(_INSTALLED_MAKER, rows)


def _call_batch(make_blobs_batch: MakeBlobsBatch, rows: Sequence[PlanRow]) -> list[SampleBlobs | CutError]:
    """Run a batch; a CutError fails every row of that batch (per-row callables get batches of one)."""
    try:
        out = list(make_blobs_batch(rows))
    except CutError as exc:
        return [exc] * len(rows)
    if len(out) != len(rows):
        raise ValueError(f"make_blobs_batch returned {len(out)} samples for {len(rows)} rows")
    return out


# --------------------------------------------------------------------------- records, progress


def _write_run_record(split_path: Path, summary: PrepareSummary, started: datetime, params: dict,
                      cutter: Mapping[str, Any] | None = None) -> None:
    """Timestamps and host go to `_runs/` (never into shards or the manifest)."""
    record = {
        "part": summary.part, "num_parts": summary.num_parts, "plan_hash": summary.plan_hash,
        "host": socket.gethostname(), "pid": os.getpid(), "python": platform.python_version(),
        "started": started.isoformat(), "finished": datetime.now(timezone.utc).isoformat(),
        "elapsed_s": summary.elapsed_s, "written": summary.written, "skipped": summary.skipped,
        "retried": {f"{s:06d}": n for s, n in sorted(summary.retried.items())}, "params": params,
        "counts": summary.counts, "errors": summary.errors, "cutter": cutter,
    }  # fmt: skip
    stamp = started.strftime("%Y%m%dT%H%M%S%fZ")
    write_json_atomic(split_path / "_runs" / f"part-{summary.part}-of-{summary.num_parts}.{stamp}.json", record)


class _Progress:
    """rich progress bars by name, or no-ops when disabled."""

    def __init__(self, enabled: bool, console: Any = None) -> None:
        self._progress = None
        self._tasks: dict[str, Any] = {}
        if enabled:
            from rich import progress as rp

            self._progress = rp.Progress(
                rp.TextColumn("{task.description:>8}"), rp.BarColumn(), rp.MofNCompleteColumn(),
                rp.TimeElapsedColumn(), rp.TimeRemainingColumn(), console=console,
            )  # fmt: skip

    def __enter__(self) -> "_Progress":
        if self._progress is not None:
            self._progress.start()
        return self

    def __exit__(self, *exc) -> None:
        if self._progress is not None:
            self._progress.stop()

    def add(self, name: str, total: int, completed: int = 0) -> None:
        if self._progress is not None:
            self._tasks[name] = self._progress.add_task(name, total=total, completed=completed)

    def advance(self, name: str, n: int = 1) -> None:
        if self._progress is not None and name in self._tasks:
            self._progress.advance(self._tasks[name], n)
