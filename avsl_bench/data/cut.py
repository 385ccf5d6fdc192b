"""Cut one clip into its evaluation frame (JPEG) and audio window (FLAC) (spec §3, §4).

Two cutters give the same frame and PCM. `pyav` (default) runs the §4 pipeline in-process through PyAV
(`decode.cut_pyav`): no process per clip, about half the CPU. `ffmpeg` runs one process, two inputs of the same
file: input 0 is seeked to the frame time (input seeking decodes from the previous keyframe and drops earlier
frames, so the first frame with pts >= t is taken), input 1 is the audio window; the JPEG comes back on stdout,
the FLAC through a private temp file (a seekable output gets a complete STREAMINFO). When PyAV cannot cut a file
the ffmpeg cutter runs instead, and its ladder (`run_cut`) classifies the failure. Many clips are cut by
`cut_outcome` calls in a `cut_pool`: processes for `pyav` (its per-packet Python holds the GIL), threads for
`ffmpeg`.
"""

from __future__ import annotations

import io
import multiprocessing
import os
import re
import signal
import tempfile
import threading
import time
from concurrent.futures import Executor, ProcessPoolExecutor, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping

from ..errors import AvslBenchError
from ..files import canonical_json, sha256_bytes
from . import decode
from .ffmpeg import (
    BASE_ARGS, BITEXACT_ARGS, FLAC_ARGS, FfmpegRun, FfmpegTimeout, find_ffmpeg, flac_streaminfo, parse_input_info,
    run_ffmpeg,
)  # fmt: skip

SAMPLE_RATE = 16000
FRAME_TIME = 5.0
CLIP_LENGTH = 10.0

#: Cutters: `pyav` (in-process, falls back to `ffmpeg` per file) and `ffmpeg` (one process per clip).
CUTTERS = ("pyav", "ffmpeg")
#: Environment variable naming the default cutter (like AVSL_BENCH_FFMPEG for the binary).
CUTTER_ENV = "AVSL_BENCH_CUTTER"

#: Failure reasons (the `error` column starts with one of them).
CUT_REASONS = (
    "no_video_stream", "no_audio_stream", "no_frame", "no_audio_samples", "no_duration", "timeout", "bad_output",
    "ffmpeg_error",
)  # fmt: skip


#: stderr signs that the video ended before the frame time (the frame output got nothing).
_NO_FRAME = re.compile(r"No filtered frames for output stream|\[out#0/[^\]]*\] Nothing was written into output file")


class CutError(AvslBenchError):
    """A clip could not be cut; `reason` is one of CUT_REASONS, `message` ffmpeg's last line or a description."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(f"{reason}: {message}")
        self.reason = reason
        self.message = message

    def __reduce__(self):  # picklable across process pools
        return (type(self), (self.reason, self.message))


@dataclass(frozen=True)
class CutResult:
    """The two blobs of a clip and the facts recorded about them."""

    jpg: bytes = field(repr=False)
    flac: bytes = field(repr=False)
    width: int
    height: int
    samples: int
    sample_rate: int
    frame_time: float
    audio_window: tuple[float, float]
    clip_duration: float | None
    jpg_sha256: str
    flac_sha256: str
    elapsed_s: float = field(default=0.0, compare=False)
    #: the path that produced it, `pyav` or `ffmpeg` ("" where not recorded, e.g. read back from a cache)
    cutter: str = field(default="", compare=False)


def resolve_cutter(cutter: str | None = None) -> str:
    """The cutter to use: `cutter`, else $AVSL_BENCH_CUTTER, else `pyav` (`ffmpeg` when PyAV is not installed)."""
    name = cutter or os.environ.get(CUTTER_ENV) or "pyav"
    if name not in CUTTERS:
        origin = "cutter" if cutter else f"${CUTTER_ENV}"
        raise ValueError(f"{origin} must be one of {', '.join(CUTTERS)}, got {name!r}")
    if name == "pyav" and not decode.available():
        return "ffmpeg"
    return name


def _check_cutter(cutter: str) -> str:
    if cutter not in CUTTERS:
        raise ValueError(f"cutter must be one of {', '.join(CUTTERS)}, got {cutter!r}")
    return cutter


def cutter_info(cutter: str | None = None) -> dict[str, Any]:
    """Provenance of a resolved cutter (default: `resolve_cutter()`): its name, and PyAV's and its libav*
    versions where it is `pyav`.

    Record it beside `ffmpeg.ffmpeg_info` (the binary that cuts what PyAV cannot, or everything with `ffmpeg`).
    """
    name = resolve_cutter() if cutter is None else _check_cutter(cutter)
    info: dict[str, Any] = {"cutter": name, "fallback": "ffmpeg" if name == "pyav" else None}
    if name == "pyav":
        info["pyav"] = decode.pyav_versions()
    return info


def cutter_name(record: Mapping[str, Any]) -> str:
    """`ffmpeg`, or `pyav <version> (<libav* version>)` for a `cutter_info` record."""
    versions = record.get("pyav") or {}
    if record.get("cutter") != "pyav":
        return str(record.get("cutter"))
    return f"pyav {versions.get('pyav', '?')} ({versions.get('ffmpeg') or versions.get('libavcodec', '?')})"


def cut_variant(facts: Mapping[str, Any]) -> str:
    """The name of a cut cache: 16 hex digits of the sha256 of the canonical JSON of what decides the cuts'
    bytes (cut facts, ffmpeg build sha256, `cutter_info` record), so a cache never serves another way's cuts."""
    return sha256_bytes(canonical_json(dict(facts)).encode())[:16]


def run_cut(
    argv: list[str],
    src: str | Path,
    *,
    timeout: float | None,
    video: bool = True,
    audio: bool = True,
    frame_time: float | None = None,
    check_exit: bool = True,
) -> tuple[FfmpegRun, dict[str, Any]]:
    """Run one ffmpeg cut of `src` and turn its failure into a `CutError`: (run, facts of input 0).

    The one ladder of CUT_REASONS: `timeout` (the process group was killed), `ffmpeg_error` (input unreadable),
    `no_video_stream` / `no_audio_stream` (where `video` / `audio` is needed), `no_frame` (`frame_time` given: the
    frame went to stdout and nothing came, the media ending before it), then `ffmpeg_error` for any other non-zero
    exit (unless `check_exit` is False, e.g. for a bare `ffmpeg -i` probe, which always exits non-zero).
    """
    try:
        run = run_ffmpeg(argv, timeout=timeout)
    except FfmpegTimeout as exc:
        raise CutError("timeout", f"{Path(src).name}: {exc}") from None
    info = parse_input_info(run.stderr, 0)
    if info is None:
        raise CutError("ffmpeg_error", run.last_line)
    if video and not info["has_video"]:
        raise CutError("no_video_stream", f"{Path(src).name} has no video stream")
    if audio and not info["has_audio"]:
        raise CutError("no_audio_stream", f"{Path(src).name} has no audio stream")
    if frame_time is not None and not run.stdout and (run.returncode == 0 or _NO_FRAME.search(run.stderr)):
        raise CutError("no_frame", f"no frame at >= {frame_time:g} s (duration {info['duration']})")
    if check_exit and run.returncode != 0:
        raise CutError("ffmpeg_error", run.last_line)
    return run, info


def audio_window_bounds(audio_window: float, frame_time: float = FRAME_TIME) -> tuple[float, float]:
    """Clip-relative [start, end) of the stored audio: [0, 10) for 10 s, else centred on the frame time."""
    if audio_window <= 0:
        raise ValueError(f"audio_window must be positive, got {audio_window}")
    start = max(0.0, frame_time - audio_window / 2.0)
    return (start, start + audio_window)


def _sec(value: float) -> str:
    """Seconds as a short exact decimal for the ffmpeg command line (5.0 -> '5', 3.5 -> '3.5')."""
    text = f"{value:.6f}".rstrip("0").rstrip(".")
    return text if text not in ("", "-0") else "0"


def cut_argv(
    exe: str,
    src: str | Path,
    flac_path: str | Path,
    *,
    start_offset: float = 0.0,
    frame_time: float = FRAME_TIME,
    audio_window: float = CLIP_LENGTH,
) -> list[str]:
    """The ffmpeg command of `cut_clip` (JPEG to stdout, FLAC to `flac_path`)."""
    a0, a1 = audio_window_bounds(audio_window, frame_time)
    return [
        exe, *BASE_ARGS, "-filter_threads", "1",
        "-threads", "1", "-ss", _sec(start_offset + frame_time), "-i", str(src),
        "-threads", "1", "-ss", _sec(start_offset + a0), "-t", _sec(a1 - a0), "-i", str(src),
        "-map", "0:v:0", "-frames:v", "1", "-vf", "setsar=1", "-c:v", "mjpeg", "-q:v", "2", "-threads", "1",
        *BITEXACT_ARGS, "-f", "image2pipe", "pipe:1",
        "-map", "1:a:0", "-vn", "-ac", "1", "-ar", str(SAMPLE_RATE), *FLAC_ARGS, "-threads", "1",
        *BITEXACT_ARGS, "-f", "flac", "-y", str(flac_path),
    ]  # fmt: skip


def cut_clip(
    src: str | Path,
    *,
    start_offset: float = 0.0,
    audio_window: float = CLIP_LENGTH,
    frame_time: float = FRAME_TIME,
    exe: str | None = None,
    timeout: float = 60.0,
    tmp_dir: str | Path | None = None,
    cutter: str = "pyav",
) -> CutResult:
    """Cut `src` (a clip starting at `start_offset` seconds of the file) into JPEG + FLAC; raise CutError.

    `cutter` is a resolved name (`resolve_cutter` at the caller's entry), `pyav` or `ffmpeg`. With `pyav`, a file
    PyAV cannot cut (or PyAV missing) is cut by ffmpeg within what is left of `timeout`; PyAV running past
    `timeout` is a `timeout` failure.

    >>> result = cut_clip("clip.mp4")  # doctest: +SKIP
    >>> (result.width, result.height, result.samples)  # doctest: +SKIP
    (320, 240, 160000)
    """
    window = audio_window_bounds(audio_window, frame_time)
    t0 = time.perf_counter()
    if _check_cutter(cutter) == "pyav":
        try:
            got = decode.cut_pyav(src, start_offset=start_offset, frame_time=frame_time, window=window,
                                  timeout=timeout)  # fmt: skip
        except decode.DecodeTimeout:
            raise CutError("timeout", f"{Path(src).name}: in-process cut exceeded {timeout:g} s") from None
        except decode.DecodeError:
            pass  # ffmpeg cuts it, or classifies why it cannot be cut
        else:
            try:
                return _result(got.jpg, got.flac, window, frame_time, got.clip_duration, t0, "pyav")
            except CutError:
                pass  # blobs the checks refuse: the same, through ffmpeg
        timeout = max(timeout - (time.perf_counter() - t0), 1.0)
    return _cut_ffmpeg(src, start_offset=start_offset, audio_window=audio_window, frame_time=frame_time, exe=exe,
                       timeout=timeout, tmp_dir=tmp_dir, t0=t0)  # fmt: skip


def cut_outcome(
    src: str | Path,
    start_offset: float,
    audio_window: float,
    frame_time: float,
    exe: str | None,
    timeout: float,
    tmp_dir: str | Path | None,
    cutter: str,
) -> CutResult | CutError:
    """`cut_clip` with its CutError returned, not raised: the work function of a `cut_pool`."""
    try:
        return cut_clip(src, start_offset=start_offset, audio_window=audio_window, frame_time=frame_time, exe=exe,
                        timeout=timeout, tmp_dir=tmp_dir, cutter=cutter)  # fmt: skip
    except CutError as exc:
        return exc


def cuts_in_processes(cutter: str) -> bool:
    """Whether cuts with a resolved `cutter` belong in processes: PyAV's per-packet Python holds the GIL, while the
    ffmpeg cutter only waits on its process (threads suffice)."""
    return _check_cutter(cutter) == "pyav"


def cut_pool(cutter: str, workers: int) -> Executor:
    """A pool of `workers` for `cut_outcome` calls with a resolved `cutter`: processes for `pyav`, threads for
    `ffmpeg` (which runs a process per clip anyway).

    The processes are spawned, not forked (the caller's other threads, e.g. downloads, may hold locks). They ignore
    SIGINT, so the caller's Ctrl-C cancels the queued cuts and waits for the running ones as with threads, and
    they exit when the caller dies, even by SIGKILL.
    """
    if not cuts_in_processes(cutter):
        return ThreadPoolExecutor(workers, thread_name_prefix="cut")
    return ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("spawn"), initializer=_pool_process)


def _pool_process() -> None:
    """Set up one `cut_pool` process: SIGINT ignored, a watcher that exits once the parent is gone."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    parent = multiprocessing.parent_process()

    def exit_with_parent() -> None:
        parent.join()  # returns when the parent's end of the spawn pipe closes: it exited
        os._exit(1)

    threading.Thread(target=exit_with_parent, name="exit-with-parent", daemon=True).start()


def _cut_ffmpeg(src, *, start_offset, audio_window, frame_time, exe, timeout, tmp_dir, t0) -> CutResult:
    """The one-process ffmpeg cut (`cut_argv`, `run_cut`)."""
    exe = exe or find_ffmpeg()
    window = audio_window_bounds(audio_window, frame_time)
    with tempfile.TemporaryDirectory(prefix="avsl-cut-", dir=tmp_dir) as tmp:
        flac_path = Path(tmp) / "audio.flac"
        argv = cut_argv(
            exe, src, flac_path, start_offset=start_offset, frame_time=frame_time, audio_window=audio_window
        )
        run, info = run_cut(argv, src, timeout=timeout, frame_time=frame_time)
        jpg = run.stdout
        flac = flac_path.read_bytes() if flac_path.is_file() else b""
    return _result(jpg, flac, window, frame_time, info["duration"], t0, "ffmpeg")


def _result(jpg: bytes, flac: bytes, window, frame_time: float, duration, t0: float, cutter: str) -> CutResult:
    """Check both blobs (JPEG readable; FLAC 16 kHz mono 16-bit, not empty) and describe them."""
    width, height = _jpeg_size(jpg)
    samples = _flac_samples(flac)
    return CutResult(
        jpg=jpg, flac=flac, width=width, height=height, samples=samples, sample_rate=SAMPLE_RATE,
        frame_time=float(frame_time), audio_window=window, clip_duration=duration,
        jpg_sha256=sha256_bytes(jpg), flac_sha256=sha256_bytes(flac), elapsed_s=time.perf_counter() - t0,
        cutter=cutter,
    )  # fmt: skip


def _jpeg_size(jpg: bytes) -> tuple[int, int]:
    from PIL import Image

    try:
        with Image.open(io.BytesIO(jpg)) as img:
            if img.format != "JPEG":
                raise CutError("bad_output", f"frame is {img.format}, not JPEG")
            return img.size
    except CutError:
        raise
    except Exception as exc:
        raise CutError("bad_output", f"frame is not a readable JPEG: {exc}") from None


def _flac_samples(flac: bytes) -> int:
    if not flac:
        raise CutError("no_audio_samples", "audio window produced no FLAC output")
    try:
        info = flac_streaminfo(flac)
    except ValueError as exc:
        raise CutError("bad_output", str(exc)) from None
    if (info["sample_rate"], info["channels"], info["bits_per_sample"]) != (SAMPLE_RATE, 1, 16):
        got = f"{info['sample_rate']} Hz/{info['channels']} ch/{info['bits_per_sample']} bit"
        raise CutError("bad_output", f"FLAC is {got}, expected {SAMPLE_RATE} Hz/1 ch/16 bit")
    if info["total_samples"] == 0:
        raise CutError("no_audio_samples", "no audio samples in the window")
    return int(info["total_samples"])
