"""`localmodel-router`: the command line. User errors are one line on stderr and exit code 2."""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import logging
import os
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any, NoReturn

from localmodel_router.app import RouterApp
from localmodel_router.auth import ApiKeys
from localmodel_router.autosetup import AutoSetupSettings
from localmodel_router.discovery import Discovery
from localmodel_router.errors import ConfigurationError
from localmodel_router.settings import RouterSettings
from localmodel_router.table import ModelTable
from localmodel_runtime.gallery import GalleryError, GallerySource, gallery_sources

PROG = "localmodel-router"


class UsageError(ConfigurationError):
    pass


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:
        raise UsageError(message)


def _positive(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
    if value <= 0:
        raise argparse.ArgumentTypeError(f"{text!r} must be positive")
    return value


def build_parser() -> argparse.ArgumentParser:
    defaults = RouterSettings()
    parser = _Parser(prog=PROG, description="OpenAI-compatible router in front of LocalModel runtimes.")
    parser.add_argument("--host", default="0.0.0.0", help="listen address (default 0.0.0.0)")
    parser.add_argument("--port", type=int, default=8080, help="listen port (default 8080)")
    where = parser.add_mutually_exclusive_group()
    where.add_argument(
        "--namespace", action="append", metavar="NS", help="watch LocalModels in NS (repeatable)"
    )
    where.add_argument("--all-namespaces", action="store_true", help="watch LocalModels in every namespace")
    where.add_argument(
        "--local-table", type=Path, metavar="FILE", help="local mode: YAML/JSON model → endpoints table"
    )
    parser.add_argument("--api-keys-file", type=Path, metavar="FILE", help="accepted API keys, one per line")
    parser.add_argument(
        "--runtime-key-file",
        type=Path,
        metavar="FILE",
        help="the release key runtime tokens derive from: each runtime is called with its own token",
    )
    parser.add_argument(
        "--connect-timeout",
        type=_positive,
        default=defaults.connect_timeout,
        metavar="S",
        help="seconds (default %(default)s)",
    )
    parser.add_argument(
        "--first-byte-timeout",
        type=_positive,
        default=defaults.first_byte_timeout,
        metavar="S",
        help="seconds (default %(default)s)",
    )
    parser.add_argument(
        "--idle-timeout",
        type=_positive,
        default=defaults.idle_timeout,
        metavar="S",
        help="seconds (default %(default)s)",
    )
    parser.add_argument(
        "--cold-start-timeout",
        type=_positive,
        default=defaults.cold_start_timeout,
        metavar="S",
        help="seconds (default %(default)s)",
    )
    parser.add_argument(
        "--autoscale-interval",
        type=_positive,
        default=defaults.autoscale_interval,
        metavar="S",
        help="seconds between load-autoscaling decisions (default %(default)s)",
    )
    parser.add_argument(
        "--autoscale-window",
        type=_positive,
        default=defaults.autoscale_window,
        metavar="S",
        help="seconds of load averaged per decision (default %(default)s)",
    )
    parser.add_argument(
        "--max-body-bytes",
        type=int,
        default=defaults.max_body_bytes,
        metavar="N",
        help="request body cap (default %(default)s)",
    )
    parser.add_argument(
        "--max-connections",
        type=int,
        default=defaults.max_connections,
        metavar="N",
        help="client connections held at once; past it 503 (default %(default)s)",
    )
    parser.add_argument(
        "--max-waiting",
        type=int,
        default=defaults.max_waiting,
        metavar="N",
        help="requests waiting for a cold start or automatic setup; past it 503 (default %(default)s)",
    )
    parser.add_argument(
        "--metrics-need-key",
        action="store_true",
        help="/metrics needs one of the API keys too (a scraper sends it as a bearer token)",
    )
    parser.add_argument(
        "--header-timeout",
        type=_positive,
        default=defaults.header_timeout,
        metavar="S",
        help="seconds to send a request's headers, then 408 (default %(default)s)",
    )
    parser.add_argument(
        "--body-timeout",
        type=_positive,
        default=defaults.body_timeout,
        metavar="S",
        help="seconds to send a request's body, then 408 (default %(default)s)",
    )
    parser.add_argument(
        "--graceful-shutdown",
        type=_positive,
        default=defaults.graceful_shutdown,
        metavar="S",
        help="seconds requests in flight get to finish on SIGTERM, then streams end with an error event "
        "(default %(default)s)",
    )
    parser.add_argument("--log-level", default="info", choices=["debug", "info", "warning", "error"])
    auto = parser.add_argument_group(
        "automatic setup",
        "create a LocalModel for a requested model that resolves (off unless enabled; "
        "flags override the file)",
    )
    auto.add_argument(
        "--auto-setup-config",
        type=Path,
        metavar="FILE",
        help="YAML: enabled, namespace, allowRepositories, allowGalleries, maxModels, waitSeconds, "
        "galleries (default $LOCALMODEL_AUTO_SETUP_CONFIG)",
    )
    auto.add_argument("--auto-setup", action="store_true", default=None, help="enable automatic setup")
    auto.add_argument("--auto-setup-namespace", metavar="NS", help="namespace for created LocalModels")
    auto.add_argument(
        "--auto-setup-allow-repo",
        action="append",
        metavar="GLOB",
        help="allowed Hugging Face repositories, e.g. 'TheBloke/*' (repeatable)",
    )
    auto.add_argument(
        "--auto-setup-allow-gallery", action="append", metavar="NAME", help="allowed gallery (repeatable)"
    )
    auto.add_argument("--auto-setup-max-models", type=int, metavar="N", help="cap on auto-created models")
    auto.add_argument(
        "--auto-setup-wait", type=_positive, metavar="S", help="seconds a request waits for its new model"
    )
    auto.add_argument(
        "--gallery",
        action="append",
        metavar="NAME=URL",
        help="a gallery in LocalAI's index format (repeatable; default $LOCALMODEL_GALLERIES)",
    )
    return parser


def auto_setup_settings(args: argparse.Namespace) -> AutoSetupSettings:
    """The file (flag, else $LOCALMODEL_AUTO_SETUP_CONFIG), then the flags over it."""
    from localmodel_router.autosetup import CONFIG_ENV, load_settings_file

    path = args.auto_setup_config or (Path(os.environ[CONFIG_ENV]) if os.environ.get(CONFIG_ENV) else None)
    settings = load_settings_file(path) if path is not None else AutoSetupSettings()
    changes: dict[str, Any] = {}
    if args.auto_setup:
        changes["enabled"] = True
    if args.auto_setup_namespace:
        changes["namespace"] = args.auto_setup_namespace
    if args.auto_setup_allow_repo:
        changes["repositories"] = tuple(args.auto_setup_allow_repo)
    if args.auto_setup_allow_gallery:
        changes["galleries"] = tuple(args.auto_setup_allow_gallery)
    if args.auto_setup_max_models is not None:
        if args.auto_setup_max_models < 0:
            raise UsageError("--auto-setup-max-models must not be negative")
        changes["max_models"] = args.auto_setup_max_models
    if args.auto_setup_wait is not None:
        changes["wait"] = args.auto_setup_wait
    sources = []
    for item in args.gallery or []:
        name, sep, url = item.partition("=")
        if not sep or not name or not url:
            raise UsageError(f"--gallery {item!r}: expected NAME=URL")
        sources.append(GallerySource(name, url))
    if sources:
        changes["sources"] = tuple(sources)
    settings = dataclasses.replace(settings, **changes)
    if settings.enabled and not settings.sources:
        try:
            settings = dataclasses.replace(settings, sources=tuple(gallery_sources([])))
        except GalleryError as exc:
            raise UsageError(str(exc)) from None
    return settings


def _check_auto_setup(settings: AutoSetupSettings, namespaces: list[str] | None) -> AutoSetupSettings:
    if settings.namespace is None:
        if namespaces is None or len(namespaces) != 1:
            raise UsageError("automatic setup needs --auto-setup-namespace (the router watches several)")
        settings = dataclasses.replace(settings, namespace=namespaces[0])
    if namespaces is not None and settings.namespace not in namespaces:
        raise UsageError(
            f"automatic setup creates models in {settings.namespace!r}, which the router does not watch"
        )
    if not settings.repositories and not settings.galleries:
        raise UsageError(
            "automatic setup needs an allowlist: "
            "--auto-setup-allow-repo GLOB or --auto-setup-allow-gallery NAME"
        )
    return settings


def build_app(args: argparse.Namespace) -> RouterApp:
    if args.max_body_bytes <= 0:
        raise UsageError("--max-body-bytes must be positive")
    if not 0 < args.port < 65536:
        raise UsageError("--port must be between 1 and 65535")
    if args.max_connections <= 0:
        raise UsageError("--max-connections must be positive")
    if args.max_waiting < 0:
        raise UsageError("--max-waiting must not be negative")
    settings = RouterSettings(
        connect_timeout=args.connect_timeout,
        first_byte_timeout=args.first_byte_timeout,
        idle_timeout=args.idle_timeout,
        cold_start_timeout=args.cold_start_timeout,
        autoscale_interval=args.autoscale_interval,
        autoscale_window=args.autoscale_window,
        max_body_bytes=args.max_body_bytes,
        max_connections=args.max_connections,
        max_waiting=args.max_waiting,
        header_timeout=args.header_timeout,
        body_timeout=args.body_timeout,
        metrics_need_key=args.metrics_need_key,
        graceful_shutdown=args.graceful_shutdown,
    )
    keys = ApiKeys.load(args.api_keys_file)
    auto = auto_setup_settings(args)
    if auto.enabled and args.local_table is not None:
        raise UsageError("automatic setup needs Kubernetes discovery, not --local-table")
    table = ModelTable()
    discovery: Discovery
    if args.local_table is not None:
        from localmodel_router.local_table import LocalDiscovery, load_table

        load_table(args.local_table)  # fail now, on the command line, not in the lifespan
        discovery = LocalDiscovery(args.local_table)
    else:
        from lightkube.core.exceptions import ConfigError

        from localmodel_router.k8s import KubernetesDiscovery

        try:
            namespaces = None if args.all_namespaces else (args.namespace or [_default_namespace()])
            discovery = KubernetesDiscovery(namespaces, runtime_key=_runtime_key(args.runtime_key_file))
        except ConfigError as exc:
            raise UsageError(
                f"no Kubernetes configuration ({exc}); use --local-table for local mode"
            ) from None
        if auto.enabled:
            from localmodel_router.autosetup import AutoSetup, KubernetesModelStore

            auto = _check_auto_setup(auto, namespaces)
            store = KubernetesModelStore(discovery.client)
            autosetup = AutoSetup(auto, table, store, settings.retry_after)
            return RouterApp(table, discovery, settings, keys, autosetup=autosetup)
    return RouterApp(table, discovery, settings, keys, galleries=console_galleries(auto))


def console_galleries(auto: AutoSetupSettings) -> tuple[GallerySource, ...]:
    """The galleries the console lists when automatic setup is off: --gallery, else $LOCALMODEL_GALLERIES."""
    if auto.sources:
        return auto.sources
    try:
        return tuple(gallery_sources([]))
    except GalleryError as exc:
        raise UsageError(str(exc)) from None


def _runtime_key(path: Path | None) -> bytes | None:
    if path is None:
        return None
    from localmodel_runtime.resource.runtime_token import read_key

    try:
        return read_key(path)
    except (OSError, ValueError) as exc:
        raise UsageError(f"--runtime-key-file: {exc}") from None


def _default_namespace() -> str:
    from lightkube import KubeConfig

    context = KubeConfig.from_env().get()
    return (context.namespace if context is not None else None) or "default"


def main(argv: Sequence[str] | None = None) -> int:
    try:
        args = build_parser().parse_args(argv)
        app = build_app(args)
    except ConfigurationError as exc:
        print(f"{PROG}: error: {exc}", file=sys.stderr)
        return 2
    import uvicorn

    logging.basicConfig(
        level=args.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    from localmodel_router.serving import uvicorn_config

    config = uvicorn_config(app, app.settings, args.host, args.port, loop="uvloop", log_level=args.log_level)
    server = uvicorn.Server(config)
    with contextlib.suppress(KeyboardInterrupt):
        server.run()
    return 0 if server.started or not server.should_exit else 1


if __name__ == "__main__":
    sys.exit(main())
