"""Who holds an API model name when several LocalModels ask for the same `spec.name`.

The router's table is keyed by the API name, and the router may watch many namespaces, so two teams
can write LocalModels with the same `spec.name`. One rule, applied by the router (which routes only to
the holder's pods) and the operator (which marks the others `Degraded` with reason `NameConflict`):
the oldest LocalModel holds the name: earliest `metadata.creationTimestamp`, then namespace, then
object name. A newer claimant never takes traffic; when the holder is deleted the next oldest takes
the name over. Pure: callers pass what they listed or watched.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime
from typing import Any

Key = tuple[str, str]
"""(namespace, object name) of a LocalModel."""
Claim = tuple[float, str, str]
"""The order of claims: (creation time in seconds, namespace, object name); the smallest holds."""
_UNKNOWN_TIME = float("inf")


def api_name(obj: dict[str, Any]) -> str:
    """The API model name a LocalModel object asks for: `spec.name`, else its object name."""
    meta = obj.get("metadata") or {}
    spec = obj.get("spec") or {}
    return str(spec.get("name") or meta.get("name") or "")


def created_seconds(meta: dict[str, Any]) -> float | None:
    """`metadata.creationTimestamp` in seconds since the epoch; None when absent or malformed."""
    stamp = meta.get("creationTimestamp")
    if isinstance(stamp, datetime):
        return stamp.timestamp()
    if isinstance(stamp, str):
        try:
            return datetime.fromisoformat(stamp.replace("Z", "+00:00")).timestamp()
        except ValueError:
            return None
    return None


def claim_of(obj: dict[str, Any]) -> Claim:
    meta = obj.get("metadata") or {}
    created = created_seconds(meta)
    return (
        _UNKNOWN_TIME if created is None else created,
        str(meta.get("namespace") or ""),
        str(meta.get("name") or ""),
    )


def holder(claims: Iterable[Claim]) -> Key | None:
    """The (namespace, name) of the claim that holds the name; None when there is none."""
    first = min(claims, default=None)
    return None if first is None else (first[1], first[2])


def conflict_holder(obj: dict[str, Any], others: Iterable[dict[str, Any]]) -> Key | None:
    """The LocalModel among `others` that holds `obj`'s API name instead of it; None when `obj` holds it
    (or nobody else asks for the name). `others` may include `obj` itself."""
    name, mine = api_name(obj), claim_of(obj)
    older = [
        claim
        for other in others
        if api_name(other) == name and (claim := claim_of(other))[1:] != mine[1:] and claim < mine
    ]
    return holder(older)


def conflict_message(name: str, holder_key: Key) -> str:
    namespace, object_name = holder_key
    return (
        f"the model name {name!r} is already served by the older LocalModel {namespace}/{object_name}; "
        f"this one is not routed to: give it another spec.name, or delete the other one to take it over"
    )
