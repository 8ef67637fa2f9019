"""The LocalModel Event builder: a plain manifest the Kubernetes client turns into an Event."""

from __future__ import annotations

from lightkube import codecs
from lightkube.resources.core_v1 import Event

from localmodel_runtime.resource.events import MESSAGE_LIMIT, local_model_event


def test_event_names_the_localmodel_and_loads_as_a_client_object() -> None:
    owner = {"metadata": {"name": "m", "namespace": "ns", "uid": "u-1", "resourceVersion": "7"}}
    manifest = local_model_event(
        owner, "Warning", "InvalidSpec", "x" * (MESSAGE_LIMIT + 5), "localmodel-operator"
    )
    event = codecs.from_dict(manifest)
    assert isinstance(event, Event)
    assert event.metadata is not None and event.metadata.generateName == "m."
    assert event.metadata.namespace == "ns"
    involved = event.involvedObject
    assert (involved.apiVersion, involved.kind, involved.name, involved.uid) == (
        "localmodel.dev/v1alpha1",
        "LocalModel",
        "m",
        "u-1",
    )
    assert event.type == "Warning" and event.reason == "InvalidSpec"
    assert event.message is not None and len(event.message) == MESSAGE_LIMIT
    assert event.firstTimestamp is not None and event.firstTimestamp == event.lastTimestamp
    assert event.reportingComponent == "localmodel-operator"
