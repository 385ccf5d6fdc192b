"""Merge the parts of a split into `manifest.parquet`, `manifest.json` and `SHA256SUMS` (data spec §8, §9).

`merge` refuses to write anything unless every shard of the plan is complete and consistent; its error lists the
incomplete shards, so re-running their parts (which resume) fixes the split. It also records the cutter: one
cutter record across parts, written to manifest.json beside the ffmpeg build.
"""

from __future__ import annotations

import functools
import json
import platform
import subprocess
from pathlib import Path
from typing import Any, Mapping

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from .. import __version__
from ..errors import AvslBenchError
from ..files import (
    canonical_json, sha256_bytes, sha256_file, write_json_atomic, write_parquet_atomic, write_text_atomic,
)  # fmt: skip
from .cut import cutter_name
from .plan import keys_sha256, read_part_files
from .shards import MANIFEST_SCHEMA, read_stats, shard_name, shard_paths
from .sources.base import Status

MANIFEST_SCHEMA_VERSION = 1
_VERSION_KEYS = ("python", "numpy", "pillow")


class MergeError(AvslBenchError):
    """A split cannot be merged; `incomplete` lists shard indices to redo, `problems` says why."""

    def __init__(self, problems: list[str], incomplete: list[int] | None = None) -> None:
        self.problems = list(problems)
        self.incomplete = sorted(set(incomplete or []))
        head = f"merge failed: {len(self.problems)} problem(s)"
        if self.incomplete:
            head += f"; incomplete shards: {', '.join(shard_name(i) for i in self.incomplete)}"
        super().__init__(head + "\n" + "\n".join(f"  - {p}" for p in self.problems))


@functools.lru_cache(maxsize=1)
def toolkit_info() -> dict[str, Any]:
    """Toolkit version and the git commit of the installed package's source tree (None outside a checkout)."""
    commit = None
    try:
        proc = subprocess.run(
            ["git", "-C", str(Path(__file__).resolve().parent), "rev-parse", "HEAD"],
            capture_output=True, text=True, timeout=10, check=False,
        )  # fmt: skip
        if proc.returncode == 0 and len(proc.stdout.strip()) == 40:
            commit = proc.stdout.strip()
    except (OSError, subprocess.SubprocessError):
        pass
    return {"version": __version__, "commit": commit}


def environment_versions() -> dict[str, str]:
    """Python / numpy / Pillow versions of this process."""
    import numpy
    import PIL

    return {"python": platform.python_version(), "numpy": numpy.__version__, "pillow": PIL.__version__}


def _same(values: list[Any]) -> Any:
    """The single distinct value, or a sorted list of the distinct values when parts disagree."""
    distinct = []
    for v in values:
        if v not in distinct:
            distinct.append(v)
    return distinct[0] if len(distinct) == 1 else sorted(distinct, key=repr)


def merge(
    split_dir: str | Path,
    *,
    allow_mixed_ffmpeg: bool = False,
    annotations: Mapping[str, str] | None = None,
    expected_plan_hash: str | None = None,
) -> dict[str, Any]:
    """Check every part and shard of a split and write its manifest files; return the manifest.json dict.

    Checks: identical plan hashes (part files, shard stats, `expected_plan_hash`); tar + parquet + stats for
    every shard 0..S-1; tar sha256 == stats; each planned key exactly once; one ffmpeg build and one cutter
    (unless `allow_mixed_ffmpeg`, which is recorded; the cutter goes to manifest.json as `cutter`). `annotations` (name -> sha256) overrides those in the part files.
    Raises MergeError listing problems and incomplete shards.
    """
    base = Path(split_dir)
    parts = read_part_files(base)
    if not parts:
        raise MergeError([f"no part files in {base / '_parts'} (run prepare first)"])
    problems: list[str] = []
    hashes = sorted({p["plan"]["plan_hash"] for p in parts} | ({expected_plan_hash} if expected_plan_hash else set()))
    if len(hashes) != 1:
        raise MergeError([f"parts disagree on the plan: hashes {hashes} (same input list and --samples-per-shard?)"])
    plan = parts[0]["plan"]
    num_shards = plan["num_shards"]

    incomplete, stats_list, tables = [], [], []
    for s in range(num_shards):
        checked = _check_shard(base, s, plan["plan_hash"])
        if isinstance(checked, str):
            incomplete.append(s)
            problems.append(f"shard {shard_name(s)}: {checked}")
        else:
            stats_list.append(checked[0])
            tables.append(checked[1])

    ffmpeg_builds = {(st["ffmpeg"]["sha256"], st["ffmpeg"]["version_line"]) for st in stats_list if st.get("ffmpeg")}
    ffmpeg_builds |= {(p["ffmpeg"]["sha256"], p["ffmpeg"]["version_line"]) for p in parts if p.get("ffmpeg")}
    if len(ffmpeg_builds) > 1 and not allow_mixed_ffmpeg:
        names = sorted(b[1] for b in ffmpeg_builds)
        problems.append(f"{len(ffmpeg_builds)} ffmpeg builds across parts (--allow-mixed-ffmpeg accepts): {names}")
    cutters = sorted({canonical_json(r["cutter"]) for r in [*stats_list, *parts] if r.get("cutter")})
    if len(cutters) > 1 and not allow_mixed_ffmpeg:
        names = [cutter_name(json.loads(c)) for c in cutters]
        problems.append(f"{len(cutters)} cutters across parts (--allow-mixed-ffmpeg accepts): {names}")

    manifest = pa.concat_tables(tables) if tables else MANIFEST_SCHEMA.empty_table()
    if not incomplete:
        keys = manifest.column("key").to_pylist()
        if len(keys) != len(set(keys)):
            problems.append(f"{len(keys) - len(set(keys))} keys occur in more than one row")
        elif len(keys) != plan["n_rows"] or keys_sha256(keys) != plan["keys_sha256"]:
            problems.append(f"shards hold {len(keys)} keys that differ from the {plan['n_rows']} planned keys")
    if annotations is None:
        found = _same([p.get("annotations") or {} for p in parts])
        if isinstance(found, list):
            problems.append("parts recorded different annotation files: pass them explicitly")
        annotations = found
    if problems:
        raise MergeError(problems, incomplete)
    annotations = dict(sorted(annotations.items()))

    manifest = manifest.sort_by([("key", "ascending")])
    write_parquet_atomic(base / "manifest.parquet", manifest)
    sums = "".join(f"{st['tar_sha256']}  {st['tar']}\n" for st in stats_list)
    write_text_atomic(base / "SHA256SUMS", sums)
    doc = _manifest_json(parts, stats_list, manifest, ffmpeg_builds, allow_mixed_ffmpeg, annotations)
    if cutters:
        found = [json.loads(c) for c in cutters]
        doc["cutter"] = found[0] if len(found) == 1 else {"mixed": True, "allowed": True, "cutters": found}
    write_json_atomic(base / "manifest.json", doc)
    return doc


def _check_shard(base: Path, s: int, plan_hash: str) -> tuple[dict, pa.Table] | str:
    """(stats, parquet table) of a complete, untampered shard, or what is wrong with it."""
    paths = shard_paths(base, s)
    missing = [p.name for p in paths if not p.is_file()]
    if missing:
        return f"missing {', '.join(missing)}"
    try:
        stats = read_stats(base, s)
        table = pq.read_table(paths.parquet, schema=MANIFEST_SCHEMA)
    except (OSError, ValueError, pa.ArrowException) as exc:
        return f"unreadable stats or parquet: {exc}"
    if stats.get("plan_hash") != plan_hash:
        return f"written under plan {stats.get('plan_hash')}"
    actual = sha256_file(paths.tar)
    if actual != stats.get("tar_sha256"):
        return f"tar sha256 {actual} != stats {stats.get('tar_sha256')} (corrupt or modified)"
    if table.num_rows != stats.get("rows") or (table.num_rows and set(table.column("shard").to_pylist()) != {s}):
        return "parquet rows do not match its stats"
    return stats, table


def _manifest_json(parts, stats_list, manifest: pa.Table, ffmpeg_builds, allow_mixed, annotations) -> dict[str, Any]:
    status = manifest.column("status")
    counts = {s.value: int(pc.sum(pc.equal(status, s.value)).as_py() or 0) for s in Status}
    missing = sorted(manifest.filter(pc.not_equal(status, Status.SUCCESS.value)).column("key").to_pylist())
    builds = sorted(ffmpeg_builds)
    ffmpeg = None if not builds else {"sha256": builds[0][0], "version_line": builds[0][1]} if len(builds) == 1 else {
        "mixed": True, "allowed": bool(allow_mixed), "builds": [{"sha256": b[0], "version_line": b[1]} for b in builds],
    }  # fmt: skip
    first = parts[0]
    return {
        "schema_version": MANIFEST_SCHEMA_VERSION,
        "benchmark": _same([p.get("benchmark") for p in parts]),
        "split": _same([p.get("split") for p in parts]),
        "protocol": _same([p.get("protocol") for p in parts]),
        "toolkit": _same([p.get("toolkit") for p in parts]),
        "plan": first["plan"],
        "inputs": {"input_list_sha256": first["plan"]["input_sha256"], "annotations": annotations},
        "cut": _same([p.get("cut") for p in parts]),
        "params": _same([p.get("params") for p in parts]),
        "n_expected": first["plan"]["n_rows"],
        "counts": counts,
        "missing": {"ids": missing, "sha256": sha256_bytes("".join(f"{k}\n" for k in missing).encode("utf-8"))},
        "shards": [
            {"name": st["tar"], "sha256": st["tar_sha256"], "bytes": st["tar_bytes"], "samples": st["samples"]}
            for st in stats_list
        ],
        "ffmpeg": ffmpeg,
        "versions": {k: _same([(p.get("versions") or {}).get(k) for p in parts]) for k in _VERSION_KEYS},
    }
