"""A loopback HTTP server for source tests: static files with Range/HEAD, scripted errors, and hangs.

Routes are registered per path by the test that needs them, so tests sharing one server never interfere:

    server.serve_file("/ok.mp4", path)
    server.fail("/gone.mp4", 410)
    server.fail_then_serve("/flaky.mp4", 503, times=1, path=path)
    server.hang("/slow.mp4")
"""

from __future__ import annotations

import http.server
import re
import threading
from dataclasses import dataclass, field
from pathlib import Path


@dataclass
class _Route:
    kind: str  # bytes | fail | fail_then_serve | hang | stall
    data: bytes = b""
    stall_after: int = 0
    status: int = 200
    remaining_failures: int = 0
    hits: int = 0
    lock: threading.Lock = field(default_factory=threading.Lock)


class MediaServer:
    """Threaded HTTP server on 127.0.0.1 with an ephemeral port; use as a context manager."""

    def __init__(self) -> None:
        self._routes: dict[str, _Route] = {}
        self._stop = threading.Event()
        server = self

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, format: str, *args: object) -> None:  # noqa: A002 - quiet
                pass

            def do_HEAD(self) -> None:  # noqa: N802
                server._handle(self, send_body=False)

            def do_GET(self) -> None:  # noqa: N802
                server._handle(self, send_body=True)

        self._httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._httpd.daemon_threads = True
        self._thread = threading.Thread(target=self._httpd.serve_forever, name="src-media-server", daemon=True)

    # ---- lifecycle ------------------------------------------------------------------------------------------------

    @property
    def base_url(self) -> str:
        host, port = self._httpd.server_address[:2]
        return f"http://{host}:{port}"

    def __enter__(self) -> "MediaServer":
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._httpd.shutdown()
        self._httpd.server_close()
        self._thread.join(timeout=5)

    # ---- routes ---------------------------------------------------------------------------------------------------

    def serve_file(self, path: str, file: Path) -> None:
        self._routes[path] = _Route("bytes", data=Path(file).read_bytes())

    def serve_bytes(self, path: str, data: bytes) -> None:
        self._routes[path] = _Route("bytes", data=data)

    def fail(self, path: str, status: int) -> None:
        self._routes[path] = _Route("fail", status=status)

    def fail_then_serve(self, path: str, status: int, times: int, file: Path) -> None:
        self._routes[path] = _Route("fail_then_serve", data=Path(file).read_bytes(), status=status,
                                    remaining_failures=times)

    def hang(self, path: str) -> None:
        self._routes[path] = _Route("hang")

    def stall(self, path: str, file: Path, after: int) -> None:
        """Answer headers and the first `after` body bytes of every request, then never send the rest."""
        self._routes[path] = _Route("stall", data=Path(file).read_bytes(), stall_after=after)

    def hits(self, path: str) -> int:
        route = self._routes.get(path)
        return route.hits if route else 0

    # ---- handling -------------------------------------------------------------------------------------------------

    def _handle(self, req: http.server.BaseHTTPRequestHandler, send_body: bool) -> None:
        route = self._routes.get(req.path.split("?", 1)[0])
        if route is None:
            return self._error(req, 404)
        with route.lock:
            route.hits += 1
            failing = route.kind == "fail" or (route.kind == "fail_then_serve" and route.remaining_failures > 0)
            if route.kind == "fail_then_serve" and failing:
                route.remaining_failures -= 1
        if route.kind == "hang":
            self._stop.wait(120)  # accept, read the request, never answer
            req.close_connection = True
            return None
        if failing:
            return self._error(req, route.status)
        return self._send_range(req, route.data, send_body, route.stall_after if route.kind == "stall" else None)

    @staticmethod
    def _error(req: http.server.BaseHTTPRequestHandler, status: int) -> None:
        body = f"error {status}\n".encode()
        req.send_response(status)
        req.send_header("Content-Type", "text/plain")
        req.send_header("Content-Length", str(len(body)))
        req.end_headers()
        if req.command != "HEAD":
            req.wfile.write(body)

    def _send_range(self, req: http.server.BaseHTTPRequestHandler, data: bytes, send_body: bool,
                    stall_after: int | None = None) -> None:
        size = len(data)
        start, end, status = 0, size - 1, 200
        match = re.fullmatch(r"bytes=(\d*)-(\d*)", (req.headers.get("Range") or "").strip())
        if match and (match.group(1) or match.group(2)):
            if match.group(1):
                start = int(match.group(1))
                end = min(int(match.group(2)), size - 1) if match.group(2) else size - 1
            else:
                start = max(size - int(match.group(2)), 0)
            if start >= size or start > end:
                req.send_response(416)
                req.send_header("Content-Range", f"bytes */{size}")
                req.send_header("Content-Length", "0")
                req.end_headers()
                return
            status = 206
        req.send_response(status)
        req.send_header("Content-Type", "video/mp4")
        req.send_header("Accept-Ranges", "bytes")
        req.send_header("Content-Length", str(end - start + 1))
        if status == 206:
            req.send_header("Content-Range", f"bytes {start}-{end}/{size}")
        req.end_headers()
        if not send_body:
            return
        body = data[start:end + 1]
        try:
            if stall_after is None:
                req.wfile.write(body)
                return
            req.wfile.write(body[:stall_after])
            req.wfile.flush()
        except (BrokenPipeError, ConnectionResetError):
            return
        self._stop.wait(120)
        req.close_connection = True
