"""The rule for one API name asked for by several LocalModels (router and operator share it)."""

from __future__ import annotations

from typing import Any

from localmodel_runtime.resource.claims import api_name, conflict_holder, conflict_message


def localmodel(name: str, namespace: str, api: str | None, stamp: str | None) -> dict[str, Any]:
    meta: dict[str, Any] = {"name": name, "namespace": namespace}
    if stamp is not None:
        meta["creationTimestamp"] = stamp
    return {"metadata": meta, "spec": {"name": api} if api else {}}


def test_the_oldest_holds_then_namespace_then_name() -> None:
    a = localmodel("m", "team-a", "shared", "2026-01-01T00:00:00Z")
    b = localmodel("m", "team-b", "shared", "2026-01-02T00:00:00Z")
    c = localmodel("n", "team-a", "shared", "2026-01-01T00:00:00Z")
    everyone = [a, b, c]
    assert conflict_holder(a, everyone) is None
    assert conflict_holder(b, everyone) == ("team-a", "m")
    assert conflict_holder(c, everyone) == ("team-a", "m")


def test_other_names_and_unknown_times_do_not_hold() -> None:
    a = localmodel("m", "team-a", None, "2026-01-02T00:00:00Z")
    assert api_name(a) == "m"
    other = localmodel("x", "team-b", "other", "2026-01-01T00:00:00Z")
    unstamped = localmodel("m", "team-0", None, None)
    assert conflict_holder(a, [a, other, unstamped]) is None
    assert conflict_holder(unstamped, [a, unstamped]) == ("team-a", "m")


def test_the_message_names_the_holder_and_the_way_out() -> None:
    text = conflict_message("shared", ("team-a", "m"))
    assert "team-a/m" in text and "spec.name" in text
