"""Scoring speed and memory on Extended-VGG-SS-sized input (issue: score ≤ 1.3× bare read time).

Writes 10,316 float16 224×224 maps (layout (a)) as a stored (`np.savez`-style) and a deflated
(`np.savez_compressed`-style) archive, streamed in chunks so generation stays small in memory; existing
archives of the right size are reused (`--regenerate` rewrites them). Then, for each archive and each in
a fresh subprocess (so peak RSS is per stage), times:
  1. read: merely reading and decompressing the archive (streamed, nothing else);
  2. reference: the published evaluators' way — load everything, then per map in numpy: normalise,
     sort, threshold at the median, cIoU against the GT, top-quarter confidence;
  3. score: `avsl-bench score --bootstrap 1000` (the library call, all metrics, CIs and strata);
  4. score-noboot: the same with `--bootstrap 0` (to show what the CIs add).
Prints wall seconds, CPU seconds (user + system, all threads), ratios against the read time measured in
the same run, and peak RSS (VmHWM of the stage's own process). On a loaded machine compare the ratios
within one run, and the CPU column.
Needs the upstream annotation mirror (AVSL_BENCH_UPSTREAM, default ../shared/upstream).
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time
import zipfile
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
GEN_CHUNK = 256  # maps generated and written at a time (~40 MB of temporaries)


def _peak_rss_mib() -> float:
    """Peak resident set of this process (VmHWM): unlike ru_maxrss it does not survive exec from a parent."""
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # not Linux


def _maps(n: int, seed: int = 0):
    """Smooth 7×7 maps upsampled ×32 plus a little noise, float16: like real (upsampled) model output."""
    rng = np.random.default_rng(seed)
    for start in range(0, n, GEN_CHUNK):
        b = min(GEN_CHUNK, n - start)
        low = rng.standard_normal((b, 7, 7)).astype(np.float32)
        maps = np.repeat(np.repeat(low, 32, axis=1), 32, axis=2).astype(np.float16)
        maps += (0.01 * rng.standard_normal(maps.shape)).astype(np.float16)
        yield maps


def _archive_size(path: Path) -> int | None:
    from avsl_bench.errors import SubmissionError
    from avsl_bench.scoring.submission import open_submission

    try:
        with open_submission(path) as sub:
            return len(sub) if sub.shape == (224, 224) and sub.dtype == np.float16 else None
    except (OSError, SubmissionError):
        return None


def _generate(out_dir: Path, n_limit: int | None, regenerate: bool) -> dict[str, Path]:
    from avsl_bench.benchmarks.load import load_benchmark
    from avsl_bench.scoring.submission import write_submission

    ids = load_benchmark("vggss-ext").ids
    ids = ids[:n_limit] if n_limit else ids
    suffix = f"_{len(ids)}" if n_limit else ""
    paths = {"raw": out_dir / f"preds_raw{suffix}.npz", "compressed": out_dir / f"preds_compressed{suffix}.npz"}
    for kind, path in paths.items():
        if regenerate or _archive_size(path) != len(ids):
            print(f"writing {path} ...", file=sys.stderr, flush=True)
            write_submission(path, ids, _maps(len(ids)), compressed=kind == "compressed")
    return paths


def stage_read(path: str) -> None:
    with zipfile.ZipFile(path) as archive, archive.open("maps.npy") as member:
        while member.read(64 << 20):
            pass


def stage_reference(path: str) -> None:
    from avsl_bench.benchmarks.load import load_benchmark

    bench = load_benchmark("vggss-ext")
    with np.load(path, allow_pickle=False) as data:
        ids, maps = list(data["ids"]), data["maps"]
    n = 224 * 224
    for key, raw in zip(ids, maps):
        p = raw.astype(np.float32)
        lo, hi = p.min(), p.max()
        q = (p - lo) / (hi - lo) if hi > lo else p
        thr = np.sort(q.flatten())[n // 2]
        mask = (q >= thr).astype(np.float64)
        gt = bench.gt_maps([bench.index[key]])[0]
        _ = np.sum(mask * gt) / (np.sum(gt) + np.sum(mask * (gt == 0)))
        _ = np.sort(p.flatten())[-n // 4:].mean()


def stage_score(path: str, bootstrap: int, allow_missing: bool) -> None:
    from avsl_bench.benchmarks.load import load_benchmark
    from avsl_bench.scoring.score import ScoreOptions, score

    score(path, load_benchmark("vggss-ext"), ScoreOptions(bootstrap=bootstrap, allow_missing=allow_missing))


def _run_stage(stage: str, path: Path, extra: list[str]) -> dict:
    cmd = [sys.executable, __file__, "--stage", stage, "--path", str(path), *extra]
    done = subprocess.run(cmd, capture_output=True, text=True)
    if done.returncode != 0:
        raise SystemExit(f"stage {stage} on {path} failed:\n{done.stderr[-3000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, default=REPO / "bench-out")
    parser.add_argument("--limit", type=int, default=None, help="use only the first N samples (smoke runs)")
    parser.add_argument("--regenerate", action="store_true", help="rewrite the archives even if they exist")
    parser.add_argument("--stage", help=argparse.SUPPRESS)
    parser.add_argument("--path", help=argparse.SUPPRESS)
    parser.add_argument("--bootstrap", type=int, default=1000, help=argparse.SUPPRESS)
    parser.add_argument("--allow-missing", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    os.environ.setdefault("AVSL_BENCH_UPSTREAM", str(REPO.parent / "shared" / "upstream"))
    if args.stage:
        start, cpu = time.perf_counter(), os.times()
        if args.stage == "read":
            stage_read(args.path)
        elif args.stage == "reference":
            stage_reference(args.path)
        else:
            stage_score(args.path, args.bootstrap, args.allow_missing)
        seconds, end = time.perf_counter() - start, os.times()
        cpu_s = (end.user - cpu.user) + (end.system - cpu.system)
        print(json.dumps({"seconds": seconds, "cpu_seconds": cpu_s, "peak_rss_mib": _peak_rss_mib()}))
        return
    from rich.console import Console
    from rich.table import Table

    args.out.mkdir(parents=True, exist_ok=True)
    paths = _generate(args.out, args.limit, args.regenerate)
    load = ", ".join(f"{x:.1f}" for x in os.getloadavg())
    table = Table(title=f"score speed ({args.limit or 10316} maps, float16 224×224, layout (a); "
                        f"ratios vs read; {os.cpu_count()} CPUs, load {load})")
    for column in ("archive", "stage", "seconds", "× read", "CPU s", "CPU × read", "peak RSS MiB"):
        table.add_column(column, justify="right")
    missing = ["--allow-missing"] if args.limit else []  # a partial submission: the rest count as failures
    for kind, path in paths.items():
        read = _run_stage("read", path, [])
        rows = [("read", read)]
        for stage, extra in (("reference", []), ("score", ["--bootstrap", "1000", *missing]),
                             ("score-noboot", ["--bootstrap", "0", *missing])):
            rows.append((stage, _run_stage("score" if stage.startswith("score") else stage, path, extra)))
        for stage, r in rows:
            table.add_row(kind, stage, f"{r['seconds']:.2f}", f"{r['seconds'] / read['seconds']:.2f}",
                          f"{r['cpu_seconds']:.2f}", f"{r['cpu_seconds'] / read['cpu_seconds']:.2f}",
                          f"{r['peak_rss_mib']:.0f}")
    Console().print(table)


if __name__ == "__main__":
    main()
