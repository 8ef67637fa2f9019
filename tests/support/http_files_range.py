"""A real HTTP file server for fetch tests: byte ranges, injected failures and a log of requests.

Files are served from memory (`FileServer.files`, path → :class:`Served`); every request's path and
headers are recorded in `FileServer.requests` so a test can assert what the client sent (a `Range`
header, an `Authorization` header). Failures are injected per file: `fail_first` answers 503 to the
first N requests, `cut_first` sends half the body and drops the connection on the first N requests,
`ignore_range` answers a `Range` request with the whole file (200), `length=False` sends no
Content-Length (the client learns the size only at the end). Each file has a strong ETag (of its
bytes) and honours `If-Range` as RFC 9110 says: a validator that is not the current one gets the whole
file (200); `validators=False` serves a file with neither ETag nor Last-Modified.
"""

from __future__ import annotations

import hashlib
import http.server
import re
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field

_RANGE = re.compile(r"bytes=(\d+)-(\d*)")


@dataclass
class Served:
    body: bytes
    fail_first: int = 0
    cut_first: int = 0
    ignore_range: bool = False
    validators: bool = True
    length: bool = True
    """False: no Content-Length; the body ends when the connection closes (HTTP/1.0)."""
    hits: int = 0

    @property
    def etag(self) -> str:
        return f'"{hashlib.sha256(self.body).hexdigest()[:16]}"'


@dataclass
class Request:
    path: str
    headers: dict[str, str]


@dataclass
class FileServer:
    files: dict[str, Served] = field(default_factory=dict)
    requests: list[Request] = field(default_factory=list)
    url: str = ""
    lock: threading.Lock = field(default_factory=threading.Lock)

    def requests_for(self, path: str) -> list[Request]:
        with self.lock:
            return [r for r in self.requests if r.path == path]


class _Handler(http.server.BaseHTTPRequestHandler):
    state: FileServer  # set on the subclass made per server

    def log_message(self, format: str, *args: object) -> None:
        pass

    def do_GET(self) -> None:
        state = self.state
        with state.lock:
            state.requests.append(Request(self.path, {k.lower(): v for k, v in self.headers.items()}))
            served = state.files.get(self.path)
            if served is not None:
                served.hits += 1
        if served is None:
            self.send_error(404)
            return
        if served.hits <= served.fail_first:
            self.send_error(503, "injected failure")
            return
        body, start = served.body, 0
        match = _RANGE.fullmatch(self.headers.get("Range", "").strip())
        if_range = self.headers.get("If-Range")
        if if_range is not None and if_range != served.etag:
            match = None  # the client's bytes are of another version of the file: send it whole
        if match and not served.ignore_range:
            start = int(match.group(1))
            end = int(match.group(2)) if match.group(2) else len(body) - 1
            if start >= len(body):
                self.send_response(416)
                self.send_header("Content-Range", f"bytes */{len(body)}")
                self.send_header("Content-Length", "0")
                self.end_headers()
                return
            self.send_response(206)
            self.send_header("Content-Range", f"bytes {start}-{end}/{len(body)}")
            body = body[start : end + 1]
        else:
            self.send_response(200)
            self.send_header("Accept-Ranges", "none" if served.ignore_range else "bytes")
        if served.length:
            self.send_header("Content-Length", str(len(body)))
        self.send_header("Content-Type", "application/octet-stream")
        if served.validators:
            self.send_header("ETag", served.etag)
        self.end_headers()
        if served.hits <= served.fail_first + served.cut_first:
            self.wfile.write(body[: len(body) // 2])
            self.wfile.flush()
            self.close_connection = True
            return
        self.wfile.write(body)


@contextmanager
def serve_files(files: dict[str, Served] | None = None) -> Iterator[FileServer]:
    """Serve `files` on 127.0.0.1 at a free port; `FileServer.url` is the base URL (no slash)."""
    state = FileServer(files=dict(files or {}))
    handler = type("Handler", (_Handler,), {"state": state})
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    state.url = f"http://127.0.0.1:{server.server_address[1]}"
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield state
    finally:
        server.shutdown()
        server.server_close()
        thread.join()
