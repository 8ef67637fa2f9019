"""The console's JSON endpoints on a real router in local mode, in front of a real runtime (the tiny
GGUF) and a runtime that never answers (to hold a request in flight): models with their state, the
galleries with search, installing (refused in local mode; through automatic setup with a store that
stands in for the API server), the API keys, and the page's own files with their security headers."""

from __future__ import annotations

import asyncio
import re
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from localmodel_router.app import RouterApp
from localmodel_router.auth import ApiKeys
from localmodel_router.autosetup import AutoSetup, AutoSetupSettings
from localmodel_router.console import Console
from localmodel_router.local_table import LocalDiscovery, load_table
from localmodel_router.settings import RouterSettings
from localmodel_router.table import ModelSettings, ModelTable
from tests.support.autosetup_store import FakeStore
from tests.support.console import (
    DEGRADED_MESSAGE,
    DEGRADED_REASON,
    GALLERY_ENTRIES,
    console_router,
    degraded_entry,
    write_gallery,
    write_table,
)
from tests.support.polling import poll_until
from tests.support.router_fixtures import FakeRuntime, ThreadServer, serve
from tests.support.runtime_server import RuntimeServer, runtime_server

pytestmark = pytest.mark.timeout(180)
KEY = "console-key"
STATIC = Path(__file__).resolve().parents[2] / "router" / "localmodel_router" / "console" / "static"


@pytest.fixture(scope="module")
def tiny_runtime(tmp_path_factory: pytest.TempPathFactory, tiny_gguf: Path) -> Iterator[RuntimeServer]:
    config = {
        "name": "tiny",
        "backend": "llama",
        "context_size": 256,
        "parameters": {"model": tiny_gguf.name},
    }
    with runtime_server(tmp_path_factory.mktemp("tiny"), config, tiny_gguf.parent) as running:
        yield running


@pytest.fixture
def hanging() -> Iterator[ThreadServer]:
    yield from serve(FakeRuntime(mode="hang"))


@pytest.fixture
def router(tmp_path: Path, tiny_runtime: RuntimeServer, hanging: ThreadServer) -> Iterator[ThreadServer]:
    table = tmp_path / "table.yaml"
    models: list[dict[str, Any]] = [
        {
            "name": "tiny",
            "endpoints": [tiny_runtime.base_url.removeprefix("http://")],
            "backend": "llama",
            "device": "cpu",
        },
        {"name": "slow", "endpoints": [hanging.address]},
        degraded_entry(),
    ]
    write_table(table, models)
    with console_router(table, {KEY}, (write_gallery(tmp_path),)) as server:
        server.table_path = table  # type: ignore[attr-defined]
        server.table_models = models  # type: ignore[attr-defined]
        yield server


def get(router: ThreadServer, path: str, key: str | None = KEY, **params: str) -> httpx.Response:
    headers = {"Authorization": f"Bearer {key}"} if key else {}
    return httpx.get(router.url + path, headers=headers, params=params, timeout=10)


def models_by_name(router: ThreadServer) -> dict[str, Any]:
    response = get(router, "/console/api/models")
    assert response.status_code == 200, response.text
    return {m["name"]: m for m in response.json()["models"]}


def test_models_show_state_backend_replicas_and_the_degraded_reason(router: ThreadServer) -> None:
    data = get(router, "/console/api/models").json()
    assert data["mode"] == "local" and data["synced"] is True and data["keys"] is True
    models = {m["name"]: m for m in data["models"]}
    assert list(models) == ["broken", "slow", "tiny"]
    tiny = models["tiny"]
    assert (tiny["state"], tiny["ready"], tiny["backend"], tiny["device"]) == ("ready", True, "llama", "cpu")
    assert tiny["replicas"] == {"ready": 1, "desired": 1, "endpoints": 1}
    assert tiny["inFlight"] == 0 and tiny["conditions"] == [] and tiny["events"] == []
    broken = models["broken"]
    assert (broken["state"], broken["ready"]) == ("degraded", False)
    assert broken["replicas"] == {"ready": 0, "desired": 0, "endpoints": 0}
    degraded = next(c for c in broken["conditions"] if c["type"] == "Degraded")
    assert degraded == {
        "type": "Degraded",
        "status": "True",
        "reason": DEGRADED_REASON,
        "message": DEGRADED_MESSAGE,
    }


def test_requests_in_flight_are_counted_while_they_run(router: ThreadServer) -> None:
    body = {"model": "slow", "prompt": "hi", "max_tokens": 4}
    headers = {"Authorization": f"Bearer {KEY}"}
    errors: list[BaseException] = []

    def held() -> None:
        try:
            httpx.post(f"{router.url}/v1/completions", json=body, headers=headers, timeout=3)
        except httpx.TimeoutException:
            pass  # the fake runtime never answers; the client gives up
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    thread = threading.Thread(target=held)
    thread.start()
    poll_until(lambda: models_by_name(router)["slow"]["inFlight"] == 1, "the held request counted", 10)
    endpoint = models_by_name(router)["slow"]["endpoints"][0]
    assert endpoint["inFlight"] == 1 and endpoint["ready"] is True
    thread.join(10)
    assert errors == []
    poll_until(lambda: models_by_name(router)["slow"]["inFlight"] == 0, "the request's end counted", 10)


def test_a_model_removed_from_the_table_disappears_and_a_real_completion_still_works(
    router: ThreadServer,
) -> None:
    table: Path = router.table_path  # type: ignore[attr-defined]
    models: list[dict[str, Any]] = router.table_models  # type: ignore[attr-defined]
    write_table(table, [m for m in models if m["name"] != "broken"])
    poll_until(lambda: "broken" not in models_by_name(router), "the removed model gone", 10)
    reply = httpx.post(
        f"{router.url}/v1/completions",
        json={"model": "tiny", "prompt": "A", "max_tokens": 4},
        headers={"Authorization": f"Bearer {KEY}"},
        timeout=30,
    )
    assert reply.status_code == 200 and reply.json()["usage"]["completion_tokens"] > 0


@pytest.mark.parametrize(
    ("key", "message"), [(None, "Missing API key"), ("wrong", "Incorrect API key provided")]
)
@pytest.mark.parametrize("path", ["/console/api/models", "/console/api/galleries"])
def test_json_endpoints_need_the_api_key(
    router: ThreadServer, path: str, key: str | None, message: str
) -> None:
    response = get(router, path, key=key)
    assert response.status_code == 401
    assert response.json()["error"] == {
        "message": message,
        "type": "authentication_error",
        "param": None,
        "code": "invalid_api_key",
    }
    # The same answer as the API's for the same key.
    headers = {"Authorization": f"Bearer {key}"} if key else {}
    assert httpx.get(router.url + "/v1/models", headers=headers).json() == response.json()
    install = httpx.post(f"{router.url}/console/api/galleries/install", json={"ref": "test@tiny-chat"})
    assert install.status_code == 401


def test_the_key_also_works_as_x_api_key(router: ThreadServer) -> None:
    response = httpx.get(f"{router.url}/console/api/models", headers={"x-api-key": KEY}, timeout=10)
    assert response.status_code == 200 and len(response.json()["models"]) == 3


def test_gallery_entries_are_listed_and_searched(router: ThreadServer) -> None:
    data = get(router, "/console/api/galleries").json()
    assert data["galleries"] == ["test"] and data["total"] == 3
    assert [e["name"] for e in data["entries"]] == list(GALLERY_ENTRIES)
    chat = data["entries"][0]
    assert chat["ref"] == "test@tiny-chat" and chat["tags"] == ["llm", "gguf", "chat"]
    assert chat["license"] == "apache-2.0" and chat["installed"] is False
    assert chat["installable"] is False and "cluster mode only" in chat["reason"]
    assert data["install"] == {"enabled": False, "reason": chat["reason"]}
    by_tag = get(router, "/console/api/galleries", q="EMBEDDINGS").json()
    assert [e["name"] for e in by_tag["entries"]] == ["tiny-embed"] and by_tag["total"] == 1
    by_name = get(router, "/console/api/galleries", q="tiny").json()
    assert [e["name"] for e in by_name["entries"]] == ["tiny-chat", "tiny-embed"]
    assert get(router, "/console/api/galleries", q="no-such-thing").json()["entries"] == []


def test_install_is_refused_in_local_mode_with_the_reason(router: ThreadServer) -> None:
    response = httpx.post(
        f"{router.url}/console/api/galleries/install",
        json={"ref": "test@tiny-chat"},
        headers={"Authorization": f"Bearer {KEY}"},
    )
    assert response.status_code == 403
    assert response.json()["error"]["message"] == (
        "cannot install test@tiny-chat: installing needs automatic setup, which runs in cluster mode only"
    )
    bad = httpx.post(
        f"{router.url}/console/api/galleries/install",
        content=b"{",
        headers={"Authorization": f"Bearer {KEY}"},
    )
    assert bad.status_code == 400 and "must be JSON" in bad.json()["error"]["message"]


def test_the_page_and_its_files_are_served_with_a_strict_policy(router: ThreadServer) -> None:
    page = httpx.get(router.url + "/")
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    assert page.headers["content-security-policy"].startswith("default-src 'self';")
    assert page.headers["x-content-type-options"] == "nosniff"
    assert page.text == (STATIC / "index.html").read_text(encoding="utf-8")
    # Every script is a file of the router's (no inline script, nothing from elsewhere).
    scripts = re.findall(r"<script([^>]*)>(.*?)</script>", page.text, re.S)
    assert scripts and all('src="/console/static/' in attrs and not body.strip() for attrs, body in scripts)
    assert "http://" not in page.text and "https://" not in page.text
    for name in ("app.js", "api.js", "models.js", "chat.js", "galleries.js", "style.css"):
        response = httpx.get(f"{router.url}/console/static/{name}")
        assert response.status_code == 200, name
        assert response.headers["content-security-policy"].startswith("default-src 'self';")
        assert "innerHTML" not in response.text and "https://" not in response.text, name
    assert httpx.get(router.url + "/console/static/../app.py").status_code == 404
    assert httpx.get(router.url + "/console/static/nothing.js").status_code == 404


def test_the_openai_paths_are_unchanged(router: ThreadServer) -> None:
    assert httpx.get(router.url + "/v1/models").status_code == 401
    listed = httpx.get(router.url + "/v1/models", headers={"Authorization": f"Bearer {KEY}"}).json()
    assert {m["id"] for m in listed["data"]} == {"tiny", "slow", "broken"}
    assert httpx.get(router.url + "/healthz").json() == {"status": "ok"}


# Installing through automatic setup (the API server stood in for by a store)


@pytest.fixture
def auto_router(tmp_path: Path) -> Iterator[tuple[ThreadServer, FakeStore]]:
    table = ModelTable()
    table.upsert_model("existing", ModelSettings())
    store = FakeStore()
    allowed = write_gallery(tmp_path, "test")
    other = write_gallery(tmp_path, "other")
    settings = AutoSetupSettings(
        enabled=True, namespace="models", galleries=("test",), sources=(allowed, other), max_models=5
    )
    autosetup = AutoSetup(settings, table, store)
    app = RouterApp(table, None, RouterSettings(), ApiKeys({KEY}), autosetup=autosetup)
    server = ThreadServer(app).start()
    try:
        yield server, store
    finally:
        server.stop()


def install(server: ThreadServer, ref: str) -> httpx.Response:
    return httpx.post(
        f"{server.url}/console/api/galleries/install",
        json={"ref": ref},
        headers={"Authorization": f"Bearer {KEY}"},
        timeout=10,
    )


def test_install_through_automatic_setup_where_the_gallery_is_allowed(
    auto_router: tuple[ThreadServer, FakeStore],
) -> None:
    server, store = auto_router
    entries = {e["ref"]: e for e in get(server, "/console/api/galleries").json()["entries"]}
    assert entries["test@tiny-chat"]["installable"] is True and entries["test@tiny-chat"]["reason"] is None
    assert entries["other@tiny-chat"]["installable"] is False
    assert entries["other@tiny-chat"]["reason"] == "gallery other is not allowed by automatic setup"
    # Both galleries hold `story-writer`, but only one is allowed: the model is called by its name.
    response = install(server, "test@story-writer")
    assert response.status_code == 202, response.text
    body = response.json()
    (created,) = store.created
    assert body["model"] == created["spec"]["name"] == "story-writer"
    assert body["namespace"] == "models" and body["object"] == created["metadata"]["name"]
    assert store.events and store.events[0][1] == "AutoCreated" and "(console)" in store.events[0][2]
    refused = install(server, "other@tiny-embed")
    assert refused.status_code == 403
    assert refused.json()["error"]["code"] == "auto_setup_not_allowed"
    assert refused.json()["error"]["message"] == (
        "cannot install other@tiny-embed: gallery other is not an allowed gallery of automatic setup"
    )
    missing = install(server, "test@no-such-entry")
    assert missing.status_code == 404 and missing.json()["error"]["code"] == "entry_not_found"
    assert len(store.created) == 1


def test_the_console_reports_nothing_about_models_it_was_not_given() -> None:
    console = Console(ModelTable(), ApiKeys(set()))
    assert console.api.mode == "local" and console.api.catalog.sources == []


def test_localmodel_up_writes_each_model_s_backend_into_the_table(tmp_path: Path) -> None:
    from localmodel_router.local import LocalProcess, Supervisor, write_table
    from localmodel_runtime.config import ModelConfig

    models = [
        LocalProcess("gemma", ModelConfig(name="gemma", backend="llama"), tmp_path, port=4001),
        LocalProcess("plain", ModelConfig(name="plain"), tmp_path, port=4002),
    ]
    path = write_table(Supervisor(models, tmp_path, tmp_path, "127.0.0.1", 8080, 1.0))
    console = Console(ModelTable(), ApiKeys(set()), LocalDiscovery(path))
    snapshot = asyncio.run(console.api.details.snapshot())
    assert snapshot.details["gemma"].backend == "llama" and snapshot.details["gemma"].desired == 1
    assert snapshot.details["plain"].backend is None
    assert load_table(path)["gemma"][1] == [("127.0.0.1:4001", True)]
