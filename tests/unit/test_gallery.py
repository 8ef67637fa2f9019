"""Galleries in LocalAI's index format, served over HTTP by the test itself."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import yaml

from localmodel_operator.cli import main as cli_main
from localmodel_operator.crd import strict_json_schema
from localmodel_runtime.gallery import (
    GalleryError,
    GallerySource,
    find_entry,
    install_config,
    install_manifest,
    load_index,
    resolve_url,
)
from localmodel_runtime.merge import deep_merge
from tests.support.http_files import serve_directory

CHATML = """name: chatml
config_file: |
  backend: llama
  context_size: 4096
  f16: yes
  stopwords:
  - <|im_end|>
  - no
  template:
    chat_message: chatml-message
    chat: chatml-block
  parameters:
    top_k: 0.9
prompt_templates:
- name: chatml-message
  content: "<|im_start|>{{.RoleName}}\\n{{.Content}}<|im_end|>"
- name: chatml-block
  content: "{{.Input}}\\n<|im_start|>assistant\\n"
files:
- filename: shared-tokenizer.json
  uri: https://example.invalid/tokenizer.json
"""


@pytest.fixture
def gallery(tmp_path: Path) -> Iterator[tuple[str, str]]:
    weights = b"GGUF fake weights"
    digest = hashlib.sha256(weights).hexdigest()
    (tmp_path / "chatml.yaml").write_text(CHATML)
    (tmp_path / "tiny.gguf").write_bytes(weights)
    with serve_directory(tmp_path) as base:
        index = f"""
- &qwen
  name: qwen-tiny
  url: chatml.yaml
  description: A tiny Qwen
  tags: [llm, gguf, chat]
  overrides:
    parameters:
      model: tiny.gguf
      temperature: 0.2
    template:
      chat: "override {{{{.Input}}}}"
  files:
  - filename: tiny.gguf
    sha256: {digest}
    uri: {base}/tiny.gguf
- !!merge <<: *qwen
  name: qwen-tiny-hot
  overrides:
    parameters:
      model: tiny.gguf
      temperature: 1.5
- name: inline-embedder
  description: Embeddings with an inline config
  config_file:
    backend: transformers
    embeddings: true
    parameters: {{model: sentence-transformers/all-MiniLM-L6-v2}}
"""
        (tmp_path / "index.yaml").write_text(index)
        yield f"{base}/index.yaml", digest


def entries(url: str) -> list[Any]:
    return load_index(GallerySource("test", url))


def test_index_entries_with_anchors_and_merge_keys(gallery: tuple[str, str]) -> None:
    listed = entries(gallery[0])
    assert [e.ref for e in listed] == ["test@qwen-tiny", "test@qwen-tiny-hot", "test@inline-embedder"]
    assert listed[1].tags == ["llm", "gguf", "chat"]


def test_install_merges_overrides_files_and_templates(gallery: tuple[str, str]) -> None:
    url, digest = gallery
    config, notes = install_config(find_entry(entries(url), "qwen-tiny"))
    assert config.name == "qwen-tiny"
    assert config.backend == "llama" and config.context_size == 4096
    assert config.f16 is True  # yaml.v3 rules inside config_file
    assert config.stopwords == ["<|im_end|>", "no"]
    assert config.parameters is not None
    assert (config.parameters.model, config.parameters.temperature, config.parameters.top_k) == (
        "tiny.gguf",
        0.2,
        0,
    )
    assert config.template is not None
    assert config.template.chat == "override {{.Input}}"  # the entry's override wins over the base
    assert config.template.chat_message == "<|im_start|>{{.RoleName}}\n{{.Content}}<|im_end|>"
    files = [(f.filename, f.sha256) for f in config.download_files or []]
    assert files == [("shared-tokenizer.json", None), ("tiny.gguf", digest)]
    assert any("chatml-message" in n for n in notes)


def test_merged_entry_and_request_overrides(gallery: tuple[str, str]) -> None:
    hot = find_entry(entries(gallery[0]), "test@qwen-tiny-hot")
    config, _ = install_config(hot, name="my-qwen", overrides={"parameters": {"top_p": 0.5}})
    assert config.name == "my-qwen"
    assert config.parameters is not None
    assert (config.parameters.temperature, config.parameters.top_p) == (1.5, 0.5)
    # The merged entry replaced `overrides` wholesale (YAML merge is shallow), so the base template stays.
    assert config.template is not None and config.template.chat.startswith("{{.Input}}")


def test_deep_merge_replaces_lists_and_scalars_and_merges_maps() -> None:
    merged = deep_merge({"a": {"b": 1, "c": [1, 2]}, "d": 1}, {"a": {"c": [3]}, "d": {"x": 1}})
    assert merged == {"a": {"b": 1, "c": [3]}, "d": {"x": 1}}


def test_cli_list_and_install(
    gallery: tuple[str, str],
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
) -> None:
    monkeypatch.setenv("LOCALMODEL_GALLERIES", json.dumps([{"name": "test", "url": gallery[0]}]))
    assert cli_main(["gallery", "list", "embeddings"]) == 0
    out = capsys.readouterr().out
    assert "test@inline-embedder" in out and "qwen" not in out
    target = tmp_path / "lm.yaml"
    assert cli_main(["gallery", "install", "qwen-tiny", "-n", "models", "-o", str(target)]) == 0
    (manifest,) = yaml.safe_load_all(target.read_text())
    jsonschema.validate(manifest, strict_json_schema())
    assert manifest["metadata"] == {
        "name": "qwen-tiny",
        "namespace": "models",
        "annotations": {"localmodel.dev/gallery": "test@qwen-tiny"},
    }
    assert manifest["spec"]["download_files"][1]["sha256"] == gallery[1]


def test_cli_errors_are_one_line(
    gallery: tuple[str, str], capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("LOCALMODEL_GALLERIES", json.dumps([{"name": "test", "url": gallery[0]}]))
    assert cli_main(["gallery", "install", "nope"]) == 2
    assert capsys.readouterr().err.strip() == "localmodel: no gallery entry named 'nope'"
    monkeypatch.setenv("LOCALMODEL_GALLERIES", json.dumps([{"name": "gone", "url": gallery[0] + ".missing"}]))
    assert cli_main(["gallery", "list"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("localmodel: ") and "404" in err and "\n" not in err
    monkeypatch.delenv("LOCALMODEL_GALLERIES")
    assert cli_main(["gallery", "list"]) == 2
    assert "no galleries configured" in capsys.readouterr().err


def test_a_bad_entry_config_names_the_entry(tmp_path: Path) -> None:
    (tmp_path / "index.yaml").write_text("- name: broken\n  config_file: {threads: lots}\n")
    with pytest.raises(GalleryError) as info:
        install_config(find_entry(entries(f"file://{tmp_path}/index.yaml"), "broken"))
    assert "test@broken" in str(info.value) and "threads" in str(info.value)


@pytest.mark.parametrize(
    "entry",
    [
        "- name: pod\n  config_file: {backend: llama, deployment: {image: evil.example/x:1}}\n",
        "- name: pod\n  config_file: {backend: llama}\n  overrides:\n"
        "    deployment: {env: [{name: LD_PRELOAD, value: /models/x.so}], serviceAccountName: admin}\n",
    ],
)
def test_a_gallery_entry_carrying_deployment_is_refused(tmp_path: Path, entry: str) -> None:
    (tmp_path / "index.yaml").write_text(entry)
    found = find_entry(entries(f"file://{tmp_path}/index.yaml"), "pod")
    with pytest.raises(GalleryError) as info:
        install_manifest(found, "models")
    assert "test@pod: a gallery entry may not set `deployment`" in str(info.value)


def test_github_urls() -> None:
    assert resolve_url("github:mudler/LocalAI/gallery/index.yaml@master") == (
        "https://raw.githubusercontent.com/mudler/LocalAI/master/gallery/index.yaml"
    )


def test_entry_with_a_wrong_sha256_installs_but_fails_to_fetch_clearly(
    gallery: tuple[str, str], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from localmodel_runtime.fetch.fetcher import fetch_command

    url, digest = gallery
    wrong = "0" * 64
    index = yaml.safe_load(Path(tmp_path / "index.yaml").read_text())
    index[0]["files"][0]["sha256"] = wrong
    (tmp_path / "wrong.yaml").write_text(yaml.safe_dump(index))
    config, _ = install_config(
        find_entry(load_index(GallerySource("w", url.replace("index", "wrong"))), "qwen-tiny")
    )
    model_yaml = tmp_path / "model.yaml"
    data = config.model_dump(mode="json", exclude_none=True)
    # Only the entry's own file: the base config's tokenizer points at a host that does not exist.
    data["download_files"] = [f for f in data["download_files"] if f["filename"] == "tiny.gguf"]
    model_yaml.write_text(yaml.safe_dump(data))
    models = tmp_path / "models"
    models.mkdir()

    assert fetch_command(model_yaml, models) != 0
    (line,) = capsys.readouterr().err.strip().splitlines()[-1:]
    assert "tiny.gguf" in line and wrong in line and digest in line
    # Neither the file nor a partial download is left (the lock file stays, see fetch.py).
    assert not (models / "tiny.gguf").exists() and not (models / "tiny.gguf.partial").exists()
