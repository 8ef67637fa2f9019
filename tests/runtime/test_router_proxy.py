"""The router against real servers: fake runtimes with injected faults, the official `openai` client.

No timing assertions: waits are bounds on polling, the router's timeouts are set short so that the
paths they guard run at all.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator

import httpx
import openai
import orjson
import pytest
from openai.types.chat import ChatCompletionMessageParam

from localmodel_router.app import RouterApp
from localmodel_router.auth import ApiKeys
from localmodel_router.settings import RouterSettings
from localmodel_router.table import ModelEntry, ModelSettings, ModelTable, Scaler
from tests.support.polling import poll_until
from tests.support.router_fixtures import (
    ClosingServer,
    FakeRuntime,
    ThreadServer,
    refused_address,
)

CHAT: list[ChatCompletionMessageParam] = [{"role": "user", "content": "ping"}]


class Setup:
    def __init__(self, openai_clients: Callable[..., openai.OpenAI]) -> None:
        self.servers: list[ThreadServer] = []
        self._clients = openai_clients

    def client(self, server: ThreadServer, key: str = "unused") -> openai.OpenAI:
        """An OpenAI client of `server` (closed when the test ends)."""
        return self._clients(server.url + "/v1", api_key=key, timeout=20)

    def runtime(self, mode: str = "ok") -> tuple[FakeRuntime, ThreadServer]:
        fake = FakeRuntime(mode=mode)
        server = ThreadServer(fake).start()
        self.servers.append(server)
        return fake, server

    def router(
        self,
        models: dict[str, list[str]],
        settings: RouterSettings | None = None,
        keys: ApiKeys | None = None,
        model_settings: ModelSettings | None = None,
        scaler: Scaler | None = None,
    ) -> tuple[RouterApp, ThreadServer]:
        table = ModelTable()
        for name, addresses in models.items():
            table.upsert_model(name, model_settings or ModelSettings())
            table.set_endpoints(name, [(a, True) for a in addresses])
        app = RouterApp(table, None, settings or RouterSettings(), keys, scaler)
        server = ThreadServer(app).start()
        self.servers.append(server)
        return app, server

    def stop(self) -> None:
        for server in reversed(self.servers):
            server.stop()


@pytest.fixture
def setup(openai_clients: Callable[..., openai.OpenAI]) -> Iterator[Setup]:
    made = Setup(openai_clients)
    yield made
    made.stop()


def metric(server: ThreadServer, line_start: str) -> float:
    text = httpx.get(server.url + "/metrics").text
    for line in text.splitlines():
        if line.startswith(line_start):
            return float(line.rsplit(" ", 1)[1])
    return 0.0


def test_completion_and_stream_through_the_openai_client(setup: Setup) -> None:
    fake, upstream = setup.runtime()
    _, router = setup.router({"m": [upstream.address]})
    answer = setup.client(router).chat.completions.create(model="m", messages=CHAT)
    assert answer.choices[0].message.content == "pong"
    stream = setup.client(router).chat.completions.create(model="m", messages=CHAT, stream=True)
    pieces = [c.choices[0].delta.content for c in stream if c.choices]
    assert "".join(p or "" for p in pieces) == "t0 t1 t2 t3 t4 "
    assert fake.paths == ["/v1/chat/completions", "/v1/chat/completions"]
    raw = httpx.post(router.url + "/chat/completions", json={"model": "m", "stream": True, "messages": CHAT})
    assert raw.headers["x-accel-buffering"] == "no"
    assert raw.headers["content-type"].startswith("text/event-stream")
    assert raw.text.endswith("data: [DONE]\n\n")


def test_unknown_model_is_404_model_not_found(setup: Setup) -> None:
    _, upstream = setup.runtime()
    _, router = setup.router({"m": [upstream.address]})
    with pytest.raises(openai.NotFoundError) as caught:
        setup.client(router).chat.completions.create(model="nope", messages=CHAT)
    assert caught.value.code == "model_not_found"
    body = httpx.post(router.url + "/v1/completions", json={"model": "nope", "prompt": "x"}).json()
    assert set(body["error"]) == {"message", "type", "param", "code"}


def test_model_from_bearer_token_then_single_model(setup: Setup) -> None:
    first, a = setup.runtime()
    second, b = setup.runtime()
    _, router = setup.router({"alpha": [a.address], "beta": [b.address]})
    response = httpx.post(
        router.url + "/v1/completions", json={"prompt": "x"}, headers={"authorization": "Bearer beta"}
    )
    assert response.status_code == 200 and len(second.requests) == 1 and not first.requests
    # A token that is only a prefix of a name does not match (exact names, not patterns).
    response = httpx.post(
        router.url + "/v1/completions", json={"prompt": "x"}, headers={"authorization": "Bearer bet"}
    )
    assert response.status_code == 404
    _, single = setup.router({"only": [a.address]})
    assert httpx.post(single.url + "/v1/embeddings", json={"input": "x"}).status_code == 200
    assert first.paths == ["/v1/embeddings"]


def test_models_list_with_readiness(setup: Setup) -> None:
    _, upstream = setup.runtime()
    _, router = setup.router({"up": [upstream.address], "down": []})
    listing = setup.client(router).models.list()
    ready = {m.id: m.model_extra["ready"] for m in listing.data if m.model_extra}
    assert ready == {"up": True, "down": False}
    assert {m.object for m in listing.data} == {"model"}


def test_mid_stream_failure_raises_api_error(setup: Setup) -> None:
    _, upstream = setup.runtime("die_mid_stream")
    _, router = setup.router({"m": [upstream.address]})
    stream = setup.client(router).chat.completions.create(model="m", messages=CHAT, stream=True)
    received: list[str] = []
    with pytest.raises(openai.APIError) as caught:
        for chunk in stream:
            received.append(chunk.choices[0].delta.content or "")
    assert received[:2] == ["t0 ", "t1 "]
    assert "mid-stream" in caught.value.message


def test_idle_timeout_mid_stream_ends_with_an_error_event(setup: Setup) -> None:
    fake, upstream = setup.runtime("stall_mid_stream")
    _, router = setup.router({"m": [upstream.address]}, RouterSettings(idle_timeout=0.3))
    text = httpx.post(
        router.url + "/v1/chat/completions", json={"model": "m", "stream": True}, timeout=20
    ).text
    assert '"code":"upstream_idle_timeout"' in text
    assert "[DONE]" not in text
    poll_until(lambda: fake.disconnects == 1, "the runtime to see the stream dropped")


def test_5xx_is_retried_once_on_another_endpoint(setup: Setup) -> None:
    broken, bad = setup.runtime("fail500")
    healthy, good = setup.runtime()
    _, router = setup.router({"m": [bad.address, good.address]})
    for _ in range(6):
        assert (
            httpx.post(router.url + "/v1/completions", json={"model": "m", "prompt": "x"}).status_code == 200
        )
    assert len(healthy.requests) == 6
    assert len(broken.requests) >= 1  # the balancer sent some there first; each was retried
    assert metric(router, 'localmodel_router_retries_total{model="m"}') == len(broken.requests)


def test_5xx_everywhere_is_relayed_in_openai_shape(setup: Setup) -> None:
    first, a = setup.runtime("fail500")
    second, b = setup.runtime("fail500")
    _, router = setup.router({"m": [a.address, b.address]})
    with pytest.raises(openai.InternalServerError) as caught:
        setup.client(router).completions.create(model="m", prompt="x")
    assert "backend exploded" in caught.value.message
    assert len(first.requests) + len(second.requests) == 2  # one try and one retry, no more


def test_closed_connection_and_refused_connection_are_retried(setup: Setup) -> None:
    closing = ClosingServer()
    try:
        healthy, good = setup.runtime()
        _, router = setup.router(
            {"m": [closing.address, good.address], "n": [refused_address(), good.address]}
        )
        sent = 0
        # The balancer picks the failing endpoint at random: send until it has been tried (each time
        # the retry must still answer 200), within a bound that makes never picking it impossible.
        for model in ("m", "n"):
            for attempt in range(40):
                status = httpx.post(
                    router.url + "/v1/completions", json={"model": model, "prompt": "x"}
                ).status_code
                assert status == 200
                sent += 1
                if attempt >= 3 and (model == "n" or closing.accepted >= 1):
                    break
        assert closing.accepted >= 1
        assert len(healthy.requests) == sent
    finally:
        closing.stop()


def test_refused_single_endpoint_is_502(setup: Setup) -> None:
    _, router = setup.router({"m": [refused_address()]})
    response = httpx.post(router.url + "/v1/completions", json={"model": "m", "prompt": "x"})
    assert response.status_code == 502
    assert response.json()["error"]["code"] == "upstream_unavailable"


def test_first_byte_timeout_is_504_and_not_retried(setup: Setup) -> None:
    first, a = setup.runtime("hang")
    second, b = setup.runtime("hang")
    _, router = setup.router({"m": [a.address, b.address]}, RouterSettings(first_byte_timeout=0.3))
    response = httpx.post(router.url + "/v1/completions", json={"model": "m", "prompt": "x"}, timeout=20)
    assert response.status_code == 504
    assert response.json()["error"]["code"] == "upstream_timeout"
    assert len(first.requests) + len(second.requests) == 1
    # The router gave up on the upstream connection: the runtime sees its request end.
    poll_until(lambda: first.disconnects + second.disconnects == 1, "upstream disconnect")


def test_client_disconnect_cancels_the_upstream_request(setup: Setup) -> None:
    fake, upstream = setup.runtime("hang")
    _, router = setup.router({"m": [upstream.address]})
    with pytest.raises(httpx.ReadTimeout):
        httpx.post(router.url + "/v1/chat/completions", json={"model": "m", "messages": CHAT}, timeout=0.5)
    poll_until(lambda: fake.disconnects == 1, "the runtime to see its request cancelled")
    poll_until(
        lambda: metric(router, 'localmodel_router_requests_total{model="m",status="499"}') == 1, "499 metric"
    )


def test_client_leaving_a_stream_cancels_the_upstream_stream(setup: Setup) -> None:
    fake, upstream = setup.runtime("stall_mid_stream")
    _, router = setup.router({"m": [upstream.address]})
    body = {"model": "m", "stream": True, "messages": CHAT}
    with httpx.stream("POST", router.url + "/v1/chat/completions", json=body, timeout=20) as response:
        first = next(response.iter_bytes())
        assert first.startswith(b"data: ")
    poll_until(lambda: fake.disconnects == 1, "the runtime to see the stream cancelled")


def test_body_cap_is_413(setup: Setup) -> None:
    fake, upstream = setup.runtime()
    _, router = setup.router({"m": [upstream.address]}, RouterSettings(max_body_bytes=1000))
    response = httpx.post(router.url + "/v1/completions", json={"model": "m", "prompt": "x" * 2000})
    assert response.status_code == 413
    assert response.json()["error"]["code"] == "request_too_large"
    assert not fake.requests

    # Without a length up front (chunked upload) the cap applies while reading.
    def chunks() -> Iterator[bytes]:
        yield b'{"model": "m", "prompt": "'
        for _ in range(10):
            yield b"x" * 200
        yield b'"}'

    response = httpx.post(router.url + "/v1/completions", content=chunks())
    assert response.status_code == 413
    assert not fake.requests


def test_api_keys(setup: Setup) -> None:
    fake, upstream = setup.runtime()
    _, router = setup.router({"m": [upstream.address]}, keys=ApiKeys({"sk-good"}))
    with pytest.raises(openai.AuthenticationError):
        setup.client(router, "sk-wrong").completions.create(model="m", prompt="x")
    response = httpx.post(router.url + "/v1/completions", json={"model": "m", "prompt": "x"})
    assert response.status_code == 401 and response.json()["error"]["code"] == "invalid_api_key"
    assert httpx.get(router.url + "/v1/models").status_code == 401
    assert setup.client(router, "sk-good").completions.create(model="m", prompt="x").id == "cmpl-1"
    assert httpx.get(router.url + "/healthz").status_code == 200  # probes need no key
    assert len(fake.requests) == 1


def test_metrics_need_a_key_only_when_asked(setup: Setup) -> None:
    _, upstream = setup.runtime()
    keys = ApiKeys({"sk-good"})
    _, open_metrics = setup.router({"m": [upstream.address]}, keys=keys)
    assert httpx.get(open_metrics.url + "/metrics").status_code == 200  # the default: scrapers need no key
    _, router = setup.router({"m": [upstream.address]}, RouterSettings(metrics_need_key=True), keys=keys)
    refused = httpx.get(router.url + "/metrics")
    assert refused.status_code == 401 and refused.json()["error"]["code"] == "invalid_api_key"
    wrong = httpx.get(router.url + "/metrics", headers={"Authorization": "Bearer sk-wrong"})
    assert wrong.status_code == 401
    allowed = httpx.get(router.url + "/metrics", headers={"Authorization": "Bearer sk-good"})
    assert allowed.status_code == 200 and "localmodel_router_requests_total" in allowed.text
    assert httpx.get(router.url + "/healthz").status_code == 200  # probes stay open


def test_metrics_present(setup: Setup) -> None:
    _, upstream = setup.runtime()
    _, router = setup.router({"m": [upstream.address]})
    setup.client(router).completions.create(model="m", prompt="x")
    list(setup.client(router).chat.completions.create(model="m", messages=CHAT, stream=True))
    text = httpx.get(router.url + "/metrics").text
    assert 'localmodel_router_requests_total{model="m",status="200"} 2.0' in text
    assert 'localmodel_router_request_duration_seconds_count{model="m"} 2.0' in text
    assert 'localmodel_router_time_to_first_token_seconds_count{model="m"} 2.0' in text
    assert (
        f'localmodel_router_endpoint_in_flight_requests{{endpoint="{upstream.address}",model="m"}} 0.0'
        in text
    )
    assert "localmodel_router_retries_total" in text or "localmodel_router_retries_created" in text
    assert httpx.get(router.url + "/readyz").status_code == 200


class AddEndpointScaler:
    """Local-mode-like scaler: "starts" a replica by adding the runtime's address to the table."""

    def __init__(self, address: str) -> None:
        self.address = address
        self.ups = 0
        self.downs = 0
        self.table: ModelTable | None = None

    async def scale_up(self, model: ModelEntry) -> None:
        self.ups += 1
        assert self.table is not None
        self.table.set_endpoints(model.name, [(self.address, True)])

    async def scale_down(self, model: ModelEntry) -> None:
        self.downs += 1
        assert self.table is not None
        self.table.set_endpoints(model.name, [])


def test_scale_from_zero_wakes_once_and_holds_the_request(setup: Setup) -> None:
    fake, upstream = setup.runtime()
    scaler = AddEndpointScaler(upstream.address)
    app, router = setup.router(
        {"cold": []}, model_settings=ModelSettings(min_replicas=0, scale_down_delay=3600), scaler=scaler
    )
    scaler.table = app.table
    answer = setup.client(router).completions.create(model="cold", prompt="x")
    assert answer.id == "cmpl-1"
    assert scaler.ups == 1 and len(fake.requests) == 1
    assert metric(router, 'localmodel_router_scale_ups_total{model="cold"}') == 1


def test_no_endpoint_is_503_with_retry_after(setup: Setup) -> None:
    _, router = setup.router({"down": []}, RouterSettings(cold_start_timeout=0.2))
    response = httpx.post(router.url + "/v1/completions", json={"model": "down", "prompt": "x"})
    assert response.status_code == 503
    assert response.headers["retry-after"] == "5"
    assert response.json()["error"]["code"] == "model_not_ready"


def test_idle_model_is_scaled_down_by_the_router(setup: Setup) -> None:
    _, upstream = setup.runtime()
    scaler = AddEndpointScaler(upstream.address)
    app, router = setup.router(
        {"idle": [upstream.address]},
        model_settings=ModelSettings(min_replicas=0, scale_down_delay=0.2),
        scaler=scaler,
    )
    scaler.table = app.table
    app.scale.check_interval = 0.05
    assert (
        httpx.post(router.url + "/v1/completions", json={"model": "idle", "prompt": "x"}).status_code == 200
    )
    poll_until(lambda: scaler.downs == 1, "idle scale-down")
    assert router.call(lambda: app.table.models["idle"].endpoints) == []


def test_wrong_method_and_path_are_openai_errors(setup: Setup) -> None:
    _, router = setup.router({})
    response = httpx.get(router.url + "/v1/chat/completions")
    assert response.status_code == 405 and "error" in response.json()
    response = httpx.get(router.url + "/v1/nothing")
    assert response.status_code == 404 and "error" in response.json()
    response = httpx.post(router.url + "/v1/completions", content=b"{not json")
    assert response.status_code == 400 and response.json()["error"]["code"] == "invalid_json"


def test_messages_paths_answer_in_anthropic_shape(setup: Setup) -> None:
    # A stream that breaks mid-way ends with Anthropic's error event, not OpenAI's `data: {"error"...}`.
    _, breaking = setup.runtime("die_mid_stream")
    _, router = setup.router({"m": [breaking.address]})
    body = {"model": "m", "max_tokens": 4, "stream": True, "messages": [{"role": "user", "content": "x"}]}
    text = httpx.post(router.url + "/v1/messages", json=body, timeout=20).text
    events = [block for block in text.split("\n\n") if block.strip()]
    last = events[-1].splitlines()
    assert last[0] == "event: error", text
    error = orjson.loads(last[1].removeprefix("data: "))
    assert error["type"] == "error" and error["error"]["type"] == "api_error"
    assert "mid-stream" in error["error"]["message"]
    # An upstream's plain-text 500 is relayed in Anthropic's shape on this path (OpenAI's elsewhere).
    _, failing = setup.runtime("fail500")
    _, other = setup.router({"m": [failing.address]})
    answer = httpx.post(other.url + "/v1/messages", json={**body, "stream": False}, timeout=20)
    assert answer.status_code == 500 and answer.json()["error"]["type"] == "api_error"
    assert answer.json()["error"]["message"] == "backend exploded"
    chat = httpx.post(other.url + "/v1/chat/completions", json={"model": "m", "messages": CHAT}, timeout=20)
    assert chat.status_code == 500 and chat.json()["error"]["message"] == "backend exploded"
    assert "type" in chat.json()["error"] and chat.json().get("type") is None
