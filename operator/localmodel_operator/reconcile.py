"""Reconciliation: LocalModel → children, and observed state → LocalModel status.

`reconcile` runs when a LocalModel is created, changed or found at start-up; `refresh` runs when one of
its children changes. Both are idempotent: applying unchanged children writes nothing, and the status is
patched (and an Event recorded) only when something a user can see changed. A spec that cannot be
served is reported (Degraded + Event) and not retried until it changes: no hot loop.
"""

from __future__ import annotations

import asyncio
import dataclasses
import functools
import logging
from dataclasses import dataclass, field
from typing import Any

from localmodel_operator.errors import OperatorException
from localmodel_runtime.config import (
    LocalModelSpec,
    ModelConfigError,
    parse_local_model_spec,
    unsupported_keys,
)
from localmodel_runtime.resource.claims import api_name, conflict_holder, conflict_message
from localmodel_runtime.resource.runtime_token import runtime_token
from localmodel_runtime.templates import PromptTemplate, TemplateError

from .builders import PORT, Model, build_children
from .inference_pool import CRD_NAME as INFERENCE_POOL_CRD
from .inference_pool import build_inference_pool
from .kube import Kube, KubeError, NotFound
from .ownership import ownership
from .placement import Placement, PlacementError, place
from .policy import violations
from .settings import OperatorSettings
from .status import (
    Problem,
    alias_conditions,
    conditions,
    merge_conditions,
    pods_matter,
    status_fields,
    transitions,
)
from .token_secret import build_token_secret, with_token

log = logging.getLogger(__name__)
EVENT_TYPES = {("Degraded", "True"): "Warning", ("Ready", "False"): "Normal"}


def resource_version(obj: dict[str, Any] | None) -> str:
    return str(((obj or {}).get("metadata") or {}).get("resourceVersion") or "")


def newer(obj: dict[str, Any], than: dict[str, Any]) -> bool:
    """Whether `obj` is a later version of the object `than` is (resourceVersions compare as integers
    since Kubernetes 1.35; where one does not parse, the one that arrived last is taken)."""
    mine, theirs = resource_version(obj), resource_version(than)
    if mine.isdigit() and theirs.isdigit():
        return int(mine) > int(theirs)
    return True


def _key(body: dict[str, Any]) -> tuple[str, str]:
    meta = body.get("metadata") or {}
    return (str(meta.get("namespace", "")), str(meta.get("name", "")))


@dataclass
class Evaluation:
    """What the spec says, before looking at the cluster."""

    spec: LocalModelSpec | None
    placement: Placement | None
    problem: Problem | None


TEMPLATE_SLOTS = ("chat", "chat_message", "completion", "edit", "function", "multimodal")
# HTTP statuses with which the API server rejects a child we built from the spec: the spec is at fault.
REJECTED = frozenset({400, 422})
CONFLICT_RETRY_SECONDS = 30
FORBIDDEN = 403


class RetryLater(OperatorException):
    """The children cannot be written yet (an object in the way); reconcile again after `delay` seconds."""

    def __init__(self, message: str, delay: float = CONFLICT_RETRY_SECONDS) -> None:
        super().__init__(message)
        self.delay = delay


@functools.lru_cache(maxsize=512)
def _template_error(slot: str, source: str) -> str | None:
    """Translate one template as the runtime will at load; the error names template, line and column."""
    try:
        PromptTemplate(f"template.{slot}", source)
    except TemplateError as exc:
        return str(exc)
    return None


def template_problem(spec: LocalModelSpec) -> Problem | None:
    """The first template of the spec that the runtime could not load, as an InvalidSpec problem.

    Templates are inline in a LocalModel (`localmodel import` inlines `.tmpl` files), so a value that
    only names a file is plain text here, exactly as it would be for the runtime."""
    block = spec.template
    if block is None:
        return None
    for slot in TEMPLATE_SLOTS:
        source = getattr(block, slot, None)
        if source:
            error = _template_error(slot, str(source))
            if error is not None:
                return Problem("InvalidSpec", error)
    return None


def evaluate(name: str, namespace: str, spec: dict[str, Any], settings: OperatorSettings) -> Evaluation:
    try:
        parsed = parse_local_model_spec(spec, source="spec")
    except ModelConfigError as exc:
        return Evaluation(None, None, Problem("InvalidSpec", "; ".join(exc.problems)))
    if parsed.alias:
        return Evaluation(parsed, None, None)  # LocalAI's alias: the router redirects, nothing runs
    refused = violations(parsed.deployment, settings.tenant_policy)
    if refused:
        return Evaluation(parsed, None, Problem("PolicyViolation", "; ".join(refused)))
    problem = template_problem(parsed)
    if problem is not None:
        return Evaluation(parsed, None, problem)
    try:
        placement = place(parsed, settings)
    except PlacementError as exc:
        return Evaluation(parsed, None, Problem(exc.reason, exc.message))
    return Evaluation(parsed, placement, None)


def identity_fields(name: str, namespace: str, evaluation: Evaluation) -> dict[str, Any]:
    spec, placement = evaluation.spec, evaluation.placement
    fields: dict[str, Any] = {"modelName": (spec.name if spec and spec.name else name)}
    if spec is not None:
        fields["unsupported"] = unsupported_keys(spec.model_config_only())
    if placement is not None:
        model = Model(name, namespace, "", spec) if spec else None
        fields.update(
            backend=placement.backend,
            device=placement.device,
            image=placement.image,
            endpoint=f"http://{name}.{namespace}.svc:{PORT}",
            selector=",".join(f"{k}={v}" for k, v in (model.selector() if model else {}).items()),
        )
    return fields


@dataclass
class Reconciler:
    kube: Kube
    settings: OperatorSettings
    namespaces: tuple[str, ...] = ()
    """The namespaces the operator watches (empty: all), where LocalModels may claim the same name."""
    runtime_key: bytes | None = None
    """The release key runtime tokens derive from (None: runtimes take any caller)."""
    _locks: dict[tuple[str, str], asyncio.Lock] = field(default_factory=dict)
    _pending: set[tuple[str, str]] = field(default_factory=set)
    _pool_warned: set[tuple[str, str]] = field(default_factory=set)
    """Models told (once) that the InferencePool CRD is missing."""
    _rejected: dict[tuple[str, str], tuple[int, Problem]] = field(default_factory=dict)
    """Children the API server refused for a generation of the spec (reported until the spec changes)."""
    _waiting: dict[str, set[tuple[str, str]]] = field(default_factory=dict)
    """API name → LocalModels that wait for an older one holding that name to go (NameConflict)."""
    _deployments: dict[tuple[str, str], dict[str, Any]] = field(default_factory=dict)
    """A model's Deployment as a caller already holds it (an apply's answer, a watch event): the next
    refresh reads it instead of asking the API server again."""
    _seen: dict[tuple[str, str], str] = field(default_factory=dict)
    """The resourceVersion of the Deployment the last refresh of each model read."""
    _models: dict[tuple[str, str], dict[str, Any]] = field(default_factory=dict)
    """The newest version of each LocalModel known (from its watch events and the answers to our status
    patches), which a refresh starts from instead of reading it again: only the operator writes the
    status, and any other change to the object arrives as a watch event."""

    def observed(self, body: dict[str, Any]) -> None:
        """A LocalModel as a watch event carried it or a write answered: kept when it is the newest."""
        key = _key(body)
        held = self._models.get(key)
        if held is None or newer(body, held):
            self._models[key] = body

    async def reconcile(self, body: dict[str, Any]) -> None:
        self.observed(body)
        meta = body["metadata"]
        name, namespace = meta["name"], meta["namespace"]
        key, generation = (namespace, name), int(meta.get("generation", 1))
        evaluation = evaluate(name, namespace, body.get("spec") or {}, self.settings)
        self._rejected.pop(key, None)
        if evaluation.spec is not None and evaluation.placement is not None:
            await self._check_name(body, generation)
            model = Model(name, namespace, meta["uid"], evaluation.spec)
            children = build_children(model, evaluation.placement, self.settings.startup_timeout_seconds)
            if self.runtime_key is not None:
                token = runtime_token(self.runtime_key, namespace, name)
                children = dataclasses.replace(
                    children,
                    deployment=with_token(children.deployment, model),
                    secret=build_token_secret(model, token),
                )
            for child in [*children.all(), *await self._pool(model, body)]:
                # Never adopt: an object of that name that is not this model's is left as it is.
                try:
                    existing = await self.kube.get_object(child)
                except KubeError as exc:
                    if exc.status == FORBIDDEN:
                        await self._forbidden(key, generation, child, exc)
                    raise
                owner = ownership(existing, child)
                if not owner.mine:
                    if not owner.previous:
                        self._rejected[key] = (generation, Problem("ChildConflict", owner.message))
                        await self.refresh(namespace, name)
                    what = owner.message or "an earlier LocalModel's children are still being deleted"
                    # No watch sees the object go away, so look again later (not in a hot loop).
                    raise RetryLater(f"{namespace}/{name}: {what}")
                try:
                    applied = await self.kube.apply(child)
                except KubeError as exc:
                    if exc.status == FORBIDDEN:
                        await self._forbidden(key, generation, child, exc)
                    if exc.status not in REJECTED:
                        raise  # the API or the network: kopf retries with back-off
                    what = f"{child['kind']} {child['metadata']['name']} was rejected: {exc}"
                    self._rejected[key] = (generation, Problem("InvalidSpec", what))
                    break
                if child["kind"] == "Deployment":
                    self._deployments[key] = applied
        await self.refresh(namespace, name)

    async def _forbidden(
        self, key: tuple[str, str], generation: int, child: dict[str, Any], exc: KubeError
    ) -> None:
        """The operator lacks a right in the model's namespace: say so on the LocalModel (Degraded,
        reason Forbidden) and look again later, rather than retrying silently."""
        what = (
            f"the operator may not read or write {child['kind']} {child['metadata']['name']} in namespace "
            f"{key[0]} ({exc}): bind the chart's operator rules there (helm value watchNamespaces)"
        )
        self._rejected[key] = (generation, Problem("Forbidden", what))
        await self.refresh(*key)
        raise RetryLater(f"{key[0]}/{key[1]}: {what}")

    async def _check_name(self, body: dict[str, Any], generation: int) -> None:
        """Raise RetryLater (after reporting NameConflict) when an older LocalModel holds the API name:
        the newer one gets no children, and the router never routes to it (`claims`)."""
        meta = body["metadata"]
        key, name = (meta["namespace"], meta["name"]), api_name(body)
        scopes: list[str | None] = list(self.namespaces) or [None]
        others = [obj for scope in scopes for obj in await self.kube.list_name_claimants(scope, name)]
        holder = conflict_holder(body, others)
        waiting = self._waiting.get(name, set())
        if holder is None:
            waiting.discard(key)
            return
        self._waiting.setdefault(name, set()).add(key)
        message = conflict_message(name, holder)
        self._rejected[key] = (generation, Problem("NameConflict", message))
        await self.refresh(*key)
        raise RetryLater(f"{key[0]}/{key[1]}: {message}")

    async def released(self, body: dict[str, Any]) -> None:
        """A LocalModel was deleted: the models that waited for its API name are reconciled now (one of
        them takes the name over) rather than at their next retry."""
        self._forget(*_key(body))
        for namespace, name in sorted(self._waiting.pop(api_name(body), set())):
            try:
                await self.reconcile(await self.kube.get_localmodel(namespace, name))
            except (RetryLater, NotFound):
                continue

    async def _pool(self, model: Model, body: dict[str, Any]) -> list[dict[str, Any]]:
        """The model's InferencePool when the settings ask for pools and the cluster has their CRD;
        without the CRD, one warning Event per model (not per reconcile)."""
        if not self.settings.inference_pool:
            return []
        if await self.kube.has_crd(INFERENCE_POOL_CRD):
            return [build_inference_pool(model, self.settings.endpoint_picker)]
        key = (model.namespace, model.name)
        if key not in self._pool_warned:
            self._pool_warned.add(key)
            message = (
                f"inferencePool is enabled but the {INFERENCE_POOL_CRD} CRD is not installed: no pool created"
            )
            await self.kube.event(body, "Warning", "InferencePoolUnavailable", message)
        return []

    async def deployment_changed(self, namespace: str, name: str, deployment: dict[str, Any] | None) -> None:
        """A watch event of a model's Deployment (None: it was deleted): refresh from it, unless the last
        refresh already read that version (the event of the operator's own apply)."""
        key = (namespace, name)
        if deployment is None:
            self._deployments.pop(key, None)
        elif resource_version(deployment) == self._seen.get(key):
            return
        else:
            self._deployments[key] = deployment
        await self.refresh(namespace, name)

    async def refresh(self, namespace: str, name: str) -> None:
        """Recompute and publish the status; concurrent calls for one model coalesce into one more run."""
        key = (namespace, name)
        lock = self._locks.setdefault(key, asyncio.Lock())
        if lock.locked():
            self._pending.add(key)
            return
        async with lock:
            while True:
                self._pending.discard(key)
                await self._refresh_once(namespace, name)
                if key not in self._pending:
                    break

    def _forget(self, namespace: str, name: str) -> None:
        for known in (self._locks, self._rejected, self._deployments, self._seen, self._models):
            known.pop((namespace, name), None)
        self._pool_warned.discard((namespace, name))

    async def _refresh_once(self, namespace: str, name: str) -> None:
        body = self._models.get((namespace, name))
        if body is None:
            try:
                body = await self.kube.get_localmodel(namespace, name)
            except NotFound:
                self._forget(namespace, name)
                return
            self.observed(body)
        meta = body["metadata"]
        generation = int(meta.get("generation", 1))
        evaluation = evaluate(name, namespace, body.get("spec") or {}, self.settings)
        rejected = self._rejected.get((namespace, name))
        if evaluation.problem is None and rejected is not None and rejected[0] == generation:
            evaluation = Evaluation(evaluation.spec, evaluation.placement, rejected[1])
        deployment, pods = None, []
        held = self._deployments.pop((namespace, name), None)
        if evaluation.problem is None:
            deployment = held or await self.kube.get_deployment(namespace, name)
            self._seen[(namespace, name)] = resource_version(deployment)
            if pods_matter(deployment):
                selector = Model(name, namespace, "", evaluation.spec).selector() if evaluation.spec else {}
                pods = await self.kube.list_pods(namespace, selector)
        old_status = body.get("status") or {}
        old_conditions = old_status.get("conditions") or []
        if evaluation.spec is not None and evaluation.spec.alias and evaluation.problem is None:
            fresh = alias_conditions(generation, evaluation.spec.alias)
        else:
            fresh = conditions(generation, evaluation.problem, deployment, pods)
        new_conditions = merge_conditions(old_conditions, fresh)
        status = {
            "observedGeneration": generation,
            **identity_fields(name, namespace, evaluation),
            **status_fields(deployment),
            "conditions": new_conditions,
        }
        if all(old_status.get(k) == v for k, v in status.items()):
            return
        try:
            self.observed(await self.kube.patch_status(namespace, name, status))
        except NotFound:  # deleted since the version held was current
            self._forget(namespace, name)
            return
        changed = transitions(old_conditions, new_conditions)
        # A problem turns Ready and Progressing false with the same reason: one Warning says it all.
        problem = next(
            (c["reason"] for c in changed if c["type"] == "Degraded" and c["status"] == "True"), None
        )
        for cond in changed:
            log.info("%s/%s %s=%s (%s)", namespace, name, cond["type"], cond["status"], cond["reason"])
            kind = EVENT_TYPES.get((cond["type"], cond["status"]), "Normal")
            if cond["type"] == "Degraded" and cond["status"] == "False" and not old_conditions:
                continue  # "nothing wrong" on creation is not news
            if cond["type"] == "Progressing":
                # Events say when a model turns ready, unready or degraded; a rollout's progress is in
                # its condition (as a Deployment's is), not worth an Event (a write) at each step.
                continue
            if cond["type"] == "Ready" and cond["reason"] == problem:
                continue
            await self.kube.event(
                body, kind, cond["reason"], f"{cond['type']}={cond['status']}: {cond['message']}"
            )
