"""Automatic setup through the real router process on a real API server, as the router's
ServiceAccount: a request creates the LocalModel (label, annotation, Event), once for concurrent
requests; the allowlist and the cap refuse with the reason; switched off it is a plain 404.

No operator runs here, so the created models never become ready: the requests end in the bounded
503 with Retry-After, which is what a client sees during any cold start."""

from __future__ import annotations

import concurrent.futures
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from tests.support.fixtures import Cluster
from tests.support.http_files import serve_directory
from tests.support.router_cluster import RouterProcess, router_role_fixture, start_router_fixture  # noqa: F401

pytestmark = [pytest.mark.cluster, pytest.mark.timeout(240)]
JsonDict = dict[str, Any]
AUTO = "localmodel.dev/auto-created"
TINY = "TheBloke/Tiny-GGUF/tiny.Q4_K_M.gguf"


def localmodels(cluster: Cluster, namespace: str) -> list[JsonDict]:
    items: list[JsonDict] = cluster.get("localmodels", namespace=namespace)["items"]
    return items


def events_of(cluster: Cluster, namespace: str, name: str) -> list[JsonDict]:
    return [
        e
        for e in cluster.get("events", namespace=namespace)["items"]
        if e["involvedObject"].get("name") == name and e["involvedObject"].get("kind") == "LocalModel"
    ]


def test_auto_setup_creates_once_and_keeps_its_guard_rails(
    router_role: Cluster, namespace: str, start_router: Callable[..., RouterProcess], tmp_path: Path
) -> None:
    cluster = router_role
    (tmp_path / "gallery").mkdir()
    (tmp_path / "gallery" / "index.yaml").write_text(
        """
- name: tiny-chat
  config_file: {backend: llama, parameters: {model: tiny.gguf}}
  overrides: {context_size: 256}
  files: [{filename: tiny.gguf, uri: "huggingface://o/r/tiny.gguf"}]
""",
        encoding="utf-8",
    )
    with serve_directory(tmp_path / "gallery") as base:
        router = start_router(
            "--auto-setup",
            "--auto-setup-allow-repo",
            "TheBloke/*",
            "--auto-setup-allow-gallery",
            "local",
            "--gallery",
            f"local={base}/index.yaml",
            "--auto-setup-max-models",
            "2",
            "--auto-setup-wait",
            "3",
            "--cold-start-timeout",
            "2",
            auto_setup=True,
        )

        # Three requests at once for one Hugging Face file: one LocalModel, each request held, then 503.
        with concurrent.futures.ThreadPoolExecutor(3) as pool:
            answers = list(pool.map(lambda _: router.post(TINY), range(3)))
        for answer in answers:
            assert answer.status_code == 503, answer.text
            assert answer.headers["retry-after"].isdigit()
            assert answer.json()["error"]["code"] == "model_not_ready"
        (created,) = localmodels(cluster, namespace)
        meta, spec = created["metadata"], created["spec"]
        assert meta["labels"][AUTO] == "true" and meta["annotations"][AUTO] == "true"
        assert spec["name"] == TINY and spec["backend"] == "llama"
        assert spec["download_files"] == [{"filename": "tiny.Q4_K_M.gguf", "uri": f"huggingface://{TINY}"}]
        assert spec["deployment"]["autoscaling"]["minReplicas"] == 0
        (event,) = cluster.wait(
            lambda: events_of(cluster, namespace, meta["name"]), timeout=30, what="the AutoCreated Event"
        )
        assert event["reason"] == "AutoCreated" and event["type"] == "Normal"
        assert TINY in event["message"] and "127.0.0.1" in event["message"]
        assert event["source"]["component"] == "localmodel-router"
        cluster.wait(lambda: TINY in router.models(), timeout=30, what="the new model in /v1/models")
        # Asked again (another spelling of the same file): still one LocalModel.
        assert router.post(f"huggingface://{TINY}").status_code == 503
        assert len(localmodels(cluster, namespace)) == 1

        # A gallery entry of an allowed gallery.
        assert router.post("tiny-chat").status_code == 503
        from_gallery = [m for m in localmodels(cluster, namespace) if m["spec"]["name"] == "tiny-chat"]
        assert len(from_gallery) == 1
        assert from_gallery[0]["spec"]["context_size"] == 256
        assert from_gallery[0]["metadata"]["annotations"]["localmodel.dev/auto-source"] == "local@tiny-chat"

    # The allowlist refuses a repository outside it, saying why.
    refused = router.post("someone/else-GGUF/model.gguf")
    assert refused.status_code == 403, refused.text
    assert refused.json()["error"]["code"] == "auto_setup_not_allowed"
    assert "someone/else-GGUF" in refused.json()["error"]["message"]

    # The cap (2) refuses one more.
    capped = router.post("TheBloke/Other-GGUF/other.gguf")
    assert capped.status_code == 403, capped.text
    assert capped.json()["error"]["code"] == "auto_setup_limit_reached"

    # Names that resolve to nothing stay 404 model_not_found.
    for name in ("gpt-4", "TheBloke/x"):
        missing = router.post(name)
        assert missing.status_code == 404 and missing.json()["error"]["code"] == "model_not_found"
    assert len(localmodels(cluster, namespace)) == 2


def test_auto_setup_without_its_rights_is_a_clear_500(
    router_role: Cluster, namespace: str, start_router: Callable[..., RouterProcess]
) -> None:
    """Automatic setup on, but its Role not bound in the namespace: the router's general rules do not
    allow creating LocalModels, and the client learns why."""
    router = start_router("--auto-setup", "--auto-setup-allow-repo", "TheBloke/*")
    response = router.post(TINY)
    assert response.status_code == 500, response.text
    error = response.json()["error"]
    assert error["code"] == "auto_setup_failed"
    assert "forbidden" in error["message"] and "router.autoSetup.enabled" in error["message"]
    assert localmodels(router_role, namespace) == []


def test_auto_setup_off_is_a_404(
    router_role: Cluster, namespace: str, start_router: Callable[..., RouterProcess]
) -> None:
    router = start_router()
    response = router.post(TINY)
    assert response.status_code == 404
    assert response.json()["error"]["code"] == "model_not_found"
    assert localmodels(router_role, namespace) == []
