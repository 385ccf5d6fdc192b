"""yt-dlp source: one 10 s range per clip, downloaded in a killable child process (data spec §7).

Each attempt runs ``python -m avsl_bench.data.sources.youtube`` in its own process group. The child drives the
yt-dlp Python API with ``download_ranges`` = [start, start + 10] and ``force_keyframes_at_cuts`` (the CLI's
``--download-sections`` is never passed through the API: yt-dlp#11306), so the cached file starts at ``start``.
The parent enforces the per-clip timeout by killing the whole group (yt-dlp's ffmpeg included), classifies the
failure from yt-dlp's and ffmpeg's messages, retries transient errors with jittered exponential backoff, checks
that the result decodes, and renames it to ``<cache_dir>/<clip_id>.mp4``. Each attempt's scratch directory
(``$TMPDIR/avsl-ytdlp-*``) belongs to the parent, which removes it once the child is gone, whatever the outcome.

Example (a local direct-URL server works through yt-dlp's generic extractor):

    >>> src = YoutubeSource(url_template="http://127.0.0.1:8000/{ytid}.mp4")  # doctest: +SKIP
    >>> src.acquire(ClipRef("abc_000001", "abc", 1), Path("cache")).status  # doctest: +SKIP
    <Status.SUCCESS: 'success'>
"""

from __future__ import annotations

import contextlib
import glob
import json
import os
import random
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
import urllib.parse
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from avsl_bench.data.sources.base import AcquireResult, ClipRef, Status
from avsl_bench.errors import AvslBenchError
from avsl_bench.files import fsync_dir

__all__ = [
    "BotCheckCounter",
    "Classification",
    "TooManyBotChecks",
    "YoutubeSource",
    "backoff_delay",
    "classify_message",
    "extractor_for",
]

DEFAULT_URL_TEMPLATE = "https://www.youtube.com/watch?v={ytid}"
CLIP_SECONDS = 10
# <= 480p video + best audio; generic direct-URL servers expose one combined format of unknown height (`?`).
FORMAT = "bv*[height<=?480]+ba/b[height<=?480]"
BOT_CHECK_LIMIT = 20
_SOCKET_TIMEOUT = 30.0
_MEDIA_EXTENSIONS = (".mp4", ".m4v", ".mov", ".webm", ".mkv", ".m4a", ".mp3", ".flv", ".avi")
_VERIFY_TIMEOUT = 60.0
#: Name prefix of each attempt's scratch directory (cookie copy, ffmpeg link) under the temp directory.
SCRATCH_PREFIX = "avsl-ytdlp-"


class TooManyBotChecks(AvslBenchError):
    """YouTube answered "Sign in to confirm you're not a bot" too many times in a row; stop this part."""

    exit_code = 3


# --------------------------------------------------------------------------------------------------------------------
# Error classification
# --------------------------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Classification:
    """How one failed attempt is recorded: final status, short reason, and whether to retry."""

    status: Status
    reason: str
    retry: bool


_RULES: tuple[tuple[str, Status, bool, re.Pattern[str]], ...] = tuple(
    (reason, status, retry, re.compile(pattern, re.IGNORECASE))
    for reason, status, retry, pattern in (
        # Rate limiting first: YouTube words it as "This content isn't available, try again later".
        ("rate_limited", Status.FAILED_DOWNLOAD, True, r"try again later|rate[- ]limit"),
        ("bot_check", Status.FAILED_DOWNLOAD, False, r"confirm you.?re not a bot|confirm you are not a bot"),
        ("private", Status.UNAVAILABLE, False, r"private video|video is private"),
        ("terminated", Status.UNAVAILABLE, False, r"(?:account|channel)\b.{0,80}\bterminated\b"),
        ("age_gated", Status.UNAVAILABLE, False,
         r"confirm your age|age[- ]restricted|inappropriate for some users"),
        ("geo_blocked", Status.UNAVAILABLE, False,
         r"available in your (?:country|location|region)|geo[- ]?restrict|blocked it in your country|"
         r"geo[- ]?blocked"),
        ("removed", Status.UNAVAILABLE, False,
         r"has been removed|was removed|removed by the uploader|copyright claim|no longer available"),
        ("video_unavailable", Status.UNAVAILABLE, False, r"video unavailable|video is unavailable"),
        ("http_4xx", Status.FAILED_DOWNLOAD, False, r"Server returned 4XX"),
        ("http_5xx", Status.FAILED_DOWNLOAD, True, r"Server returned 5XX"),
        ("http_429", Status.FAILED_DOWNLOAD, True, r"too many requests"),
        ("connection_reset", Status.FAILED_DOWNLOAD, True,
         r"connection reset|errno 104|connection aborted|remote end closed|broken pipe|incompleteread|"
         r"incomplete read|unexpected eof|end of file occurred"),
        ("connection_refused", Status.FAILED_DOWNLOAD, True, r"connection refused|errno 111"),
        ("dns", Status.FAILED_DOWNLOAD, True,
         r"name or service not known|temporary failure in name resolution|nodename nor servname|"
         r"getaddrinfo failed|failed to resolve|no address associated|name resolution"),
        ("read_timeout", Status.FAILED_DOWNLOAD, True, r"timed out|timeout"),
        ("network", Status.FAILED_DOWNLOAD, True, r"network is unreachable|no route to host|errno 101"),
        ("corrupt", Status.FAILED_DOWNLOAD, False,
         r"invalid data found when processing input|moov atom not found|could not find codec parameters|"
         r"error while decoding|invalid nal unit|does not contain any stream"),
        ("no_format", Status.FAILED_DOWNLOAD, False, r"requested format is not available"),
        ("unsupported_url", Status.FAILED_DOWNLOAD, False, r"unsupported url"),
    )
)
_HTTP_STATUS = re.compile(r"HTTP Error (\d{3})|Server returned (\d{3})\b", re.IGNORECASE)


def classify_message(text: str) -> Classification:
    """Classify the text of a failed attempt (yt-dlp errors and ffmpeg stderr) into status, reason, retry.

    HTTP 403/404/410 are permanent (``unavailable``), 429 and 5xx transient; a bot check is ``failed_download``
    without retry; anything unrecognised is ``failed_download`` (reason ``error``) without retry.

    >>> classify_message("ERROR: [generic] x: Unable to download webpage: HTTP Error 404: Not Found").reason
    'http_404'
    >>> classify_message("Sign in to confirm you’re not a bot").status.value
    'failed_download'
    """
    for reason, status, retry, pattern in _RULES[:2]:
        if pattern.search(text):
            return Classification(status, reason, retry)
    for match in _HTTP_STATUS.finditer(text):
        code = int(match.group(1) or match.group(2))
        if code in (403, 404, 410):
            return Classification(Status.UNAVAILABLE, f"http_{code}", False)
        if code == 429 or 500 <= code <= 599:
            return Classification(Status.FAILED_DOWNLOAD, f"http_{code}", True)
    for reason, status, retry, pattern in _RULES[2:]:
        if pattern.search(text):
            return Classification(status, reason, retry)
    return Classification(Status.FAILED_DOWNLOAD, "error", False)


def backoff_delay(k: int, rng: random.Random) -> float:
    """Delay before retry ``k`` (0-based): min(2 * 2**k, 120) s times U(0.5, 1.5)."""
    return min(2.0 * 2.0**k, 120.0) * rng.uniform(0.5, 1.5)


class BotCheckCounter:
    """Counts consecutive bot-check outcomes across clips (thread-safe); any other outcome resets it.

    The caller checks after each clip and stops the part when it trips:

    >>> counter = BotCheckCounter(limit=2)
    >>> counter.record("bot_check"); counter.record("bot_check"); counter.tripped
    True
    """

    def __init__(self, limit: int = BOT_CHECK_LIMIT) -> None:
        if limit < 1:
            raise ValueError(f"limit must be >= 1, got {limit}")
        self.limit = limit
        self._consecutive = 0
        self._lock = threading.Lock()

    @property
    def consecutive(self) -> int:
        """Bot checks seen in a row so far."""
        return self._consecutive

    @property
    def tripped(self) -> bool:
        """True once `limit` consecutive bot checks have been recorded."""
        return self._consecutive >= self.limit

    def record(self, reason: str | None) -> None:
        """Record one finished clip by its classified reason (None or anything but ``bot_check`` resets)."""
        with self._lock:
            self._consecutive = self._consecutive + 1 if reason == "bot_check" else 0

    def __getstate__(self) -> dict:
        return {"limit": self.limit, "consecutive": self._consecutive}

    def __setstate__(self, state: dict) -> None:
        self.limit = state["limit"]
        self._consecutive = state["consecutive"]
        self._lock = threading.Lock()

    def check(self) -> None:
        """Raise `TooManyBotChecks` when tripped."""
        if self.tripped:
            raise TooManyBotChecks(
                f"{self._consecutive} consecutive YouTube bot checks (limit {self.limit}); stopping this part. "
                "Pass --cookies or --proxy, or wait, then re-run to resume."
            )


# --------------------------------------------------------------------------------------------------------------------
# ffmpeg helpers
# --------------------------------------------------------------------------------------------------------------------


def extractor_for(url_template: str) -> str | None:
    """The yt-dlp extractor to use for a URL template, or None to let yt-dlp try each one.

    Naming it skips matching the URL against ~1,900 extractor patterns (about 1 s of CPU per attempt):
    ``Youtube`` for youtube.com / youtu.be, ``Generic`` for direct media URLs (path ending in a media extension).

    >>> extractor_for("https://www.youtube.com/watch?v={ytid}"), extractor_for("http://127.0.0.1:8/{ytid}.mp4")
    ('Youtube', 'Generic')
    """
    parts = urllib.parse.urlsplit(url_template)
    host = (parts.hostname or "").lower()
    if host == "youtu.be" or host == "youtube.com" or host.endswith(".youtube.com"):
        return "Youtube"
    if parts.path.lower().endswith(_MEDIA_EXTENSIONS):
        return "Generic"
    return None


def _verify_decodable(ffmpeg: str, path: Path) -> str | None:
    """None if ffmpeg opens `path` and decodes its first 0.1 s, else the last stderr line."""
    if not path.is_file() or path.stat().st_size == 0:
        return "empty file"
    argv = [ffmpeg, "-nostdin", "-hide_banner", "-v", "error", "-i", str(path), "-t", "0.1", "-f", "null", "-"]
    try:
        proc = subprocess.run(argv, capture_output=True, text=True, errors="replace", timeout=_VERIFY_TIMEOUT)
    except subprocess.TimeoutExpired:
        return "verification timed out"
    if proc.returncode != 0:
        return _last_line(proc.stderr) or f"ffmpeg exited with code {proc.returncode}"
    return None


def _last_line(text: str) -> str:
    """Last non-empty line (carriage-return progress lines split too), without a leading ``ERROR:``."""
    lines = _lines(text)
    return lines[-1] if lines else ""


#: Lines that say nothing about the clip: the interpreter's fatal-error dump, tracebacks, exit codes.
_NOISE = re.compile(
    r"^(?:Fatal Python error|Python runtime state|Current thread|Thread 0x|<no Python frame>|Extension modules|"
    r"Traceback \(most recent call last\)|File \"|ffmpeg exited with code|worker exited with code)"
)


def _lines(text: str) -> list[str]:
    """Non-empty lines (carriage-return progress lines split too), without a leading ``ERROR:``."""
    found = []
    for line in re.split(r"[\r\n]+", text or ""):
        line = re.sub(r"^ERROR:\s*", "", line.strip())
        if line:
            found.append(line)
    return found


def _failure_message(errors: list[str], stderr: str, classification: Classification) -> str:
    """The line recorded after the reason: the last line of yt-dlp's errors, else of stderr, that shows the
    classified cause; failing that the last such line that is not noise (an exit code, a crash dump's
    ``<no Python frame>``).

    >>> _failure_message(["ERROR: ffmpeg exited with code 183"], "moov atom not found\\n<no Python frame>\\n",
    ...                  classify_message("moov atom not found"))
    'moov atom not found'
    """
    sources = [[ln for ln in _lines(text) if not _NOISE.match(ln)] for text in ("\n".join(errors), stderr)]
    patterns = [pattern for reason, _, _, pattern in _RULES if reason == classification.reason]
    if classification.reason.startswith("http_"):
        patterns.append(_HTTP_STATUS)
    for lines in sources:
        matching = [ln for ln in lines if any(p.search(ln) for p in patterns)]
        if matching:
            return matching[-1]
    return next((lines[-1] for lines in sources if lines), "")


# --------------------------------------------------------------------------------------------------------------------
# The source
# --------------------------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Attempt:
    ok: bool
    path: Path | None
    classification: Classification | None
    message: str


class YoutubeSource:
    """Acquire clips with yt-dlp: ``[start, start + 10)`` of ``url_template.format(ytid=...)``.

    Args:
        url_template: URL with a ``{ytid}`` field; tests point it at a loopback server (``http://.../{ytid}.mp4``).
        timeout: seconds per clip, all attempts and backoff included; the child process group is killed after it.
        max_attempts: attempts for transient errors (>= 1).
        cookies: Netscape cookie file passed to yt-dlp (each attempt reads a private copy).
        proxy: proxy URL passed to yt-dlp.
        ffmpeg: ffmpeg binary (default: `avsl_bench.data.ffmpeg.find_ffmpeg`, spec §4).
        sleep: called with the backoff delay in seconds (tests inject a no-op).
        rng: source of the backoff jitter (default: a fresh `random.Random`).

    ``bot_checks`` counts consecutive bot checks across clips; call ``bot_checks.check()`` after each clip.
    """

    name = "youtube"

    def __init__(
        self,
        url_template: str = DEFAULT_URL_TEMPLATE,
        timeout: float = 180,
        max_attempts: int = 4,
        cookies: str | os.PathLike | None = None,
        proxy: str | None = None,
        ffmpeg: str | os.PathLike | None = None,
        sleep: Callable[[float], None] = time.sleep,
        rng: random.Random | None = None,
    ) -> None:
        if "{ytid}" not in url_template:
            raise ValueError(f"url_template must contain '{{ytid}}', got {url_template!r}")
        if timeout <= 0:
            raise ValueError(f"timeout must be > 0 seconds, got {timeout}")
        if max_attempts < 1:
            raise ValueError(f"max_attempts must be >= 1, got {max_attempts}")
        self.url_template = url_template
        self.timeout = float(timeout)
        self.max_attempts = int(max_attempts)
        self.cookies = os.fspath(cookies) if cookies is not None else None
        self.proxy = proxy
        from avsl_bench.data.ffmpeg import find_ffmpeg  # not at module level: keeps the download child light

        self.ffmpeg = find_ffmpeg(os.fspath(ffmpeg) if ffmpeg is not None else None)
        self.sleep = sleep
        self.rng = rng if rng is not None else random.Random()
        self.bot_checks = BotCheckCounter()

    def acquire(self, clip: ClipRef, cache_dir: Path) -> AcquireResult:
        """Download ``[start, start+10)`` of `clip` into ``cache_dir/<clip_id>.mp4``; never raises per clip.

        A clip already in the cache is returned as success with 0 attempts.
        """
        cache_dir = Path(cache_dir)
        final = cache_dir / f"{clip.clip_id}.mp4"
        if final.is_file():
            self.bot_checks.record(None)
            return AcquireResult(Status.SUCCESS, final, None, 0)
        cache_dir.mkdir(parents=True, exist_ok=True)
        deadline = time.monotonic() + self.timeout
        attempts = 0
        while True:
            attempts += 1
            outcome = self._attempt(clip, cache_dir, final, deadline)
            if outcome.ok:
                self.bot_checks.record(None)
                return AcquireResult(Status.SUCCESS, outcome.path, None, attempts)
            cls = outcome.classification
            assert cls is not None
            if cls.retry and attempts < self.max_attempts:
                delay = backoff_delay(attempts - 1, self.rng)
                if time.monotonic() + delay < deadline:
                    self.sleep(delay)
                    continue
            self.bot_checks.record(cls.reason)
            return AcquireResult(cls.status, None, f"{cls.reason}: {outcome.message}", attempts)

    # ---- one attempt ------------------------------------------------------------------------------------------------

    def _attempt(self, clip: ClipRef, cache_dir: Path, final: Path, deadline: float) -> _Attempt:
        stem = f".{clip.clip_id}.{uuid.uuid4().hex[:12]}.part"
        scratch = tempfile.mkdtemp(prefix=SCRATCH_PREFIX)
        try:
            return self._attempt_in(clip, cache_dir, final, deadline, stem, scratch)
        finally:  # the child is gone by now (exited, or its group killed and reaped)
            shutil.rmtree(scratch, ignore_errors=True)
            for leftover in cache_dir.glob(f"{glob.escape(stem)}*"):
                with contextlib.suppress(OSError):
                    leftover.unlink()

    def _attempt_in(self, clip: ClipRef, cache_dir: Path, final: Path, deadline: float, stem: str,
                    scratch: str) -> _Attempt:  # fmt: skip
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            return _timeout_attempt(self.timeout)
        request = {
            "scratch": scratch,
            "url": self.url_template.format(ytid=clip.ytid),
            "ie_key": extractor_for(self.url_template),
            "start": clip.start,
            "end": clip.start + CLIP_SECONDS,
            "outprefix": str(cache_dir / stem),
            "result": str(cache_dir / f"{stem}.result.json"),
            "ffmpeg": self.ffmpeg,
            "cookies": self.cookies,
            "proxy": self.proxy,
            "socket_timeout": min(_SOCKET_TIMEOUT, self.timeout),
        }
        returncode, stderr = _run_worker(request, remaining)
        if returncode is None:
            return _timeout_attempt(self.timeout)
        try:
            result = json.loads(Path(request["result"]).read_text(encoding="utf-8"))
        except (OSError, ValueError):
            crashed = Classification(Status.FAILED_DOWNLOAD, "worker_crashed", False)
            line = _failure_message([], stderr, crashed) or f"worker exited with code {returncode}"
            return _Attempt(False, None, crashed, line)
        if not result["ok"]:
            errors, warnings = result["errors"], result["warnings"]
            # Errors decide; warnings (e.g. a retried 403 on a player request) only break a tie with "error".
            classification = classify_message("\n".join([*errors, stderr]))
            if classification.reason == "error" and warnings:
                classification = classify_message("\n".join([*errors, stderr, *warnings]))
            message = _failure_message(errors, stderr, classification) or f"worker exited with code {returncode}"
            return _Attempt(False, None, classification, message)
        produced = Path(result["filepath"]) if result.get("filepath") else None
        if produced is None or not produced.is_file():
            return _Attempt(False, None, Classification(Status.FAILED_DOWNLOAD, "no_output", False),
                            "yt-dlp reported success but wrote no file")
        problem = _verify_decodable(self.ffmpeg, produced)
        if problem is not None:
            return _Attempt(False, None, Classification(Status.FAILED_DOWNLOAD, "corrupt", False), problem)
        os.replace(produced, final)
        fsync_dir(cache_dir)
        return _Attempt(True, final, None, "")


def _timeout_attempt(timeout: float) -> _Attempt:
    return _Attempt(False, None, Classification(Status.FAILED_DOWNLOAD, "timeout", False),
                    f"acquisition exceeded {timeout:g} s; process group killed")


def _package_root() -> str:
    return str(Path(__file__).resolve().parents[3])


def _run_worker(request: dict, timeout: float) -> tuple[int | None, str]:
    """Run one download in a child process group; (returncode, stderr), returncode None when killed on timeout.

    The request goes to the child's stdin as one JSON line and the pipe stays open while the child runs: if this
    process dies, the child sees EOF and kills its own group, so no download outlives its parent.
    """
    env = os.environ.copy()
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [_package_root(), env.get("PYTHONPATH")]))
    env["PYTHONUNBUFFERED"] = "1"
    argv = [sys.executable, "-m", "avsl_bench.data.sources.youtube"]
    with tempfile.TemporaryFile() as err:
        proc = subprocess.Popen(
            argv, stdin=subprocess.PIPE, stdout=subprocess.DEVNULL, stderr=err, env=env, start_new_session=True
        )
        assert proc.stdin is not None
        returncode: int | None = None
        try:
            with contextlib.suppress(BrokenPipeError):
                proc.stdin.write(json.dumps(request).encode("utf-8") + b"\n")
                proc.stdin.flush()
            returncode = proc.wait(timeout=max(timeout, 0.01))
        except subprocess.TimeoutExpired:
            pass
        finally:
            if returncode is None:  # timeout or interrupt: the leader is not reaped yet, so its group id is ours
                _kill_group(proc)
            with contextlib.suppress(OSError):
                proc.stdin.close()
        err.seek(0)
        stderr = err.read()[-65536:].decode("utf-8", errors="replace")
    return returncode, stderr


def _kill_group(proc: subprocess.Popen) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(proc.pid, signal.SIGKILL)
    with contextlib.suppress(subprocess.TimeoutExpired):
        proc.wait(timeout=10)


# --------------------------------------------------------------------------------------------------------------------
# Child process: `python -m avsl_bench.data.sources.youtube` reads one JSON request on stdin
# --------------------------------------------------------------------------------------------------------------------


class _Log:
    """yt-dlp logger that keeps the last warnings and errors (debug/info are dropped)."""

    def __init__(self) -> None:
        self.errors: list[str] = []
        self.warnings: list[str] = []

    def debug(self, msg: str) -> None:
        pass

    def info(self, msg: str) -> None:
        pass

    def warning(self, msg: str) -> None:
        self.warnings = [*self.warnings[-19:], msg]

    def error(self, msg: str) -> None:
        self.errors = [*self.errors[-19:], msg]

    def result(self, ok: bool, filepath: str | None = None) -> dict:
        return {"ok": ok, "filepath": filepath, "errors": self.errors, "warnings": self.warnings}


def _point_ytdlp_at_ffmpeg(ffmpeg: str, scratch: str) -> None:
    """Make yt-dlp's range downloader find `ffmpeg`.

    `FFmpegFD.available()` ignores the ``ffmpeg_location`` option and probes without it, so a binary that is not
    ``ffmpeg`` on PATH (imageio-ffmpeg's) makes range downloads fail with "ffmpeg is not installed". The CLI sets a
    context variable for this; without it, put an ``ffmpeg`` link first on PATH.
    """
    from yt_dlp.postprocessor.ffmpeg import FFmpegPostProcessor

    location = getattr(FFmpegPostProcessor, "_ffmpeg_location", None)
    if location is not None and hasattr(location, "set"):
        location.set(ffmpeg)
        return
    link_dir = os.path.join(scratch, "bin")
    os.makedirs(link_dir, exist_ok=True)
    os.symlink(ffmpeg, os.path.join(link_dir, "ffmpeg"))
    os.environ["PATH"] = link_dir + os.pathsep + os.environ.get("PATH", "")


def _worker_download(request: dict, scratch: str) -> dict:
    import yt_dlp
    from yt_dlp.utils import download_range_func

    _point_ytdlp_at_ffmpeg(request["ffmpeg"], scratch)
    log = _Log()
    opts = {
        "format": FORMAT,
        "download_ranges": download_range_func(None, [(request["start"], request["end"])]),
        "force_keyframes_at_cuts": True,
        "outtmpl": {"default": request["outprefix"].replace("%", "%%") + ".%(ext)s"},
        "merge_output_format": "mp4",
        "ffmpeg_location": request["ffmpeg"],
        "external_downloader_args": {"ffmpeg": ["-nostats", "-loglevel", "error"]},
        "socket_timeout": request["socket_timeout"],
        "retries": 0,
        "fragment_retries": 0,
        "noplaylist": True,
        "noprogress": True,
        "updatetime": False,
        "fixup": "never",
        "overwrites": True,
        "continuedl": False,
        "logger": log,
    }
    if request.get("proxy"):
        opts["proxy"] = request["proxy"]
    if request.get("cookies"):
        # yt-dlp writes the jar back on exit: give each attempt a private copy so concurrent clips never clash.
        private = os.path.join(scratch, "cookies.txt")
        shutil.copyfile(request["cookies"], private)
        opts["cookiefile"] = private
    try:
        with yt_dlp.YoutubeDL(opts) as ydl:
            info = ydl.extract_info(request["url"], download=True, ie_key=request.get("ie_key"))
    except Exception as exc:  # yt-dlp raises DownloadError and friends; all of them are classified by text
        text = str(exc)
        if text and text not in log.errors:
            log.error(text)
        return log.result(False)
    downloads = (info or {}).get("requested_downloads") or []
    filepath = downloads[0].get("filepath") if downloads else None
    if not filepath:
        log.error("yt-dlp finished without downloading a file")
        return log.result(False)
    return log.result(True, filepath)


def _watch_parent(owned_scratch: str | None) -> None:
    """Kill this process group (yt-dlp's ffmpeg included) when stdin reaches EOF, i.e. the parent went away;
    first remove the scratch directory if this process made it (the parent removes the one it passed).

    Reads the file descriptor, not ``sys.stdin.buffer``: a daemon thread blocked inside the buffered reader holds
    its lock, and the interpreter then aborts at exit ("could not acquire lock for <stdin>", SIGABRT).
    """
    with contextlib.suppress(OSError, ValueError):
        while os.read(sys.stdin.fileno(), 65536):
            pass
    if owned_scratch is not None:
        shutil.rmtree(owned_scratch, ignore_errors=True)
    os.killpg(os.getpgrp(), signal.SIGKILL)


def _worker_main() -> int:
    request = json.loads(sys.stdin.buffer.readline())
    scratch = request.get("scratch")
    owned = None if scratch else tempfile.mkdtemp(prefix=SCRATCH_PREFIX)  # run by hand, without a parent's
    threading.Thread(target=_watch_parent, args=(owned,), name="parent-watch", daemon=True).start()
    try:
        result = _worker_download(request, scratch or owned)
    finally:
        if owned is not None:
            shutil.rmtree(owned, ignore_errors=True)
    tmp = request["result"] + ".tmp"
    with open(tmp, "w", encoding="utf-8") as handle:
        json.dump(result, handle)
    os.replace(tmp, request["result"])
    return 0


if __name__ == "__main__":
    sys.exit(_worker_main())
