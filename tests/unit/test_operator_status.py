"""Pure status computation from Deployment and pod state."""

from __future__ import annotations

import signal
from typing import Any

from localmodel_operator.status import (
    Problem,
    conditions,
    merge_conditions,
    pod_problem,
    status_fields,
    transitions,
)
from localmodel_runtime.supervisor import death_message


def deployment(desired: int, ready: int, updated: int | None = None, generation: int = 1) -> dict[str, Any]:
    return {
        "metadata": {"generation": generation},
        "spec": {"replicas": desired},
        "status": {
            "observedGeneration": generation,
            "replicas": desired,
            "readyReplicas": ready,
            "updatedReplicas": desired if updated is None else updated,
        },
    }


def by_type(conds: list[dict[str, Any]]) -> dict[str, tuple[str, str]]:
    return {c["type"]: (c["status"], c["reason"]) for c in conds}


def pod(**status: Any) -> dict[str, Any]:
    return {"metadata": {"name": "p-1"}, "status": status}


def test_available_and_reconciled() -> None:
    assert by_type(conditions(3, None, deployment(2, 2), [])) == {
        "Ready": ("True", "Available"),
        "Progressing": ("False", "Reconciled"),
        "Degraded": ("False", "AsExpected"),
    }


def test_rolling_while_pods_update() -> None:
    assert by_type(conditions(3, None, deployment(2, 1, updated=1), []))["Progressing"] == ("True", "Rolling")
    assert by_type(conditions(3, None, None, []))["Ready"] == ("False", "Starting")


def test_spec_errors_degrade_everything() -> None:
    conds = conditions(4, Problem("InvalidSpec", "threads: must be >= 0"), None, [])
    assert by_type(conds) == {
        "Ready": ("False", "InvalidSpec"),
        "Progressing": ("False", "InvalidSpec"),
        "Degraded": ("True", "InvalidSpec"),
    }
    assert all(c["observedGeneration"] == 4 and "threads" in c["message"] for c in conds)


def test_pod_problems_are_read_from_pod_state() -> None:
    unschedulable = pod(
        conditions=[
            {
                "type": "PodScheduled",
                "status": "False",
                "reason": "Unschedulable",
                "message": "0/1 nodes are available: 1 Insufficient nvidia.com/gpu.",
            }
        ]
    )
    pull = pod(
        containerStatuses=[
            {
                "name": "runtime",
                "state": {"waiting": {"reason": "ImagePullBackOff", "message": "no such image"}},
            }
        ]
    )
    crash = pod(
        containerStatuses=[
            {
                "name": "runtime",
                "state": {"waiting": {"reason": "CrashLoopBackOff"}},
                "lastState": {"terminated": {"exitCode": 1, "message": "boom\nlast words"}},
            }
        ]
    )
    missing = pod(
        containerStatuses=[
            {
                "name": "runtime",
                "state": {"waiting": {"reason": "CrashLoopBackOff"}},
                "lastState": {
                    "terminated": {
                        "exitCode": 2,
                        "message": "backend vllm needs the `localmodel[vllm]` extra",
                    }
                },
            }
        ]
    )
    fetch = pod(
        initContainerStatuses=[
            {
                "name": "fetch",
                "state": {"waiting": {"reason": "CrashLoopBackOff"}},
                "lastState": {"terminated": {"exitCode": 1, "message": "sha256 mismatch"}},
            }
        ]
    )
    cases = {
        "Unschedulable": unschedulable,
        "ImagePullBackOff": pull,
        "CrashLoopBackOff": crash,
        "MissingBackend": missing,
        "FetchFailed": fetch,
    }
    for reason, p in cases.items():
        problem = pod_problem([p])
        assert problem is not None and problem.reason == reason
        conds = by_type(conditions(1, None, deployment(1, 0), [p]))
        assert conds["Degraded"] == ("True", reason) and conds["Ready"] == ("False", reason)
    assert "Insufficient nvidia.com/gpu" in (pod_problem([unschedulable]) or Problem("", "")).message
    assert (pod_problem([crash]) or Problem("", "")).message.endswith("last words")
    assert pod_problem([pod(phase="Running")]) is None


def test_scaled_to_zero() -> None:
    assert by_type(conditions(1, None, deployment(0, 0), []))["Ready"] == ("False", "ScaledToZero")


def test_transition_times_and_events() -> None:
    first = merge_conditions([], conditions(1, None, deployment(1, 0), []))
    again = merge_conditions(first, conditions(1, None, deployment(1, 0), []))
    assert [c["lastTransitionTime"] for c in first] == [c["lastTransitionTime"] for c in again]
    assert transitions(first, again) == []
    ready = conditions(1, None, deployment(1, 1), [])
    assert [c["type"] for c in transitions(again, ready)] == ["Ready", "Progressing"]


def test_status_fields() -> None:
    assert status_fields(deployment(3, 2)) == {"replicas": 3, "readyReplicas": 2, "ready": "2/3"}
    assert status_fields(None) == {"replicas": 0, "readyReplicas": 0, "ready": "0/0"}


def crashed_with(message: str, waiting: str = "CrashLoopBackOff") -> dict[str, Any]:
    return pod(
        containerStatuses=[
            {
                "name": "runtime",
                "state": {"waiting": {"reason": waiting}},
                "lastState": {"terminated": {"exitCode": 1, "message": message}},
            }
        ]
    )


def test_runtime_termination_message_prefix_is_the_reason() -> None:
    cases = {
        "MissingBackend": "MissingBackend: backend vllm needs the localmodel[vllm] extra",
        "ModelLoadError": "ModelLoadError: /models/x.gguf is not a GGUF file",
        "InvalidSpec": "InvalidSpec: template.chat: line 1, column 3: unexpected EOF",
    }
    for reason, message in cases.items():
        problem = pod_problem([crashed_with(message)])
        assert problem == Problem(reason, f"p-1: {message.split(': ', 1)[1]}")
        assert by_type(conditions(2, None, deployment(1, 0), [crashed_with(message)]))["Degraded"] == (
            "True",
            reason,
        )


def test_tagged_line_wins_over_log_tail() -> None:
    # FallbackToLogsOnError: the message is the log's tail; the tagged line may not be the last one.
    tail = "loading model\nModelLoadError: no such file: tiny.gguf\nINFO: shutting down"
    problem = pod_problem([crashed_with(tail)])
    assert problem == Problem("ModelLoadError", "p-1: no such file: tiny.gguf")
    untagged = pod_problem([crashed_with("Traceback...\nValueError: boom")])
    assert untagged == Problem("CrashLoopBackOff", "p-1: ValueError: boom")


def test_runtime_reason_outranks_a_crash_loop_elsewhere() -> None:
    crash = crashed_with("segfault")
    missing = crashed_with("MissingBackend: no vllm", waiting="ContainerCreating")
    problem = pod_problem([crash, missing])
    assert problem is not None and problem.reason == "MissingBackend"


def test_a_runtime_killed_by_a_signal_reads_as_what_it_was_doing() -> None:
    # The runtime's supervisor writes these lines when its server dies by a signal (a native crash).
    loading = pod_problem([crashed_with(death_message(signal.SIGFPE, loaded=False))])
    assert loading is not None and loading.reason == "ModelLoadError"
    assert (
        loading.message.startswith("p-1: killed by SIGFPE (") and "while loading the model" in loading.message
    )
    serving = pod_problem([crashed_with(death_message(signal.SIGSEGV, loaded=True))])
    assert serving is not None and serving.reason == "CrashLoopBackOff"
    assert serving.message.startswith("p-1: killed by SIGSEGV (") and "while serving" in serving.message
