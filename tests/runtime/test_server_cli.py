"""`localmodel-runtime` as the operator runs it: exit codes, one readable line, the termination log."""

from __future__ import annotations

from pathlib import Path

import yaml

from tests.support.runtime_server import run_cli, runtime_server, write_config


def tiny_config(**keys: object) -> dict[str, object]:
    return {"name": "tiny", "backend": "llama", "parameters": {"model": "tiny.gguf"}, **keys}


def serve(tmp_path: Path, models_dir: Path, config: object, *extra: str) -> tuple[int, str, str]:
    path = write_config(tmp_path, config)  # type: ignore[arg-type]
    log = tmp_path / "termination-log"
    result = run_cli(
        "serve",
        "--config",
        path,
        "--models-dir",
        models_dir,
        "--host",
        "127.0.0.1",
        "--port",
        "0",
        *extra,
        env={"LOCALMODEL_TERMINATION_LOG": str(log)},
    )
    return result.returncode, result.stderr, log.read_text() if log.exists() else ""


def test_bad_template_exits_2_with_one_line(tmp_path: Path, tiny_gguf: Path) -> None:
    config = tiny_config(template={"chat": "hello\n{{ if .Input }}\n  {{ .Input "})
    code, stderr, log = serve(tmp_path, tiny_gguf.parent, config)
    assert code == 2
    lines = stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("localmodel-runtime: template.chat")
    assert "line 3" in lines[0]
    assert log.startswith("InvalidSpec: template.chat")


def test_missing_backend_exits_1_and_tells_the_operator(tmp_path: Path, tiny_gguf: Path) -> None:
    code, stderr, log = serve(tmp_path, tiny_gguf.parent, tiny_config(backend="vllm"))
    assert code == 1
    assert stderr.strip().splitlines()[-1] == (
        "localmodel-runtime: backend vllm needs the `localmodel[vllm]` extra (pip install 'localmodel[vllm]')"
    )
    assert log.strip() == (
        "MissingBackend: backend vllm needs the `localmodel[vllm]` extra (pip install 'localmodel[vllm]')"
    )


def test_model_that_does_not_load_exits_1(tmp_path: Path, tiny_gguf: Path) -> None:
    config = tiny_config(parameters={"model": "missing.gguf"})
    code, stderr, log = serve(tmp_path, tiny_gguf.parent, config)
    assert code == 1
    assert stderr.strip().splitlines()[-1].startswith("localmodel-runtime: model file")
    assert log.startswith("ModelLoadError: model file") and "missing.gguf" in log and log.count("\n") == 1


def test_unknown_backend_and_bad_yaml_are_invalid_specs(tmp_path: Path, tiny_gguf: Path) -> None:
    code, stderr, log = serve(tmp_path, tiny_gguf.parent, tiny_config(backend="nosuch"))
    assert code == 2 and log.startswith("InvalidSpec: backend") and len(stderr.strip().splitlines()) == 1
    code, stderr, log = serve(tmp_path, tiny_gguf.parent, "name: [unclosed\n")
    assert code == 2 and log.startswith("InvalidSpec: ")


def test_list_file_needs_a_model_name(tmp_path: Path, tiny_gguf: Path) -> None:
    configs = [tiny_config(name="a"), tiny_config(name="b")]
    code, stderr, _ = serve(tmp_path, tiny_gguf.parent, configs)
    assert code == 2 and "--model-name" in stderr
    code, stderr, _ = serve(tmp_path, tiny_gguf.parent, configs, "--model-name", "c")
    assert code == 2 and "no model named 'c'" in stderr


def test_serves_the_named_model_of_a_list(tmp_path: Path, tiny_gguf: Path) -> None:
    configs = [tiny_config(name="a", context_size=256), tiny_config(name="b", context_size=256)]
    with runtime_server(tmp_path, configs, tiny_gguf.parent, args=["--model-name", "b"]) as server:
        assert [m.id for m in server.client().models.list().data] == ["b"]


def test_check(tmp_path: Path, tiny_gguf: Path) -> None:
    good = write_config(tmp_path, tiny_config(template={"chat": "{{.Input}}"}))
    result = run_cli("check", "--config", good, "--models-dir", tiny_gguf.parent)
    assert result.returncode == 0 and result.stdout.strip() == "tiny: ok"
    bad = tmp_path / "bad.yaml"
    bad.write_text(
        yaml.safe_dump([tiny_config(template={"chat": "{{ end }}"}), tiny_config(name="v", backend="vllm")])
    )
    result = run_cli("check", "--config", bad, "--models-dir", tiny_gguf.parent)
    assert result.returncode == 2
    assert (
        "tiny: template.chat" in result.stdout
        and "v: backend vllm needs the `localmodel[vllm]` extra" in result.stdout
    )
    vision = write_config(tmp_path, tiny_config(mmproj="mmproj.gguf"))
    result = run_cli("check", "--config", vision, "--models-dir", tiny_gguf.parent)
    assert result.returncode == 1 and "tiny: mmproj 'mmproj.gguf' is not in" in result.stdout
