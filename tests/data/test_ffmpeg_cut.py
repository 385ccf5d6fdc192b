"""ffmpeg discovery, FLAC encoding, probing without ffprobe, and the clip cut by both cutters (spec §3, §4)."""

from __future__ import annotations

import dataclasses
import io
import os
import pickle
import signal
import stat
import subprocess
import sys
import time
from concurrent.futures import ProcessPoolExecutor, ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
from PIL import Image

from avsl_bench.data import cut as cut_mod
from avsl_bench.data import decode
from avsl_bench.data import ffmpeg as ff
from avsl_bench.data.cut import (
    CUTTER_ENV, CutError, audio_window_bounds, cut_argv, cut_clip, cut_outcome, cut_pool, cutter_info,
    resolve_cutter,
)  # fmt: skip
from avsl_bench.data.ffmpeg import (
    FfmpegError, FfmpegTimeout, encode_flac, find_ffmpeg, flac_streaminfo, probe, run_ffmpeg,
)  # fmt: skip

from .conftest import frame_index

REPO = Path(__file__).resolve().parents[2]

# --------------------------------------------------------------------------- find / info


def _fake_exe(path):
    path.write_text("#!/bin/sh\necho 'ffmpeg version fake'\n")
    path.chmod(path.stat().st_mode | stat.S_IXUSR)
    return path


def test_find_ffmpeg_order(tmp_path, monkeypatch):
    explicit, env = _fake_exe(tmp_path / "explicit"), _fake_exe(tmp_path / "env")
    on_path = tmp_path / "bin"
    on_path.mkdir()
    _fake_exe(on_path / "ffmpeg")
    monkeypatch.setenv("PATH", str(on_path))
    monkeypatch.setenv(ff.ENV_VAR, str(env))
    assert find_ffmpeg(str(explicit)) == str(explicit.resolve())
    assert find_ffmpeg() == str(env.resolve())
    monkeypatch.delenv(ff.ENV_VAR)
    assert find_ffmpeg() == str((on_path / "ffmpeg").resolve())
    monkeypatch.setenv("PATH", str(tmp_path / "empty"))
    import imageio_ffmpeg

    assert find_ffmpeg() == str(os.path.realpath(imageio_ffmpeg.get_ffmpeg_exe()))


def test_find_ffmpeg_rejects_missing(tmp_path, monkeypatch):
    with pytest.raises(FfmpegError, match="--ffmpeg"):
        find_ffmpeg(str(tmp_path / "nope"))
    monkeypatch.setenv(ff.ENV_VAR, str(tmp_path / "nope"))
    with pytest.raises(FfmpegError, match="AVSL_BENCH_FFMPEG"):
        find_ffmpeg()


def test_ffmpeg_info(ffmpeg_exe):
    info = ff.ffmpeg_info(ffmpeg_exe)
    assert info["version_line"].startswith("ffmpeg version")
    assert len(info["sha256"]) == 64 and info["path"] == ffmpeg_exe
    assert ff.ffmpeg_info(ffmpeg_exe) is info  # cached


# --------------------------------------------------------------------------- FLAC / probe


def test_encode_flac_roundtrip_and_deterministic(ffmpeg_exe):
    rng = np.random.default_rng(0)
    pcm = (rng.standard_normal(48000) * 3000).astype(np.int16)
    data = encode_flac(pcm, 16000, ffmpeg_exe)
    assert data == encode_flac(pcm, 16000, ffmpeg_exe)
    decoded, rate = sf.read(io.BytesIO(data), dtype="int16")
    assert rate == 16000 and np.array_equal(decoded, pcm)
    info = flac_streaminfo(data)
    assert info == {**info, "sample_rate": 16000, "channels": 1, "bits_per_sample": 16, "total_samples": 48000}
    assert info["md5"] != "0" * 32  # a complete STREAMINFO (not the piped placeholder)
    assert b"Lavf" not in data and b"Lavc" not in data


@pytest.mark.parametrize("bad", [np.zeros(10, np.float32), np.zeros((2, 10), np.int16), np.zeros(0, np.int16), [0, 1]])
def test_encode_flac_rejects_bad_pcm(bad, ffmpeg_exe):
    with pytest.raises(ValueError):
        encode_flac(bad, 16000, ffmpeg_exe)


def test_probe(media, ffmpeg_exe):
    info = probe(media["idx25"], ffmpeg_exe)
    assert info["has_video"] and info["has_audio"]
    assert (info["width"], info["height"]) == (160, 96)
    assert info["duration"] == pytest.approx(10.0, abs=0.05)
    assert (info["video_codec"], info["audio_codec"], info["sample_rate"]) == ("h264", "aac", 44100)
    assert probe(media["video_only"], ffmpeg_exe)["has_audio"] is False
    assert probe(media["audio_only"], ffmpeg_exe)["has_video"] is False
    with pytest.raises(FfmpegError):
        probe(media["not_media"], ffmpeg_exe)


def test_parse_input_info_does_not_read_hex_tags_as_size():
    stderr = (
        "Input #0, mov,mp4,m4a,3gp,3g2,mj2, from 'x.mp4':\n"
        "  Duration: 00:01:02.50, start: 0.023220, bitrate: 349 kb/s\n"
        "  Stream #0:0[0x1](und): Video: h264 (High) (avc1 / 0x31637661), yuv420p(tv, bt709, progressive), "
        "854x480 [SAR 1:1 DAR 427:240], 25 fps\n"
        "  Stream #0:1[0x2](eng): Audio: opus, 48000 Hz, stereo, fltp (default)\n"
        "Stream mapping:\n"
    )
    info = ff.parse_input_info(stderr)
    assert (info["width"], info["height"], info["sample_rate"]) == (854, 480, 48000)
    assert info["duration"] == pytest.approx(62.5) and info["start"] == pytest.approx(0.02322)
    assert ff.parse_input_info(stderr, 1) is None


def test_run_ffmpeg_timeout_kills_group(ffmpeg_exe):
    t0 = time.perf_counter()
    with pytest.raises(FfmpegTimeout):
        run_ffmpeg([ffmpeg_exe, "-nostdin", "-re", "-f", "lavfi", "-i", "testsrc2=d=60", "-f", "null", "-"],
                   timeout=0.5)
    assert time.perf_counter() - t0 < 10


# --------------------------------------------------------------------------- cut


@pytest.fixture(params=["pyav", "ffmpeg"])
def cutter(request) -> str:
    return request.param


@pytest.mark.parametrize(("name", "expected"), [("idx25", 125), ("idx2997", 150)])
def test_frame_is_first_at_or_after_5s(media, ffmpeg_exe, cutter, name, expected):
    """25 fps: frame 125 is exactly 5.0 s (mid-GOP); 29.97 fps: frame 149 is 4.97 s, 150 is 5.005 s."""
    result = cut_clip(media[name], exe=ffmpeg_exe, cutter=cutter)
    assert result.cutter == cutter
    assert frame_index(result.jpg) == expected
    assert (result.width, result.height) == (160, 96)
    with Image.open(io.BytesIO(result.jpg)) as img:
        assert img.format == "JPEG" and img.size == (160, 96)


def test_audio_is_16k_mono_s16_160000_samples(media, ffmpeg_exe, cutter):
    result = cut_clip(media["idx25"], exe=ffmpeg_exe, cutter=cutter)
    info = sf.info(io.BytesIO(result.flac))
    assert (info.samplerate, info.channels, info.subtype, info.format) == (16000, 1, "PCM_16", "FLAC")
    pcm, _ = sf.read(io.BytesIO(result.flac), dtype="int16")
    assert pcm.shape == (160000,) == (result.samples,)
    assert result.audio_window == (0.0, 10.0) and result.clip_duration == pytest.approx(10.0, abs=0.05)
    spectrum = np.abs(np.fft.rfft(pcm[16000:32000].astype(np.float64)))
    assert np.argmax(spectrum) == pytest.approx(440, abs=2)  # 1 s of audio -> 1 Hz bins


def test_cut_is_bitexact(media, ffmpeg_exe, cutter):
    a = cut_clip(media["idx25"], exe=ffmpeg_exe, cutter=cutter)
    b = cut_clip(media["idx25"], exe=ffmpeg_exe, cutter=cutter)
    assert (a.jpg, a.flac) == (b.jpg, b.flac) and a == b
    assert b"Lavc" not in a.jpg and b"Lavf" not in a.flac and b"Lavc" not in a.flac


def test_full_length_offset_and_centred_window(media, ffmpeg_exe, cutter):
    shifted = cut_clip(media["idx25"], start_offset=2.0, exe=ffmpeg_exe, cutter=cutter)
    assert frame_index(shifted.jpg) == 175  # 2 s + 5 s at 25 fps
    assert shifted.samples == 128000  # only 8 s of audio remain after 2 s
    short = cut_clip(media["idx25"], audio_window=3.0, exe=ffmpeg_exe, cutter=cutter)
    assert short.audio_window == (3.5, 6.5) and short.samples == 48000
    assert short.jpg == cut_clip(media["idx25"], exe=ffmpeg_exe, cutter=cutter).jpg


def test_cut_argv_shape():
    argv = cut_argv("ffmpeg", "c.mp4", "a.flac", start_offset=30, audio_window=3)
    assert argv.count("-i") == 2 and argv.count("-threads") == 4
    assert argv[argv.index("-ss") + 1] == "35" and argv[argv.index("-t") - 1] == "33.5"
    assert argv[argv.index("-t") + 1] == "3"
    assert argv.count("-map_metadata") == 2 and argv.count("+bitexact") == 4
    assert "soxr" not in " ".join(argv)
    assert audio_window_bounds(10.0) == (0.0, 10.0)


@pytest.mark.parametrize(
    ("name", "reason"),
    [
        ("video_only", "no_audio_stream"),
        ("audio_only", "no_video_stream"),
        ("short", "no_frame"),
        ("not_media", "ffmpeg_error"),
        ("truncated", "ffmpeg_error"),
    ],
)
def test_cut_failures_are_classified(media, ffmpeg_exe, cutter, name, reason, tmp_path):
    if name == "truncated":  # the first half of an mp4: its index (moov, written last) is missing
        data = media["idx25"].read_bytes()
        (tmp_path / "truncated.mp4").write_bytes(data[: len(data) // 2])
        media = {name: tmp_path / "truncated.mp4"}
    with pytest.raises(CutError) as info:
        cut_clip(media[name], exe=ffmpeg_exe, cutter=cutter)
    assert info.value.reason == reason
    assert str(info.value).startswith(f"{reason}: ")


def test_cut_timeout_and_pickle(media, ffmpeg_exe):
    with pytest.raises(CutError) as info:
        cut_clip(media["idx25"], exe=ffmpeg_exe, timeout=0.001)
    assert info.value.reason == "timeout"
    again = pickle.loads(pickle.dumps(info.value))
    assert (again.reason, again.message, str(again)) == (info.value.reason, info.value.message, str(info.value))


def test_cut_outcomes_survive_pickling_with_every_field(media, ffmpeg_exe):
    """What a `cut_pool` process sends back: a CutResult (fields outside `==` too) or a CutError."""
    result = cut_clip(media["idx25"], exe=ffmpeg_exe, cutter="pyav")
    again = pickle.loads(pickle.dumps(result))
    assert dataclasses.astuple(again) == dataclasses.astuple(result) and again.elapsed_s > 0
    assert type(again.audio_window) is tuple and again.cutter == "pyav"
    error = CutError("no_frame", "no frame at >= 5 s (duration 4.0)")
    back = pickle.loads(pickle.dumps(error))
    assert (type(back), back.args, back.reason, back.message) == (CutError, error.args, error.reason, error.message)


def test_cut_pool_cuts_pyav_in_processes(media, ffmpeg_exe, tmp_path):
    args = dict(start_offset=0.0, audio_window=10.0, frame_time=5.0, exe=ffmpeg_exe, timeout=60.0, tmp_dir=tmp_path)
    with cut_pool("ffmpeg", 2) as pool:
        assert isinstance(pool, ThreadPoolExecutor)
    with cut_pool("pyav", 2) as pool:
        assert isinstance(pool, ProcessPoolExecutor)
        got = [pool.submit(cut_outcome, media[name], cutter="pyav", **args) for name in ("idx25", "video_only")]
        pids = {pool.submit(os.getpid).result() for _ in range(4)}
    assert os.getpid() not in pids
    ok, failure = (f.result() for f in got)
    assert ok == cut_clip(media["idx25"], exe=ffmpeg_exe, cutter="pyav") and ok.cutter == "pyav"
    alone = cut_outcome(media["video_only"], cutter="pyav", **args)
    assert isinstance(failure, CutError) and (failure.reason, str(failure)) == (alone.reason, str(alone))


_POOL_CHILD = """
import os, signal, sys, time
from avsl_bench.data.cut import cut_pool
pool = cut_pool("pyav", 1)
pid = pool.submit(os.getpid).result()
os.kill(pid, signal.SIGINT)  # ignored: the caller handles Ctrl-C
assert pool.submit(os.getpid).result() == pid
print(pid, flush=True)
time.sleep(60)
"""


@pytest.mark.skipif(not os.path.exists("/proc/self/stat"), reason="reads process states from /proc")
def test_cut_pool_processes_ignore_sigint_and_exit_with_their_parent():
    env = {**os.environ, "PYTHONPATH": str(REPO) + os.pathsep + os.environ.get("PYTHONPATH", "")}
    proc = subprocess.Popen([sys.executable, "-c", _POOL_CHILD], env=env, stdout=subprocess.PIPE, text=True)
    worker = int(proc.stdout.readline())
    proc.kill()  # the parent alone, as `kill -9 <pid>` does
    proc.wait()

    def running() -> bool:  # an exited worker may linger as a zombie until init reaps it
        try:
            with open(f"/proc/{worker}/stat") as f:
                return f.read().rpartition(")")[2].split()[0] != "Z"
        except FileNotFoundError:
            return False

    deadline = time.monotonic() + 20
    while running() and time.monotonic() < deadline:
        time.sleep(0.05)
    if running():
        os.kill(worker, signal.SIGKILL)
        pytest.fail(f"pool process {worker} outlived its parent")


# --------------------------------------------------------------------------- the in-process cutter


def _pcm(flac: bytes) -> np.ndarray:
    return sf.read(io.BytesIO(flac), dtype="int16")[0].astype(np.int64)


def _psnr(jpg_a: bytes, jpg_b: bytes) -> float:
    a, b = (np.asarray(Image.open(io.BytesIO(j)).convert("RGB"), dtype=np.float64) for j in (jpg_a, jpg_b))
    mse = float(np.mean((a - b) ** 2))
    return float("inf") if mse == 0 else 10 * np.log10(255.0**2 / mse)


@pytest.mark.parametrize(
    ("name", "offset", "window"), [("idx25", 0.0, 10.0), ("idx2997", 0.0, 3.0), ("idx25", 2.0, 10.0)]
)
def test_pyav_matches_ffmpeg_content(media, ffmpeg_exe, name, offset, window):
    """Same frame and PCM as the command line (spec §4 cross-build rule: PCM |d| <= 2 LSB, PSNR >= 45 dB);
    with this project's bundled builds both blobs are byte-identical."""
    a = cut_clip(media[name], start_offset=offset, audio_window=window, exe=ffmpeg_exe, cutter="pyav")
    b = cut_clip(media[name], start_offset=offset, audio_window=window, exe=ffmpeg_exe, cutter="ffmpeg")
    assert (a.cutter, b.cutter) == ("pyav", "ffmpeg")
    assert (a.width, a.height, a.samples, a.clip_duration) == (b.width, b.height, b.samples, b.clip_duration)
    assert _psnr(a.jpg, b.jpg) >= 45
    assert np.abs(_pcm(a.flac) - _pcm(b.flac)).max() <= 2


def test_pyav_failure_falls_back_to_ffmpeg(media, ffmpeg_exe, monkeypatch):
    def broken(*args, **kwargs):
        raise decode.DecodeError("idx25.mp4: simulated decoder failure")

    expected = cut_clip(media["idx25"], exe=ffmpeg_exe, cutter="ffmpeg")
    monkeypatch.setattr(decode, "cut_pyav", broken)
    got = cut_clip(media["idx25"], exe=ffmpeg_exe, cutter="pyav")
    assert got.cutter == "ffmpeg" and got == expected


def test_pyav_timeout_is_a_timeout(media, ffmpeg_exe, monkeypatch):
    def slow(*args, **kwargs):
        raise decode.DecodeTimeout("idx25.mp4: in-process cut exceeded its time limit")

    monkeypatch.setattr(decode, "cut_pyav", slow)
    with pytest.raises(CutError) as info:
        cut_clip(media["idx25"], exe=ffmpeg_exe, cutter="pyav")
    assert info.value.reason == "timeout" and "idx25.mp4" in info.value.message


def test_decode_errors_name_the_file(media):
    with pytest.raises(decode.DecodeError, match="video_only.mp4 has no audio stream"):
        decode.cut_pyav(media["video_only"])
    with pytest.raises(decode.DecodeError, match=r"short.mp4: no frame at >= 5 s"):
        decode.cut_pyav(media["short"])
    with pytest.raises(decode.DecodeError, match="not_media.mp4"):
        decode.cut_pyav(media["not_media"])


def test_resolve_cutter_and_info(monkeypatch):
    monkeypatch.delenv(CUTTER_ENV, raising=False)
    assert resolve_cutter() == "pyav" and resolve_cutter("ffmpeg") == "ffmpeg"
    monkeypatch.setenv(CUTTER_ENV, "ffmpeg")
    assert resolve_cutter() == "ffmpeg" and cutter_info() == {"cutter": "ffmpeg", "fallback": None}
    monkeypatch.setenv(CUTTER_ENV, "sox")
    with pytest.raises(ValueError, match="AVSL_BENCH_CUTTER"):
        resolve_cutter()
    with pytest.raises(ValueError, match="cutter must be one of"):
        resolve_cutter("gstreamer")
    with pytest.raises(ValueError, match="cutter must be one of"):  # a resolved name: no environment consulted
        cutter_info("gstreamer")
    with pytest.raises(ValueError, match="cutter must be one of"):
        cut_clip("clip.mp4", cutter="gstreamer")
    info = cutter_info("pyav")
    assert info["cutter"] == "pyav" and info["fallback"] == "ffmpeg"
    assert info["pyav"]["pyav"] and info["pyav"]["libavcodec"].count(".") == 2
    monkeypatch.setattr(decode, "available", lambda: False)  # PyAV not installed: the command line cuts
    assert resolve_cutter("pyav") == "ffmpeg"
    assert cut_mod.resolve_cutter("pyav") == "ffmpeg"


@pytest.mark.parametrize("n", [48000, 160000, 1000, 47999])
def test_in_process_flac_is_lossless_tag_free_and_like_ffmpeg(ffmpeg_exe, n):
    pcm = (np.random.default_rng(n).standard_normal(n) * 3000).astype(np.int16)
    data = decode.encode_flac(pcm, 16000)
    assert data == decode.encode_flac(pcm, 16000)
    assert np.array_equal(_pcm(data), pcm.astype(np.int64))
    info = flac_streaminfo(data)
    assert (info["sample_rate"], info["channels"], info["bits_per_sample"], info["total_samples"]) == (16000, 1, 16, n)
    assert b"Lavf" not in data and b"Lavc" not in data
    assert np.array_equal(_pcm(encode_flac(pcm, 16000, ffmpeg_exe)), _pcm(data))
    with pytest.raises(ValueError, match="1-D int16"):
        decode.encode_flac(pcm.astype(np.float32), 16000)


# --------------------------------------------------------------------------- edit-list priming (AAC encoder delay)


@pytest.fixture(scope="session")
def aac_media(tmp_path_factory, ffmpeg_exe):
    """6 s H.264 + AAC mp4s (10 fps, a keyframe every second) at 44.1 / 48 / 16 kHz: ffmpeg's mp4 edit list
    hides the encoder's 1,024 priming samples, and a keyframe at the window start makes the command line's seek
    land past the priming packet (the 28 s `http_media` clip of the CLI tests, shorter)."""
    root = tmp_path_factory.mktemp("aac")
    paths = {rate: root / f"aac{rate}.mp4" for rate in (44100, 48000, 16000)}
    procs = [
        subprocess.Popen([ffmpeg_exe, "-nostdin", "-v", "error", "-y", "-f", "lavfi", "-i",
                          "testsrc2=size=96x64:rate=10:duration=6", "-f", "lavfi", "-i",
                          f"sine=frequency=440:sample_rate={rate}:duration=6", "-c:v", "libx264", "-preset",
                          "ultrafast", "-g", "10", "-pix_fmt", "yuv420p", "-c:a", "aac", "-shortest", str(path)],
                         stderr=subprocess.PIPE)
        for rate, path in paths.items()
    ]  # fmt: skip
    for proc in procs:
        _, err = proc.communicate(timeout=120)
        assert proc.returncode == 0, err.decode()
    return paths


@pytest.mark.parametrize(
    ("rate", "offset", "window", "frame_time"),
    [
        (44100, 0.0, 4.0, 2.0),  # window at 0: the command line skips the priming-length first packet
        (44100, 1.0, 4.0, 2.0),  # window start on a keyframe mid-file: same skip after the seek
        (44100, 1.3, 2.0, 3.0),  # mid-GOP start; frame at `-ss 4.3` (the float 1.3 is a hair above 1.3)
        (48000, 0.0, 4.0, 2.0),
        (48000, 2.0, 3.0, 1.5),
        (48000, 0.7, 2.0, 2.6),
        (16000, 0.0, 4.0, 2.0),
        (16000, 1.0, 4.0, 2.0),
    ],
)
def test_pyav_is_byte_identical_on_aac_edit_lists(aac_media, ffmpeg_exe, rate, offset, window, frame_time):
    kwargs = dict(start_offset=offset, audio_window=window, frame_time=frame_time, exe=ffmpeg_exe)
    a = cut_clip(aac_media[rate], cutter="pyav", **kwargs)
    b = cut_clip(aac_media[rate], cutter="ffmpeg", **kwargs)
    assert (a.cutter, b.cutter) == ("pyav", "ffmpeg")
    assert a.samples == b.samples
    assert a.flac == b.flac
    assert a.jpg == b.jpg


def test_pyav_hands_non_mp4_to_ffmpeg(ffmpeg_exe, tmp_path):
    """Matroska/WebM cuts are not byte-identical in-process: DecodeError, so the ffmpeg cutter takes them."""
    path = tmp_path / "clip.mkv"
    subprocess.run([ffmpeg_exe, "-nostdin", "-v", "error", "-y", "-f", "lavfi", "-i",
                    "testsrc2=size=96x64:rate=10:duration=3", "-f", "lavfi", "-i", "sine=d=3",
                    "-c:v", "libx264", "-preset", "ultrafast", "-pix_fmt", "yuv420p", "-c:a", "aac", str(path)],
                   check=True)  # fmt: skip
    with pytest.raises(decode.DecodeError, match="clip.mkv: matroska,webm input is cut by ffmpeg"):
        decode.cut_pyav(path, frame_time=1.0, window=(0.0, 2.0))
    got = cut_clip(path, frame_time=1.0, audio_window=2.0, exe=ffmpeg_exe, cutter="pyav")
    assert got.cutter == "ffmpeg"
    assert got == cut_clip(path, frame_time=1.0, audio_window=2.0, exe=ffmpeg_exe, cutter="ffmpeg")
