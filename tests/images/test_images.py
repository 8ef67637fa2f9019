"""The images as users get them: built by `scripts/images.sh`, pushed to a real registry, run by podman.

One module-scoped build pushes the operator/router image and the llama-cpp-cpu runtime image to the
CNCF distribution registry on 127.0.0.1 (`make images REGISTRY=127.0.0.1:PORT/localmodel PUSH=1`, as
a user with a private registry runs it). The runtime image is then pulled back from that registry
and serves Gemma 3 270M as user 65532 with a read-only root filesystem, answered through the
official `openai` client. Needs podman (scripts/install-container-tools.sh) and the registry binary
(scripts/build-node.sh); `make test-images` prepares both.
"""

from __future__ import annotations

import os
import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import openai
import pytest

from tests.support.net import free_port
from tests.support.podman import ULIMITS, container, logs, podman, run_once
from tests.support.registry import Registry

pytestmark = [pytest.mark.images, pytest.mark.slow, pytest.mark.timeout(3600)]

ROOT = Path(__file__).resolve().parents[2]
TAG = "test"
GEMMA_CONFIG = ROOT / "examples" / "localai" / "gemma-3-270m.yaml"


def images_sh(*args: str, env: dict[str, str], timeout: float = 3000) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(ROOT / "scripts" / "images.sh"), *args],
        env={**os.environ, **env},
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


@pytest.fixture(scope="module")
def registry(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Registry]:
    with Registry(tmp_path_factory.mktemp("registry")) as running:
        yield running


@pytest.fixture(scope="module")
def pushed(registry: Registry) -> Iterator[dict[str, str]]:
    """The README's `make images ... PUSH=1` for the operator and llama-cpp-cpu; image names by target.

    The names carry the registry's random port, so they are untagged afterwards (the builder's layer
    cache stays, which keeps the next run warm).
    """
    command = ["make", "-C", str(ROOT), "images", f"REGISTRY={registry.address}/localmodel", "PUSH=1"]
    command += [f"TAG={TAG}", "TARGETS=operator llama-cpp-cpu"]
    images = {
        "operator": f"{registry.address}/localmodel/operator:{TAG}",
        "llama-cpp-cpu": f"{registry.address}/localmodel/runtime:{TAG}-llama-cpp-cpu",
    }
    try:
        result = subprocess.run(command, capture_output=True, text=True, timeout=3000, check=False)
        assert result.returncode == 0, result.stderr[-5000:]
        yield images
    finally:
        podman("rmi", "--ignore", *images.values(), check=False)


def test_both_images_are_in_the_registry(registry: Registry, pushed: dict[str, str]) -> None:
    assert {"localmodel/operator", "localmodel/runtime"} <= set(registry.repositories())
    assert TAG in registry.tags("localmodel/operator")
    assert f"{TAG}-llama-cpp-cpu" in registry.tags("localmodel/runtime")


@pytest.mark.parametrize("target", ["operator", "llama-cpp-cpu"])
def test_final_images_hold_no_compilers_or_build_caches(pushed: dict[str, str], target: str) -> None:
    probe = (
        "for c in gcc cc c++ g++ cmake make ninja nvcc; do command -v $c; done; "
        "ls -d /root/.cache /tmp/.cache /src 2>/dev/null; "
        "find /opt/venv -maxdepth 4 -name '*.o' -o -maxdepth 4 -name CMakeCache.txt | head -n 5"
    )
    found = run_once(pushed[target], "-c", probe, options=["--entrypoint", "sh"])
    assert found.strip() == "", f"{target} holds build tools or caches:\n{found}"


def test_operator_image_runs_both_roles_as_65532_read_only(pushed: dict[str, str]) -> None:
    image = pushed["operator"]
    assert run_once(image, "-u", options=["--entrypoint", "id"]).strip() == "65532"
    for entrypoint in ("localmodel-operator", "localmodel-router"):
        out = run_once(image, "--help", options=["--read-only", "--entrypoint", entrypoint])
        assert "usage" in out.lower(), (entrypoint, out)


def test_runtime_image_from_the_registry_serves_gemma_as_65532_on_a_read_only_root(
    openai_clients: Callable[..., openai.OpenAI], pushed: dict[str, str], gemma_gguf: Path, tmp_path: Path
) -> None:
    image = pushed["llama-cpp-cpu"]
    # Pull it back: what runs is what the registry holds, as on a node.
    podman("rmi", "-f", image)
    podman("pull", "--tls-verify=false", image)
    port = free_port()
    config = tmp_path / "config"
    config.mkdir()
    (config / "model.yaml").write_text(GEMMA_CONFIG.read_text(encoding="utf-8"), encoding="utf-8")
    options = [
        "--read-only",  # podman then mounts a fresh tmpfs on /tmp, as the chart's emptyDir does
        "--network",
        "host",
        "--cap-drop",
        "all",
        "--security-opt",
        "no-new-privileges",
        "-v",
        f"{gemma_gguf}:/models/gemma-3-270m-q4_k_m.gguf:ro",
        "-v",
        f"{config}:/etc/localmodel:ro",
    ]
    command = ["serve", "--config", "/etc/localmodel/model.yaml", "--models-dir", "/models"]
    command += ["--host", "127.0.0.1", "--port", str(port), "--access-log"]
    with container(image, *command, options=options) as name:
        base = f"http://127.0.0.1:{port}"
        _wait_ready(name, base, bound=300)
        assert podman("exec", name, "id", "-u").stdout.strip() == "65532"
        denied = podman("exec", name, "touch", "/opt/venv/written", check=False)
        assert denied.returncode != 0 and "Read-only file system" in denied.stderr
        client = openai_clients(f"{base}/v1", timeout=120)
        completion = client.completions.create(
            model="gemma-3-270m", prompt="Q: What is the capital of France?\nA:", max_tokens=16, temperature=0
        )
        assert "Paris" in completion.choices[0].text
        assert "/v1/completions" in logs(name)


def test_a_failed_build_names_the_target_and_the_step(tmp_path: Path) -> None:
    # BUILD_ARGS come last, so this base replaces the (present) default one for the build itself.
    env = {
        "BUILDER": "podman",
        "REGISTRY": "localhost/localmodel-test",
        "BUILD_ARGS": "--pull=never --build-arg PYTHON_IMAGE=localhost/localmodel-test/no-such-base:0",
    }
    result = images_sh("build", "operator", env=env, timeout=300)
    assert result.returncode != 0
    line = next(li for li in result.stderr.splitlines() if "building target operator failed at:" in li)
    assert "STEP 1/" in line and "FROM localhost/localmodel-test/no-such-base:0" in line, line


def _wait_ready(name: str, base: str, bound: float) -> None:
    deadline = time.monotonic() + bound
    with httpx.Client(timeout=2.0) as client:
        while True:
            state = podman("inspect", "--format", "{{.State.Status}}", name, check=False).stdout.strip()
            if state not in ("running", "created"):
                pytest.fail(f"the runtime container is {state}:\n{logs(name)[-4000:]}")
            try:
                if client.get(f"{base}/readyz").status_code == 200:
                    return
            except httpx.TransportError:
                pass
            if time.monotonic() > deadline:
                pytest.fail(f"the runtime container was not ready within {bound}s:\n{logs(name)[-4000:]}")
            time.sleep(0.2)


@pytest.mark.parametrize("target", ["llama-cpp-cuda", "autogptq-cuda", "exllamav2-cuda"])
def test_cuda_targets_get_past_the_builders_parser_to_their_absent_base(target: str) -> None:
    # The CUDA bases cannot be pulled here: name absent local images so the builder parses the whole
    # Dockerfile, plans the target's stages, and stops at the first FROM it cannot resolve.
    absent = "localhost/localmodel-test/absent-cuda"
    dockerfile = str(ROOT / "runtime" / "Dockerfile")
    args = ["build", "--pull=never", *ULIMITS, "-f", dockerfile, "--target", target]
    args += ["--build-arg", f"CUDA_DEVEL_IMAGE={absent}-devel:0"]
    args += ["--build-arg", f"CUDA_RUNTIME_IMAGE={absent}-runtime:0", str(ROOT)]
    result = podman(*args, check=False, timeout=300)
    assert result.returncode != 0
    assert f"{absent}-devel:0: image not known" in result.stderr, result.stderr[-2000:]
