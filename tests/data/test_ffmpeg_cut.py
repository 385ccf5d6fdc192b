"""ffmpeg discovery, FLAC encoding, probing without ffprobe, and the one-process clip cut (spec §3, §4)."""

from __future__ import annotations

import io
import os
import pickle
import stat
import time

import numpy as np
import pytest
import soundfile as sf
from PIL import Image

from avsl_bench.data import ffmpeg as ff
from avsl_bench.data.cut import CutError, audio_window_bounds, cut_argv, cut_clip
from avsl_bench.data.ffmpeg import (
    FfmpegError, FfmpegTimeout, encode_flac, find_ffmpeg, flac_streaminfo, probe, run_ffmpeg,
)  # fmt: skip

from .conftest import frame_index

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


@pytest.mark.parametrize(("name", "expected"), [("idx25", 125), ("idx2997", 150)])
def test_frame_is_first_at_or_after_5s(media, ffmpeg_exe, name, expected):
    """25 fps: frame 125 is exactly 5.0 s (mid-GOP); 29.97 fps: frame 149 is 4.97 s, 150 is 5.005 s."""
    result = cut_clip(media[name], exe=ffmpeg_exe)
    assert frame_index(result.jpg) == expected
    assert (result.width, result.height) == (160, 96)
    with Image.open(io.BytesIO(result.jpg)) as img:
        assert img.format == "JPEG" and img.size == (160, 96)


def test_audio_is_16k_mono_s16_160000_samples(media, ffmpeg_exe):
    result = cut_clip(media["idx25"], exe=ffmpeg_exe)
    info = sf.info(io.BytesIO(result.flac))
    assert (info.samplerate, info.channels, info.subtype, info.format) == (16000, 1, "PCM_16", "FLAC")
    pcm, _ = sf.read(io.BytesIO(result.flac), dtype="int16")
    assert pcm.shape == (160000,) == (result.samples,)
    assert result.audio_window == (0.0, 10.0) and result.clip_duration == pytest.approx(10.0, abs=0.05)
    spectrum = np.abs(np.fft.rfft(pcm[16000:32000].astype(np.float64)))
    assert np.argmax(spectrum) == pytest.approx(440, abs=2)  # 1 s of audio -> 1 Hz bins


def test_cut_is_bitexact(media, ffmpeg_exe):
    a = cut_clip(media["idx25"], exe=ffmpeg_exe)
    b = cut_clip(media["idx25"], exe=ffmpeg_exe)
    assert (a.jpg, a.flac) == (b.jpg, b.flac) and a == b
    assert b"Lavc" not in a.jpg and b"Lavf" not in a.flac and b"Lavc" not in a.flac


def test_full_length_offset_and_centred_window(media, ffmpeg_exe):
    shifted = cut_clip(media["idx25"], start_offset=2.0, exe=ffmpeg_exe)
    assert frame_index(shifted.jpg) == 175  # 2 s + 5 s at 25 fps
    assert shifted.samples == 128000  # only 8 s of audio remain after 2 s
    short = cut_clip(media["idx25"], audio_window=3.0, exe=ffmpeg_exe)
    assert short.audio_window == (3.5, 6.5) and short.samples == 48000
    assert short.jpg == cut_clip(media["idx25"], exe=ffmpeg_exe).jpg


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
    ],
)
def test_cut_failures_are_classified(media, ffmpeg_exe, name, reason):
    with pytest.raises(CutError) as info:
        cut_clip(media[name], exe=ffmpeg_exe)
    assert info.value.reason == reason
    assert str(info.value).startswith(f"{reason}: ")


def test_cut_timeout_and_pickle(media, ffmpeg_exe):
    with pytest.raises(CutError) as info:
        cut_clip(media["idx25"], exe=ffmpeg_exe, timeout=0.001)
    assert info.value.reason == "timeout"
    again = pickle.loads(pickle.dumps(info.value))
    assert (again.reason, again.message, str(again)) == (info.value.reason, info.value.message, str(info.value))
