"""Acquisition sources (data spec §7): yt-dlp end to end against a loopback server, and local mirrors."""

from __future__ import annotations

import contextlib
import gzip
import io
import json
import os
import pickle
import random
import re
import signal
import subprocess
import sys
import tarfile
import time
from pathlib import Path

import pytest

from avsl_bench.data.ffmpeg import find_ffmpeg
from avsl_bench.data.sources import mirror as mirror_mod
from avsl_bench.data.sources import youtube as youtube_mod
from avsl_bench.data.sources.base import ClipRef, Status
from avsl_bench.data.sources.mirror import MirrorSource
from avsl_bench.data.sources.youtube import (
    BotCheckCounter,
    TooManyBotChecks,
    YoutubeSource,
    backoff_delay,
    classify_message,
)
from avsl_bench.errors import AvslBenchError, DataFileError, UsageError
from tests.data._http_fixture import MediaServer

MEDIA_SECONDS = 12


def _clip(ytid: str, start: int) -> ClipRef:
    return ClipRef(f"{ytid}_{start:06d}", ytid, start)


# ---------------------------------------------------------------------------------------------------------------------
# Fixtures (prefixed `src_`: tests/data is shared with other modules)
# ---------------------------------------------------------------------------------------------------------------------


@pytest.fixture(scope="session")
def src_ffmpeg() -> str:
    return find_ffmpeg()


@pytest.fixture(scope="session")
def src_media(tmp_path_factory: pytest.TempPathFactory, src_ffmpeg: str) -> Path:
    """12 s, 160x120, 25 fps testsrc2 + 440 Hz sine, H.264/AAC, a keyframe every second."""
    path = tmp_path_factory.mktemp("src_media") / "clip12.mp4"
    subprocess.run(
        [src_ffmpeg, "-nostdin", "-v", "error", "-y",
         "-f", "lavfi", "-i", f"testsrc2=size=160x120:rate=25:duration={MEDIA_SECONDS}",
         "-f", "lavfi", "-i", f"sine=frequency=440:sample_rate=44100:duration={MEDIA_SECONDS}",
         "-c:v", "libx264", "-preset", "ultrafast", "-g", "25", "-pix_fmt", "yuv420p", "-c:a", "aac", "-shortest",
         str(path)],
        check=True, capture_output=True,
    )
    return path


@pytest.fixture(scope="module")
def src_server():
    with MediaServer() as server:
        yield server


@pytest.fixture()
def src_cache(tmp_path: Path) -> Path:
    """A cache that already holds other entries, which no acquisition may disturb."""
    cache = tmp_path / "cache"
    cache.mkdir()
    (cache / "keep.txt").write_text("untouched\n")
    (cache / "other_000001.mp4").write_bytes(b"previous clip")
    return cache


def _assert_cache(cache: Path, *new: str) -> None:
    assert sorted(p.name for p in cache.iterdir()) == sorted(["keep.txt", "other_000001.mp4", *new])
    assert (cache / "keep.txt").read_text() == "untouched\n"
    assert (cache / "other_000001.mp4").read_bytes() == b"previous clip"


@pytest.fixture()
def src_youtube(src_server: MediaServer):
    """Factory for a YoutubeSource on the loopback server with recorded (not slept) backoff."""
    sleeps: list[float] = []

    def make(**kwargs) -> YoutubeSource:
        kwargs.setdefault("url_template", src_server.base_url + "/{ytid}.mp4")
        kwargs.setdefault("sleep", sleeps.append)
        kwargs.setdefault("rng", random.Random(0))
        return YoutubeSource(**kwargs)

    make.sleeps = sleeps  # type: ignore[attr-defined]
    return make


def _duration(ffmpeg: str, path: Path) -> float:
    stderr = subprocess.run([ffmpeg, "-nostdin", "-hide_banner", "-i", str(path)],
                            capture_output=True, text=True).stderr
    h, m, s = re.search(r"Duration: (\d+):(\d+):([\d.]+)", stderr).groups()
    return int(h) * 3600 + int(m) * 60 + float(s)


def _gray_frame(ffmpeg: str, path: Path, t: float) -> bytes:
    return subprocess.run(
        [ffmpeg, "-nostdin", "-v", "error", "-ss", str(t), "-i", str(path), "-frames:v", "1",
         "-vf", "scale=40:30,format=gray", "-f", "rawvideo", "-"],
        check=True, capture_output=True,
    ).stdout


def _mad(a: bytes, b: bytes) -> float:
    assert len(a) == len(b) == 40 * 30
    return sum(abs(x - y) for x, y in zip(a, b)) / len(a)


# ---------------------------------------------------------------------------------------------------------------------
# YoutubeSource end to end (real yt-dlp, generic extractor, ffmpeg range download)
# ---------------------------------------------------------------------------------------------------------------------


def test_youtube_success_downloads_ten_seconds_from_start(src_youtube, src_server, src_media, src_cache, src_ffmpeg):
    src_server.serve_file("/okclip.mp4", src_media)
    source = src_youtube()
    assert source.name and callable(source.acquire)
    result = source.acquire(_clip("okclip", 2), src_cache)

    assert result.status is Status.SUCCESS, result.error
    assert result.path == src_cache / "okclip_000002.mp4"
    assert result.error is None and result.attempts == 1
    _assert_cache(src_cache, "okclip_000002.mp4")
    assert youtube_mod._verify_decodable(src_ffmpeg, result.path) is None
    assert _duration(src_ffmpeg, result.path) == pytest.approx(10.0, abs=0.15)
    # The cached file starts at `start`: its first frame is the source frame at 2 s, not the one at 0 s or 3 s.
    first = _gray_frame(src_ffmpeg, result.path, 0)
    at_start = _mad(first, _gray_frame(src_ffmpeg, src_media, 2))
    assert at_start < 2  # re-encoding noise only; the neighbouring frames (±40 ms) differ by ~3
    assert at_start * 3 < _mad(first, _gray_frame(src_ffmpeg, src_media, 0))
    assert at_start * 3 < _mad(first, _gray_frame(src_ffmpeg, src_media, 3))
    assert source.bot_checks.consecutive == 0


def test_youtube_cached_clip_is_not_downloaded_again(src_youtube, src_server, src_cache):
    src_server.fail("/cachedclip.mp4", 500)
    (src_cache / "cachedclip_000004.mp4").write_bytes(b"already here")
    result = src_youtube().acquire(_clip("cachedclip", 4), src_cache)
    assert (result.status, result.attempts) == (Status.SUCCESS, 0)
    assert src_server.hits("/cachedclip.mp4") == 0


@pytest.mark.parametrize("status", [404, 410])
def test_youtube_permanent_http_errors_are_unavailable(src_youtube, src_server, src_cache, status):
    src_server.fail(f"/gone{status}.mp4", status)
    source = src_youtube()
    result = source.acquire(_clip(f"gone{status}", 1), src_cache)
    assert result.status is Status.UNAVAILABLE
    assert result.error.startswith(f"http_{status}: ") and f"HTTP Error {status}" in result.error
    assert result.attempts == 1 and result.path is None
    assert src_youtube.sleeps == [] and src_server.hits(f"/gone{status}.mp4") == 1
    _assert_cache(src_cache)


@pytest.mark.slow
def test_youtube_transient_503_then_success(src_youtube, src_server, src_media, src_cache, src_ffmpeg):
    src_server.fail_then_serve("/flaky503.mp4", 503, times=1, file=src_media)
    result = src_youtube().acquire(_clip("flaky503", 1), src_cache)
    assert result.status is Status.SUCCESS, result.error
    assert result.attempts == 2
    assert len(src_youtube.sleeps) == 1 and 1.0 <= src_youtube.sleeps[0] <= 3.0
    assert _duration(src_ffmpeg, result.path) == pytest.approx(10.0, abs=0.15)
    _assert_cache(src_cache, "flaky503_000001.mp4")


@pytest.mark.slow
def test_youtube_persistent_503_fails_after_four_attempts(src_youtube, src_server, src_cache):
    src_server.fail("/down503.mp4", 503)
    result = src_youtube().acquire(_clip("down503", 1), src_cache)
    assert result.status is Status.FAILED_DOWNLOAD
    assert result.attempts == 4 and src_server.hits("/down503.mp4") == 4
    assert result.error.startswith("http_503: ") and "503" in result.error
    # backoff min(2 * 2^k, 120) * U(0.5, 1.5) for k = 0, 1, 2
    assert len(src_youtube.sleeps) == 3
    for k, delay in enumerate(src_youtube.sleeps):
        assert 2 ** (k + 1) * 0.5 <= delay <= 2 ** (k + 1) * 1.5
    _assert_cache(src_cache)


@pytest.mark.slow
def test_youtube_hanging_server_times_out(src_youtube, src_server, src_cache):
    src_server.hang("/hangclip.mp4")
    began = time.monotonic()
    result = src_youtube(timeout=4).acquire(_clip("hangclip", 1), src_cache)
    elapsed = time.monotonic() - began
    assert result.status is Status.FAILED_DOWNLOAD
    assert result.error.startswith("timeout: ") and result.attempts == 1
    assert 3.5 <= elapsed < 10
    _assert_cache(src_cache)


def _processes_mentioning(text: str) -> list[str]:
    found = []
    for pid in os.listdir("/proc"):
        if not pid.isdigit() or int(pid) == os.getpid():
            continue
        try:
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        if text in cmdline:
            found.append(f"{pid}: {cmdline}")
    return found


@pytest.mark.slow
@pytest.mark.skipif(not Path("/proc/self/cmdline").exists(), reason="needs /proc")
def test_youtube_timeout_kills_ffmpeg_grandchild(src_youtube, src_server, src_media, src_cache):
    # Headers and the first bytes arrive, then the body stalls: yt-dlp's ffmpeg (a grandchild) is the one waiting.
    src_server.stall("/stallclip.mp4", src_media, after=60_000)
    # 8 s: ffmpeg starts ~1 s into an attempt on an idle machine, a few seconds in on a loaded CI runner.
    result = src_youtube(timeout=8).acquire(_clip("stallclip", 1), src_cache)
    assert result.status is Status.FAILED_DOWNLOAD and result.error.startswith("timeout: ")
    assert src_server.hits("/stallclip.mp4") >= 2  # the extractor's request, then ffmpeg's
    assert _processes_mentioning("stallclip") == []
    _assert_cache(src_cache)


@contextlib.contextmanager
def _worker_process(stderr=subprocess.DEVNULL):
    """The download child run by hand (as the parent runs it); its group is killed if still alive at the end."""
    proc = subprocess.Popen([sys.executable, "-m", "avsl_bench.data.sources.youtube"], stdin=subprocess.PIPE,
                            stdout=subprocess.DEVNULL, stderr=stderr, start_new_session=True)
    try:
        yield proc
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()


@pytest.mark.slow
@pytest.mark.skipif(not Path("/proc/self/cmdline").exists(), reason="needs /proc")
def test_worker_kills_its_group_when_parent_goes_away(src_server, src_media, src_ffmpeg, tmp_path, src_scratch_root):
    src_server.stall("/orphanclip.mp4", src_media, after=60_000)
    request = {
        "url": f"{src_server.base_url}/orphanclip.mp4", "start": 1, "end": 11,
        "outprefix": str(tmp_path / ".orphanclip.test.part"), "result": str(tmp_path / "result.json"),
        "ffmpeg": src_ffmpeg, "cookies": None, "proxy": None, "socket_timeout": 30,
    }
    with _worker_process() as proc:
        proc.stdin.write(json.dumps(request).encode() + b"\n")
        proc.stdin.flush()
        deadline = time.monotonic() + 30
        while not _processes_mentioning("orphanclip"):  # wait for yt-dlp's ffmpeg to be stuck on the stall
            assert time.monotonic() < deadline and proc.poll() is None
            time.sleep(0.1)
        proc.stdin.close()  # what the parent's death looks like from the child
        assert proc.wait(timeout=10) == -signal.SIGKILL
        deadline = time.monotonic() + 5
        while _processes_mentioning("orphanclip") and time.monotonic() < deadline:
            time.sleep(0.1)
        assert _processes_mentioning("orphanclip") == []
    assert list(src_scratch_root.iterdir()) == []  # the scratch directory the child made went with it


def test_youtube_corrupt_media_is_failed_download(src_youtube, src_server, src_cache):
    src_server.serve_bytes("/corruptclip.mp4", random.Random(7).randbytes(300_000))
    result = src_youtube().acquire(_clip("corruptclip", 1), src_cache)
    assert result.status is Status.FAILED_DOWNLOAD
    assert result.error.startswith("corrupt: ") and result.attempts == 1
    # the recorded line is ffmpeg's reason, never the worker's exit code or an interpreter dump
    assert re.search(r"invalid data found|moov atom not found", result.error, re.IGNORECASE), result.error
    _assert_cache(src_cache)


@pytest.fixture()
def src_scratch_root(tmp_path, monkeypatch) -> Path:
    """A private temp directory for this process and its download children (other workers share /tmp)."""
    import tempfile

    root = tmp_path / "tmp"
    root.mkdir()
    monkeypatch.setenv("TMPDIR", str(root))
    monkeypatch.setattr(tempfile, "tempdir", str(root))
    return root


def test_youtube_scratch_dirs_are_removed_on_every_path(src_youtube, src_server, src_media, src_cache,
                                                        src_scratch_root, monkeypatch):
    real_worker, seen = youtube_mod._run_worker, []

    def spy(request: dict, timeout: float):
        assert Path(request["scratch"]).is_dir() and Path(request["scratch"]).parent == src_scratch_root
        seen.append(request["scratch"])
        if "boomclip" in request["url"]:
            raise RuntimeError("interrupted")
        return real_worker(request, timeout)

    monkeypatch.setattr(youtube_mod, "_run_worker", spy)
    src_server.serve_file("/scratchok.mp4", src_media)
    src_server.hang("/scratchhang.mp4")
    outcomes = {}
    for ytid, timeout in (("scratchok", 180), ("scratch404", 180), ("scratchhang", 1.5)):
        result = src_youtube(timeout=timeout).acquire(_clip(ytid, 0), src_cache)
        outcomes[ytid] = (result.status, (result.error or "").split(":")[0])
        assert list(src_scratch_root.iterdir()) == [], ytid
    assert outcomes == {"scratchok": (Status.SUCCESS, ""), "scratch404": (Status.UNAVAILABLE, "http_404"),
                        "scratchhang": (Status.FAILED_DOWNLOAD, "timeout")}  # fmt: skip
    with pytest.raises(RuntimeError, match="interrupted"):
        src_youtube().acquire(_clip("boomclip", 0), src_cache)
    assert list(src_scratch_root.iterdir()) == [] and len(seen) == 4


def test_worker_run_by_hand_removes_its_scratch_when_the_parent_goes_away(src_server, src_scratch_root, tmp_path):
    src_server.hang("/orphanhang.mp4")
    request = {
        "url": f"{src_server.base_url}/orphanhang.mp4", "start": 0, "end": 10,
        "outprefix": str(tmp_path / ".orphanhang.test.part"), "result": str(tmp_path / "result.json"),
        "ffmpeg": find_ffmpeg(), "cookies": None, "proxy": None, "socket_timeout": 30,
    }  # no "scratch": the worker makes its own
    with _worker_process(stderr=subprocess.PIPE) as proc:
        _, err = proc.communicate(json.dumps(request).encode() + b"\n", timeout=60)  # then EOF: parent gone
    assert proc.returncode == -signal.SIGKILL, err.decode()[-2000:]
    assert list(src_scratch_root.iterdir()) == []


def test_failure_message_skips_worker_noise(monkeypatch, src_cache):
    stderr = ("[in#0 @ 0x1] moov atom not found\n"
              "Error opening input files: Invalid data found when processing input\n"
              "Fatal Python error: _enter_buffered_busy: could not acquire lock for <_io.BufferedReader "
              "name='<stdin>'> at interpreter shutdown, possibly due to daemon threads\n"
              "Python runtime state: finalizing (tstate=0x1)\n\n"
              "Current thread 0x00007f (most recent call first):\n  <no Python frame>\n")  # fmt: skip

    def run(request: dict, timeout: float):
        Path(request["result"]).write_text(json.dumps(
            {"ok": False, "filepath": None, "errors": ["\n", "ERROR: ffmpeg exited with code 183"], "warnings": []}))
        return -6, stderr

    monkeypatch.setattr(youtube_mod, "_run_worker", run)
    result = YoutubeSource(sleep=lambda s: None).acquire(_clip("noisy", 0), src_cache)
    assert (result.status, result.attempts) == (Status.FAILED_DOWNLOAD, 1)
    assert result.error == "corrupt: Error opening input files: Invalid data found when processing input"
    # nothing recognisable: the last line that is not noise, from yt-dlp's errors first
    messages = ["ERROR: [generic] x: something odd happened", "ERROR: ffmpeg exited with code 1"]
    monkeypatch.setattr(youtube_mod, "_run_worker", _fake_worker(messages, []))
    result = YoutubeSource(sleep=lambda s: None).acquire(_clip("odd", 0), src_cache)
    assert result.error == "error: [generic] x: something odd happened"
    dump = stderr[stderr.index("Fatal"):]
    monkeypatch.setattr(youtube_mod, "_run_worker", lambda request, timeout: (-6, "ValueError: boom\n" + dump))
    result = YoutubeSource(sleep=lambda s: None).acquire(_clip("crashed", 0), src_cache)  # no result file
    assert result.error == "worker_crashed: ValueError: boom"


def test_youtube_cookie_file_is_passed_but_never_rewritten(src_youtube, src_server, src_media, src_cache, tmp_path,
                                                           src_ffmpeg):
    cookies = tmp_path / "cookies.txt"
    text = "# Netscape HTTP Cookie File\n127.0.0.1\tFALSE\t/\tFALSE\t0\tsession\tabc\n"
    cookies.write_text(text)
    os.chmod(cookies, 0o444)
    src_server.serve_file("/cookieclip.mp4", src_media)
    result = src_youtube(cookies=cookies).acquire(_clip("cookieclip", 0), src_cache)
    assert result.status is Status.SUCCESS, result.error
    assert _duration(src_ffmpeg, result.path) == pytest.approx(10.0, abs=0.15)  # start 0 is still a range
    assert cookies.read_text() == text


# ---------------------------------------------------------------------------------------------------------------------
# YoutubeSource: classification, backoff, bot checks (no network)
# ---------------------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("message", "status", "reason", "retry"),
    [
        ("ERROR: [youtube] abc: Sign in to confirm you’re not a bot. Use --cookies-from-browser or --cookies",
         Status.FAILED_DOWNLOAD, "bot_check", False),
        ("ERROR: [youtube] abc: Private video. Sign in if you've been granted access to this video",
         Status.UNAVAILABLE, "private", False),
        ("ERROR: [youtube] abc: Video unavailable. This video has been removed by the uploader",
         Status.UNAVAILABLE, "removed", False),
        ("ERROR: [youtube] abc: Video unavailable. This video is no longer available because the YouTube account "
         "associated with this video has been terminated.", Status.UNAVAILABLE, "terminated", False),
        ("ERROR: [youtube] abc: Video unavailable. The uploader has not made this video available in your country",
         Status.UNAVAILABLE, "geo_blocked", False),
        ("ERROR: [youtube] abc: Sign in to confirm your age. This video may be inappropriate for some users.",
         Status.UNAVAILABLE, "age_gated", False),
        ("ERROR: [youtube] abc: Video unavailable", Status.UNAVAILABLE, "video_unavailable", False),
        ("ERROR: [youtube] abc: Video unavailable. This content isn't available, try again later.",
         Status.FAILED_DOWNLOAD, "rate_limited", True),
        ("ERROR: unable to download video data: HTTP Error 403: Forbidden", Status.UNAVAILABLE, "http_403", False),
        ("ERROR: Unable to download webpage: HTTP Error 429: Too Many Requests",
         Status.FAILED_DOWNLOAD, "http_429", True),
        ("ERROR: Unable to download webpage: HTTP Error 502: Bad Gateway", Status.FAILED_DOWNLOAD, "http_502", True),
        ("[https @ 0x1] HTTP error 404 Not Found\nhttps://x: Server returned 404 Not Found",
         Status.UNAVAILABLE, "http_404", False),
        ("https://x: Server returned 5XX Server Error reply", Status.FAILED_DOWNLOAD, "http_5xx", True),
        ("ERROR: Unable to download webpage: [Errno 104] Connection reset by peer",
         Status.FAILED_DOWNLOAD, "connection_reset", True),
        ("ERROR: Unable to download webpage: <urlopen error [Errno 111] Connection refused>",
         Status.FAILED_DOWNLOAD, "connection_refused", True),
        ("ERROR: Unable to download webpage: [Errno -2] Name or service not known",
         Status.FAILED_DOWNLOAD, "dns", True),
        ("ERROR: Unable to download webpage: The read operation timed out",
         Status.FAILED_DOWNLOAD, "read_timeout", True),
        ("Error opening input files: Invalid data found when processing input",
         Status.FAILED_DOWNLOAD, "corrupt", False),
        ("ERROR: [youtube] abc: Requested format is not available. Use --list-formats",
         Status.FAILED_DOWNLOAD, "no_format", False),
        ("ERROR: something nobody has seen before", Status.FAILED_DOWNLOAD, "error", False),
    ],
)
def test_classify_message(message, status, reason, retry):
    assert classify_message(message) == youtube_mod.Classification(status, reason, retry)


@pytest.mark.parametrize(
    ("template", "key"),
    [("https://www.youtube.com/watch?v={ytid}", "Youtube"), ("https://youtu.be/{ytid}", "Youtube"),
     ("https://m.youtube.com/watch?v={ytid}", "Youtube"), ("http://127.0.0.1:9/{ytid}.mp4", "Generic"),
     ("https://cdn.example.org/v/{ytid}.WEBM?sig=1", "Generic"), ("https://vimeo.com/{ytid}", None)],
)
def test_extractor_for(template, key):
    assert youtube_mod.extractor_for(template) == key


def test_backoff_delay_bounds_and_cap():
    rng = random.Random(3)
    for k in range(10):
        base = min(2 * 2**k, 120)
        for _ in range(50):
            assert 0.5 * base <= backoff_delay(k, rng) <= 1.5 * base
    assert max(backoff_delay(20, rng) for _ in range(200)) <= 180


def _fake_worker(messages: list[str], calls: list[dict]):
    def run(request: dict, timeout: float):
        calls.append(request)
        Path(request["result"]).write_text(
            json.dumps({"ok": False, "filepath": None, "errors": messages, "warnings": []}))
        return 0, ""

    return run


def test_bot_check_is_not_retried_and_trips_after_twenty(monkeypatch, src_cache):
    calls: list[dict] = []
    bot = "ERROR: [youtube] abc: Sign in to confirm you’re not a bot. Use --cookies for the authentication."
    monkeypatch.setattr(youtube_mod, "_run_worker", _fake_worker([bot], calls))
    source = YoutubeSource(sleep=lambda s: pytest.fail("bot checks must not be retried"))
    for i in range(19):
        result = source.acquire(_clip(f"bot{i}", 0), src_cache)
        assert (result.status, result.attempts) == (Status.FAILED_DOWNLOAD, 1)
        assert result.error.startswith("bot_check: [youtube] abc: Sign in to confirm")
        source.bot_checks.check()
    assert len(calls) == 19 and calls[0]["url"] == "https://www.youtube.com/watch?v=bot0"
    source.acquire(_clip("bot19", 0), src_cache)
    assert source.bot_checks.tripped
    with pytest.raises(TooManyBotChecks, match="20 consecutive") as info:
        source.bot_checks.check()
    assert isinstance(info.value, AvslBenchError) and info.value.exit_code != 0
    _assert_cache(src_cache)


def test_warnings_only_break_ties(monkeypatch, src_cache):
    calls: list[dict] = []

    def run(request: dict, timeout: float):
        calls.append(request)
        Path(request["result"]).write_text(json.dumps({
            "ok": False, "filepath": None,
            "errors": ["ERROR: [youtube] abc: Video unavailable. This video is private"],
            "warnings": ["[youtube] abc: HTTP Error 503: Service Unavailable. Retrying"]}))
        return 0, ""

    monkeypatch.setattr(youtube_mod, "_run_worker", run)
    result = YoutubeSource(sleep=lambda s: None).acquire(_clip("warned", 0), src_cache)
    assert (result.status, result.attempts) == (Status.UNAVAILABLE, 1) and result.error.startswith("private: ")


def test_bot_check_counter_resets_on_other_outcomes():
    counter = BotCheckCounter(limit=3)
    counter.record("bot_check")
    counter.record("bot_check")
    counter.record(None)
    assert counter.consecutive == 0
    for _ in range(3):
        counter.record("bot_check")
    assert counter.tripped
    clone = pickle.loads(pickle.dumps(counter))  # sources travel to worker processes
    assert clone.tripped and clone.limit == 3
    clone.record(None)
    assert clone.consecutive == 0 and counter.consecutive == 3
    with pytest.raises(ValueError, match="limit"):
        BotCheckCounter(limit=0)


def test_worker_crash_is_failed_download(monkeypatch, src_cache):
    monkeypatch.setattr(youtube_mod, "_run_worker", lambda request, timeout: (1, "Traceback...\nImportError: boom\n"))
    result = YoutubeSource(sleep=lambda s: None).acquire(_clip("crash", 0), src_cache)
    assert result.status is Status.FAILED_DOWNLOAD and result.error == "worker_crashed: ImportError: boom"
    _assert_cache(src_cache)


def test_verify_decodable(src_ffmpeg, src_media, tmp_path):
    assert youtube_mod._verify_decodable(src_ffmpeg, src_media) is None
    garbage = tmp_path / "garbage.mp4"
    garbage.write_bytes(random.Random(2).randbytes(10_000))
    assert "Invalid data" in youtube_mod._verify_decodable(src_ffmpeg, garbage)
    empty = tmp_path / "empty.mp4"
    empty.write_bytes(b"")
    assert youtube_mod._verify_decodable(src_ffmpeg, empty) == "empty file"


def test_ffmpeg_path_fallback_without_context_variable(monkeypatch, tmp_path, src_ffmpeg):
    from yt_dlp.postprocessor.ffmpeg import FFmpegPostProcessor

    monkeypatch.delattr(FFmpegPostProcessor, "_ffmpeg_location")
    monkeypatch.setenv("PATH", "/nonexistent")
    youtube_mod._point_ytdlp_at_ffmpeg(src_ffmpeg, str(tmp_path))
    link = tmp_path / "bin" / "ffmpeg"
    assert os.environ["PATH"].split(os.pathsep)[0] == str(link.parent)
    assert link.resolve() == Path(src_ffmpeg).resolve()


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [({"url_template": "http://x/video"}, "ytid"), ({"timeout": 0}, "timeout"), ({"max_attempts": 0}, "max_att")],
)
def test_youtube_rejects_bad_arguments(kwargs, match):
    with pytest.raises(ValueError, match=match):
        YoutubeSource(**kwargs)


# ---------------------------------------------------------------------------------------------------------------------
# MirrorSource
# ---------------------------------------------------------------------------------------------------------------------


def _payload(name: str, size: int = 40_000) -> bytes:
    return random.Random(name).randbytes(size)


def _make_tar_gz(path: Path, members: dict[str, bytes]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    with tarfile.open(path, "w:gz") as tar:
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return path


@pytest.fixture()
def src_tar_count(monkeypatch):
    """Counts tarfile.open calls made by the mirror module."""
    calls: list[str] = []
    real_open = tarfile.open

    def counting_open(name=None, *args, **kwargs):
        calls.append(str(name))
        return real_open(name, *args, **kwargs)

    monkeypatch.setattr(mirror_mod.tarfile, "open", counting_open)
    return calls


@pytest.fixture()
def src_mirror_tree(tmp_path: Path) -> Path:
    """A mirror directory: loose clips in nested folders plus two .tar.gz archives."""
    root = tmp_path / "mirror"
    (root / "loose" / "deeper").mkdir(parents=True)
    (root / "loose" / "aaa_000010.mp4").write_bytes(_payload("aaa_000010"))
    (root / "loose" / "deeper" / "bbb_000020.mp4").write_bytes(_payload("bbb_000020"))
    _make_tar_gz(root / "part-00.tar.gz", {
        "vggsound/ccc_000030.mp4": _payload("ccc_000030"),
        "vggsound/ddd_000040.mp4": _payload("ddd_000040"),
        "vggsound/readme.txt": b"not a clip",
    })
    _make_tar_gz(root / "sub" / "part-01.tar.gz", {
        "./eee_000050.mp4": _payload("eee_000050"),
        "fff_000060.mp4": _payload("fff_000060"),
    })
    return root


def test_mirror_directory_and_archives_clip_layout(src_mirror_tree, src_cache, tmp_path, src_tar_count):
    source = MirrorSource(src_mirror_tree, index_cache_dir=tmp_path / "idx")
    assert source.name and callable(source.acquire)
    assert source.needs_start_offset is False and source.archives_scanned == 2
    assert sorted(source.index) == ["aaa_000010", "bbb_000020", "ccc_000030", "ddd_000040", "eee_000050",
                                    "fff_000060"]
    for clip_id in ("bbb_000020", "eee_000050"):
        ytid, start = clip_id.split("_")
        result = source.acquire(ClipRef(clip_id, ytid, int(start)), src_cache)
        assert (result.status, result.path, result.error, result.attempts) == (
            Status.SUCCESS, src_cache / f"{clip_id}.mp4", None, 1)
        assert result.path.read_bytes() == _payload(clip_id)
    # Only the needed members were extracted; no temp files left behind.
    _assert_cache(src_cache, "bbb_000020.mp4", "eee_000050.mp4")


def test_mirror_missing_id_is_unavailable(src_mirror_tree, src_cache, tmp_path):
    result = MirrorSource(src_mirror_tree, index_cache_dir=tmp_path / "idx").acquire(_clip("zzz", 70), src_cache)
    assert result.status is Status.UNAVAILABLE and result.path is None
    assert result.error.startswith("not_in_mirror: no zzz_000070.mp4")
    _assert_cache(src_cache)


def test_mirror_acquire_many_reads_each_archive_once(src_mirror_tree, src_cache, tmp_path, src_tar_count):
    source = MirrorSource(src_mirror_tree, index_cache_dir=tmp_path / "idx")
    src_tar_count.clear()
    clips = [_clip("ccc", 30), _clip("ddd", 40), _clip("fff", 60), _clip("aaa", 10), _clip("nope", 1)]
    results = source.acquire_many(clips, src_cache)
    assert {k: r.status for k, r in results.items()} == {
        "ccc_000030": Status.SUCCESS, "ddd_000040": Status.SUCCESS, "fff_000060": Status.SUCCESS,
        "aaa_000010": Status.SUCCESS, "nope_000001": Status.UNAVAILABLE}
    assert sorted(Path(p).name for p in src_tar_count) == ["part-00.tar.gz", "part-01.tar.gz"]
    for clip in clips[:4]:
        assert (src_cache / f"{clip.clip_id}.mp4").read_bytes() == _payload(clip.clip_id)
    _assert_cache(src_cache, *(f"{c.clip_id}.mp4" for c in clips[:4]))
    # Now cached: no archive is opened again and nothing counts as an attempt.
    src_tar_count.clear()
    again = source.acquire_many(clips[:4], src_cache)
    assert all((r.status, r.attempts) == (Status.SUCCESS, 0) for r in again.values()) and src_tar_count == []


def test_mirror_single_archive_path(src_mirror_tree, src_cache, tmp_path):
    source = MirrorSource(src_mirror_tree / "sub" / "part-01.tar.gz", index_cache_dir=tmp_path / "idx")
    assert sorted(source.index) == ["eee_000050", "fff_000060"]
    assert source.acquire(_clip("fff", 60), src_cache).status is Status.SUCCESS
    assert source.acquire(_clip("aaa", 10), src_cache).status is Status.UNAVAILABLE


def test_mirror_full_layout_matches_ytid(tmp_path, src_cache):
    root = tmp_path / "full"
    root.mkdir()
    (root / "-Xy_z.mp4").write_bytes(_payload("-Xy_z"))
    (root / "Zz_000005.mp4").write_bytes(_payload("Zz_000005"))
    _make_tar_gz(root / "videos.tar.gz", {"videos/Qq9.mp4": _payload("Qq9")})
    source = MirrorSource(root, layout="full", index_cache_dir=tmp_path / "idx")
    assert source.needs_start_offset is True
    clips = [_clip("-Xy_z", 3), _clip("Qq9", 0), _clip("Qq9", 120)]
    results = source.acquire_many(clips, src_cache)
    for clip in clips:
        assert results[clip.clip_id].status is Status.SUCCESS
        assert results[clip.clip_id].path == src_cache / f"{clip.clip_id}.mp4"
        assert results[clip.clip_id].path.read_bytes() == _payload(clip.ytid)
    # Files are matched by ytid in layout full, never by clip id.
    assert source.acquire(_clip("Zz", 5), src_cache).status is Status.UNAVAILABLE


def test_mirror_index_is_cached_by_archive_size_and_mtime(src_mirror_tree, tmp_path, src_tar_count):
    idx = tmp_path / "idx"
    first = MirrorSource(src_mirror_tree, index_cache_dir=idx)
    assert first.archives_scanned == 2 and len(src_tar_count) == 2
    assert len(list(idx.glob("mirror-*.json"))) == 1

    src_tar_count.clear()
    second = MirrorSource(src_mirror_tree, index_cache_dir=idx)
    assert second.archives_scanned == 0 and src_tar_count == []
    assert dict(second.index) == dict(first.index)

    archive = src_mirror_tree / "part-00.tar.gz"
    stat = archive.stat()
    os.utime(archive, ns=(stat.st_atime_ns, stat.st_mtime_ns + 5_000_000_000))
    third = MirrorSource(src_mirror_tree, index_cache_dir=idx)
    assert third.archives_scanned == 1 and [Path(p).name for p in src_tar_count] == ["part-00.tar.gz"]

    # A new archive is picked up; the others stay cached.
    _make_tar_gz(src_mirror_tree / "part-02.tar.gz", {"ggg_000070.mp4": _payload("ggg_000070")})
    fourth = MirrorSource(src_mirror_tree, index_cache_dir=idx)
    assert fourth.archives_scanned == 1 and "ggg_000070" in fourth.index


def test_mirror_garbage_archive_is_failed_download(src_mirror_tree, src_cache, tmp_path):
    (src_mirror_tree / "part-99.tar.gz").write_bytes(random.Random(1).randbytes(5000))
    source = MirrorSource(src_mirror_tree, index_cache_dir=tmp_path / "idx")
    assert list(source.corrupt_archives) == [str(src_mirror_tree / "part-99.tar.gz")]
    assert source.acquire(_clip("ccc", 30), src_cache).status is Status.SUCCESS
    missing = source.acquire(_clip("zzz", 70), src_cache)
    assert missing.status is Status.FAILED_DOWNLOAD and missing.error.startswith("corrupt_archive: ")
    assert "part-99.tar.gz" in missing.error
    _assert_cache(src_cache, "ccc_000030.mp4")


def test_mirror_truncated_archive_keeps_readable_members(tmp_path, src_cache):
    root = tmp_path / "trunc"
    archive = _make_tar_gz(root / "a.tar.gz", {"one_000001.mp4": _payload("one_000001", 200_000),
                                               "two_000002.mp4": _payload("two_000002", 200_000)})
    data = archive.read_bytes()
    archive.write_bytes(data[: len(data) * 3 // 4])  # cuts into the second member
    source = MirrorSource(root, index_cache_dir=tmp_path / "idx")
    assert str(archive) in source.corrupt_archives
    assert source.acquire(_clip("one", 1), src_cache).status is Status.SUCCESS
    second = source.acquire(_clip("two", 2), src_cache)
    assert second.status is Status.FAILED_DOWNLOAD and second.error.startswith("corrupt_archive: ")
    _assert_cache(src_cache, "one_000001.mp4")


def test_mirror_archive_corrupted_after_indexing_is_failed_download(tmp_path, src_cache):
    root = tmp_path / "rot"
    archive = _make_tar_gz(root / "a.tar.gz", {"rot_000001.mp4": _payload("rot_000001", 300_000)})
    idx = tmp_path / "idx"
    assert MirrorSource(root, index_cache_dir=idx).archives_scanned == 1
    # Bit rot: same size and mtime, so the cached index is reused; the bytes no longer match it.
    stat = archive.stat()
    data = bytearray(archive.read_bytes())
    for i in range(len(data) // 2, len(data) // 2 + 64):
        data[i] ^= 0xFF
    archive.write_bytes(bytes(data))
    os.utime(archive, ns=(stat.st_atime_ns, stat.st_mtime_ns))
    source = MirrorSource(root, index_cache_dir=idx)
    assert source.archives_scanned == 0
    result = source.acquire(_clip("rot", 1), src_cache)
    assert result.status is Status.FAILED_DOWNLOAD and result.error.startswith("corrupt_archive: ")
    _assert_cache(src_cache)


def test_mirror_gzip_member_names_and_plain_tar(tmp_path, src_cache):
    root = tmp_path / "plain"
    root.mkdir()
    with tarfile.open(root / "b.tar", "w") as tar:
        info = tarfile.TarInfo("x/hhh_000008.mp4")
        info.size = 10
        tar.addfile(info, io.BytesIO(b"0123456789"))
    (root / "notes.gz").write_bytes(gzip.compress(b"ignored"))
    source = MirrorSource(root, index_cache_dir=tmp_path / "idx")
    assert set(source.index) == {"hhh_000008"}
    assert source.acquire(_clip("hhh", 8), src_cache).path.read_bytes() == b"0123456789"


def test_mirror_rejects_bad_arguments(tmp_path):
    with pytest.raises(UsageError, match="layout"):
        MirrorSource(tmp_path, layout="clips")
    with pytest.raises(DataFileError, match="does not exist"):
        MirrorSource(tmp_path / "missing")
    (tmp_path / "file.zip").write_bytes(b"")
    with pytest.raises(DataFileError, match="directory or"):
        MirrorSource(tmp_path / "file.zip")


def test_sources_pickle_for_worker_processes(src_mirror_tree, tmp_path):
    youtube = pickle.loads(pickle.dumps(YoutubeSource(url_template="http://127.0.0.1:1/{ytid}.mp4", timeout=7)))
    assert (youtube.url_template, youtube.timeout, youtube.bot_checks.consecutive) == (
        "http://127.0.0.1:1/{ytid}.mp4", 7.0, 0)
    mirror = pickle.loads(pickle.dumps(MirrorSource(src_mirror_tree, index_cache_dir=tmp_path / "idx")))
    assert "ccc_000030" in mirror.index


def test_mirror_default_index_cache_is_under_avsl_bench_cache(src_mirror_tree, tmp_path, monkeypatch):
    monkeypatch.setenv("AVSL_BENCH_CACHE", str(tmp_path / "benchcache"))
    assert MirrorSource(src_mirror_tree).archives_scanned == 2
    assert len(list((tmp_path / "benchcache" / "mirror-index").glob("mirror-*.json"))) == 1
    assert MirrorSource(src_mirror_tree).archives_scanned == 0
