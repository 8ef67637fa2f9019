"""The router's knobs, with the defaults the CLI shows."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class RouterSettings:
    connect_timeout: float = 5.0
    """Seconds to open a TCP connection to an endpoint; short, since a live pod accepts at once."""
    first_byte_timeout: float = 600.0
    """Seconds from sending a request to the response's status line; long: prompt processing on a CPU
    and a model that is still loading both count here."""
    idle_timeout: float = 300.0
    """Seconds between two body chunks of a response before the upstream is given up."""
    max_body_bytes: int = 16 * 1024 * 1024
    cold_start_timeout: float = 60.0
    """How long a request waits for a model with no ready endpoint (LocalAI waits 60 s too)."""
    max_waiting: int = 1000
    """Requests held at once waiting for endpoints (cold starts and automatic setup together); more are
    answered 503 with `Retry-After` at once."""
    max_connections: int = 10000
    """Client connections (and requests in progress) the server holds at once; past it a request is
    answered 503 and its connection closed (uvicorn's `limit_concurrency`)."""
    header_timeout: float = 10.0
    """Seconds a client has to send a request's line and headers once it started one (or connected);
    then it is answered 408 and disconnected, so slow clients (slowloris) cannot pile up."""
    body_timeout: float = 30.0
    """Seconds a client has to send the whole request body; then it is answered 408."""
    retry_after: int = 5
    metrics_need_key: bool = False
    """`/metrics` answers only to one of the API keys (when keys are configured), like the API paths."""
    autoscale_interval: float = 10.0
    """Seconds between two load-autoscaling decisions (models with maxReplicas above one)."""
    autoscale_window: float = 30.0
    """Seconds of requests in flight averaged for each decision."""
    graceful_shutdown: float = 50.0
    """Seconds the requests in flight get to finish after SIGTERM (no new connection is taken); then
    each stream still open ends with an error event. Below the pod's grace period (60 s in the chart)
    less its preStop sleep, so that the kubelet's SIGKILL never cuts a stream without a word."""
