"""`localmodel up`: the README's first command, as a user runs it (real processes, real ports).

A models directory with two LocalAI YAML files (one beside its GGUF; one listing two models fetched over
HTTP by the supervisor before it starts, through `download_files` and through a URI as
`parameters.model`) → one runtime process per model plus the router → the LocalAI docs' curl requests
answered through the router → SIGTERM stops every child.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from hashlib import sha256
from pathlib import Path

import httpx
import pytest

from tests.support.http_files import serve_directory
from tests.support.net import free_port

pytestmark = [pytest.mark.slow, pytest.mark.timeout(300)]
LOCALMODEL = Path(sys.executable).parent / "localmodel"


def _children(pid: int) -> set[int]:
    """Every descendant of `pid` (from /proc), to check that nothing outlives the supervisor."""
    found: set[int] = set()
    frontier = [pid]
    while frontier:
        parent = frontier.pop()
        for entry in Path("/proc").iterdir():
            if not entry.name.isdigit():
                continue
            try:
                stat = (entry / "stat").read_text()
            except OSError:
                continue
            if int(stat.rsplit(")", 1)[1].split()[1]) == parent:
                found.add(int(entry.name))
                frontier.append(int(entry.name))
    return found


@pytest.fixture
def models_dir(tmp_path: Path, tiny_gguf: Path) -> Iterator[Path]:
    directory = tmp_path / "models"
    directory.mkdir()
    shutil.copyfile(tiny_gguf, directory / "tiny.gguf")
    (directory / "tiny.yaml").write_text(
        "name: tiny\nbackend: llama\ncontext_size: 256\nparameters:\n  model: tiny.gguf\n"
        "template:\n  completion: '{{.Input}}'\n  edit: '{{.Instruction}}: {{.Input}}'\n"
        "  chat_message: '{{.RoleName}}: {{.Content}}'\n  chat: '{{.Input}}\nassistant:'\n",
        encoding="utf-8",
    )
    served = tmp_path / "served"
    served.mkdir()
    shutil.copyfile(tiny_gguf, served / "remote.gguf")
    digest = sha256((served / "remote.gguf").read_bytes()).hexdigest()
    with serve_directory(served) as base:
        # A list file, as LocalAI allows; its model file is fetched by `localmodel up` first.
        (directory / "more.yaml").write_text(
            "- name: fetched\n  context_size: 256\n  parameters: {model: fetched.gguf}\n"
            "  download_files:\n"
            f"  - {{filename: fetched.gguf, uri: '{base}/remote.gguf', sha256: {digest}}}\n"
            # LocalAI's other form: the URI as the model itself, loaded from the file it is fetched to.
            f"- name: by-uri\n  context_size: 256\n  parameters: {{model: '{base}/remote.gguf'}}\n",
            encoding="utf-8",
        )
        yield directory


def test_up_serves_every_model_through_one_router_and_stops_cleanly(models_dir: Path, tmp_path: Path) -> None:
    port = free_port()
    log = (tmp_path / "up.log").open("wb")
    env = {**os.environ, "LOCALMODEL_HOME": str(tmp_path / "home")}
    proc = subprocess.Popen(
        [str(LOCALMODEL), "up", str(models_dir), "--port", str(port), "--state-dir", str(tmp_path / "state")],
        stdout=log,
        stderr=subprocess.STDOUT,
        env=env,
    )
    base = f"http://127.0.0.1:{port}/v1"
    try:
        # `localmodel up` says "serving" once the router is up, so that line is what this waits for (the
        # router can answer a moment before the line is written).
        deadline = time.monotonic() + 180
        while "serving" not in (tmp_path / "up.log").read_text():
            assert proc.poll() is None, (tmp_path / "up.log").read_text()
            assert time.monotonic() < deadline, (tmp_path / "up.log").read_text()
            time.sleep(0.2)
        listed = {m["id"]: m for m in httpx.get(f"{base}/models").json()["data"]}
        assert set(listed) == {"tiny", "fetched", "by-uri"} and all(m["ready"] for m in listed.values())
        assert (models_dir / "fetched.gguf").is_file() and (models_dir / "remote.gguf").is_file()

        # The LocalAI docs' requests, but for the model name.
        completion = httpx.post(
            f"{base}/completions", json={"model": "tiny", "prompt": "A long time ago", "max_tokens": 8}
        )
        assert completion.status_code == 200 and completion.json()["usage"]["completion_tokens"] > 0
        chat = httpx.post(
            f"{base}/chat/completions",
            json={
                "model": "fetched",
                "messages": [{"role": "user", "content": "How are you?"}],
                "max_tokens": 8,
            },
        )
        assert chat.status_code == 200 and chat.json()["choices"][0]["message"]["role"] == "assistant"
        edit = httpx.post(
            f"{base}/edits",
            json={"model": "tiny", "instruction": "rephrase", "input": "Black cat", "max_tokens": 8},
        )
        assert edit.status_code == 200 and edit.json()["object"] == "edit"
        by_uri = httpx.post(
            f"{base}/completions", json={"model": "by-uri", "prompt": "Once", "max_tokens": 4}
        )
        assert by_uri.status_code == 200 and by_uri.json()["usage"]["completion_tokens"] > 0
        missing = httpx.post(f"{base}/completions", json={"model": "nope", "prompt": "x"})
        assert missing.status_code == 404 and missing.json()["error"]["code"] == "model_not_found"

        children = _children(proc.pid)
        assert len(children) >= 4  # three runtimes and the router
    finally:
        proc.send_signal(signal.SIGTERM)
        code = proc.wait(60)
        log.close()
    assert code == 0, (tmp_path / "up.log").read_text()
    alive = [pid for pid in children if Path(f"/proc/{pid}").exists()]
    assert not alive, f"children left running: {alive}"
    with pytest.raises(httpx.ConnectError):
        httpx.get(f"{base}/models", timeout=2)


def test_up_with_a_broken_directory_is_one_line_and_non_zero(tmp_path: Path) -> None:
    (tmp_path / "bad.yaml").write_text("name: x\ncontext_size: [1\n", encoding="utf-8")
    result = subprocess.run(
        [str(LOCALMODEL), "up", str(tmp_path), "--port", str(free_port())],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode != 0
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("localmodel:") and "bad.yaml" in lines[0], result.stderr
    assert "invalid YAML at line 3" in lines[0]
