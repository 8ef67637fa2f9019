"""`localmodel-operator`: the kopf operator process.

kopf settings are chosen on purpose: our own finalizer and annotation prefix (retry progress in
annotations, never in `status`, which is the user's view; the diff-base in memory: `kopf_storage.py`),
a watch server timeout so stale watches are renewed, Events posted only for warnings and above besides
our own transition Events, a liveness endpoint for the kubelet, and JSON logs.
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import logging
import os
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import kopf

from localmodel_runtime.resource import GROUP
from localmodel_runtime.resource.runtime_token import read_key

from .handlers import register
from .kopf_storage import MemoryDiffBase, ProgressAnnotations
from .kube import Kube
from .preload import preload
from .reconcile import Reconciler
from .settings import SettingsError, load_settings


def _in_cluster_server() -> str:
    """The API server a pod reaches, as client-go finds it (kopf hard-codes kubernetes.default.svc,
    which resolves only through cluster DNS; the environment variables always work)."""
    host = os.environ.get("KUBERNETES_SERVICE_HOST", "")
    port = os.environ.get("KUBERNETES_SERVICE_PORT", "443")
    if not host:
        return "https://kubernetes.default.svc"
    return f"https://[{host}]:{port}" if ":" in host else f"https://{host}:{port}"


WORKER_LIMIT = 32
WORKER_IDLE_SECONDS = 0.5


def configure(settings: kopf.OperatorSettings, watch_timeout: int, diffbase: MemoryDiffBase) -> None:
    settings.persistence.finalizer = f"{GROUP}/finalizer"
    settings.persistence.progress_storage = ProgressAnnotations()
    settings.persistence.diffbase_storage = diffbase
    settings.watching.server_timeout = watch_timeout
    settings.watching.client_timeout = watch_timeout + 30
    settings.watching.connect_timeout = 30
    settings.posting.level = logging.WARNING
    settings.peering.standalone = True  # one replica with a Recreate strategy: no peering objects needed
    settings.networking.request_timeout = 60
    settings.batching.error_delays = [1, 2, 5, 10, 30, 60]
    # kopf runs one worker per object with no limit: 1,000 LocalModels applied at once meant ~1,000
    # concurrent reconciles, the API server answering 429 to many of them (retried with back-off) and
    # the operator's memory growing with the in-flight work. One event loop on one core gains nothing
    # past a few dozen requests in flight. Idle workers give their slot back quickly: a slot held
    # for kopf's default 5 s after an object's last event would cap throughput at WORKERS / 5 s.
    settings.queueing.worker_limit = WORKER_LIMIT
    settings.queueing.idle_timeout = WORKER_IDLE_SECONDS


# lightkube's HTTP client logs under "httpx2" in some releases (it imports `httpx2 as httpx`), "httpx"
# in others; quieting only "httpx" left one INFO line per API request (18,000 for 1,000 new models).
HTTP_LOGGERS = ("httpx", "httpx2")


def quiet_http_loggers(verbose: bool) -> None:
    """One line per API request is debugging detail: kopf's per-object records already say what happened."""
    for name in HTTP_LOGGERS:
        logging.getLogger(name).setLevel(logging.DEBUG if verbose else logging.WARNING)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="localmodel-operator", description="Run the LocalModel operator.")
    parser.add_argument(
        "--config", type=Path, help="operator configuration (default: $LOCALMODEL_OPERATOR_CONFIG)"
    )
    scope = parser.add_mutually_exclusive_group()
    scope.add_argument("-n", "--namespace", action="append", help="watch this namespace (repeatable)")
    scope.add_argument("-A", "--all-namespaces", action="store_true", help="watch every namespace")
    parser.add_argument("--liveness", default="http://0.0.0.0:8081/healthz", help="liveness endpoint URL")
    parser.add_argument("--watch-timeout", type=int, default=300, help="seconds before a watch is renewed")
    parser.add_argument("--log-format", choices=["json", "plain"], default="json")
    parser.add_argument("-v", "--verbose", action="store_true")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        settings = load_settings(args.config)
    except SettingsError as exc:
        print(f"localmodel-operator: {exc}", file=sys.stderr)
        return 2
    namespaces = args.namespace or list(settings.namespaces)
    clusterwide = args.all_namespaces or not namespaces
    registry = kopf.OperatorRegistry()
    kopf_settings = kopf.OperatorSettings()
    diffbase = MemoryDiffBase()
    configure(kopf_settings, args.watch_timeout, diffbase)
    kube = Kube(settings.field_manager)

    @kopf.on.login(registry=registry)
    def login(**kwargs: Any) -> kopf.ConnectionInfo | None:
        # A plain OperatorRegistry has none of kopf's fallback logins: in a pod the ServiceAccount,
        # elsewhere $KUBECONFIG or ~/.kube/config (the same sources lightkube reads for Kube).
        info: kopf.ConnectionInfo | None = kopf.login_with_service_account(**kwargs)
        if info is not None:
            return dataclasses.replace(info, server=_in_cluster_server())
        return kopf.login_with_kubeconfig(**kwargs)

    @kopf.on.startup(registry=registry)
    async def startup(**_: Any) -> None:
        await preload(kube, settings)

    @kopf.on.cleanup(registry=registry)
    async def cleanup(**_: Any) -> None:
        await kube.close()

    try:
        key = read_key(Path(settings.runtime_key_file)) if settings.runtime_key_file else None
    except (OSError, ValueError) as exc:
        print(f"localmodel-operator: runtimeKeyFile: {exc}", file=sys.stderr)
        return 2
    register(Reconciler(kube, settings, () if clusterwide else tuple(namespaces), key), registry, diffbase)
    kopf.configure(
        verbose=args.verbose,
        log_format=kopf.LogFormat.JSON if args.log_format == "json" else kopf.LogFormat.PLAIN,
    )
    quiet_http_loggers(args.verbose)
    try:
        kopf.run(
            registry=registry,
            settings=kopf_settings,
            clusterwide=clusterwide,
            namespaces=[] if clusterwide else namespaces,
            liveness_endpoint=args.liveness,
            standalone=True,
        )
    except (KeyboardInterrupt, asyncio.CancelledError):
        return 0
    return 0


if __name__ == "__main__":
    sys.exit(main())
