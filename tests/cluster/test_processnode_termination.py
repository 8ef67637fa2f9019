"""The process node reports termination messages as a kubelet does: the file a container writes at its
terminationMessagePath (here the file named by $LOCALMODEL_TERMINATION_LOG), else, with
FallbackToLogsOnError and a failure, the tail of the container's log."""

from __future__ import annotations

from typing import Any

import pytest

from tests.support.fixtures import Cluster

pytestmark = [pytest.mark.cluster, pytest.mark.timeout(180)]
JsonDict = dict[str, Any]

POD = """
apiVersion: v1
kind: Pod
metadata: {name: last-words}
spec:
  restartPolicy: Never
  containers:
  - name: writes
    image: localmodel.test/podprog
    command: [podprog, write, $(LOCALMODEL_TERMINATION_LOG), "MissingBackend: backend vllm is not installed"]
  - name: fails
    image: localmodel.test/podprog
    command: [podprog, no-such-command]
    terminationMessagePolicy: FallbackToLogsOnError
  - name: fails-quietly
    image: localmodel.test/podprog
    command: [podprog, no-such-command]
"""

RESTARTING = """
apiVersion: v1
kind: Pod
metadata: {name: restarts}
spec:
  containers:
  - name: main
    image: localmodel.test/podprog
    command: [podprog, no-such-command]
    terminationMessagePolicy: FallbackToLogsOnError
"""


def _statuses(cluster: Cluster, ns: str, pod: str) -> dict[str, JsonDict]:
    obj = cluster.get("pod", pod, ns)
    return {s["name"]: s for s in obj.get("status", {}).get("containerStatuses") or []}


def test_termination_messages(control_plane: Cluster, namespace: str) -> None:
    control_plane.apply(POD, namespace)

    def finished() -> dict[str, JsonDict] | None:
        statuses = _statuses(control_plane, namespace, "last-words")
        done = len(statuses) == 3 and all("terminated" in s["state"] for s in statuses.values())
        return statuses if done else None

    statuses = control_plane.wait(finished, what="all three containers to finish")
    writes = statuses["writes"]["state"]["terminated"]
    assert (writes["exitCode"], writes["message"]) == (0, "MissingBackend: backend vllm is not installed")
    fails = statuses["fails"]["state"]["terminated"]
    assert fails["exitCode"] == 2 and "unknown command 'no-such-command'" in fails["message"]
    quiet = statuses["fails-quietly"]["state"]["terminated"]
    assert quiet["exitCode"] == 2 and "message" not in quiet  # File policy, nothing written


def test_restarted_container_keeps_its_last_message(control_plane: Cluster, namespace: str) -> None:
    control_plane.apply(RESTARTING, namespace)

    def restarted() -> JsonDict | None:
        s = _statuses(control_plane, namespace, "restarts").get("main")
        return s if s and s["restartCount"] >= 2 and "terminated" in s.get("lastState", {}) else None

    status = control_plane.wait(restarted, what="two restarts")
    message = status["lastState"]["terminated"]["message"]
    # Only the last run's output, not every run's.
    assert message.count("unknown command") == 1, message
