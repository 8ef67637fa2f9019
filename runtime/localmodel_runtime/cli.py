"""`localmodel-runtime`: serve one model, check a model config, or fetch its files.

Exit codes tell the operator (and a person) what went wrong, in one line on stderr, also written to
the pod's termination log as `Reason: message` (the operator turns it into a status condition):

* 0: stopped normally (or `check` found nothing).
* 1: the environment: the backend's library is not installed (`MissingBackend`), the model does not
  load (`ModelLoadError`).
* 2: the configuration: a config or template that cannot be used (`InvalidSpec`), bad arguments.
* 128 + N: the server was killed by signal N, e.g. a native crash in a backend library; `serve` runs the
  server as a child of a small supervisor (`supervisor.py`) that writes that reason down.
"""

from __future__ import annotations

import argparse
import faulthandler
import importlib.util
import logging
import os
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import NoReturn

from localmodel_runtime.errors import LocalModelException

from .config import ModelConfig, ModelConfigError, load_model_configs, unsupported_keys
from .supervisor import exit_like, report_loaded, supervise, supervised

PROG = "localmodel-runtime"
TERMINATION_LOG = Path("/dev/termination-log")

log = logging.getLogger("localmodel_runtime")


class Failure(LocalModelException):
    """A reason to exit: printed as one line, and written to the termination log."""

    def __init__(self, reason: str, message: str, exit_code: int) -> None:
        super().__init__(message)
        self.reason = reason
        self.message = " ".join(message.split())
        self.exit_code = exit_code


def write_termination_log(line: str) -> None:
    """`$LOCALMODEL_TERMINATION_LOG`, else Kubernetes' /dev/termination-log when it is there to write."""
    configured = os.environ.get("LOCALMODEL_TERMINATION_LOG")
    path = Path(configured) if configured else TERMINATION_LOG
    if not configured and not (path.exists() and os.access(path, os.W_OK)):
        return
    try:
        path.write_text(line + "\n", encoding="utf-8")
    except OSError as exc:
        print(f"{PROG}: cannot write the termination log {path}: {exc}", file=sys.stderr)


def fail(failure: Failure) -> NoReturn:
    print(f"{PROG}: {failure.message}", file=sys.stderr, flush=True)
    write_termination_log(f"{failure.reason}: {failure.message}")
    sys.exit(failure.exit_code)


def select_config(path: Path, name: str | None) -> tuple[ModelConfig, list[str]]:
    """The config to serve from a file that may hold a list — the one called `name`, or the only one —
    and the names of the file's LocalAI aliases of it (`alias: <its name>`), which it answers to too."""
    try:
        found = load_model_configs(path)
    except ModelConfigError as exc:
        raise Failure("InvalidSpec", str(exc), 2) from None
    configs = [c for c in found if not c.alias]
    chosen = _choose(path, configs, name)
    aliases = [c.name for c in found if c.alias and c.alias == chosen.name and c.name]
    return chosen, aliases


def _choose(path: Path, configs: list[ModelConfig], name: str | None) -> ModelConfig:
    if name:
        chosen = [c for c in configs if c.name == name]
        if not chosen and len(configs) == 1 and not configs[0].name:
            chosen = configs
        if not chosen:
            names = ", ".join(repr(c.name) for c in configs)
            raise Failure("InvalidSpec", f"{path}: no model named {name!r} (the file has {names})", 2)
        return chosen[0]
    if len(configs) != 1:
        raise Failure("InvalidSpec", f"{path}: holds {len(configs)} models; choose one with --model-name", 2)
    return configs[0]


def check_templates(config: ModelConfig, models_dir: Path) -> None:
    """Translate every template now, before the model loads (which can take minutes).

    The model's own chat template (`use_tokenizer_template`) can come from the model file, so it is
    checked when the model has loaded.
    """
    from .templates import PromptRenderer, TemplateError

    template = config.template
    if template is not None and template.use_tokenizer_template:
        config = config.model_copy(
            update={"template": template.model_copy(update={"use_tokenizer_template": False})}
        )
    try:
        PromptRenderer.from_config(config, models_dir)
    except TemplateError as exc:
        raise Failure("InvalidSpec", str(exc), 2) from None


# -- serve ---------------------------------------------------------------------------------------


PROBE_PATHS = frozenset({"/healthz", "/readyz"})


def _not_a_probe(record: logging.LogRecord) -> bool:
    """The access log without the kubelet's probes (one every few seconds would bury the requests).
    uvicorn's access records carry (client, method, path, HTTP version, status) as args."""
    args = record.args if isinstance(record.args, tuple) else ()
    return not (len(args) > 2 and args[2] in PROBE_PATHS)


def serve(args: argparse.Namespace) -> int:
    import uvicorn

    from .backends.base import BackendUnavailable
    from .backends.registry import create_backend
    from .server import Fatal, ServerSettings, create_app

    logging.basicConfig(
        level=args.log_level.upper(),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    models_dir: Path = args.models_dir
    config, aliases = select_config(args.config, args.model_name)
    check_templates(config, models_dir)
    ignored = unsupported_keys(config)
    if ignored:
        log.warning("these keys are kept but not acted on: %s", ", ".join(ignored))
    try:
        backend = create_backend(config, models_dir)
    except BackendUnavailable as exc:
        raise Failure("MissingBackend", str(exc), 1) from None
    except ModelConfigError as exc:
        raise Failure("InvalidSpec", str(exc), 2) from None

    if args.access_log:
        logging.getLogger("uvicorn.access").addFilter(_not_a_probe)
    faulthandler.enable()  # a native crash prints the Python stack to the pod log before the process dies
    fatal: list[Fatal] = []
    settings = ServerSettings(
        max_body_bytes=args.max_body_bytes,
        max_waiting=args.max_waiting,
        queue_timeout=args.queue_timeout or None,
    )
    server: uvicorn.Server | None = None

    def on_fatal(failure: Fatal) -> None:
        fatal.append(failure)
        if server is not None:
            server.should_exit = True

    app = create_app(
        config,
        models_dir,
        model_name=args.model_name,
        aliases=aliases,
        settings=settings,
        backend=backend,
        on_fatal=on_fatal,
        on_ready=report_loaded,
    )
    from .resource.runtime_token import METRICS_TOKEN_ENV, TOKEN_ENV
    from .server.access import TokenGate

    # With the operator's token in the environment, only the router (which presents it) is answered.
    gated = TokenGate(app, os.environ.get(TOKEN_ENV) or None, os.environ.get(METRICS_TOKEN_ENV) or None)
    server = uvicorn.Server(
        uvicorn.Config(
            gated,
            host=args.host,
            port=args.port,
            loop="uvloop",
            http="httptools",
            lifespan="on",
            log_config=None,
            log_level=args.log_level,
            access_log=args.access_log,
            timeout_graceful_shutdown=args.graceful_shutdown,
        )
    )
    server.run()
    if fatal:
        raise Failure(fatal[0].reason, fatal[0].message, fatal[0].exit_code)
    return 0


# -- check ---------------------------------------------------------------------------------------


def check(args: argparse.Namespace) -> int:
    from .backends.registry import BACKENDS, backend_name, missing_extra_message, missing_libraries

    try:
        configs = load_model_configs(args.config)
    except ModelConfigError as exc:
        print(f"{PROG}: {' '.join(str(exc).split())}", file=sys.stderr)
        return 2
    code = 0
    for config in configs:
        label = config.name or args.config.name
        problems: list[tuple[int, str]] = []
        try:
            check_templates(config, args.models_dir)
        except Failure as exc:
            problems.append((2, exc.message))
        backend = ""
        try:
            backend = backend_name(config)
        except ModelConfigError as exc:
            problems.append((2, str(exc)))
        else:
            module = BACKENDS[backend].partition(":")[0]
            if importlib.util.find_spec(module) is None or missing_libraries(backend):
                problems.append((1, missing_extra_message(backend)))
        model = config.model_file
        fetched = {f.filename for f in config.download_files or []}
        # Only these backends read a file of the models directory (the others also take repository ids).
        local_file = backend in ("llama", "llama-ggml", "rwkv") and model and config.model_uri is None
        if local_file and model not in fetched and not (args.models_dir / str(model)).exists():
            problems.append((1, f"parameters.model {model!r} is not in {args.models_dir}"))
        mmproj = config.mmproj_file
        local_mmproj = backend == "llama" and mmproj and config.mmproj_uri is None and mmproj not in fetched
        if local_mmproj and not (args.models_dir / str(mmproj)).exists():
            problems.append((1, f"mmproj {mmproj!r} is not in {args.models_dir}"))
        for key in unsupported_keys(config):
            print(f"{label}: warning: {key} is kept but not acted on")
        for severity, problem in problems:
            print(f"{label}: {problem}")
            code = max(code, severity)
        if not problems:
            print(f"{label}: ok")
    return code


# -- fetch ---------------------------------------------------------------------------------------


def fetch(args: argparse.Namespace) -> int:
    from localmodel_runtime.fetch.fetcher import fetch_command

    return fetch_command(args.config, args.models_dir)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog=PROG, description="Serve a LocalAI model config over the OpenAI API."
    )
    commands = parser.add_subparsers(dest="command", required=True)

    def add(name: str, help_: str) -> argparse.ArgumentParser:
        sub = commands.add_parser(name, help=help_)
        sub.add_argument("--config", type=Path, required=True, help="model YAML (a mapping or a list)")
        sub.add_argument("--models-dir", type=Path, required=True, help="directory holding the model files")
        return sub

    serve_p = add("serve", "serve one model (OpenAI API, /healthz, /readyz, /metrics)")
    serve_p.add_argument("--host", default="0.0.0.0")
    serve_p.add_argument("--port", type=int, default=8080)
    serve_p.add_argument("--model-name", help="which model of a list file to serve (and its name if unset)")
    serve_p.add_argument("--max-waiting", type=int, default=64, help="requests that may queue (then 429)")
    serve_p.add_argument(
        "--queue-timeout", type=float, default=0, help="seconds a request may queue (0: no bound)"
    )
    serve_p.add_argument("--max-body-bytes", type=int, default=8 * 1024 * 1024, help="larger bodies get 413")
    serve_p.add_argument(
        "--graceful-shutdown", type=float, default=25, help="seconds to finish requests on stop"
    )
    serve_p.add_argument("--log-level", default="info", choices=["debug", "info", "warning", "error"])
    serve_p.add_argument(
        "--access-log", action="store_true", help="log every request (but the /healthz and /readyz probes)"
    )
    serve_p.add_argument(
        "--no-supervisor",
        action="store_true",
        help="serve in this process (a death by signal then leaves no reason in the termination log)",
    )
    serve_p.set_defaults(func=serve)
    add("check", "validate a model config and its templates").set_defaults(func=check)
    add("fetch", "download the config's download_files into the models directory").set_defaults(func=fetch)
    return parser


def main(argv: Sequence[str] | None = None) -> NoReturn:
    arguments = list(sys.argv[1:] if argv is None else argv)
    args = build_parser().parse_args(arguments)
    try:
        if args.command == "serve" and not args.no_supervisor and not supervised():
            child = [sys.executable, "-m", "localmodel_runtime.cli", *arguments]
            exit_like(supervise(child, write_termination_log))
        code = args.func(args)
    except Failure as failure:
        fail(failure)
    except KeyboardInterrupt:
        code = 130
    sys.exit(code)


if __name__ == "__main__":
    main()
