"""`localmodel import`: LocalAI files → LocalModel manifests."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import yaml

from localmodel_operator.cli import main as cli_main
from localmodel_operator.crd import strict_json_schema
from localmodel_runtime.resource.names import is_valid_name, kubernetes_name, unique_name

ROOT = Path(__file__).resolve().parents[2]
EXAMPLES = ROOT / "examples"


def run_import(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, list[dict[str, Any]], str]:
    code = cli_main(["import", *args])
    out, err = capsys.readouterr()
    return code, [d for d in yaml.safe_load_all(out) if d], err


def crd_schema() -> dict[str, Any]:
    return strict_json_schema()


@pytest.mark.parametrize(
    ("model", "expected"),
    [
        ("gpt-4", "gpt-4"),
        ("ggml-koala-7b-model-q4_0-r2.bin", "ggml-koala-7b-model-q4-0-r2"),
        ("Llama-3.2-1B-Instruct.Q4_K_M.gguf", "llama-3-2-1b-instruct-q4-k-m"),
        (
            "TheBloke/WizardLM-13B-V1.2-GGML/wizardlm-13b-v1.2.ggmlv3.q2_K.bin",
            "wizardlm-13b-v1-2-ggmlv3-q2-k",
        ),
        ("facebook/opt-125m", "facebook-opt-125m"),
        ("7b-chat", "m-7b-chat"),
        ("UPPER_case", "upper-case"),
    ],
)
def test_kubernetes_names(model: str, expected: str) -> None:
    assert kubernetes_name(model) == expected
    assert is_valid_name(expected)


def test_long_names_are_cut_stably_and_collisions_numbered() -> None:
    long = "a" * 80 + ".gguf"
    name = kubernetes_name(long)
    assert is_valid_name(name) and name == kubernetes_name(long) and name != kubernetes_name("b" + long)
    taken: set[str] = set()
    assert [unique_name("x", taken) for _ in range(3)] == ["x", "x-2", "x-3"]


def test_imports_every_example_into_manifests_the_crd_accepts(capsys: pytest.CaptureFixture[str]) -> None:
    code, docs, err = run_import(capsys, str(EXAMPLES / "localai"), "-n", "models")
    assert code == 0
    names = {d["spec"]["name"] for d in docs}
    assert names == {
        "koala-7b",
        "orca",
        "rwkv",
        "exllama",
        "exllama2",
        "vllm",
        "transformers",
        "starling-openvino",
        "gemma-3-270m",
    }
    for doc in docs:
        assert doc["metadata"]["namespace"] == "models"
        jsonschema.validate(doc, crd_schema())
    assert "'cutwords' is kept but not served" in err and "rwkv.yaml" in err


def test_committed_localmodel_examples_match_the_importer(capsys: pytest.CaptureFixture[str]) -> None:
    for source in sorted((EXAMPLES / "localai").glob("*.yaml")):
        code, (imported,), _ = run_import(capsys, str(source))
        assert code == 0
        (committed,) = yaml.safe_load_all((EXAMPLES / "localmodels" / source.name).read_text())
        jsonschema.validate(committed, crd_schema())
        committed["spec"].pop("deployment", None)
        assert committed["spec"] == imported["spec"], source.name
        assert committed["metadata"]["name"] == imported["metadata"]["name"]


def test_template_files_are_inlined(capsys: pytest.CaptureFixture[str]) -> None:
    code, (doc,), err = run_import(capsys, str(EXAMPLES / "localai" / "rwkv.yaml"))
    assert code == 0
    template = doc["spec"]["template"]
    assert template["chat"].startswith("The following is a verbose detailed conversation")
    assert "{{.Input}}" in template["chat"] and template["completion"].startswith("Complete the following")
    assert "inlined template rwkv_chat.tmpl into template.chat" in err


def test_model_file_tmpl_is_the_default_template(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "m.yaml").write_text(
        "name: m\nparameters: {model: weights.gguf}\ntemplate: {chat: 'C {{.Input}}'}\n"
    )
    (tmp_path / "weights.gguf.tmpl").write_text("D {{.Input}}")
    code, (doc,), _ = run_import(capsys, str(tmp_path / "m.yaml"))
    assert code == 0
    assert doc["spec"]["template"] == {
        "chat": "C {{.Input}}",
        "completion": "D {{.Input}}",
        "edit": "D {{.Input}}",
        "function": "D {{.Input}}",
    }


def test_list_files_and_invalid_names(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "models.yaml").write_text(
        "- name: Koala.7B.bin\n  parameters: {model: k.bin}\n- name: TheBloke/x/y.gguf\n  backend: llama\n"
    )
    code, docs, err = run_import(capsys, str(tmp_path / "models.yaml"))
    assert code == 0
    assert [(d["metadata"]["name"], d["spec"]["name"]) for d in docs] == [
        ("koala-7b", "Koala.7B.bin"),
        ("y", "TheBloke/x/y.gguf"),
    ]
    assert "spec.name keeps 'Koala.7B.bin'" in err


def test_yaml_12_values_survive_the_manifest(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "m.yaml").write_text(
        "name: m\nbackend: llama\nstopwords: [no, y, 'on', '1.0']\nmain_gpu: 0\n"
    )
    code, (doc,), _ = run_import(capsys, str(tmp_path / "m.yaml"))
    assert code == 0
    # Read back with YAML 1.1 rules (as kubectl does): the strings must still be strings.
    assert doc["spec"]["stopwords"] == ["no", "y", "on", "1.0"]
    assert doc["spec"]["main_gpu"] == "0"


def test_a_broken_file_is_one_line_and_the_others_still_convert(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / "a-good.yaml").write_text("name: good\nbackend: llama\n")
    (tmp_path / "b-bad.yaml").write_text("name: bad\nthreads: lots\n")
    (tmp_path / ".hidden.yaml").write_text("{{ not yaml")
    out = tmp_path / "out" / "models.yaml"
    code = cli_main(["import", str(tmp_path), "-o", str(out)])
    err = capsys.readouterr().err
    assert code == 1
    assert [d["spec"]["name"] for d in yaml.safe_load_all(out.read_text())] == ["good"]
    errors = [line for line in err.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and "b-bad.yaml" in errors[0] and "threads" in errors[0]


def test_cli_user_errors_never_print_a_traceback(tmp_path: Path) -> None:
    for args in (["import", str(tmp_path / "missing.yaml")], ["import", str(tmp_path)], ["frobnicate"]):
        proc = subprocess.run(
            [sys.executable, "-m", "localmodel_operator.cli", *args],
            capture_output=True,
            text=True,
            check=False,
        )
        assert proc.returncode != 0
        assert "Traceback" not in proc.stderr
        assert proc.stderr.strip()


def test_local_mode_default_model_is_the_gemma_example() -> None:
    packaged = ROOT / "router" / "localmodel_router" / "default-model.yaml"
    assert packaged.read_text() == (EXAMPLES / "localai" / "gemma-3-270m.yaml").read_text()
