"""Prometheus metrics, per model. Label children are cached so the hot path does no label lookups,
and in-flight gauges are read from the routing table at scrape time (no per-request gauge updates)."""

from __future__ import annotations

from collections.abc import Iterator

from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from localmodel_router.table import ModelTable

# Router-side latencies start well below a millisecond: the router's own cost is what users ask about.
_LATENCY_BUCKETS = (
    0.0005,
    0.001,
    0.0025,
    0.005,
    0.01,
    0.025,
    0.05,
    0.1,
    0.25,
    0.5,
    1,
    2.5,
    5,
    10,
    30,
    60,
    120,
    300,
)


class _TableCollector(Collector):
    def __init__(self, table: ModelTable) -> None:
        self.table = table

    def collect(self) -> Iterator[Metric]:
        in_flight = GaugeMetricFamily(
            "localmodel_router_endpoint_in_flight_requests",
            "Requests in flight to each endpoint.",
            labels=["model", "endpoint"],
        )
        ready = GaugeMetricFamily(
            "localmodel_router_model_ready_endpoints", "Ready endpoints per model.", labels=["model"]
        )
        for entry in list(self.table.models.values()):
            ready.add_metric([entry.name], len(entry.ready_endpoints))
            for endpoint in entry.endpoints:
                in_flight.add_metric([entry.name, endpoint.address], endpoint.in_flight)
        yield in_flight
        yield ready


class ModelMetrics:
    """The metric children of one model."""

    __slots__ = (
        "_errors",
        "_gone",
        "_model",
        "_parent",
        "latency",
        "requests",
        "retries",
        "scale_ups",
        "ttft",
    )

    def __init__(self, parent: Metrics, model: str) -> None:
        self._parent = parent
        self._model = model
        self.latency = parent.latency.labels(model)
        self.ttft = parent.ttft.labels(model)
        self.retries = parent.retries.labels(model)
        self.scale_ups = parent.scale_ups.labels(model)
        self.requests: dict[int, Counter] = {}
        self._errors: dict[str, Counter] = {}
        self._gone = False

    def request(self, status: int) -> None:
        counter = self.requests.get(status)
        if counter is None:
            if self._gone:
                return  # the model was deleted while this request ran: make no new series for it
            counter = self.requests[status] = self._parent.requests.labels(self._model, str(status))
        counter.inc()

    def upstream_error(self, kind: str) -> None:
        counter = self._errors.get(kind)
        if counter is None:
            if self._gone:
                return
            counter = self._errors[kind] = self._parent.upstream_errors.labels(self._model, kind)
        counter.inc()

    def remove(self) -> None:
        """Take every series of this model out of the registry."""
        parent, model = self._parent, self._model
        self._gone = True
        for status in self.requests:
            parent.requests.remove(model, str(status))
        for kind in self._errors:
            parent.upstream_errors.remove(model, kind)
        for family in (parent.latency, parent.ttft, parent.retries, parent.scale_ups):
            family.remove(model)
        self.requests.clear()
        self._errors.clear()


class Metrics:
    def __init__(self, table: ModelTable) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        self.requests = Counter(
            "localmodel_router_requests",
            "Requests answered, by model and HTTP status.",
            ["model", "status"],
            registry=self.registry,
        )
        self.latency = Histogram(
            "localmodel_router_request_duration_seconds",
            "Time from request arrival to the last byte of the response.",
            ["model"],
            buckets=_LATENCY_BUCKETS,
            registry=self.registry,
        )
        self.ttft = Histogram(
            "localmodel_router_time_to_first_token_seconds",
            "Time from request arrival to the first body byte of a streamed response.",
            ["model"],
            buckets=_LATENCY_BUCKETS,
            registry=self.registry,
        )
        self.retries = Counter(
            "localmodel_router_retries",
            "Requests sent again to another endpoint after a failure before the first byte.",
            ["model"],
            registry=self.registry,
        )
        self.upstream_errors = Counter(
            "localmodel_router_upstream_errors",
            "Upstream failures: connect, timeouts, closed connections, 5xx answers.",
            ["model", "kind"],
            registry=self.registry,
        )
        self.scale_ups = Counter(
            "localmodel_router_scale_ups",
            "Wake-ups of a model with no ready endpoint.",
            ["model"],
            registry=self.registry,
        )
        self.registry.register(_TableCollector(table))
        self._models: dict[str, ModelMetrics] = {}

    def model(self, name: str) -> ModelMetrics:
        found = self._models.get(name)
        if found is None:
            found = self._models[name] = ModelMetrics(self, name)
        return found

    def forget(self, name: str) -> None:
        """A model was deleted: its series go (a scrape must not list deleted models for ever)."""
        found = self._models.pop(name, None)
        if found is not None:
            found.remove()

    def render(self) -> bytes:
        return generate_latest(self.registry)
