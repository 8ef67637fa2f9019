"""Where a model file comes from: the URI forms `localmodel-runtime fetch` understands.

A `download_files[].uri` (or a URI in `parameters.model`) resolves to one of three sources:

* `huggingface://owner/repo/path/to/file[@revision]` and `hf://…` (LocalAI also accepts
  `owner/repo@revision/path`): an HTTP download from
  `{HF_ENDPOINT or https://huggingface.co}/{owner}/{repo}/resolve/{revision or main}/{path}`, with
  `Authorization: Bearer …` only when `HF_TOKEN` (or `HUGGING_FACE_HUB_TOKEN`) is set and the endpoint is
  https (or plain http on loopback: a local mirror);
* `https://…` / `http://…`: a plain HTTP download (the Hugging Face token is sent only to the Hugging Face
  endpoint's host, and only over https or loopback http);
* `file:///absolute/path`: a local copy;
* `pypi://DIST`: a model shipped as a Python package: module `DIST` (with `-` → `_`) is imported and its
  `assemble()` returns the path of the file;
* `github:org/repo/path[@branch]` (LocalAI's form, no `//`): the file from
  `https://raw.githubusercontent.com/org/repo/{branch or main}/path`;
* `ollama://[namespace/]name[:tag]`: the model layer (GGUF) of an Ollama registry image, from
  `{OLLAMA_REGISTRY or https://registry.ollama.ai}/v2/{namespace or library}/{name}/…`, checked against
  the digest its manifest names.
"""

from __future__ import annotations

import os
import posixpath
from collections.abc import Mapping
from dataclasses import dataclass, field
from urllib.parse import quote, unquote, urlsplit

from localmodel_runtime.errors import LocalModelException

DEFAULT_HF_ENDPOINT = "https://huggingface.co"
DEFAULT_OLLAMA_REGISTRY = "https://registry.ollama.ai"
GITHUB_RAW = "https://raw.githubusercontent.com"
GITHUB_PREFIX = "github:"
SUPPORTED_SCHEMES = ("huggingface", "hf", "https", "http", "file", "pypi", "ollama")


class FetchError(LocalModelException):
    """A model file that cannot be fetched; the message is one readable line."""


@dataclass(frozen=True)
class HttpSource:
    """An HTTP(S) URL, with the headers to send (a bearer token for Hugging Face)."""

    url: str
    headers: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class FileSource:
    """A file on this machine (`file://`)."""

    path: str


@dataclass(frozen=True)
class PypiSource:
    """A Python distribution whose module's `assemble()` returns the model file's path."""

    distribution: str

    @property
    def module(self) -> str:
        return self.distribution.strip().lower().replace("-", "_").replace(".", "_")


@dataclass(frozen=True)
class OllamaSource:
    """An Ollama registry image: its manifest names the model layer to download."""

    registry: str
    repository: str
    """`namespace/name`, `library/…` for the official models."""
    tag: str

    @property
    def manifest_url(self) -> str:
        return f"{self.registry}/v2/{self.repository}/manifests/{self.tag}"

    def blob_url(self, digest: str) -> str:
        return f"{self.registry}/v2/{self.repository}/blobs/{digest}"


Source = HttpSource | FileSource | PypiSource | OllamaSource


def uri_scheme(value: str) -> str | None:
    """The lower-cased scheme of `value` when it is written as `scheme://…`, else None."""
    head, sep, _ = value.partition("://")
    if not sep or not head or not head.replace("+", "").replace("-", "").replace(".", "").isalnum():
        return None
    return head.lower()


def looks_like_uri(value: str) -> bool:
    """True when `value` is a URI (`scheme://…` or `github:…`) rather than a file name or a repository id."""
    return uri_scheme(value) is not None or value.startswith(GITHUB_PREFIX)


def github_url(value: str) -> str:
    """LocalAI's `github:org/repo/path[@branch]` as its raw.githubusercontent.com URL."""
    path, _, branch = value.removeprefix(GITHUB_PREFIX).partition("@")
    parts = path.split("/", 2)
    if len(parts) < 3 or not all(parts):
        raise FetchError(f"{value!r}: a GitHub URI is github:org/repo/path/to/file[@branch]")
    org, repo, rest = parts
    return f"{GITHUB_RAW}/{org}/{repo}/{branch or 'main'}/{rest}"


def _split_ollama(rest: str) -> tuple[str, str]:
    """`name[:tag]` or `namespace/name[:tag]` → (`namespace/name`, tag)."""
    name, _, tag = rest.strip("/").partition(":")
    parts = name.split("/")
    if not name or len(parts) > 2 or not all(parts) or ".." in parts:
        raise FetchError("an Ollama URI is ollama://[namespace/]name[:tag]")
    return ("/".join(parts) if len(parts) == 2 else f"library/{name}"), tag or "latest"


def _split_hf(rest: str) -> tuple[str, str, str, str]:
    """`owner/repo/path[@rev]` or `owner/repo@rev/path` → (owner, repo, path, revision)."""
    parts = rest.split("/", 2)
    if len(parts) < 3 or not all(parts):
        raise FetchError("a Hugging Face URI needs owner/repo/path/to/file[@revision]")
    owner, repo, path = parts
    revision = "main"
    if "@" in repo:
        repo, revision = repo.split("@", 1)
    elif "@" in path.rsplit("/", 1)[-1]:
        path, revision = path.rsplit("@", 1)
    if not repo or not path or not revision:
        raise FetchError("a Hugging Face URI needs owner/repo/path/to/file[@revision]")
    return owner, repo, path, revision


def hf_endpoint(env: Mapping[str, str]) -> str:
    """The Hugging Face endpoint: `HF_ENDPOINT` (for mirrors and tests) or https://huggingface.co."""
    return (env.get("HF_ENDPOINT") or DEFAULT_HF_ENDPOINT).rstrip("/")


_LOOPBACK = ("127.0.0.1", "::1", "localhost")


def token_may_go_to(url: str) -> bool:
    """Whether the Hugging Face token may be sent to `url`: over https, or plain http to this machine's
    own loopback (a local mirror); never in clear text across a network."""
    parts = urlsplit(url)
    return parts.scheme == "https" or (parts.scheme == "http" and (parts.hostname or "") in _LOOPBACK)


def hf_token(env: Mapping[str, str]) -> str | None:
    """The Hugging Face token from `HF_TOKEN` or `HUGGING_FACE_HUB_TOKEN`, if one is set."""
    return env.get("HF_TOKEN") or env.get("HUGGING_FACE_HUB_TOKEN") or None


def resolve_source(uri: str, env: Mapping[str, str] | None = None) -> Source:
    """Turn a `download_files[].uri` into a :data:`Source`; :class:`FetchError` for anything else."""
    env = os.environ if env is None else env
    if uri.startswith(GITHUB_PREFIX):
        return HttpSource(github_url(uri))
    scheme = uri_scheme(uri)
    rest = uri.partition("://")[2]
    endpoint = hf_endpoint(env)
    token = hf_token(env) if token_may_go_to(endpoint) else None
    if scheme in ("huggingface", "hf"):
        owner, repo, path, revision = _split_hf(rest)
        url = (
            f"{endpoint}/{quote(owner)}/{quote(repo)}/resolve/{quote(revision, safe='')}/"
            f"{quote(path, safe='/')}"
        )
        return HttpSource(url, {"Authorization": f"Bearer {token}"} if token else {})
    if scheme in ("https", "http"):
        if not urlsplit(uri).hostname:
            raise FetchError(f"{uri!r} has no host")
        same_endpoint = urlsplit(uri).netloc.lower() == urlsplit(endpoint).netloc.lower()
        same_endpoint = same_endpoint and token_may_go_to(uri)
        return HttpSource(uri, {"Authorization": f"Bearer {token}"} if token and same_endpoint else {})
    if scheme == "file":
        parts = urlsplit(uri)
        if parts.netloc not in ("", "localhost") or not parts.path.startswith("/"):
            raise FetchError(f"{uri!r}: a file URI must be file:///absolute/path")
        return FileSource(unquote(parts.path))
    if scheme == "pypi":
        distribution = rest.strip("/")
        if not distribution or "/" in distribution:
            raise FetchError(f"{uri!r}: a PyPI URI is pypi://DISTRIBUTION")
        return PypiSource(distribution)
    if scheme == "ollama":
        repository, tag = _split_ollama(rest)
        registry = (env.get("OLLAMA_REGISTRY") or DEFAULT_OLLAMA_REGISTRY).rstrip("/")
        return OllamaSource(registry, repository, tag)
    shown = f"{scheme}://" if scheme else "no scheme"
    supported = ", ".join([*(f"{s}://" for s in SUPPORTED_SCHEMES), GITHUB_PREFIX])
    raise FetchError(f"unsupported URI {uri!r} ({shown}; supported: {supported})")


def local_model_name(uri_or_name: str) -> str:
    """The file name, relative to the models directory, under which a model is stored.

    `parameters.model` may be a URI (LocalAI allows `model: huggingface://owner/repo/file.gguf`):
    `localmodel-runtime fetch` downloads it to the URI's base name, without `@revision`, query or
    fragment (`huggingface://o/r/sub/x.gguf@v1` → `x.gguf`, `https://h/x.gguf?download=1` →
    `x.gguf`, `pypi://dist-name` → `dist-name`, `github:o/r/x.gguf@dev` → `x.gguf`,
    `ollama://gemma3:270m` → `gemma3-270m.gguf`), and the server loads that file. A value that is not
    a URI (a file name or a repository id) is returned unchanged. :class:`FetchError` when the URI
    has no file name to use (`https://host/`).
    """
    if uri_or_name.startswith(GITHUB_PREFIX):
        return posixpath.basename(urlsplit(github_url(uri_or_name)).path)
    scheme = uri_scheme(uri_or_name)
    if scheme is None:
        return uri_or_name
    rest = uri_or_name.partition("://")[2]
    if scheme == "ollama":
        try:
            repository, tag = _split_ollama(rest)
        except FetchError as exc:
            raise FetchError(f"{uri_or_name!r}: {exc}") from None
        return f"{repository.removeprefix('library/').replace('/', '-')}-{tag}.gguf"
    if scheme in ("huggingface", "hf"):
        try:
            path = _split_hf(rest)[2]
        except FetchError as exc:
            raise FetchError(f"{uri_or_name!r}: {exc}") from None
    elif scheme == "pypi":
        path = rest.strip("/")
    else:
        path = unquote(urlsplit(uri_or_name).path)
    name = posixpath.basename(path.rstrip("/")) if scheme != "pypi" else path
    if not name or name in (".", "..") or "/" in name:
        raise FetchError(f"{uri_or_name!r} names no file to store the model under")
    return name
