"""Fuzzing the runtime, and the router in front of it: requests generated from the runtime's OpenAPI
document (schemathesis over Hypothesis), valid and invalid, against a real `localmodel-runtime serve` with
a tiny model, directly and through a real router.

Every answer must be OpenAI-shaped: a JSON object or a well-framed event stream on success, OpenAI's error
body on an error, never a 5xx, and the server must be alive afterwards. `make test` runs a fixed
(derandomised) slice; `make fuzz` runs LOCALMODEL_FUZZ_EXAMPLES per endpoint and mode, randomised.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import requests
import schemathesis
from hypothesis import HealthCheck, Phase, given, settings
from schemathesis import GenerationMode
from schemathesis.core.transport import Response
from schemathesis.generation.case import Case

from localmodel_runtime.server.openapi import ENDPOINTS, openapi_document, package_version
from tests.support.router_fixtures import router_in_front
from tests.support.runtime_server import RuntimeServer, runtime_server

EXAMPLES = int(os.environ.get("LOCALMODEL_FUZZ_EXAMPLES", "15"))
RANDOMISED = "LOCALMODEL_FUZZ_EXAMPLES" in os.environ
DOCUMENT = openapi_document("localmodel runtime", package_version())
SCHEMA = schemathesis.openapi.from_dict(DOCUMENT)


@pytest.fixture(scope="module")
def fuzz_server(tmp_path_factory: pytest.TempPathFactory, tiny_gguf: Path) -> Iterator[RuntimeServer]:
    config = {
        "name": "tiny",
        "backend": "llama",
        "context_size": 256,
        "embeddings": True,
        "options": ["parallel:2"],
        "parameters": {"model": "tiny.gguf"},
    }
    with runtime_server(tmp_path_factory.mktemp("fuzz"), config, tiny_gguf.parent) as server:
        yield server


def test_the_server_publishes_the_document_its_requests_are_validated_by(fuzz_server: RuntimeServer) -> None:
    served = httpx.get(f"{fuzz_server.base_url}/openapi.json").json()
    assert served == json.loads(json.dumps(DOCUMENT))
    assert set(served["paths"]) == {path for path, _, _ in ENDPOINTS} | {"/v1/models"}
    SCHEMA.validate()  # a valid OpenAPI 3.1 document


@pytest.fixture(scope="module", params=["runtime", "router"])
def target(request: pytest.FixtureRequest, fuzz_server: RuntimeServer) -> Iterator[str]:
    """The base URL the generated requests go to: the runtime, or a router in front of it."""
    if request.param == "runtime":
        yield fuzz_server.base_url
        return
    with router_in_front("tiny", fuzz_server.base_url.removeprefix("http://")) as router:
        yield router.url


def check_openai_shaped(status: int, kind: str, text: str) -> None:
    assert status < 500, f"{status}: {text[:500]}"
    if status >= 400:
        body: Any = json.loads(text)
        error = body["error"]
        assert isinstance(error["message"], str) and error["message"]
        assert isinstance(error["type"], str) and "param" in error and "code" in error
        return
    if kind.startswith("text/event-stream"):
        events = [line for line in text.splitlines() if line]
        assert events and all(line.startswith("data: ") for line in events), text[:500]
        assert events[-1] == "data: [DONE]" or '"error"' in events[-1]
        for line in events[:-1]:
            assert isinstance(json.loads(line.removeprefix("data: ")), dict)
        return
    assert kind.startswith("application/json"), kind
    assert isinstance(json.loads(text), dict)


def answer(case: Case, base_url: str, session: requests.Session) -> tuple[int, str, str]:
    """(status, content type, whole body) of the case's request."""
    response: Response = case.call(base_url=base_url, session=session, timeout=120)
    if not response.stream_cut_short:
        return response.status_code, ";".join(response.headers.get("content-type", [])), response.text
    # schemathesis reads an event stream only in part: read this one to its end.
    with httpx.Client(timeout=120) as client:
        whole = client.post(f"{base_url}{case.formatted_path}", json=case.body)
    return whole.status_code, whole.headers.get("content-type", ""), whole.text


@pytest.mark.parametrize("mode", [GenerationMode.POSITIVE, GenerationMode.NEGATIVE], ids=lambda m: m.value)
@pytest.mark.parametrize("path", [path for path, _, _ in ENDPOINTS])
def test_generated_requests_get_openai_shaped_answers(
    fuzz_server: RuntimeServer, target: str, path: str, mode: GenerationMode
) -> None:
    strategy = SCHEMA[path]["POST"].as_strategy(generation_mode=mode)
    answered: dict[int, int] = {}
    with requests.Session() as session:

        @settings(
            max_examples=EXAMPLES,
            deadline=None,
            database=None,
            derandomize=not RANDOMISED,
            suppress_health_check=list(HealthCheck),
            # No shrinking: each example is a real request to a real model; the failing one is reported.
            phases=[Phase.explicit, Phase.generate],
        )
        @given(case=strategy)
        def send(case: Case) -> None:
            status, kind, text = answer(case, target, session)
            try:
                check_openai_shaped(status, kind, text)
            except AssertionError as exc:
                body = json.dumps(case.body, default=repr)[:2000]
                raise AssertionError(f"{exc}\nrequest: POST {path} {body}") from None
            answered[status] = answered.get(status, 0) + 1

        send()
    assert fuzz_server.process.poll() is None, fuzz_server.log()
    assert sum(answered.values()) > 0
    if mode is GenerationMode.NEGATIVE:
        assert answered.get(400, 0) > 0, answered  # invalid requests were refused as such
    print(f"{path} {mode.value}: {sum(answered.values())} requests, statuses {sorted(answered.items())}")
