"""Media fixtures made with the ffmpeg binary: short mp4s whose frames encode their own index."""

from __future__ import annotations

import functools
import subprocess
from pathlib import Path

import numpy as np
import pytest

from avsl_bench.data.ffmpeg import find_ffmpeg

#: Frames show their index as 10 vertical stripes of 16 px (bit b white <=> bit b of the index set).
STRIPES, STRIPE_W, HEIGHT = 10, 16, 96
_INDEX_VIDEO = (
    "color=black:s={w}x{h}:r={rate}:d={dur},format=gray,"
    "geq=lum='255*mod(floor(N/pow(2\\,floor(X/{sw})))\\,2)',format=yuv420p"
)

# name: (video lavfi or None, audio lavfi or None, extra output args)
_CLIPS = {
    # 25 fps, 10 s, GOP 40 with B-frames: t = 5.0 s is frame 125, mid-GOP (keyframe at 120)
    "idx25": (dict(rate="25", dur=10), "sine=f=440:d=10:sample_rate=44100", ["-g", "40"]),
    # NTSC rate: frame 149 is at 4.972 s, frame 150 at 5.005 s
    "idx2997": (dict(rate="30000/1001", dur=8), "sine=f=660:d=8:sample_rate=48000", ["-g", "48"]),
    "video_only": (dict(rate="25", dur=6), None, []),
    "audio_only": (None, "sine=f=440:d=6:sample_rate=44100", []),
    "short": (dict(rate="25", dur=4), "sine=f=440:d=4:sample_rate=44100", []),
    "plain": (dict(rate="25", dur=6), "sine=f=880:d=6:sample_rate=44100", ["-g", "25"]),
}


@functools.lru_cache(maxsize=None)
def _video_codec_args(exe: str) -> tuple[str, ...]:
    """libx264 (B-frames) where the binary has it, else mpeg4 with B-frames."""
    encoders = subprocess.run([exe, "-hide_banner", "-encoders"], capture_output=True, text=True).stdout
    if " libx264 " in encoders:
        return ("-c:v", "libx264", "-preset", "veryfast")
    return ("-c:v", "mpeg4", "-q:v", "3", "-bf", "2")


def _clip_argv(exe: str, out: Path, video: dict | None, audio: str | None, extra: list[str]) -> list[str]:
    argv = [exe, "-nostdin", "-hide_banner", "-loglevel", "error", "-y"]
    if video is not None:
        spec = _INDEX_VIDEO.format(w=STRIPES * STRIPE_W, h=HEIGHT, sw=STRIPE_W, **video)
        argv += ["-f", "lavfi", "-i", spec]
    if audio is not None:
        argv += ["-f", "lavfi", "-i", audio]
    if video is not None:
        argv += [*_video_codec_args(exe), "-pix_fmt", "yuv420p", *extra]
    if audio is not None:
        argv += ["-c:a", "aac", "-b:a", "64k"]
    return argv + [str(out)]


def frame_index(jpg: bytes) -> int:
    """Decode the stripe code of a fixture frame."""
    import io

    from PIL import Image

    gray = np.asarray(Image.open(io.BytesIO(jpg)).convert("L"), dtype=np.float64)
    bits = [gray[:, b * STRIPE_W + 4 : (b + 1) * STRIPE_W - 4].mean() > 128 for b in range(STRIPES)]
    return sum(int(bit) << b for b, bit in enumerate(bits))


@pytest.fixture(scope="session")
def ffmpeg_exe() -> str:
    return find_ffmpeg()


@pytest.fixture(scope="session")
def media(tmp_path_factory, ffmpeg_exe) -> dict[str, Path]:
    """name -> mp4 path for the clips in `_CLIPS` (encoded in parallel, once per session)."""
    root = tmp_path_factory.mktemp("media")
    procs, paths = [], {}
    for name, (video, audio, extra) in _CLIPS.items():
        paths[name] = root / f"{name}.mp4"
        procs.append(subprocess.Popen(_clip_argv(ffmpeg_exe, paths[name], video, audio, extra), stderr=subprocess.PIPE))
    for proc in procs:
        _, err = proc.communicate(timeout=120)
        assert proc.returncode == 0, err.decode()
    (root / "not_media.mp4").write_bytes(b"this is not a video\n" * 10)
    paths["not_media"] = root / "not_media.mp4"
    return paths
