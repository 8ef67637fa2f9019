"""How the test-only process node turns a container spec into a local command line
(tests/support/podspec.py); no cluster needed."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from tests.support import podspec


def test_runtime_images_map_to_the_venv_runtime() -> None:
    rules = podspec.default_image_map()
    runtime = str(Path(sys.executable).parent / "localmodel-runtime")
    for image in ("ghcr.io/acme/localmodel-runtime:0.1.0", "localmodel/runtime-llama-cpp:dev"):
        assert podspec.resolve_image(rules, image) == (runtime,)
    assert podspec.resolve_image(rules, "registry.example/other:1") is None


def test_command_and_args_keep_their_shape_with_the_program_in_front() -> None:
    mapped = ("/venv/bin/localmodel-runtime",)
    env = {"PORT": "8080"}
    spec = {"command": ["localmodel-runtime", "serve"], "args": ["--port", "$(PORT)", "$$(PORT)"]}
    assert podspec.build_argv(mapped, spec, env) == [*mapped, "serve", "--port", "8080", "$(PORT)"]
    # Without a command the image's entrypoint (the mapped program) gets the args.
    assert podspec.build_argv(mapped, {"args": ["x"]}, env) == [*mapped, "x"]


def test_a_mount_that_would_hide_the_program_is_refused(tmp_path: Path) -> None:
    hiding = Path(podspec.__file__).resolve().parents[2]  # the repo itself
    spec = {"volumeMounts": [{"name": "v", "mountPath": str(hiding)}]}
    with pytest.raises(podspec.ConfigError, match="would hide"):
        podspec.container_mounts(spec, {"v": tmp_path})
    ok = {"volumeMounts": [{"name": "v", "mountPath": "/models", "readOnly": True}]}
    assert podspec.container_mounts(ok, {"v": tmp_path}) == [podspec.Mount(tmp_path, "/models", True)]
