"""The runtime's access log (`serve --access-log`) leaves out the kubelet's probes."""

from __future__ import annotations

import logging

from localmodel_runtime.cli import _not_a_probe


def _access(path: str) -> logging.LogRecord:
    # The shape of uvicorn's access records: (client, method, path, HTTP version, status).
    args = ("10.250.0.7:41234", "POST", path, "1.1", 200)
    return logging.LogRecord("uvicorn.access", logging.INFO, "h11", 1, '%s - "%s %s HTTP/%s" %d', args, None)


def test_requests_are_logged_and_probes_are_not() -> None:
    assert _not_a_probe(_access("/v1/completions"))
    assert _not_a_probe(_access("/v1/chat/completions?x=1"))
    assert not _not_a_probe(_access("/healthz"))
    assert not _not_a_probe(_access("/readyz"))
    assert _not_a_probe(logging.LogRecord("uvicorn.access", logging.INFO, "h", 1, "plain", None, None))
