"""A small Dockerfile reader for lint tests: instructions, stages and the references between them.

The CUDA targets cannot be built on the test machines (their bases cannot be pulled), so the tests
check what can be checked without a builder: every line is a known instruction, continuations close,
every `FROM`/`--from` names an earlier stage, a global ARG or a named build context, and each final
target's chain of stages. It follows the Dockerfile reference's syntax, not one builder's quirks.
"""

from __future__ import annotations

import re
import shlex
from dataclasses import dataclass, field
from pathlib import Path

INSTRUCTIONS = frozenset(
    [
        "ADD",
        "ARG",
        "CMD",
        "COPY",
        "ENTRYPOINT",
        "ENV",
        "EXPOSE",
        "FROM",
        "HEALTHCHECK",
        "LABEL",
        "MAINTAINER",
        "ONBUILD",
        "RUN",
        "SHELL",
        "STOPSIGNAL",
        "USER",
        "VOLUME",
        "WORKDIR",
    ]
)
_FROM_FLAG = re.compile(r"--from=([^\s,]+)")
_MOUNT_FROM = re.compile(r"--mount=\S*\bfrom=([^\s,]+)")


class DockerfileError(ValueError):
    """The text is not a well-formed Dockerfile (the message names the line)."""


@dataclass(frozen=True)
class Instruction:
    line: int
    keyword: str
    args: str


@dataclass
class Stage:
    name: str
    base: str
    """What `FROM` names, with global ARG defaults substituted."""
    line: int
    instructions: list[Instruction] = field(default_factory=list)

    def sources(self) -> list[str]:
        """Stages or contexts this stage reads from (`COPY --from=`, `RUN --mount=...,from=`)."""
        found: list[str] = []
        for ins in self.instructions:
            if ins.keyword in ("COPY", "ADD"):
                found += _FROM_FLAG.findall(ins.args)
            if ins.keyword == "RUN":
                found += _MOUNT_FROM.findall(ins.args)
        return found

    def last(self, keyword: str) -> Instruction | None:
        matches = [ins for ins in self.instructions if ins.keyword == keyword]
        return matches[-1] if matches else None


@dataclass
class Dockerfile:
    global_args: dict[str, str]
    stages: list[Stage]

    def stage(self, name: str) -> Stage:
        for stage in self.stages:
            if stage.name == name:
                return stage
        raise KeyError(name)

    def chain(self, name: str) -> list[Stage]:
        """The stage and the stages it is built FROM, nearest first (ends at an external image)."""
        names = {s.name for s in self.stages}
        out = [self.stage(name)]
        while out[-1].base in names:
            out.append(self.stage(out[-1].base))
        return out


def logical_lines(text: str) -> list[tuple[int, str]]:
    """Join backslash continuations; drop comments and blank lines (parser directives are comments)."""
    out: list[tuple[int, str]] = []
    pending: list[str] = []
    start = 0
    for number, raw in enumerate(text.splitlines(), start=1):
        stripped = raw.strip()
        if stripped.startswith("#") or (not stripped and not pending):
            continue
        if not pending:
            start = number
        if stripped.endswith("\\"):
            pending.append(stripped[:-1].rstrip())
            continue
        pending.append(stripped)
        out.append((start, " ".join(p for p in pending if p)))
        pending = []
    if pending:
        raise DockerfileError(f"line {start}: continuation never ends")
    return out


def _substitute(value: str, args: dict[str, str]) -> str:
    return re.sub(r"\$\{?(\w+)\}?", lambda m: args.get(m.group(1), m.group(0)), value)


def parse(text: str) -> Dockerfile:
    global_args: dict[str, str] = {}
    stages: list[Stage] = []
    for line, content in logical_lines(text):
        keyword, _, args = content.partition(" ")
        keyword = keyword.upper()
        if keyword not in INSTRUCTIONS:
            raise DockerfileError(f"line {line}: unknown instruction {keyword!r}")
        if keyword == "ARG" and not stages:
            name, _, default = args.partition("=")
            global_args[name.strip()] = shlex.split(default)[0] if default else ""
            continue
        if keyword == "FROM":
            words = [w for w in args.split() if not w.startswith("--")]
            if len(words) == 3 and words[1].upper() == "AS":
                base, name = words[0], words[2]
            elif len(words) == 1:
                base, name = words[0], f"stage-{len(stages)}"
            else:
                raise DockerfileError(f"line {line}: FROM takes an image and optionally AS name")
            if name in {s.name for s in stages}:
                raise DockerfileError(f"line {line}: stage {name!r} defined twice")
            stages.append(Stage(name=name, base=_substitute(base, global_args), line=line))
            continue
        if not stages:
            raise DockerfileError(f"line {line}: {keyword} before the first FROM")
        stages[-1].instructions.append(Instruction(line, keyword, args))
    if not stages:
        raise DockerfileError("no FROM")
    return Dockerfile(global_args, stages)


def read(path: Path) -> Dockerfile:
    return parse(path.read_text(encoding="utf-8"))
