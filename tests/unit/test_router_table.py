"""The routing table, the local table file, errors, API keys and the idle scale-down decision."""

from __future__ import annotations

import asyncio
from pathlib import Path

import orjson
import pytest

from localmodel_router.auth import ApiKeyError, ApiKeys, bearer_token
from localmodel_router.errors import normalise_error_body
from localmodel_router.local_table import LocalDiscovery, TableError, load_table, parse_table
from localmodel_router.scale_to_zero import ScaleToZero
from localmodel_router.table import ModelSettings, ModelTable, split_address
from tests.support.router_fixtures import RecordingScaler


def test_endpoint_counters_survive_an_update_that_keeps_the_address() -> None:
    table = ModelTable()
    table.upsert_model("m", ModelSettings())
    table.set_endpoints("m", [("10.0.0.1:80", True), ("10.0.0.2:80", False)])
    entry = table.models["m"]
    entry.endpoints[0].in_flight = 3
    table.set_endpoints("m", [("10.0.0.1:80", True), ("10.0.0.3:80", True)])
    assert entry.endpoints[0].in_flight == 3
    assert [e.address for e in entry.ready_endpoints] == ["10.0.0.1:80", "10.0.0.3:80"]


def test_split_address_handles_ipv6_and_rejects_garbage() -> None:
    assert split_address("[fd00::1]:8080") == ("fd00::1", 8080)
    for bad in ("nohost", ":80", "host:", "host:99999"):
        with pytest.raises(ValueError):
            split_address(bad)


async def test_wait_ready_wakes_when_an_endpoint_becomes_ready() -> None:
    table = ModelTable()
    table.upsert_model("m", ModelSettings(min_replicas=0))
    waiter = asyncio.create_task(table.wait_ready("m", 5))
    await asyncio.sleep(0)
    assert not waiter.done()
    table.set_endpoints("m", [("127.0.0.1:1", True)])
    entry = await waiter
    assert entry is not None and entry.ready_endpoints


async def test_wait_ready_gives_up_after_its_bound() -> None:
    table = ModelTable()
    table.upsert_model("m", ModelSettings())
    assert await table.wait_ready("m", 0.05) is None


def test_local_table_both_spellings(tmp_path: Path) -> None:
    path = tmp_path / "t.yaml"
    path.write_text(
        "models:\n  - name: a\n    endpoints: ['127.0.0.1:1', {address: '127.0.0.1:2', ready: false}]\n"
        "    loadBalancing: prefixAffinity\n    minReplicas: 0\n    scaleDownDelaySeconds: 5\n"
    )
    table = load_table(path)
    settings, endpoints = table["a"]
    assert settings.strategy == "prefixAffinity" and settings.min_replicas == 0
    assert settings.scale_down_delay == 5.0
    assert endpoints == [("127.0.0.1:1", True), ("127.0.0.1:2", False)]
    assert parse_table({"b": ["h:1"]}, "x") == {"b": (ModelSettings(), [("h:1", True)])}


@pytest.mark.parametrize(
    ("data", "fragment"),
    [
        ([1], "mapping"),
        ({"models": [{"endpoints": []}]}, "needs a 'name'"),
        ({"models": [{"name": "a", "endpoints": ["nope"]}]}, "host:port"),
        ({"models": [{"name": "a", "loadBalancing": "random"}]}, "loadBalancing"),
        ({"models": [{"name": "a"}, {"name": "a"}]}, "twice"),
    ],
)
def test_local_table_errors_are_one_readable_line(data: object, fragment: str) -> None:
    with pytest.raises(TableError) as caught:
        parse_table(data, "t.yaml")
    assert fragment in str(caught.value) and "\n" not in str(caught.value)


def test_invalid_yaml_file(tmp_path: Path) -> None:
    path = tmp_path / "bad.yaml"
    path.write_text("models: [\n")
    with pytest.raises(TableError, match="invalid YAML"):
        load_table(path)


@pytest.mark.parametrize(
    ("status", "body", "message", "code"),
    [
        (400, b'{"error":{"message":"bad","type":"x","param":"p","code":"c"}}', "bad", "c"),
        (400, b'{"object":"error","message":"flat vllm","code":400}', "flat vllm", None),
        (503, b'{"error":"just a string"}', "just a string", None),
        (502, b"<html>Bad Gateway</html>", "<html>Bad Gateway</html>", None),
        (500, b"", "upstream answered HTTP 500", None),
        (422, b'{"detail":[{"loc":["body"],"msg":"field required"}]}', None, None),
    ],
)
def test_upstream_error_bodies_are_normalised(
    status: int, body: bytes, message: str | None, code: str | None
) -> None:
    error = orjson.loads(normalise_error_body(status, body))["error"]
    assert set(error) == {"message", "type", "param", "code"}
    assert isinstance(error["message"], str) and error["message"]
    if message is not None:
        assert error["message"] == message
    assert error["code"] == code
    if status >= 500 and code is None:
        assert error["type"] == "server_error"


def test_api_keys_from_file_and_env(tmp_path: Path) -> None:
    path = tmp_path / "keys"
    path.write_text("# comment\nsk-one\n\nsk-two\n")
    keys = ApiKeys.load(path, {"LOCALMODEL_ROUTER_API_KEYS": "sk-env, "})
    assert keys.enabled
    assert keys.check("sk-one") and keys.check("sk-two") and keys.check("sk-env")
    assert not keys.check("sk-three") and not keys.check(None)
    assert not ApiKeys.load(None, {}).enabled
    (tmp_path / "empty").write_text("\n")
    with pytest.raises(ApiKeyError):
        ApiKeys.load(tmp_path / "empty", {})


def test_bearer_token() -> None:
    assert bearer_token(b"Bearer abc") == "abc"
    assert bearer_token(b"bearer  abc ") == "abc"
    assert bearer_token(b"Basic abc") is None
    assert bearer_token(None) is None


async def test_idle_models_scale_down_once_after_their_delay() -> None:
    table = ModelTable()
    scaler = RecordingScaler()
    manager = ScaleToZero(table, scaler)
    zero = table.upsert_model("zero", ModelSettings(min_replicas=0, scale_down_delay=10))
    table.set_endpoints("zero", [("127.0.0.1:1", True)])
    table.upsert_model("kept", ModelSettings(min_replicas=1, scale_down_delay=10))
    table.set_endpoints("kept", [("127.0.0.1:2", True)])
    now = zero.last_used
    assert manager.idle_models(now + 5) == []
    zero.in_flight = 1
    assert manager.idle_models(now + 20) == []
    zero.in_flight = 0
    assert [e.name for e in manager.idle_models(now + 20)] == ["zero"]
    manager.check_idle(now + 20)
    manager.check_idle(now + 30)  # already scaled down: not again
    await asyncio.sleep(0.01)
    assert scaler.calls == [("down", "zero")]


async def test_wake_is_deduplicated_while_under_way() -> None:
    table = ModelTable()
    scaler = RecordingScaler()
    manager = ScaleToZero(table, scaler)
    entry = table.upsert_model("zero", ModelSettings(min_replicas=0))
    assert manager.can_wake(entry)
    assert manager.wake(entry) is True
    assert manager.wake(entry) is False
    await asyncio.sleep(0.01)
    # The patch is done long before a pod is ready: later requests must not wake it again.
    assert manager.wake(entry) is False
    assert scaler.calls == [("up", "zero")]
    assert not manager.can_wake(table.upsert_model("one", ModelSettings(min_replicas=1)))


async def test_wake_is_sent_again_after_the_hold_or_once_the_model_was_ready() -> None:
    table = ModelTable()
    scaler = RecordingScaler()
    manager = ScaleToZero(table, scaler, wake_hold=0.0)
    entry = table.upsert_model("zero", ModelSettings(min_replicas=0))
    assert manager.wake(entry) is True
    assert manager.wake(entry) is True  # the hold (here 0 s) has passed: the cold start failed
    manager.wake_hold = 3600.0
    table.set_endpoints("zero", [("127.0.0.1:1", True)])
    manager.touched(entry)  # served while ready: the wake is over
    table.set_endpoints("zero", [])
    assert manager.wake(entry) is True
    await asyncio.sleep(0.01)
    assert scaler.calls == [("up", "zero")] * 3


async def test_local_table_is_reloaded_when_the_file_changes(tmp_path: Path) -> None:
    path = tmp_path / "t.yaml"
    path.write_text("a: ['127.0.0.1:1']\n")
    discovery = LocalDiscovery(path, poll_interval=0.02)
    table = ModelTable()
    await discovery.start(table)
    assert table.synced and list(table.models) == ["a"]
    kept = table.models["a"]
    path.write_text("a: ['127.0.0.1:1', '127.0.0.1:2']\nb: []\n")
    for _ in range(100):
        if "b" in table.models:
            break
        await asyncio.sleep(0.02)
    assert set(table.models) == {"a", "b"} and table.models["a"] is kept
    assert len(kept.ready_endpoints) == 2
    path.write_text("models: [\n")  # broken: the previous table stays
    await asyncio.sleep(0.1)
    assert set(table.models) == {"a", "b"}
    await discovery.stop()
