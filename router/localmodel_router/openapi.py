"""The router's `/openapi.json`: the runtime's document (generated from the protocol models that
validate each request, never written twice) plus the statuses only the router answers."""

from __future__ import annotations

from typing import Any

import orjson

from localmodel_runtime.server.openapi import openapi_document, package_version

ROUTER_STATUSES = {
    "401": "An API key is required and this one is missing or not accepted",
    "408": "The request's headers or body did not arrive in time",
    "502": "No endpoint of the model could be reached",
    "503": "The model has no ready endpoint yet, or the router is at its bound: retry after `Retry-After`",
    "504": "The endpoint did not answer in time",
}


def router_document() -> dict[str, Any]:
    document = openapi_document("localmodel router", package_version())
    error = {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}}
    for path, operations in document["paths"].items():
        if not path.startswith("/v1/") or "post" not in operations:
            continue
        responses = operations["post"]["responses"]
        for status, text in ROUTER_STATUSES.items():
            responses[status] = {"description": text, "content": error}
    return document


def router_document_bytes() -> bytes:
    return orjson.dumps(router_document())
