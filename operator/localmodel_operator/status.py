"""Pure status computation: conditions and fields from what the operator observed.

Reasons a user sees (DESIGN.md, issue 4): Ready/Available, Progressing/Rolling|Reconciled, and for
Degraded: InvalidSpec, UnsupportedDevice, MissingBackend, ModelLoadError, Unschedulable,
ImagePullBackOff, CrashLoopBackOff, FetchFailed, ChildConflict (reconcile.py) — the pod-level ones
read from pod state, and MissingBackend / ModelLoadError / InvalidSpec also from the runtime's
termination message prefix.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

Condition = dict[str, Any]
MISSING_BACKEND_MARK = "needs the `localmodel["
# The runtime's one-line termination message (written to the container's terminationMessagePath) starts
# with the reason: `MissingBackend: backend vllm needs the localmodel[vllm] extra`.
RUNTIME_REASONS = ("MissingBackend", "ModelLoadError", "InvalidSpec")
IMAGE_PULL_REASONS = frozenset({"ImagePullBackOff", "ErrImagePull", "InvalidImageName", "ErrImageNeverPull"})


@dataclass(frozen=True)
class Problem:
    reason: str
    message: str


def _terminated_message(status: dict[str, Any]) -> str:
    """The telling line of the last termination message: a reason-prefixed line, else the last line."""
    for state_key in ("state", "lastState"):
        terminated = (status.get(state_key) or {}).get("terminated")
        if terminated:
            lines = [line.strip() for line in (terminated.get("message") or "").splitlines() if line.strip()]
            tagged = [line for line in lines if runtime_reason(line)[0]]
            if tagged or lines:
                return (tagged or lines)[-1]
            return f"exit code {terminated.get('exitCode')} ({terminated.get('reason', 'Error')})"
    return ""


def runtime_reason(message: str) -> tuple[str | None, str]:
    """(reason, rest) for a runtime termination message such as `ModelLoadError: file is not GGUF`."""
    for reason in RUNTIME_REASONS:
        if message.startswith(f"{reason}: "):
            return reason, message[len(reason) + 2 :]
    return None, message


def pod_problem(pods: list[dict[str, Any]]) -> Problem | None:
    """The most telling problem among the model's pods, or None when they are fine or still starting."""
    found: list[Problem] = []
    for pod in pods:
        name = pod.get("metadata", {}).get("name", "pod")
        status = pod.get("status") or {}
        for cond in status.get("conditions") or []:
            unschedulable = cond.get("type") == "PodScheduled" and cond.get("reason") == "Unschedulable"
            if unschedulable and cond.get("status") == "False":
                found.append(
                    Problem("Unschedulable", f"{name}: {cond.get('message', 'cannot be scheduled')}")
                )
        for container in status.get("initContainerStatuses") or []:
            waiting = (container.get("state") or {}).get("waiting") or {}
            failed = waiting.get("reason") == "CrashLoopBackOff" or (
                ((container.get("state") or {}).get("terminated") or {}).get("exitCode", 0) != 0
            )
            if container.get("name") == "fetch" and failed:
                found.append(
                    Problem("FetchFailed", f"{name}: {_terminated_message(container) or 'fetch failed'}")
                )
            elif waiting.get("reason") in IMAGE_PULL_REASONS:
                found.append(
                    Problem("ImagePullBackOff", f"{name}: {waiting.get('message', waiting['reason'])}")
                )
        for container in status.get("containerStatuses") or []:
            waiting = (container.get("state") or {}).get("waiting") or {}
            message = _terminated_message(container)
            if waiting.get("reason") in IMAGE_PULL_REASONS:
                found.append(
                    Problem("ImagePullBackOff", f"{name}: {waiting.get('message', waiting['reason'])}")
                )
            elif runtime_reason(message)[0]:
                reason, text = runtime_reason(message)
                found.append(Problem(str(reason), f"{name}: {text}"))
            elif MISSING_BACKEND_MARK in message:
                found.append(Problem("MissingBackend", f"{name}: {message}"))
            elif waiting.get("reason") == "CrashLoopBackOff":
                found.append(Problem("CrashLoopBackOff", f"{name}: {message or 'the runtime keeps exiting'}"))
    order = [
        "InvalidSpec",
        "MissingBackend",
        "ModelLoadError",
        "FetchFailed",
        "ImagePullBackOff",
        "CrashLoopBackOff",
        "Unschedulable",
    ]
    found.sort(key=lambda p: order.index(p.reason))
    return found[0] if found else None


def _now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _condition(kind: str, status: bool, reason: str, message: str, generation: int) -> Condition:
    return {
        "type": kind,
        "status": "True" if status else "False",
        "reason": reason,
        "message": message,
        "observedGeneration": generation,
    }


def merge_conditions(old: list[Condition], new: list[Condition]) -> list[Condition]:
    """Keep lastTransitionTime when a condition's status did not change."""
    previous = {c.get("type"): c for c in old}
    merged = []
    for cond in new:
        before = previous.get(cond["type"])
        changed = before is None or before.get("status") != cond["status"]
        stamp = (
            _now()
            if changed or not before or not before.get("lastTransitionTime")
            else before["lastTransitionTime"]
        )
        merged.append({**cond, "lastTransitionTime": stamp})
    return merged


def transitions(old: list[Condition], new: list[Condition]) -> list[Condition]:
    """Conditions whose status or reason changed: each gets an Event."""
    previous = {c.get("type"): (c.get("status"), c.get("reason")) for c in old}
    return [c for c in new if previous.get(c["type"]) != (c["status"], c["reason"])]


def pods_matter(deployment: dict[str, Any] | None) -> bool:
    """Whether the pods can change the conditions: only while fewer replicas are ready than desired
    (a pod's trouble is then the reason), so a healthy or scaled-to-zero model needs no pod listing."""
    spec = (deployment or {}).get("spec") or {}
    ready = int(((deployment or {}).get("status") or {}).get("readyReplicas") or 0)
    return ready < int(spec.get("replicas", 1))


def conditions(
    generation: int,
    error: Problem | None,
    deployment: dict[str, Any] | None,
    pods: list[dict[str, Any]],
) -> list[Condition]:
    """Ready, Progressing and Degraded for one LocalModel."""
    if error is not None:
        return [
            _condition("Ready", False, error.reason, error.message, generation),
            _condition("Progressing", False, error.reason, error.message, generation),
            _condition("Degraded", True, error.reason, error.message, generation),
        ]
    spec = (deployment or {}).get("spec") or {}
    dstatus = (deployment or {}).get("status") or {}
    desired = int(spec.get("replicas", 1))
    ready = int(dstatus.get("readyReplicas") or 0)
    updated = int(dstatus.get("updatedReplicas") or 0)
    total = int(dstatus.get("replicas") or 0)
    current = deployment is not None and dstatus.get("observedGeneration", 0) >= (
        deployment.get("metadata") or {}
    ).get("generation", 0)
    problem = pod_problem(pods) if pods_matter(deployment) else None
    counts = f"{ready}/{desired} replicas ready"
    if desired == 0:
        ready_cond = _condition(
            "Ready", False, "ScaledToZero", "scaled to zero; a request scales it up", generation
        )
    elif ready > 0:
        ready_cond = _condition("Ready", True, "Available", counts, generation)
    else:
        reason = problem.reason if problem else "Starting"
        ready_cond = _condition("Ready", False, reason, problem.message if problem else counts, generation)
    settled = current and updated >= desired and ready >= desired and total <= desired
    if settled:
        progressing = _condition("Progressing", False, "Reconciled", counts, generation)
    else:
        progressing = _condition(
            "Progressing", True, "Rolling", f"{updated}/{desired} replicas updated, {counts}", generation
        )
    if problem:
        degraded = _condition("Degraded", True, problem.reason, problem.message, generation)
    else:
        degraded = _condition("Degraded", False, "AsExpected", "no problem seen", generation)
    return [ready_cond, progressing, degraded]


def alias_conditions(generation: int, target: str) -> list[Condition]:
    """An alias (LocalAI's `alias:`) runs nothing: the router answers its name with `target`."""
    message = f"an alias: the router answers this name with the model {target}"
    return [
        _condition("Ready", True, "Alias", message, generation),
        _condition("Progressing", False, "Reconciled", message, generation),
        _condition("Degraded", False, "AsExpected", "no problem seen", generation),
    ]


def status_fields(deployment: dict[str, Any] | None) -> dict[str, Any]:
    dstatus = (deployment or {}).get("status") or {}
    desired = int(((deployment or {}).get("spec") or {}).get("replicas", 0) or 0)
    ready = int(dstatus.get("readyReplicas") or 0)
    return {
        "replicas": int(dstatus.get("replicas") or 0),
        "readyReplicas": ready,
        "ready": f"{ready}/{desired}",
    }
