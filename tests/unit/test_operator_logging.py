"""The operator keeps its HTTP client's per-request lines out of the log unless asked for (`-v`)."""

from __future__ import annotations

import logging

import lightkube.core.generic_client as generic_client

from localmodel_operator.main import quiet_http_loggers


def test_the_http_client_lightkube_really_uses_is_quieted() -> None:
    # The logger of the module lightkube imports, whatever its name in this release (httpx or httpx2).
    client_logger = logging.getLogger(generic_client.httpx.__name__)
    try:
        quiet_http_loggers(verbose=False)
        assert not client_logger.isEnabledFor(logging.INFO)
        quiet_http_loggers(verbose=True)
        assert client_logger.isEnabledFor(logging.DEBUG)
    finally:
        client_logger.setLevel(logging.NOTSET)
