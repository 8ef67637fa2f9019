"""The per-model token with which the router calls a runtime pod, so that runtimes answer only the router.

One release key (a Secret the chart makes, mounted into the operator and the router) derives every
model's token: HMAC-SHA256(key, "<namespace>/<LocalModel name>"). The operator writes a model's token
into the Secret `<name>-runtime-token` in the model's namespace, which the runtime reads from its
environment (`LOCALMODEL_RUNTIME_TOKEN`); the router computes the same token for the model it routes
to and sends it as `Authorization: Bearer`. So the router reads no Secrets, and a runtime's token
opens no other model. Works without a NetworkPolicy-enforcing CNI.
"""

from __future__ import annotations

import hashlib
import hmac
from pathlib import Path

TOKEN_ENV = "LOCALMODEL_RUNTIME_TOKEN"
"""The runtime's own token (set from the model's Secret); unset: the runtime takes any caller."""
METRICS_TOKEN_ENV = "LOCALMODEL_METRICS_TOKEN"
"""When set, `/metrics` needs `Authorization: Bearer` with this value (or the runtime token)."""
SECRET_KEY = "token"
"""The key of the model's Secret that holds its token."""


def secret_name(name: str) -> str:
    return f"{name}-runtime-token"


def runtime_token(key: bytes, namespace: str, name: str) -> str:
    return hmac.new(key, f"{namespace}/{name}".encode(), hashlib.sha256).hexdigest()


def read_key(path: Path) -> bytes:
    """The release key from its file (surrounding whitespace ignored); ValueError when empty."""
    key = path.read_bytes().strip()
    if not key:
        raise ValueError(f"{path}: the runtime key file is empty")
    return key
