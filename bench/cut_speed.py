"""Cut throughput: naive two-process cutting vs prepare's way (in-process PyAV cutter in a process pool).

Generates N 10 s test clips (testsrc2 320x240 25 fps + sine, H.264/AAC mp4; mpeg4 if the ffmpeg lacks libx264),
then times
  (1) naive:        per clip one ffmpeg for the frame and one for the audio, sequential, default threading;
  (2) cut, ffmpeg:  `cut_clip(cutter="ffmpeg")` (one process, two inputs, -threads 1) in a thread pool;
  (3) cut, pyav:    `cut_clip(cutter="pyav")` (in-process) in a thread pool (its per-packet Python holds the GIL);
  (4) cut, pyav:    the same in `cut_pool("pyav")`, the process pool `run_prepare` cuts with (process start-up
                    included);
  (5) prepare:      the whole `run_prepare` engine with its default cutter (local source, cut pool,
                    deterministic tar + parquet + stats) = prepare's way.
(2)-(4) call `cut_outcome`, the work function of prepare's cut pool; (2) is its pool for `--cutter ffmpeg`.
Wall-clock clips/s depends on what else runs on the machine, so CPU seconds per clip (this process and its
children, user+sys) are printed too: `cores / cpu_per_clip` is what an idle machine with that many cores reaches.

    python bench/cut_speed.py [--n 40] [--workers 2] [--gop 250] [--keep DIR]
"""

from __future__ import annotations

import argparse
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from functools import partial
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from avsl_bench.data.cut import (  # noqa: E402
    CLIP_LENGTH, FRAME_TIME, CutResult, cut_clip, cut_outcome, cut_pool, cutter_info,
)  # fmt: skip
from avsl_bench.data.ffmpeg import BITEXACT_ARGS, FLAC_ARGS, ffmpeg_info, find_ffmpeg  # noqa: E402
from avsl_bench.data.plan import PlanRow  # noqa: E402
from avsl_bench.data.prepare import run_prepare  # noqa: E402
from avsl_bench.data.sources.base import AcquireResult, Status  # noqa: E402


def video_codec(exe: str) -> str:
    encoders = subprocess.run([exe, "-hide_banner", "-encoders"], capture_output=True, text=True).stdout
    return "libx264" if " libx264 " in encoders else "mpeg4"


def make_clips(exe: str, out: Path, n: int, gop: int, jobs: int) -> list[Path]:
    codec = video_codec(exe)
    if codec == "libx264":
        vargs = ["-c:v", "libx264", "-preset", "veryfast", "-g", str(gop)]
    else:
        vargs = ["-c:v", "mpeg4", "-q:v", "4", "-g", str(gop)]

    def one(i: int) -> Path:
        path = out / f"clip{i:08d}_000000.mp4"
        subprocess.run(
            [exe, "-nostdin", "-hide_banner", "-loglevel", "error", "-y",
             "-f", "lavfi", "-i", f"testsrc2=s=320x240:r=25:d=10,hue=h={i * 7}",
             "-f", "lavfi", "-i", f"sine=f={200 + 10 * i}:d=10:sample_rate=44100",
             *vargs, "-pix_fmt", "yuv420p", "-c:a", "aac", "-b:a", "96k", str(path)],
            check=True,
        )  # fmt: skip
        return path

    with ThreadPoolExecutor(jobs) as pool:
        return list(pool.map(one, range(n)))


def naive_cut(exe: str, clip: Path, tmp: Path) -> None:
    """What a first script does: two ffmpeg runs per clip, default threading."""
    common = [exe, "-nostdin", "-hide_banner", "-loglevel", "error", "-y"]
    subprocess.run([*common, "-ss", "5", "-i", str(clip), "-map", "0:v:0", "-frames:v", "1", "-vf", "setsar=1",
                    "-c:v", "mjpeg", "-q:v", "2", *BITEXACT_ARGS, str(tmp / "f.jpg")], check=True)  # fmt: skip
    subprocess.run([*common, "-ss", "0", "-t", "10", "-i", str(clip), "-map", "0:a:0", "-vn", "-ac", "1",
                    "-ar", "16000", *FLAC_ARGS, *BITEXACT_ARGS, str(tmp / "a.flac")], check=True)  # fmt: skip


def _cpu() -> float:
    """User + system seconds of this process (all threads) and its waited-for children."""
    total = 0.0
    for who in (resource.RUSAGE_SELF, resource.RUSAGE_CHILDREN):
        ru = resource.getrusage(who)
        total += ru.ru_utime + ru.ru_stime
    return total


class _Timer:
    """Wall time and CPU time (this process + children) over a block."""

    def __enter__(self) -> "_Timer":
        self.cpu0, self.t0 = _cpu(), time.perf_counter()
        return self

    def __exit__(self, *exc) -> None:
        self.wall = time.perf_counter() - self.t0
        self.cpu = _cpu() - self.cpu0


class _DirSource:
    name = "bench-dir"

    def __init__(self, clips: dict[str, Path]) -> None:
        self.clips = clips

    def acquire(self, clip, cache_dir):
        return AcquireResult(Status.SUCCESS, self.clips[clip.clip_id], None, 1)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=40, help="number of clips (default 40)")
    ap.add_argument("--workers", type=int, default=2, help="cut pool size (default 2)")
    ap.add_argument("--gop", type=int, default=250, help="keyframe interval of the test clips (x264 default 250)")
    ap.add_argument("--keep", type=Path, default=None, help="generate/keep clips in this directory")
    ap.add_argument("--ffmpeg", default=None)
    args = ap.parse_args(argv)

    exe = find_ffmpeg(args.ffmpeg)
    root = Path(tempfile.mkdtemp(prefix="avsl-cut-speed-"))
    clip_dir = args.keep or root / "clips"
    clip_dir.mkdir(parents=True, exist_ok=True)
    clips = sorted(clip_dir.glob("clip*_000000.mp4"))[: args.n]
    if len(clips) < args.n:
        clips = make_clips(exe, clip_dir, args.n, args.gop, os.cpu_count() or 1)
    print(f"ffmpeg: {ffmpeg_info(exe)['version_line']}")
    print(f"clips:  {len(clips)} x 10 s, 320x240 25 fps, {video_codec(exe)} gop {args.gop} + AAC; "
          f"CPUs visible: {os.cpu_count()}, load avg {os.getloadavg()[0]:.1f}")  # fmt: skip

    info = cutter_info()
    pyav = info.get("pyav", {})
    print(f"cutter: {info['cutter']} (PyAV {pyav.get('pyav', '-')}, libavcodec {pyav.get('libavcodec', '-')}); "
          f"fallback {info['fallback']}")  # fmt: skip

    for cutter in ("ffmpeg", "pyav"):  # warm the page cache, the binary and the libraries
        cut_clip(clips[0], exe=exe, cutter=cutter)
    with _Timer() as naive:
        for clip in clips:
            naive_cut(exe, clip, root)
    w = args.workers
    ways = [  # row label, cutter, pool
        (f"(2) cut_clip ffmpeg, {w} threads", "ffmpeg", lambda: cut_pool("ffmpeg", w)),
        (f"(3) cut_clip pyav, {w} threads", "pyav", lambda: ThreadPoolExecutor(w)),
        (f"(4) cut_clip pyav, {w} processes", "pyav", lambda: cut_pool("pyav", w)),
    ]
    work = {cutter: partial(cut_outcome, start_offset=0.0, audio_window=CLIP_LENGTH, frame_time=FRAME_TIME, exe=exe,
                            timeout=60.0, tmp_dir=None, cutter=cutter) for cutter in ("ffmpeg", "pyav")}  # fmt: skip
    timers = {}
    for label, cutter, make_pool in ways:
        with _Timer() as timers[label], make_pool() as pool:
            results = list(pool.map(work[cutter], clips))
        assert all(isinstance(r, CutResult) and r.samples == 160000 and r.cutter == cutter for r in results), label
    with _Timer() as startup, cut_pool("pyav", w) as pool:  # what (4) and (5) pay once: process start, imports
        list(pool.map(work["pyav"], clips[:w]))

    rows = [PlanRow(c.stem, c.stem, c.stem, benchmark="bench", split="test", protocol="bench@1") for c in clips]
    n = len(clips)
    source = _DirSource({c.stem: c for c in clips})
    with _Timer() as engine:
        run_prepare(rows, out_dir=root / "out", source=source, workers=w, cut_workers=w,
                    samples_per_shard=max(1, n // 4), ffmpeg=exe, progress=False)  # fmt: skip

    print(f"{'method':<40}{'clips/s':>9}{'CPU ms/clip':>13}{'clips/s per core':>18}")
    table = [("(1) naive (2 procs/clip, sequential)", naive), *timers.items(),
             (f"(5) prepare's way: run_prepare, {w} cut", engine)]  # fmt: skip
    for label, t in table:
        print(f"{label:<40}{n / t.wall:>9.1f}{1000 * t.cpu / n:>13.1f}{n / t.cpu:>18.1f}")
    ffmpeg, threads, processes = (timers[label] for label, _, _ in ways)
    print(f"(4), (5) include starting {w} processes: a fresh pool's first {w} cuts take {startup.wall:.2f} s wall, "
          f"{startup.cpu:.2f} s CPU (in (3): {w * threads.wall / n:.2f} s, {w * threads.cpu / n:.2f} s)")
    print(f"prepare's way vs naive: x{naive.wall / engine.wall:.2f} clips/s (wall), "
          f"x{naive.cpu / engine.cpu:.2f} less CPU per clip; pyav processes vs threads: "
          f"x{threads.wall / processes.wall:.2f} wall, vs ffmpeg cutter: x{ffmpeg.wall / processes.wall:.2f}")  # fmt: skip
    shutil.rmtree(root, ignore_errors=True)  # clips kept with --keep live outside `root`
    return 0


if __name__ == "__main__":
    sys.exit(main())
