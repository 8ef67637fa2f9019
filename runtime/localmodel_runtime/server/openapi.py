"""`/openapi.json`: the OpenAI subset this server accepts, generated from the request models that
validate each request (`protocol.py`), so the description and the validation cannot drift apart.

Responses are described as far as clients and fuzzers need: a JSON object (or, with `stream`, Server-Sent
Events) on success, and OpenAI's error body on every error status.
"""

from __future__ import annotations

from importlib import metadata
from typing import Any

from pydantic import BaseModel
from pydantic.json_schema import models_json_schema

from . import protocol

REF_TEMPLATE = "#/components/schemas/{model}"

ENDPOINTS: tuple[tuple[str, str, type[BaseModel]], ...] = (
    ("/v1/chat/completions", "Create a chat completion", protocol.ChatCompletionRequest),
    ("/v1/completions", "Create a completion", protocol.CompletionRequest),
    ("/v1/edits", "Create an edit", protocol.EditRequest),
    ("/v1/embeddings", "Create embeddings", protocol.EmbeddingRequest),
    ("/v1/rerank", "Rerank documents against a query (Jina/Cohere shape)", protocol.RerankRequest),
)

ERROR_SCHEMA: dict[str, Any] = {
    "type": "object",
    "required": ["error"],
    "properties": {
        "error": {
            "type": "object",
            "required": ["message", "type"],
            "properties": {
                "message": {"type": "string"},
                "type": {"type": "string"},
                "param": {"type": ["string", "null"]},
                "code": {"type": ["string", "null"]},
            },
        }
    },
}
ERROR_STATUSES = {
    "400": "The request is invalid (the message names the field)",
    "404": "No such model or route",
    "413": "The body is too large",
    "429": "The queue is full: try again after `Retry-After` seconds",
    "503": "The model is not loaded (yet)",
}


def _error_responses() -> dict[str, Any]:
    body = {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}}
    return {status: {"description": text, "content": body} for status, text in ERROR_STATUSES.items()}


def _json_object(description: str) -> dict[str, Any]:
    return {"description": description, "content": {"application/json": {"schema": {"type": "object"}}}}


def openapi_document(title: str, version: str) -> dict[str, Any]:
    """The OpenAPI 3.1 document of the runtime's (and the router's) OpenAI API."""
    _, definitions = models_json_schema(
        [(model, "validation") for _, _, model in ENDPOINTS], ref_template=REF_TEMPLATE
    )
    schemas: dict[str, Any] = {**definitions.get("$defs", {}), "Error": ERROR_SCHEMA}
    paths: dict[str, Any] = {}
    for path, summary, model in ENDPOINTS:
        request_schema = {"$ref": REF_TEMPLATE.format(model=model.__name__)}
        success = _json_object("The result; with `stream`, Server-Sent Events (`data: {...}`)")
        if "stream" in model.model_fields:
            success["content"]["text/event-stream"] = {"schema": {"type": "string"}}
        paths[path] = {
            "post": {
                "summary": summary,
                "operationId": path.removeprefix("/v1/").replace("/", "_"),
                "requestBody": {
                    "required": True,
                    "content": {"application/json": {"schema": request_schema}},
                },
                "responses": {"200": success, **_error_responses()},
            }
        }
    paths["/v1/models"] = {
        "get": {
            "summary": "List the models",
            "operationId": "list_models",
            "responses": {"200": _json_object("`{object: list, data: [...]}`")},
        }
    }
    return {
        "openapi": "3.1.0",
        "info": {"title": title, "version": version},
        "paths": paths,
        "components": {"schemas": schemas},
    }


def package_version() -> str:
    try:
        return metadata.version("localmodel")
    except metadata.PackageNotFoundError:
        return "0+unknown"
