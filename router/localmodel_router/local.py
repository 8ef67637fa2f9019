"""Local mode: `localmodel up [DIR]` serves models on this machine, no cluster needed.

One runtime process per model found in DIR (LocalAI YAML files or LocalModel manifests; DIR is also the
models directory, as in LocalAI), each on its own loopback port after its files are fetched, and the
router in front on one port. With no DIR it serves Gemma 3 270M, which installs from PyPI. Ctrl-C or
SIGTERM stops every child.
"""

from __future__ import annotations

import argparse
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import yaml

from localmodel_router.errors import ConfigurationError
from localmodel_runtime.config import (
    LocalModelSpec,
    ModelConfig,
    ModelConfigError,
    load_model_configs,
)
from localmodel_runtime.config.dump import dump_yaml

DEFAULT_STATE = Path(os.environ.get("LOCALMODEL_HOME", Path.home() / ".cache" / "localmodel"))
DEFAULT_MODEL = Path(__file__).with_name("default-model.yaml")


class LocalModeError(ConfigurationError):
    """A user error in local mode: the message is the one line printed."""


@dataclass
class LocalProcess:
    """One model of local mode: its config, where it came from, and the runtime process serving it."""

    name: str
    config: ModelConfig
    source: Path
    port: int = 0
    process: subprocess.Popen[bytes] | None = None
    log: Path | None = None
    state: str = "pending"


@dataclass
class Supervisor:
    models: list[LocalProcess]
    models_dir: Path
    state_dir: Path
    host: str
    port: int
    ready_timeout: float
    aliases: dict[str, str] = field(default_factory=dict)
    """LocalAI `alias:` models of the directory: name → the served model that answers for it."""
    children: list[subprocess.Popen[bytes]] = field(default_factory=list)
    router: subprocess.Popen[bytes] | None = None


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _bin(name: str) -> str:
    candidate = Path(sys.executable).with_name(name)
    return str(candidate) if candidate.exists() else name


def _yaml_problem(exc: yaml.YAMLError) -> str:
    mark = getattr(exc, "problem_mark", None)
    problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
    where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark is not None else ""
    return f"invalid YAML{where}: {problem}"


def find_models(directory: Path) -> list[LocalProcess]:
    """Every model in DIR's YAML files: LocalAI model files and LocalModel manifests."""
    found: list[LocalProcess] = []
    for path in sorted(directory.glob("*.y*ml")):
        if path.name.startswith(".") or path.suffix not in (".yaml", ".yml"):
            continue
        text = path.read_text(encoding="utf-8")
        try:
            documents = [d for d in yaml.safe_load_all(text) if d]
        except yaml.YAMLError as exc:
            raise LocalModeError(f"{path}: {_yaml_problem(exc)}") from None
        if documents and all(isinstance(d, dict) and d.get("kind") == "LocalModel" for d in documents):
            for doc in documents:
                try:
                    spec = LocalModelSpec.model_validate(doc.get("spec") or {})
                except ValueError as exc:
                    # pydantic's message spans lines; the CLI's contract is one line.
                    raise LocalModeError(f"{path}: {'; '.join(str(exc).splitlines())}") from None
                config = spec.model_config_only()
                name = config.name or doc.get("metadata", {}).get("name") or path.stem
                found.append(LocalProcess(name, config.model_copy(update={"name": name}), path))
            continue
        try:
            configs = load_model_configs(path)
        except ModelConfigError as exc:
            raise LocalModeError(str(exc)) from exc
        for config in configs:
            name = config.name or path.stem
            found.append(LocalProcess(name, config.model_copy(update={"name": name}), path))
    names = [m.name for m in found]
    duplicates = {n for n in names if names.count(n) > 1}
    if duplicates:
        raise LocalModeError(f"{directory}: model names used twice: {', '.join(sorted(duplicates))}")
    return found


def split_aliases(found: list[LocalProcess]) -> tuple[list[LocalProcess], dict[str, str]]:
    """The models to run, and the alias files (`alias: <model>`, LocalAI's redirects) as name → target;
    an alias must name a model of the directory (one hop: not another alias)."""
    models = [m for m in found if not m.config.alias]
    served = {m.name for m in models}
    aliases: dict[str, str] = {}
    for model in found:
        target = model.config.alias
        if target:
            if target not in served:
                what = f"alias {model.name} names {target}, not a model served here"
                raise LocalModeError(f"{model.source}: {what}")
            aliases[model.name] = target
    return models, aliases


def _write_config(model: LocalProcess, state_dir: Path) -> Path:
    path = state_dir / "configs" / f"{model.name.replace('/', '_')}.yaml"
    path.parent.mkdir(parents=True, exist_ok=True)
    data: dict[str, Any] = model.config.model_dump(mode="json", exclude_none=True, by_alias=True)
    path.write_text(dump_yaml(data), encoding="utf-8")
    return path


def _say(message: str) -> None:
    print(f"localmodel: {message}", file=sys.stderr, flush=True)


def fetch_all(sup: Supervisor) -> None:
    for model in sup.models:
        config_path = _write_config(model, sup.state_dir)
        _say(f"{model.name}: fetching files")
        proc = subprocess.run(
            [
                _bin("localmodel-runtime"),
                "fetch",
                "--config",
                str(config_path),
                "--models-dir",
                str(sup.models_dir),
            ],
            check=False,
        )
        if proc.returncode != 0:
            raise LocalModeError(f"{model.name}: fetching its files failed (exit {proc.returncode})")


def start_runtimes(sup: Supervisor) -> None:
    logs = sup.state_dir / "logs"
    logs.mkdir(parents=True, exist_ok=True)
    for model in sup.models:
        model.port = _free_port()
        model.log = logs / f"{model.name.replace('/', '_')}.log"
        config_path = _write_config(model, sup.state_dir)
        command = [
            _bin("localmodel-runtime"),
            "serve",
            "--config",
            str(config_path),
            "--models-dir",
            str(sup.models_dir),
            "--host",
            "127.0.0.1",
            "--port",
            str(model.port),
        ]
        with model.log.open("wb") as log:
            model.process = subprocess.Popen(
                command, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
            )
        sup.children.append(model.process)
        model.state = "loading"
        _say(f"{model.name}: loading on 127.0.0.1:{model.port} (log: {model.log})")


def wait_ready(sup: Supervisor) -> None:
    deadline = time.monotonic() + sup.ready_timeout
    with httpx.Client(timeout=2.0) as client:
        while any(m.state != "ready" for m in sup.models):
            for model in sup.models:
                if model.state == "ready" or model.process is None:
                    continue
                if model.process.poll() is not None:
                    tail = (
                        model.log.read_text(errors="replace").strip().splitlines()[-1:] if model.log else []
                    )
                    raise LocalModeError(
                        f"{model.name}: the runtime exited: {' '.join(tail) or 'see its log'}"
                    )
                try:
                    if client.get(f"http://127.0.0.1:{model.port}/readyz").status_code == 200:
                        model.state = "ready"
                        _say(f"{model.name}: ready")
                except httpx.HTTPError:
                    pass
            if time.monotonic() > deadline:
                waiting = ", ".join(m.name for m in sup.models if m.state != "ready")
                raise LocalModeError(f"models not ready after {sup.ready_timeout:.0f}s: {waiting}")
            time.sleep(0.2)


def write_table(sup: Supervisor) -> Path:
    """The router's local discovery table: model name → its runtime's address (and its backend, which
    the console shows); alias files become alias entries."""
    items: list[dict[str, Any]] = [
        {
            "name": m.name,
            "endpoints": [f"127.0.0.1:{m.port}"],
            **({"backend": m.config.backend} if m.config.backend else {}),
        }
        for m in sup.models
    ]
    items += [{"name": name, "alias": target} for name, target in sup.aliases.items()]
    table = {"models": items}
    path = sup.state_dir / "router-table.yaml"
    path.write_text(yaml.safe_dump(table, sort_keys=False), encoding="utf-8")
    return path


def start_router(sup: Supervisor, table: Path) -> None:
    command = [
        _bin("localmodel-router"),
        "--host",
        sup.host,
        "--port",
        str(sup.port),
        "--local-table",
        str(table),
    ]
    sup.router = subprocess.Popen(command, start_new_session=True)
    sup.children.append(sup.router)
    deadline = time.monotonic() + 30
    with httpx.Client(timeout=1.0) as client:
        while time.monotonic() < deadline:
            if sup.router.poll() is not None:
                raise LocalModeError(
                    f"the router exited (exit {sup.router.returncode}); is port {sup.port} free?"
                )
            try:
                if client.get(f"http://127.0.0.1:{sup.port}/readyz").status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.1)
    raise LocalModeError("the router did not become ready")


def stop_all(sup: Supervisor, grace: float = 10.0) -> None:
    for child in sup.children:
        if child.poll() is None:
            child.terminate()
    deadline = time.monotonic() + grace
    for child in sup.children:
        try:
            child.wait(max(0.1, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            child.kill()
            child.wait()


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="localmodel up", description="Serve models on this machine.")
    parser.add_argument("directory", nargs="?", type=Path, help="models directory (default: Gemma 3 270M)")
    parser.add_argument("--host", default="127.0.0.1", help="router address (default 127.0.0.1)")
    parser.add_argument("--port", type=int, default=8080, help="router port (default 8080)")
    parser.add_argument("--ready-timeout", type=float, default=600.0, help="seconds to wait for every model")
    parser.add_argument("--state-dir", type=Path, default=DEFAULT_STATE, help="where configs and logs go")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    aliases: dict[str, str] = {}
    if args.directory is None:
        models_dir = args.state_dir / "models"
        models = [LocalProcess(m.name, m.config, DEFAULT_MODEL) for m in _default_models()]
    else:
        if not args.directory.is_dir():
            print(f"localmodel: {args.directory}: not a directory", file=sys.stderr)
            return 2
        models_dir = args.directory.resolve()
        try:
            models, aliases = split_aliases(find_models(models_dir))
        except LocalModeError as exc:
            print(f"localmodel: {exc}", file=sys.stderr)
            return 2
        if not models:
            print(f"localmodel: {args.directory}: no model files (*.yaml) found", file=sys.stderr)
            return 2
    models_dir.mkdir(parents=True, exist_ok=True)
    args.state_dir.mkdir(parents=True, exist_ok=True)
    sup = Supervisor(models, models_dir, args.state_dir, args.host, args.port, args.ready_timeout)
    sup.aliases = aliases
    stopping = False

    def on_signal(signum: int, _frame: Any) -> None:
        nonlocal stopping
        stopping = True
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, on_signal)
    try:
        fetch_all(sup)
        start_runtimes(sup)
        wait_ready(sup)
        start_router(sup, write_table(sup))
        names = ", ".join(m.name for m in models)
        _say(f"serving {names} at http://{args.host}:{args.port}/v1 (Ctrl-C stops)")
        while all(child.poll() is None for child in sup.children):
            time.sleep(0.5)
        exited = next(c for c in sup.children if c.poll() is not None)
        _say(f"a child process exited (pid {exited.pid}, code {exited.returncode}); stopping")
        return 1
    except LocalModeError as exc:
        print(f"localmodel: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        _say("stopping")
        return 0
    finally:
        stop_all(sup)


def _default_models() -> list[LocalProcess]:
    return [
        LocalProcess(c.name or "gemma-3-270m", c, DEFAULT_MODEL) for c in load_model_configs(DEFAULT_MODEL)
    ]
