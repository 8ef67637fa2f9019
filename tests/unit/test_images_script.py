"""scripts/images.sh on bad input: each failure is one readable line, before anything is built."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

from tests.support.net import free_port

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "scripts" / "images.sh"


def _run(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(SCRIPT), *args], env=env, capture_output=True, text=True, timeout=60, check=False, cwd=ROOT
    )


def test_no_builder_is_one_line_naming_docker_podman_and_buildah(tmp_path: Path) -> None:
    # A PATH with the shell tools the script uses and none of the three builders.
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    for tool in ("bash", "sed", "head", "dirname", "cut", "grep", "tail", "date", "mkdir", "cat"):
        found = shutil.which(tool)
        assert found, tool
        (bin_dir / tool).symlink_to(found)
    env = {"PATH": str(bin_dir), "HOME": str(tmp_path)}
    result = _run("build", "operator", env=env)
    assert result.returncode != 0
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert all(name in lines[0] for name in ("docker", "podman", "buildah")), lines[0]


def test_unreachable_registry_is_one_line_with_its_address() -> None:
    address = f"127.0.0.1:{free_port()}"  # nothing listens there
    result = _run("push", "operator", env={**os.environ, "REGISTRY": f"{address}/localmodel"})
    assert result.returncode != 0
    assert result.stderr.strip() == f"images: registry {address} unreachable (http://{address}/v2/)"


def test_unknown_target_names_the_known_ones() -> None:
    result = _run("build", "no-such-target", env=dict(os.environ))
    assert result.returncode == 2
    assert "unknown target 'no-such-target'" in result.stderr and "llama-cpp-cpu" in result.stderr


def test_list_names_the_images_the_operator_table_expects() -> None:
    env = {**os.environ, "REGISTRY": "r.example/lm", "TAG": "1.2.3"}
    result = _run("list", "operator", "llama-cpp-cpu", env=env)
    assert result.stdout.split() == [
        "r.example/lm/operator:1.2.3",
        "r.example/lm/runtime:1.2.3-llama-cpp-cpu",
    ]
