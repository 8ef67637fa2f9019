"""`localmodel`: the command people type, a thin dispatcher to the part that owns each subcommand.

The LocalModel tools (`crd`, `reference`, `import`, `gallery`, `selfcheck`) belong to the operator and
local mode (`up`) to the router. This module sits in the shared core, which must import neither part
(the import contracts in pyproject.toml check that), so it names them by module, as console scripts
do, and imports one only when its command runs: an installation without it says so in one line.
"""

from __future__ import annotations

import importlib
import sys
from collections.abc import Sequence
from dataclasses import dataclass

PROG = "localmodel"


@dataclass(frozen=True)
class Command:
    module: str
    """The module whose `main(argv)` runs the command."""
    help: str
    with_name: bool = True
    """Whether `main` gets the command's name as its first argument (one parser for several commands)."""


OPERATOR_TOOLS = "localmodel_operator.cli"
COMMANDS = {
    "crd": Command(OPERATOR_TOOLS, "write the LocalModel CustomResourceDefinition"),
    "reference": Command(OPERATOR_TOOLS, "write the LocalModel field reference (Markdown)"),
    "import": Command(OPERATOR_TOOLS, "convert LocalAI model YAML files into LocalModel manifests"),
    "gallery": Command(OPERATOR_TOOLS, "list and install models from LocalAI galleries"),
    "selfcheck": Command(OPERATOR_TOOLS, "check this installation"),
    "up": Command("localmodel_router.local", "serve models on this machine (local mode)", with_name=False),
}


def usage() -> str:
    lines = [
        f"usage: {PROG} {{{','.join(COMMANDS)}}} ...",
        "",
        "LocalAI-compatible model serving on Kubernetes.",
        "",
        "commands:",
    ]
    lines += [f"  {name:12} {command.help}" for name, command in COMMANDS.items()]
    lines.append(f"\n`{PROG} COMMAND --help` describes one command.")
    return "\n".join(lines) + "\n"


def main(argv: Sequence[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    if args[:1] in (["-h"], ["--help"]):
        sys.stdout.write(usage())
        return 0
    command = COMMANDS.get(args[0]) if args else None
    if command is None:
        sys.stderr.write(usage())
        problem = f"unknown command {args[0]!r}" if args else "a command is required"
        print(f"{PROG}: error: {problem}", file=sys.stderr)
        return 2
    try:
        module = importlib.import_module(command.module)
    except ImportError as exc:
        print(f"{PROG}: {args[0]} is not available in this installation ({exc})", file=sys.stderr)
        return 2
    try:
        return int(module.main(args if command.with_name else args[1:]))
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
