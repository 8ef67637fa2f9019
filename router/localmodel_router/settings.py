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
    """Requests held at once waiting for endpoints; more are answered 503 at once."""
    retry_after: int = 5
    autoscale_interval: float = 10.0
    """Seconds between two load-autoscaling decisions (models with maxReplicas above one)."""
    autoscale_window: float = 30.0
    """Seconds of requests in flight averaged for each decision."""
