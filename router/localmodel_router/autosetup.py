"""Automatic setup: a request for a model that does not exist yet but resolves becomes a LocalModel.

Off by default; an administrator switches it on (`--auto-setup` and friends, or a YAML file the Helm
chart mounts). A requested name resolves when it is

* a Hugging Face file path, `owner/repo/path/file.gguf` (also `huggingface://…` and `hf://…`), whose
  repository matches one of the allowed glob patterns; or
* a gallery entry, `name` or `gallery@name`, of an allowed gallery (LocalAI's index format, the
  operator's gallery code turns it into a manifest).

The router then creates one LocalModel in the configured namespace (`spec.name` is the requested name,
the file is a `download_files` entry, the backend follows the file type; labelled and annotated
`localmodel.dev/auto-created: "true"`; `minReplicas: 0` so an unused model goes back to zero), records
an Event on it naming the request, and holds the request like a cold start: bounded, then 503 with
`Retry-After`. Concurrent requests for the same model share one creation; the object name is derived
from the source, so several router replicas racing on the same model meet at one object (the losers
see 409 and wait for it). Anything that does not resolve stays `404 model_not_found`; a name that
resolves but is refused (allowlist, cap) gets 403 with the reason.
"""

from __future__ import annotations

import asyncio
import fnmatch
import hashlib
import logging
import posixpath
import re
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Protocol

import yaml

from localmodel_router.errors import RouterError
from localmodel_router.table import ModelEntry, ModelTable
from localmodel_runtime.config.backends import guess_backend
from localmodel_runtime.gallery import GalleryError, GallerySource, install_manifest, load_index
from localmodel_runtime.resource import API_VERSION, GROUP, KIND, PLURAL, VERSION
from localmodel_runtime.resource.events import local_model_event
from localmodel_runtime.resource.names import MAX_NAME, kubernetes_name

log = logging.getLogger("localmodel.router")

AUTO_CREATED = f"{GROUP}/auto-created"
"""Label and annotation ("true") on every LocalModel the router created."""
SOURCE = f"{GROUP}/auto-source"
"""Annotation: what the model was created from (`huggingface://…` or `gallery@entry`)."""
CONFIG_ENV = "LOCALMODEL_AUTO_SETUP_CONFIG"
SERVED_BACKENDS = frozenset({"llama"})
"""Backends a file can be set up with unattended: one file is all they need (GGUF)."""

_SEGMENT = r"[A-Za-z0-9][A-Za-z0-9._-]*"
_HF_PATH = re.compile(rf"^(?:(?:huggingface|hf)://)?({_SEGMENT})/({_SEGMENT})/({_SEGMENT}(?:/{_SEGMENT})*)$")


class AutoSetupConfigError(ValueError):
    """The automatic-setup configuration is unusable; the message names the key."""


@dataclass(frozen=True)
class AutoSetupSettings:
    enabled: bool = False
    namespace: str | None = None
    """Where created LocalModels go; must be a namespace the router watches."""
    repositories: tuple[str, ...] = ()
    """Glob patterns over `owner/repo` (fnmatch, case-sensitive): `TheBloke/*`, `Qwen/Qwen2.5-*-GGUF`."""
    galleries: tuple[str, ...] = ()
    """Names of the galleries whose entries may be set up."""
    max_models: int = 10
    """Most auto-created LocalModels at once in the namespace; one more is refused."""
    wait: float = 60.0
    """Seconds a request that triggered (or joined) a setup waits for a ready endpoint before 503 with
    `Retry-After` (downloads take longer: the client retries, and later requests wait as cold starts)."""
    sources: tuple[GallerySource, ...] = ()
    """The gallery indexes to resolve entry names in (the operator's `galleries` list)."""
    gallery_refresh: float = 300.0
    """Seconds a loaded gallery index is reused before it is fetched again."""


def settings_from_dict(data: dict[str, Any]) -> AutoSetupSettings:
    """The YAML form (camelCase, as Helm values): enabled, namespace, allowRepositories,
    allowGalleries, maxModels, waitSeconds, galleries [{name, url}]."""
    known = {"enabled", "namespace", "allowRepositories", "allowGalleries", "maxModels", "waitSeconds"}
    unknown = set(data) - known - {"galleries", "galleryRefreshSeconds"}
    if unknown:
        raise AutoSetupConfigError(f"unknown key(s): {', '.join(sorted(unknown))}")

    def strings(key: str) -> tuple[str, ...]:
        value = data.get(key) or []
        if not isinstance(value, list) or not all(isinstance(v, str) and v for v in value):
            raise AutoSetupConfigError(f"{key} must be a list of non-empty strings")
        return tuple(value)

    def number(key: str, default: float) -> float:
        value = data.get(key, default)
        if isinstance(value, bool) or not isinstance(value, int | float) or value <= 0:
            raise AutoSetupConfigError(f"{key} must be a positive number")
        return float(value)

    sources = []
    for i, item in enumerate(data.get("galleries") or []):
        if not isinstance(item, dict) or not item.get("name") or not item.get("url"):
            raise AutoSetupConfigError(f"galleries[{i}]: expected {{name, url}}")
        sources.append(GallerySource(str(item["name"]), str(item["url"])))
    max_models = data.get("maxModels", 10)
    if isinstance(max_models, bool) or not isinstance(max_models, int) or max_models < 0:
        raise AutoSetupConfigError("maxModels must be a non-negative integer")
    namespace = data.get("namespace")
    if namespace is not None and not isinstance(namespace, str):
        raise AutoSetupConfigError("namespace must be a string")
    return AutoSetupSettings(
        enabled=bool(data.get("enabled", False)),
        namespace=namespace or None,
        repositories=strings("allowRepositories"),
        galleries=strings("allowGalleries"),
        max_models=max_models,
        wait=number("waitSeconds", 60.0),
        sources=tuple(sources),
        gallery_refresh=number("galleryRefreshSeconds", 300.0),
    )


def load_settings_file(path: Path) -> AutoSetupSettings:
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except (OSError, yaml.YAMLError) as exc:
        raise AutoSetupConfigError(f"{path}: {exc}") from exc
    if not isinstance(data, dict):
        raise AutoSetupConfigError(f"{path}: expected a mapping")
    try:
        return settings_from_dict(data)
    except AutoSetupConfigError as exc:
        raise AutoSetupConfigError(f"{path}: {exc}") from exc


# Resolution: requested name → what to create.


@dataclass(frozen=True)
class HfFile:
    owner: str
    repo: str
    path: str

    @property
    def repository(self) -> str:
        return f"{self.owner}/{self.repo}"

    @property
    def uri(self) -> str:
        return f"huggingface://{self.owner}/{self.repo}/{self.path}"

    @property
    def filename(self) -> str:
        return posixpath.basename(self.path)


def parse_hf_path(name: str) -> HfFile | None:
    """`owner/repo/dir/file.ext`, optionally as `huggingface://…` or `hf://…`; None for anything else
    (no `..`, no revision, no query: a file path in a repository and nothing more)."""
    match = _HF_PATH.match(name)
    if match is None:
        return None
    owner, repo, path = match.groups()
    if any(part in (".", "..") or part.endswith(".") for part in path.split("/")):
        return None
    if "." not in posixpath.basename(path):
        return None
    return HfFile(owner, repo, path)


@dataclass(frozen=True)
class Plan:
    """What a resolved request creates."""

    requested: str
    source: str
    """Canonical origin (`huggingface://o/r/f.gguf`, `gallery@entry`): one LocalModel per source."""
    manifest: dict[str, Any]

    @property
    def object_name(self) -> str:
        name: str = self.manifest["metadata"]["name"]
        return name


def object_name(base: str, source: str) -> str:
    """A valid DNS-1035 name, readable and unique per source: `<base>-<hash of source>`."""
    digest = hashlib.sha256(source.encode()).hexdigest()[:8]
    stem = kubernetes_name(base)[: MAX_NAME - len(digest) - 1].rstrip("-")
    return f"{stem}-{digest}"


def _mark(manifest: dict[str, Any], plan_source: str, namespace: str) -> None:
    meta = manifest.setdefault("metadata", {})
    meta["namespace"] = namespace
    meta["labels"] = {**(meta.get("labels") or {}), AUTO_CREATED: "true"}
    meta["annotations"] = {**(meta.get("annotations") or {}), AUTO_CREATED: "true", SOURCE: plan_source}
    spec = manifest.setdefault("spec", {})
    deployment = spec.setdefault("deployment", {})
    autoscaling = deployment.setdefault("autoscaling", {})
    autoscaling.setdefault("minReplicas", 0)


def hf_plan(requested: str, hf: HfFile, namespace: str) -> Plan:
    backend = guess_backend(hf.filename)
    if backend not in SERVED_BACKENDS:
        kind = f"the {backend} backend" if backend else "no backend localmodel knows"
        raise RouterError(
            404,
            f"The model `{requested}` does not exist, and automatic setup does not serve {hf.filename!r} "
            f"(it needs {kind}; automatic setup takes GGUF files)",
            "model_not_found",
            "model",
        )
    source = hf.uri
    manifest: dict[str, Any] = {
        "apiVersion": API_VERSION,
        "kind": KIND,
        "metadata": {"name": object_name(hf.filename.rsplit(".", 1)[0], source)},
        "spec": {
            "name": requested,
            "backend": backend,
            "parameters": {"model": hf.filename},
            "download_files": [{"filename": hf.filename, "uri": source}],
        },
    }
    _mark(manifest, source, namespace)
    return Plan(requested, source, manifest)


def repository_allowed(repository: str, patterns: Sequence[str]) -> bool:
    return any(fnmatch.fnmatchcase(repository, p) for p in patterns)


class GalleryCatalog:
    """The configured galleries' entries, loaded lazily (in a thread: the loader is synchronous) and
    reused for `refresh` seconds."""

    def __init__(self, sources: Sequence[GallerySource], refresh: float) -> None:
        self.sources = list(sources)
        self.refresh = refresh
        self._entries: list[Any] = []
        self._loaded_at: float | None = None
        self._lock = asyncio.Lock()

    async def entries(self) -> list[Any]:
        async with self._lock:
            now = time.monotonic()
            if self._loaded_at is not None and now - self._loaded_at < self.refresh:
                return self._entries
            entries: list[Any] = []
            for source in self.sources:
                try:
                    entries.extend(await asyncio.to_thread(load_index, source))
                except GalleryError as exc:
                    log.warning("automatic setup: gallery %s unusable: %s", source.name, exc)
            self._entries, self._loaded_at = entries, now
            return entries

    async def find(self, requested: str) -> list[Any]:
        """Entries that `name` or `gallery@name` names (several when galleries share a name)."""
        gallery, _, name = requested.rpartition("@")
        if not name:
            return []
        return [e for e in await self.entries() if e.name == name and (not gallery or e.gallery == gallery)]


async def gallery_plan(requested: str, entry: Any, namespace: str) -> Plan:
    try:
        manifest, _ = await asyncio.to_thread(install_manifest, entry, namespace, requested)
    except GalleryError as exc:
        raise RouterError(
            502, f"automatic setup of gallery entry {entry.ref}: {exc}", "auto_setup_failed", "model"
        ) from exc
    source = str(entry.ref)
    manifest["metadata"]["name"] = object_name(entry.name, source)
    _mark(manifest, source, namespace)
    return Plan(requested, source, manifest)


# The cluster side, behind a protocol so the logic is unit-tested without an API server.


class Exists(Exception):
    """An object of that name exists already."""


class ModelStore(Protocol):
    async def get(self, namespace: str, name: str) -> dict[str, Any] | None: ...

    async def count_auto_created(self, namespace: str) -> int: ...

    async def create(self, manifest: dict[str, Any]) -> dict[str, Any]:
        """The created object; raises `Exists` when the name is taken."""
        ...

    async def event(self, obj: dict[str, Any], reason: str, message: str) -> None: ...


@dataclass(frozen=True)
class Requester:
    """Who asked: put in the Event, never the API key."""

    model: str
    client: str
    at: datetime = field(default_factory=lambda: datetime.now(UTC))


class AutoSetup:
    def __init__(
        self,
        settings: AutoSetupSettings,
        table: ModelTable,
        store: ModelStore,
        retry_after: int = 5,
    ) -> None:
        if settings.namespace is None:
            raise AutoSetupConfigError("automatic setup needs the namespace for created models")
        self.settings = settings
        self.namespace: str = settings.namespace
        self.table = table
        self.store = store
        self.retry_after = retry_after
        self.catalog = GalleryCatalog(settings.sources, settings.gallery_refresh)
        self._creating: dict[str, asyncio.Task[str]] = {}
        self._lock = asyncio.Lock()

    async def plan(self, requested: str) -> Plan | None:
        """What `requested` would create; None when it resolves to nothing; RouterError (403) when it
        resolves but the allowlist refuses it."""
        hf = parse_hf_path(requested)
        if hf is not None:
            if not repository_allowed(hf.repository, self.settings.repositories):
                raise RouterError(
                    403,
                    f"The model `{requested}` does not exist, and automatic setup is not allowed for "
                    f"repository {hf.repository!r}: it matches no allowed repository pattern",
                    "auto_setup_not_allowed",
                    "model",
                )
            return hf_plan(requested, hf, self.namespace)
        if not self.settings.sources or "/" in requested:
            return None
        entries = await self.catalog.find(requested)
        allowed = [e for e in entries if e.gallery in self.settings.galleries]
        if not allowed:
            if entries:
                galleries = ", ".join(sorted({e.gallery for e in entries}))
                raise RouterError(
                    403,
                    f"The model `{requested}` does not exist, and automatic setup is not allowed for "
                    f"gallery {galleries}: it is not an allowed gallery",
                    "auto_setup_not_allowed",
                    "model",
                )
            return None
        if len(allowed) > 1:
            refs = ", ".join(e.ref for e in allowed)
            raise RouterError(
                400,
                f"The model `{requested}` names several gallery entries ({refs}); "
                "ask for one as gallery@name",
                "model_ambiguous",
                "model",
            )
        return await gallery_plan(requested, allowed[0], self.namespace)

    async def serve(self, requester: Requester) -> ModelEntry:
        """Set the requested model up (or join its setup) and wait for a ready endpoint; raises
        RouterError: 404 when nothing resolves, 403 when refused, 503 + Retry-After past the bound."""
        started = time.monotonic()
        requested = requester.model
        plan = await self.plan(requested)
        if plan is None:
            raise RouterError(404, f"The model `{requested}` does not exist", "model_not_found", "model")
        task = self._creating.get(plan.source)
        if task is None:
            task = asyncio.get_running_loop().create_task(self._create(plan, requester))
            self._creating[plan.source] = task
            task.add_done_callback(lambda _t: self._creating.pop(plan.source, None))
        # A client that goes away must not cancel a creation other requests share.
        name = await asyncio.shield(task)
        left = self.settings.wait - (time.monotonic() - started)
        entry = await self.table.wait_ready(name, max(left, 0.0), missing_ok=True)
        if entry is None or not entry.ready_endpoints:
            raise RouterError(
                503,
                f"model `{requested}` is being set up (LocalModel {self.namespace}/{plan.object_name}) "
                f"and has no ready endpoint after {self.settings.wait:g}s; retry later",
                "model_not_ready",
                None,
                [(b"retry-after", str(self.retry_after).encode())],
            )
        return entry

    async def _create(self, plan: Plan, requester: Requester) -> str:
        """Create the LocalModel (once); returns the API name to wait for."""
        async with self._lock:  # one count-then-create at a time, so the cap holds in this router
            existing = await self.store.get(self.namespace, plan.object_name)
            if existing is not None:
                return self._adopt(plan, existing)
            count = await self.store.count_auto_created(self.namespace)
            if count >= self.settings.max_models:
                raise RouterError(
                    403,
                    f"The model `{plan.requested}` does not exist, and automatic setup refused to create "
                    f"it: {count} auto-created models exist in namespace {self.namespace!r}, the "
                    f"maximum is {self.settings.max_models}",
                    "auto_setup_limit_reached",
                    "model",
                )
            try:
                created = await self.store.create(plan.manifest)
            except Exists:
                existing = await self.store.get(self.namespace, plan.object_name)
                if existing is None:
                    raise RouterError(
                        503,
                        f"automatic setup of `{plan.requested}`: LocalModel {plan.object_name} "
                        "appeared and vanished; retry",
                        "auto_setup_failed",
                        None,
                        [(b"retry-after", str(self.retry_after).encode())],
                    ) from None
                return self._adopt(plan, existing)
        log.info(
            "automatic setup: created LocalModel %s/%s for model %r (%s) requested by %s",
            self.namespace,
            plan.object_name,
            plan.requested,
            plan.source,
            requester.client,
        )
        message = (
            f"Created by localmodel-router for a request for model {plan.requested!r} from "
            f"{requester.client} at {requester.at.strftime('%Y-%m-%dT%H:%M:%SZ')} (source {plan.source})"
        )
        try:
            await self.store.event(created, "AutoCreated", message)
        except Exception as exc:  # the model exists; a missing Event must not fail the request
            log.warning("automatic setup: could not record the Event on %s: %s", plan.object_name, exc)
        return plan.requested

    def _adopt(self, plan: Plan, existing: dict[str, Any]) -> str:
        """An object of the planned name exists: the same model asked for under another spelling (or
        by another router replica) is waited for; anything else is a conflict."""
        annotations = (existing.get("metadata") or {}).get("annotations") or {}
        if annotations.get(SOURCE) != plan.source:
            raise RouterError(
                409,
                f"automatic setup of `{plan.requested}`: LocalModel {self.namespace}/{plan.object_name} "
                "exists and was not created for it",
                "auto_setup_conflict",
                "model",
            )
        spec = existing.get("spec") or {}
        return str(spec.get("name") or plan.object_name)


class KubernetesModelStore:
    """`ModelStore` on lightkube's async client (the discovery's client)."""

    component = "localmodel-router"

    def __init__(self, client: Any) -> None:
        from lightkube.generic_resource import create_namespaced_resource

        self.client = client
        self.resource = create_namespaced_resource(GROUP, VERSION, KIND, PLURAL)

    async def get(self, namespace: str, name: str) -> dict[str, Any] | None:
        from lightkube.core.exceptions import ApiError

        try:
            obj = await self.client.get(self.resource, name, namespace=namespace)
        except ApiError as exc:
            if exc.status.code == 404:
                return None
            raise
        return _as_dict(obj)

    async def count_auto_created(self, namespace: str) -> int:
        listing = self.client.list(self.resource, namespace=namespace, labels={AUTO_CREATED: "true"})
        return len([o async for o in listing])

    async def create(self, manifest: dict[str, Any]) -> dict[str, Any]:
        from lightkube import codecs
        from lightkube.core.exceptions import ApiError

        try:
            obj = await self.client.create(codecs.from_dict(manifest), field_manager=self.component)
        except ApiError as exc:
            if exc.status.code == 409:
                raise Exists(manifest["metadata"]["name"]) from exc
            meta = manifest["metadata"]
            hint = (
                " (the router's ServiceAccount needs `create` on localmodels there: the chart binds it "
                "with router.autoSetup.enabled)"
                if exc.status.code == 403
                else ""
            )
            raise RouterError(
                500,
                f"automatic setup could not create LocalModel {meta['namespace']}/{meta['name']}: "
                f"{exc.status.message}{hint}",
                "auto_setup_failed",
            ) from exc
        return _as_dict(obj)

    async def event(self, obj: dict[str, Any], reason: str, message: str) -> None:
        from lightkube import codecs

        event = local_model_event(obj, "Normal", reason, message, self.component)
        await self.client.create(codecs.from_dict(event))


def _as_dict(obj: Any) -> dict[str, Any]:
    result = obj if isinstance(obj, dict) else obj.to_dict()
    assert isinstance(result, dict)
    return result
