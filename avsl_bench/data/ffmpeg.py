"""The ffmpeg binary: locate it, describe it, run it, encode FLAC, probe media without ffprobe (data spec §4)."""

from __future__ import annotations

import functools
import os
import re
import shutil
import signal
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from ..errors import AvslBenchError
from ..files import sha256_file

ENV_VAR = "AVSL_BENCH_FFMPEG"

#: Output options that strip metadata and encoder/version tags (same bytes on every run of one build).
BITEXACT_ARGS: tuple[str, ...] = ("-map_metadata", "-1", "-fflags", "+bitexact", "-flags", "+bitexact")
#: FLAC output: 16-bit, no 8 KiB PADDING block (decoded content is unaffected).
FLAC_ARGS: tuple[str, ...] = ("-c:a", "flac", "-sample_fmt", "s16", "-metadata_header_padding", "0")
#: Options every invocation starts with.
BASE_ARGS: tuple[str, ...] = ("-nostdin", "-hide_banner", "-nostats")


class FfmpegError(AvslBenchError):
    """ffmpeg is missing, unusable, or failed on an input (the message is its last stderr line)."""


class FfmpegTimeout(FfmpegError):
    """An ffmpeg run exceeded its time limit; its process group was killed."""


# --------------------------------------------------------------------------- locate / describe


def _resolve_executable(candidate: str, origin: str) -> str:
    """Absolute path of `candidate` (a path or a name on PATH); FfmpegError naming `origin` if unusable."""
    if os.sep in candidate or Path(candidate).exists():
        path = Path(candidate).expanduser()
        if path.is_file() and os.access(path, os.X_OK):
            return str(path.resolve())
        raise FfmpegError(f"ffmpeg from {origin} is not an executable file: {candidate}")
    found = shutil.which(candidate)
    if found is None:
        raise FfmpegError(f"ffmpeg from {origin} not found on PATH: {candidate}")
    return str(Path(found).resolve())


def find_ffmpeg(explicit: str | None = None) -> str:
    """Path of the ffmpeg to use: `explicit` (`--ffmpeg`), else $AVSL_BENCH_FFMPEG, else `ffmpeg` on PATH,
    else the imageio-ffmpeg bundled binary.

    >>> Path(find_ffmpeg()).is_file()
    True
    """
    if explicit:
        return _resolve_executable(explicit, "--ffmpeg")
    env = os.environ.get(ENV_VAR)
    if env:
        return _resolve_executable(env, f"${ENV_VAR}")
    on_path = shutil.which("ffmpeg")
    if on_path:
        return str(Path(on_path).resolve())
    try:
        import imageio_ffmpeg

        return str(Path(imageio_ffmpeg.get_ffmpeg_exe()).resolve())
    except Exception as exc:  # imageio-ffmpeg raises RuntimeError when its binary is absent
        raise FfmpegError(f"no ffmpeg found (--ffmpeg, ${ENV_VAR}, PATH, imageio-ffmpeg): {exc}") from exc


@functools.lru_cache(maxsize=8)
def ffmpeg_info(exe: str) -> dict[str, str]:
    """`{"path", "version_line", "sha256"}` of a binary: first line of `ffmpeg -version` and the file's digest."""
    proc = subprocess.run([exe, "-version"], capture_output=True, timeout=30, check=False)
    lines = proc.stdout.decode("utf-8", "replace").splitlines()
    if proc.returncode != 0 or not lines:
        raise FfmpegError(f"{exe} -version failed (exit {proc.returncode})")
    return {"path": exe, "version_line": lines[0].strip(), "sha256": sha256_file(exe)}


# --------------------------------------------------------------------------- run


@dataclass(frozen=True)
class FfmpegRun:
    """Outcome of one ffmpeg process."""

    returncode: int
    stdout: bytes
    stderr: str

    @property
    def last_line(self) -> str:
        """Last non-empty stderr line (what the manifest records as the message)."""
        lines = [ln.strip() for ln in self.stderr.splitlines() if ln.strip()]
        return lines[-1] if lines else f"exit code {self.returncode}"


def run_ffmpeg(argv: Sequence[str], *, stdin: bytes | None = None, timeout: float | None = 60.0) -> FfmpegRun:
    """Run `argv` in its own process group; on timeout kill the whole group and raise FfmpegTimeout."""
    proc = subprocess.Popen(
        list(argv),
        stdin=subprocess.PIPE if stdin is not None else subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        start_new_session=True,
    )
    try:
        out, err = proc.communicate(input=stdin, timeout=timeout)
    except subprocess.TimeoutExpired:
        _kill_group(proc)
        proc.communicate()
        raise FfmpegTimeout(f"ffmpeg exceeded {timeout:g} s and was killed") from None
    except BaseException:
        _kill_group(proc)
        proc.communicate()
        raise
    return FfmpegRun(proc.returncode, out, err.decode("utf-8", "replace"))


def _kill_group(proc: subprocess.Popen) -> None:
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        proc.kill()


# --------------------------------------------------------------------------- FLAC


def encode_flac(pcm: np.ndarray, sample_rate: int, exe: str | None = None, *, timeout: float = 60.0) -> bytes:
    """Encode mono int16 PCM as 16-bit FLAC (bitexact, no tags, no padding).

    PCM goes in through stdin. The FLAC goes to a private temp file, not stdout: on a pipe ffmpeg cannot
    rewrite STREAMINFO, which would then lack the sample count and MD5 (libsndfile refuses such files).

    >>> data = encode_flac(np.zeros(1600, np.int16), 16000)
    >>> flac_streaminfo(data)["total_samples"]
    1600
    """
    if not isinstance(pcm, np.ndarray) or pcm.dtype != np.int16 or pcm.ndim != 1:
        got = f"{type(pcm).__name__} {getattr(pcm, 'dtype', '')} ndim={getattr(pcm, 'ndim', '?')}"
        raise ValueError(f"pcm must be a 1-D int16 numpy array, got {got}")
    if pcm.size == 0:
        raise ValueError("pcm is empty")
    if int(sample_rate) <= 0:
        raise ValueError(f"sample_rate must be positive, got {sample_rate}")
    exe = exe or find_ffmpeg()
    with tempfile.TemporaryDirectory(prefix="avsl-flac-") as tmp:
        out = Path(tmp) / "audio.flac"
        argv = [
            exe, *BASE_ARGS, "-loglevel", "error", "-threads", "1",
            "-f", "s16le", "-ar", str(int(sample_rate)), "-ac", "1", "-i", "pipe:0",
            "-threads", "1", *FLAC_ARGS, *BITEXACT_ARGS, "-f", "flac", "-y", str(out),
        ]  # fmt: skip
        run = run_ffmpeg(argv, stdin=pcm.astype("<i2", copy=False).tobytes(), timeout=timeout)
        if run.returncode != 0 or not out.is_file():
            raise FfmpegError(f"FLAC encoding failed: {run.last_line}")
        return out.read_bytes()


def flac_streaminfo(data: bytes) -> dict[str, Any]:
    """Parse the STREAMINFO block of a FLAC byte string: sample_rate, channels, bits, total_samples, md5."""
    if len(data) < 42 or data[:4] != b"fLaC" or (data[4] & 0x7F) != 0:
        raise ValueError("not a FLAC stream (no fLaC marker / STREAMINFO block)")
    info = data[8:42]
    packed = int.from_bytes(info[10:18], "big")  # 20 bits rate, 3 channels-1, 5 bps-1, 36 total samples
    return {
        "sample_rate": packed >> 44,
        "channels": ((packed >> 41) & 0x7) + 1,
        "bits_per_sample": ((packed >> 36) & 0x1F) + 1,
        "total_samples": packed & ((1 << 36) - 1),
        "md5": info[18:34].hex(),
    }


# --------------------------------------------------------------------------- probe

_DURATION = re.compile(r"Duration:\s*(?:(\d+):(\d+):(\d+(?:\.\d+)?)|N/A)(?:,\s*start:\s*(-?\d+(?:\.\d+)?))?")
_STREAM = re.compile(r"^\s*Stream #(\d+):(\d+)\S*:\s*(Video|Audio|Subtitle|Data|Attachment):\s*(.*)$")
_SIZE = re.compile(r"^(\d+)x(\d+)(?:\s|$)")
_RATE = re.compile(r"^(\d+) Hz$")


def _split_top_level(text: str) -> list[str]:
    """Split an ffmpeg stream description at commas outside parentheses/brackets."""
    parts, depth, cur = [], 0, []
    for ch in text:
        if ch in "([":
            depth += 1
        elif ch in ")]":
            depth = max(0, depth - 1)
        if ch == "," and depth == 0:
            parts.append("".join(cur).strip())
            cur = []
        else:
            cur.append(ch)
    parts.append("".join(cur).strip())
    return [p for p in parts if p]


def parse_input_info(stderr: str, index: int = 0) -> dict[str, Any] | None:
    """Facts about input `index` from ffmpeg's stderr header, or None when no such input was printed.

    Keys: duration, start (seconds or None), has_video, has_audio, width, height, video_codec,
    audio_codec, sample_rate (first video/audio stream; None where absent).
    """
    lines = stderr.splitlines()
    head = f"Input #{index},"
    try:
        first = next(i for i, ln in enumerate(lines) if ln.startswith(head))
    except StopIteration:
        return None
    info: dict[str, Any] = {
        "duration": None, "start": None, "has_video": False, "has_audio": False, "width": None,
        "height": None, "video_codec": None, "audio_codec": None, "sample_rate": None,
    }  # fmt: skip
    for line in lines[first + 1 :]:
        if not line.startswith((" ", "\t")):
            break  # next section: another input, an output, "Stream mapping:", a log line
        dur = _DURATION.search(line)
        if dur and info["duration"] is None and "Duration:" in line:
            if dur.group(1) is not None:
                info["duration"] = int(dur.group(1)) * 3600 + int(dur.group(2)) * 60 + float(dur.group(3))
            if dur.group(4) is not None:
                info["start"] = float(dur.group(4))
            continue
        stream = _STREAM.match(line)
        if not stream or int(stream.group(1)) != index:
            continue
        kind, tokens = stream.group(3), _split_top_level(stream.group(4))
        codec = tokens[0].split(" ")[0] if tokens else None
        if kind == "Video" and not info["has_video"]:
            info.update(has_video=True, video_codec=codec)
            for tok in tokens[1:]:
                size = _SIZE.match(tok)
                if size:
                    info.update(width=int(size.group(1)), height=int(size.group(2)))
                    break
        elif kind == "Audio" and not info["has_audio"]:
            info.update(has_audio=True, audio_codec=codec)
            for tok in tokens[1:]:
                rate = _RATE.match(tok)
                if rate:
                    info["sample_rate"] = int(rate.group(1))
                    break
    return info


def probe(path: str | os.PathLike, exe: str | None = None, *, timeout: float = 30.0) -> dict[str, Any]:
    """Describe a media file by parsing `ffmpeg -i PATH` stderr (no ffprobe); see `parse_input_info`.

    Raises FfmpegError when ffmpeg cannot open the file.
    """
    exe = exe or find_ffmpeg()
    run = run_ffmpeg([exe, *BASE_ARGS, "-i", str(path)], timeout=timeout)
    info = parse_input_info(run.stderr, 0)
    if info is None:
        raise FfmpegError(f"cannot read {path}: {run.last_line}")
    return info
