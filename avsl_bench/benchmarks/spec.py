"""Benchmark definitions as data: one TOML file per benchmark under `manifests/`."""

from __future__ import annotations

import os
import re
import sys
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path

from ..errors import DataFileError
from ..registry import Registry
from .upstream import UpstreamFile

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

RAW_URL_RE = re.compile(r"^https://raw\.githubusercontent\.com/([^/]+/[^/]+)/([0-9a-f]{40})/(.+)$")
LOADERS = ("vggss", "flickr", "synthetic")
_KEYS = {
    "name", "version", "title", "loader", "gt_rule", "positives", "annotations", "negatives", "strata",
    "expected_positives", "expected_negatives", "files", "size", "seed", "subset",
}


@dataclass(frozen=True)
class BenchmarkSpec:
    """A versioned benchmark protocol (`<name>@<version>`) and the files that define it."""

    name: str
    version: int
    title: str
    loader: str
    gt_rule: str
    expected_positives: int
    expected_negatives: int
    source: Path
    positives: str | None = None
    annotations: str | None = None
    negatives: str | None = None
    strata: tuple[str, ...] = ()
    files: dict[str, UpstreamFile] = field(default_factory=dict)
    size: str | None = None
    seed: int = 0
    subset: str | None = None  # "<partition>/<part>" of benchmarks.semisup: only those positives are scored

    @property
    def subset_part(self) -> tuple[str, str] | None:
        """(partition, part) of a rank subset (baselines spec §3.7), else None."""
        if not self.subset:
            return None
        partition, _, part = self.subset.partition("/")
        return partition, part

    @property
    def protocol(self) -> str:
        return f"{self.name}@{self.version}"

    @property
    def extended(self) -> bool:
        return self.expected_negatives > 0


def manifests_dir() -> Path:
    """Where benchmark TOML files live (`AVSL_BENCH_MANIFESTS` or the repository's `manifests/`)."""
    env = os.environ.get("AVSL_BENCH_MANIFESTS")
    return Path(env) if env else Path(__file__).resolve().parents[2] / "manifests"


def _upstream_file(path: Path, file_id: str, entry: dict) -> UpstreamFile:
    match = RAW_URL_RE.match(str(entry.get("url", "")))
    if not match or not re.fullmatch(r"[0-9a-f]{64}", str(entry.get("sha256", ""))):
        raise DataFileError(f"{path}: files.{file_id} needs a pinned raw.githubusercontent.com url and a sha256")
    repo, commit, rel = match.groups()
    return UpstreamFile(file_id=file_id, repo=repo, commit=commit, path=rel, sha256=entry["sha256"])


def parse_spec(path: Path) -> BenchmarkSpec:
    """Read and validate one benchmark TOML file (unknown keys are errors)."""
    try:
        raw = tomllib.loads(path.read_text(encoding="utf-8"))
    except (OSError, tomllib.TOMLDecodeError) as exc:
        raise DataFileError(f"{path}: cannot read benchmark definition: {exc}") from exc
    unknown = set(raw) - _KEYS
    if unknown:
        raise DataFileError(f"{path}: unknown keys {sorted(unknown)}")
    if raw.get("loader") not in LOADERS:
        raise DataFileError(f"{path}: loader must be one of {LOADERS}, got {raw.get('loader')!r}")
    files = {fid: _upstream_file(path, fid, entry) for fid, entry in raw.get("files", {}).items()}
    for ref in ("positives", "annotations"):
        if raw.get(ref) and raw[ref] not in files:
            raise DataFileError(f"{path}: {ref} = {raw[ref]!r} names no [files] entry")
    if raw.get("negatives") and raw["loader"] != "synthetic" and raw["negatives"] not in files:
        raise DataFileError(f"{path}: negatives = {raw['negatives']!r} names no [files] entry")
    for stratum in raw.get("strata", []):
        if stratum not in files:
            raise DataFileError(f"{path}: stratum {stratum!r} names no [files] entry")
    if raw.get("subset") is not None:
        _check_subset(path, raw)
    return BenchmarkSpec(
        name=raw["name"], version=int(raw["version"]), title=raw.get("title", raw["name"]), loader=raw["loader"],
        gt_rule=raw["gt_rule"], expected_positives=int(raw["expected_positives"]),
        expected_negatives=int(raw.get("expected_negatives", 0)), source=path, positives=raw.get("positives"),
        annotations=raw.get("annotations"), negatives=raw.get("negatives"), strata=tuple(raw.get("strata", ())),
        files=files, size=raw.get("size"), seed=int(raw.get("seed", 0)), subset=raw.get("subset"),
    )


def _check_subset(path: Path, raw: dict) -> None:
    """`subset = "<partition>/<part>"` names a part of a `benchmarks.semisup` partition of the positives list."""
    from .semisup import PARTITIONS

    partition, _, part = str(raw["subset"]).partition("/")
    known = PARTITIONS.get(partition)
    if known is None or part not in known.part_names:
        raise DataFileError(f"{path}: subset must be '<partition>/<part>' of {sorted(PARTITIONS)}, "
                            f"got {raw['subset']!r}")  # fmt: skip
    if raw["loader"] == "synthetic" or raw.get("negatives"):
        raise DataFileError(f"{path}: a subset applies to the positives of a vggss/flickr benchmark without negatives")
    if known.source != raw.get("positives"):
        raise DataFileError(f"{path}: subset {raw['subset']!r} ranks {known.source!r}, but positives = "
                            f"{raw.get('positives')!r}")  # fmt: skip


@lru_cache(maxsize=None)
def benchmark_registry(directory: str | None = None) -> Registry[BenchmarkSpec]:
    """All benchmark definitions found in the manifests directory, by name."""
    registry: Registry[BenchmarkSpec] = Registry("benchmark")
    for path in sorted(Path(directory or manifests_dir()).glob("*.toml")):
        spec = parse_spec(path)
        if spec.name != path.stem:
            raise DataFileError(f"{path}: name {spec.name!r} differs from the file name")
        registry.add(spec.name, spec)
    return registry


def get_spec(name: str) -> BenchmarkSpec:
    """Look a benchmark up by name (`vggss`) or protocol (`vggss@1`)."""
    base, _, version = name.partition("@")
    spec = benchmark_registry().get(base)
    if version and version != str(spec.version):
        raise DataFileError(f"benchmark {base!r} has protocol version {spec.version}, not {version}")
    return spec
