"""Optional API keys: one per line in a file (a mounted Kubernetes Secret) and/or a comma-separated
environment variable. Keys are kept as SHA-256 digests so a lookup takes the same time whatever the
key's content (no early-exit string comparison to time)."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

from localmodel_router.errors import ConfigurationError

ENV_VAR = "LOCALMODEL_ROUTER_API_KEYS"


class ApiKeyError(ConfigurationError):
    """The keys file cannot be read; the message is the one line shown."""


def _digest(key: str) -> bytes:
    return hashlib.sha256(key.encode("utf-8", "surrogateescape")).digest()


class ApiKeys:
    def __init__(self, keys: set[str]) -> None:
        self._digests = {_digest(k) for k in keys}

    @property
    def enabled(self) -> bool:
        return bool(self._digests)

    def check(self, token: str | None) -> bool:
        return token is not None and _digest(token) in self._digests

    @classmethod
    def load(cls, path: Path | None, environ: dict[str, str] | None = None) -> ApiKeys:
        keys: set[str] = set()
        env = os.environ if environ is None else environ
        keys.update(k.strip() for k in env.get(ENV_VAR, "").split(",") if k.strip())
        if path is not None:
            try:
                text = path.read_text(encoding="utf-8")
            except OSError as exc:
                raise ApiKeyError(f"cannot read API keys file {path}: {exc.strerror or exc}") from exc
            for line in text.splitlines():
                line = line.strip()
                if line and not line.startswith("#"):
                    keys.add(line)
            if not keys:
                raise ApiKeyError(f"API keys file {path} holds no key")
        return cls(keys)


def bearer_token(authorization: bytes | None) -> str | None:
    if not authorization:
        return None
    scheme, _, token = authorization.decode("latin-1").strip().partition(" ")
    if scheme.lower() != "bearer":
        return None
    return token.strip() or None
