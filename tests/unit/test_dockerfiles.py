"""Parse and lint both Dockerfiles, every target included (the CUDA ones cannot be built here).

What a builder would reject before building (unknown instructions, open continuations, a FROM or
--from naming nothing) and what our images promise (the non-root user 65532, the runtime entrypoint,
no build stage in a final image's chain, the image table naming real targets) are checked on the text.
`make test-images` builds the CPU targets for real.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import yaml

from tests.support.dockerfile import Dockerfile, DockerfileError, Stage, parse, read

ROOT = Path(__file__).resolve().parents[2]
RUNTIME = read(ROOT / "runtime" / "Dockerfile")
OPERATOR = read(ROOT / "operator" / "Dockerfile")
IMAGES_SH = (ROOT / "scripts" / "images.sh").read_text(encoding="utf-8")


def _script_list(name: str) -> list[str]:
    match = re.search(rf"^{name}=\(([^)]*)\)", IMAGES_SH, re.MULTILINE)
    assert match, f"scripts/images.sh defines {name}"
    return match.group(1).split()


CPU_TARGETS = _script_list("CPU_TARGETS")
CUDA_TARGETS = _script_list("CUDA_TARGETS")
# Triton compiles launcher stubs when a kernel first runs, so these two keep a C compiler on purpose
# (see the comments in runtime/Dockerfile).
NEEDS_CC_AT_RUN_TIME = {"vllm-cuda", "autogptq-cuda"}
COMPILERS = re.compile(r"\b(build-essential|gcc|g\+\+|clang|cmake|ninja-build|nvcc|cuda-nvcc\S*)\b")


def _is_external(base: str) -> bool:
    return base == "scratch" or ("$" not in base and (":" in base or "@" in base))


@pytest.mark.parametrize("dockerfile", [RUNTIME, OPERATOR], ids=["runtime", "operator"])
def test_every_stage_starts_from_an_earlier_stage_or_a_pinned_image(dockerfile: Dockerfile) -> None:
    seen: set[str] = set()
    for stage in dockerfile.stages:
        assert stage.base in seen or _is_external(stage.base), (stage.name, stage.base)
        for source in stage.sources():
            assert source in seen, f"stage {stage.name} reads {source!r} before it is defined"
        seen.add(stage.name)


def test_images_sh_builds_every_runtime_target_and_only_those() -> None:
    helpers = ("src", "llama-wheels")
    final = {
        s.name
        for s in RUNTIME.stages
        if s.name not in helpers
        and not s.name.startswith("build-")
        and not s.name.endswith(("-build", "-base"))
    }
    assert sorted(final) == sorted(CPU_TARGETS + CUDA_TARGETS)
    header = (ROOT / "runtime" / "Dockerfile").read_text(encoding="utf-8").split("ARG ", 1)[0]
    for target in final:
        assert f"| {target} " in header, f"the table at the top of runtime/Dockerfile lists {target}"


def test_the_operator_image_table_names_only_targets_that_exist() -> None:
    defaults = yaml.safe_load((ROOT / "operator" / "localmodel_operator" / "defaults.yaml").read_text())
    for key, entry in defaults["runtimeImages"].items():
        target = entry["image"].rsplit("}-", 1)[1]
        assert target in CPU_TARGETS + CUDA_TARGETS, (key, target)


@pytest.mark.parametrize("target", CPU_TARGETS + CUDA_TARGETS)
def test_runtime_target_runs_as_65532_with_the_runtime_entrypoint_and_no_build_stage(target: str) -> None:
    chain = RUNTIME.chain(target)
    names = [s.name for s in chain]
    assert names[-1] in ("slim-base", "cuda-base"), names
    assert not any(n.endswith("-build") for n in names), f"{target} is built FROM a build stage: {names}"
    user = chain[0].last("USER")
    assert user is not None and user.args == "65532:65532"
    entrypoint = next(s.last("ENTRYPOINT") for s in chain if s.last("ENTRYPOINT"))
    assert entrypoint is not None and entrypoint.args == '["localmodel-runtime"]'
    installs = " ".join(i.args for s in chain for i in s.instructions if i.keyword == "RUN")
    if target not in NEEDS_CC_AT_RUN_TIME:
        assert not COMPILERS.search(installs), f"{target} installs a compiler: {COMPILERS.search(installs)}"
    # Only the built virtual environment (and prebuilt kernels) cross from a build stage.
    for ins in chain[0].instructions:
        if ins.keyword == "COPY" and "--from=" in ins.args:
            assert re.search(r"--from=build-\S+ /opt/(venv|gptqmodel-extensions) ", ins.args), ins


def test_operator_image_runs_as_65532_without_build_tools() -> None:
    final = OPERATOR.stages[-1]
    assert final.base == OPERATOR.global_args["PYTHON_IMAGE"]
    user = final.last("USER")
    assert user is not None and user.args == "65532:65532"
    assert not any(COMPILERS.search(i.args) for i in final.instructions if i.keyword == "RUN")


def test_llama_cpu_flags_are_portable_and_readable_by_setup() -> None:
    stage: Stage = RUNTIME.stage("build-llama-cpp-cpu")
    arg = next(i.args for i in stage.instructions if i.keyword == "ARG" and i.args.startswith("LLAMA_CPU"))
    assert "-DGGML_NATIVE=OFF" in arg
    # scripts/setup.sh reads the default with this sed expression: it must find exactly one line.
    text = (ROOT / "runtime" / "Dockerfile").read_text(encoding="utf-8")
    assert len(re.findall(r'^ARG LLAMA_CPU_CMAKE_ARGS="(.*)"$', text, re.MULTILINE)) == 1
    assert "llama-wheels" in stage.sources()


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("RUN true\n", "before the first FROM"),
        ("FROM scratch AS a\nRUNN true\n", "unknown instruction"),
        ("FROM scratch AS a\nRUN a \\\n", "continuation never ends"),
        ("FROM scratch AS a\nFROM scratch AS a\n", "defined twice"),
    ],
)
def test_the_reader_rejects_what_a_builder_rejects(text: str, message: str) -> None:
    with pytest.raises(DockerfileError, match=message):
        parse(text)
