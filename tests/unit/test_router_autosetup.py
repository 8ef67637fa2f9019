"""Automatic setup without an API server: resolution, manifests, guard rails, one creation per model."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest

from localmodel_router.autosetup import (
    AUTO_CREATED,
    SOURCE,
    AutoSetup,
    AutoSetupConfigError,
    AutoSetupSettings,
    Requester,
    hf_plan,
    object_name,
    parse_hf_path,
    settings_from_dict,
)
from localmodel_router.errors import RouterError
from localmodel_router.table import ModelTable
from localmodel_runtime.gallery import GallerySource
from localmodel_runtime.resource.names import is_valid_name
from tests.support.autosetup_store import FakeStore

REPO_FILE = "TheBloke/Tiny-GGUF/tiny.Q4_K_M.gguf"


def settings(**changes: Any) -> AutoSetupSettings:
    base: dict[str, Any] = {
        "enabled": True,
        "namespace": "models",
        "repositories": ("TheBloke/*",),
        "max_models": 3,
        "wait": 5.0,
    }
    return AutoSetupSettings(**{**base, **changes})


def requester(model: str = REPO_FILE) -> Requester:
    return Requester(model, "10.1.2.3")


# Resolution and manifests


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        (REPO_FILE, ("TheBloke", "Tiny-GGUF", "tiny.Q4_K_M.gguf")),
        ("huggingface://TheBloke/Tiny-GGUF/tiny.Q4_K_M.gguf", ("TheBloke", "Tiny-GGUF", "tiny.Q4_K_M.gguf")),
        ("hf://o/r/sub/dir/x.gguf", ("o", "r", "sub/dir/x.gguf")),
    ],
)
def test_hugging_face_paths_resolve(name: str, expected: tuple[str, str, str]) -> None:
    hf = parse_hf_path(name)
    assert hf is not None
    assert (hf.owner, hf.repo, hf.path) == expected
    assert hf.uri == f"huggingface://{expected[0]}/{expected[1]}/{expected[2]}"


@pytest.mark.parametrize(
    "name",
    [
        "gpt-4",
        "owner/repo",
        "owner/repo/noextension",
        "owner/repo/../etc/passwd.gguf",
        "owner/repo/x.gguf?download=1",
        "https://example.com/a/b.gguf",
        "/abs/path/x.gguf",
        "o/r/x.gguf@main",
    ],
)
def test_other_names_do_not_resolve_as_files(name: str) -> None:
    assert parse_hf_path(name) is None


def test_object_names_are_valid_stable_and_unique_per_source() -> None:
    a = object_name("tiny.Q4_K_M", "huggingface://a/r/tiny.Q4_K_M.gguf")
    b = object_name("tiny.Q4_K_M", "huggingface://b/r/tiny.Q4_K_M.gguf")
    assert a != b and a == object_name("tiny.Q4_K_M", "huggingface://a/r/tiny.Q4_K_M.gguf")
    assert a.startswith("tiny-q4-k-m-")
    long = object_name("X" * 200, "s")
    for name in (a, b, long, object_name("7b-model", "s"), object_name("---", "s")):
        assert is_valid_name(name), name


def test_hf_manifest() -> None:
    hf = parse_hf_path("huggingface://" + REPO_FILE)
    assert hf is not None
    plan = hf_plan("huggingface://" + REPO_FILE, hf, "models")
    manifest = plan.manifest
    assert manifest["apiVersion"] == "localmodel.dev/v1alpha1" and manifest["kind"] == "LocalModel"
    meta = manifest["metadata"]
    assert meta["namespace"] == "models" and is_valid_name(meta["name"])
    assert meta["labels"][AUTO_CREATED] == "true" and meta["annotations"][AUTO_CREATED] == "true"
    assert meta["annotations"][SOURCE] == "huggingface://" + REPO_FILE
    spec = manifest["spec"]
    assert spec["name"] == "huggingface://" + REPO_FILE  # the name the client asked for
    assert spec["backend"] == "llama"
    assert spec["parameters"] == {"model": "tiny.Q4_K_M.gguf"}
    assert spec["download_files"] == [{"filename": "tiny.Q4_K_M.gguf", "uri": "huggingface://" + REPO_FILE}]
    assert spec["deployment"]["autoscaling"]["minReplicas"] == 0


def test_hf_manifest_is_a_valid_model_spec() -> None:
    from localmodel_runtime.config import LocalModelSpec

    hf = parse_hf_path(REPO_FILE)
    assert hf is not None
    LocalModelSpec.model_validate(hf_plan(REPO_FILE, hf, "models").manifest["spec"])


def test_files_no_backend_serves_unattended_stay_404_with_the_reason() -> None:
    hf = parse_hf_path("TheBloke/Old-GGML/old.ggmlv3.q2_K.bin")
    assert hf is not None
    with pytest.raises(RouterError) as info:
        hf_plan("TheBloke/Old-GGML/old.ggmlv3.q2_K.bin", hf, "models")
    assert info.value.status == 404 and info.value.code == "model_not_found"
    assert "llama-ggml" in info.value.message and "GGUF" in info.value.message


# Settings


def test_settings_are_off_by_default_and_read_from_camel_case() -> None:
    assert AutoSetupSettings().enabled is False
    assert settings_from_dict({}).enabled is False
    loaded = settings_from_dict(
        {
            "enabled": True,
            "namespace": "models",
            "allowRepositories": ["TheBloke/*"],
            "allowGalleries": ["localai"],
            "maxModels": 2,
            "waitSeconds": 30,
            "galleries": [{"name": "localai", "url": "file:///index.yaml"}],
        }
    )
    assert loaded == AutoSetupSettings(
        enabled=True,
        namespace="models",
        repositories=("TheBloke/*",),
        galleries=("localai",),
        max_models=2,
        wait=30.0,
        sources=(GallerySource("localai", "file:///index.yaml"),),
    )


@pytest.mark.parametrize(
    ("data", "key"),
    [
        ({"maxModels": -1}, "maxModels"),
        ({"waitSeconds": 0}, "waitSeconds"),
        ({"allowRepositories": "TheBloke/*"}, "allowRepositories"),
        ({"galleries": [{"name": "x"}]}, "galleries[0]"),
        ({"allowRepos": []}, "allowRepos"),
    ],
)
def test_bad_settings_name_the_key(data: dict[str, Any], key: str) -> None:
    with pytest.raises(AutoSetupConfigError, match=key.replace("[", r"\[").replace("]", r"\]")):
        settings_from_dict(data)


# Guard rails and the one creation


async def test_unresolvable_names_stay_404_and_create_nothing() -> None:
    store = FakeStore()
    setup = AutoSetup(settings(), ModelTable(), store)
    for name in ("gpt-4", "owner/repo", "TheBloke/x"):
        with pytest.raises(RouterError) as info:
            await setup.serve(requester(name))
        assert (info.value.status, info.value.code) == (404, "model_not_found")
    assert store.created == []


async def test_allowlist_refuses_other_repositories() -> None:
    store = FakeStore()
    setup = AutoSetup(settings(repositories=("TheBloke/*", "Qwen/Qwen2.5-*-GGUF")), ModelTable(), store)
    with pytest.raises(RouterError) as info:
        await setup.serve(requester("evil/repo/model.gguf"))
    assert (info.value.status, info.value.code) == (403, "auto_setup_not_allowed")
    assert "'evil/repo'" in info.value.message and "allowed repository" in info.value.message
    assert store.created == []


async def test_cap_refuses_one_more() -> None:
    table = ModelTable()
    store = FakeStore(table, ready="10.0.0.1:8080")
    setup = AutoSetup(settings(max_models=2), table, store)
    for i in range(2):
        await setup.serve(requester(f"TheBloke/M{i}-GGUF/m{i}.gguf"))
    with pytest.raises(RouterError) as info:
        await setup.serve(requester("TheBloke/M9-GGUF/m9.gguf"))
    assert (info.value.status, info.value.code) == (403, "auto_setup_limit_reached")
    assert "the maximum is 2" in info.value.message
    assert len(store.created) == 2


async def test_concurrent_requests_create_once_and_all_get_the_model() -> None:
    table = ModelTable()
    store = FakeStore(table, ready="10.0.0.1:8080")
    store.gate.clear()  # hold the creation until every request has joined it
    setup = AutoSetup(settings(), table, store)
    tasks = [asyncio.create_task(setup.serve(Requester(REPO_FILE, f"10.0.0.{i}"))) for i in range(5)]
    await asyncio.sleep(0)
    store.gate.set()
    entries = await asyncio.gather(*tasks)
    assert {e.name for e in entries} == {REPO_FILE}
    assert all(e.ready_endpoints for e in entries)
    assert len(store.created) == 1
    ((name, reason, message),) = store.events
    assert name == store.created[0]["metadata"]["name"] and reason == "AutoCreated"
    assert REPO_FILE in message and "10.0.0.0" in message


async def test_no_ready_endpoint_within_the_bound_is_503_with_retry_after() -> None:
    store = FakeStore()  # created, but nothing ever becomes ready
    setup = AutoSetup(settings(wait=0.05), ModelTable(), store, retry_after=7)
    with pytest.raises(RouterError) as info:
        await setup.serve(requester())
    assert (info.value.status, info.value.code) == (503, "model_not_ready")
    assert (b"retry-after", b"7") in info.value.headers
    assert "being set up" in info.value.message
    assert len(store.created) == 1


async def test_another_spelling_of_the_same_file_joins_the_existing_model() -> None:
    table = ModelTable()
    store = FakeStore(table, ready="10.0.0.1:8080")
    setup = AutoSetup(settings(), table, store)
    first = await setup.serve(requester(REPO_FILE))
    second = await setup.serve(requester("huggingface://" + REPO_FILE))
    assert second is first and len(store.created) == 1


async def test_a_foreign_object_with_the_planned_name_is_a_conflict() -> None:
    store = FakeStore()
    setup = AutoSetup(settings(), ModelTable(), store)
    plan = await setup.plan(REPO_FILE)
    assert plan is not None
    store.objects[("models", plan.object_name)] = {"metadata": {"name": plan.object_name}, "spec": {}}
    with pytest.raises(RouterError) as info:
        await setup.serve(requester())
    assert info.value.status == 409 and store.created == []


# Galleries


def write_gallery(tmp_path: Path) -> GallerySource:
    (tmp_path / "index.yaml").write_text(
        """
- name: tiny-chat
  config_file:
    backend: llama
    context_size: 256
    parameters: {model: tiny.gguf}
  overrides:
    parameters: {temperature: 0.2}
  files:
    - filename: tiny.gguf
      uri: "huggingface://o/r/tiny.gguf"
      sha256: "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"
""",
        encoding="utf-8",
    )
    return GallerySource("local", f"file://{tmp_path / 'index.yaml'}")


async def test_gallery_entry_of_an_allowed_gallery_is_created(tmp_path: Path) -> None:
    table = ModelTable()
    store = FakeStore(table, ready="10.0.0.1:8080")
    source = write_gallery(tmp_path)
    setup = AutoSetup(settings(repositories=(), galleries=("local",), sources=(source,)), table, store)
    entry = await setup.serve(requester("tiny-chat"))
    assert entry.name == "tiny-chat"
    (obj,) = store.created
    assert obj["spec"]["name"] == "tiny-chat"
    assert obj["spec"]["parameters"]["temperature"] == 0.2
    assert obj["spec"]["download_files"][0]["uri"] == "huggingface://o/r/tiny.gguf"
    assert obj["metadata"]["annotations"][SOURCE] == "local@tiny-chat"
    assert obj["metadata"]["labels"][AUTO_CREATED] == "true"
    # gallery@name names the same entry: the same model, not a second one
    await setup.serve(requester("local@tiny-chat"))
    assert len(store.created) == 1


async def test_a_gallery_entry_carrying_deployment_creates_nothing(tmp_path: Path) -> None:
    source = write_gallery(tmp_path)
    index = tmp_path / "index.yaml"
    index.write_text(
        index.read_text(encoding="utf-8").replace(
            "    parameters: {temperature: 0.2}\n",
            "    parameters: {temperature: 0.2}\n    deployment: {image: evil.example/x:1}\n",
        ),
        encoding="utf-8",
    )
    store = FakeStore()
    setup = AutoSetup(settings(repositories=(), galleries=("local",), sources=(source,)), ModelTable(), store)
    with pytest.raises(RouterError) as info:
        await setup.serve(requester("tiny-chat"))
    assert (info.value.status, info.value.code) == (502, "auto_setup_failed")
    assert "may not set `deployment`" in info.value.message
    assert store.created == []


async def test_gallery_not_allowed_is_refused_and_unknown_entries_are_404(tmp_path: Path) -> None:
    store = FakeStore()
    source = write_gallery(tmp_path)
    setup = AutoSetup(settings(galleries=("other",), sources=(source,)), ModelTable(), store)
    with pytest.raises(RouterError) as info:
        await setup.serve(requester("tiny-chat"))
    assert (info.value.status, info.value.code) == (403, "auto_setup_not_allowed")
    assert "gallery local" in info.value.message
    with pytest.raises(RouterError) as info:
        await setup.serve(requester("no-such-entry"))
    assert info.value.code == "model_not_found"
    assert store.created == []


# Command line


def test_flags_override_the_file_and_the_namespace_defaults_to_the_watched_one(tmp_path: Path) -> None:
    from localmodel_router.main import _check_auto_setup, auto_setup_settings, build_parser

    config = tmp_path / "auto.yaml"
    config.write_text("enabled: false\nallowRepositories: ['a/*']\nmaxModels: 4\n", encoding="utf-8")
    args = build_parser().parse_args(
        ["--auto-setup-config", str(config), "--auto-setup", "--auto-setup-max-models", "1"]
    )
    loaded = auto_setup_settings(args)
    assert (loaded.enabled, loaded.repositories, loaded.max_models) == (True, ("a/*",), 1)
    assert _check_auto_setup(loaded, ["models"]).namespace == "models"


@pytest.mark.parametrize(
    ("argv", "namespaces", "message"),
    [
        (["--auto-setup"], ["models"], "allowlist"),
        (["--auto-setup", "--auto-setup-allow-repo", "a/*"], None, "--auto-setup-namespace"),
        (
            ["--auto-setup", "--auto-setup-allow-repo", "a/*", "--auto-setup-namespace", "x"],
            ["models"],
            "does not watch",
        ),
    ],
)
def test_unusable_auto_setup_flags_are_usage_errors(
    argv: list[str], namespaces: list[str] | None, message: str
) -> None:
    from localmodel_router.main import UsageError, _check_auto_setup, auto_setup_settings, build_parser

    with pytest.raises(UsageError, match=message):
        _check_auto_setup(auto_setup_settings(build_parser().parse_args(argv)), namespaces)
