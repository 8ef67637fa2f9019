"""Prometheus metrics under vLLM's names, so dashboards, gateways (GIE/llm-d) and routers read them as is.

Each app has its own registry (several apps in one process, as in tests, do not collide). Label
children are resolved once, and the running/waiting gauges are read from the admission queue at scrape
time, so a request costs a few counter increments and two histogram observations, nothing per token.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator

from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from .admission import Admission

# vLLM's buckets (vllm/v1/metrics/loggers.py), so histograms from both line up.
TTFT_BUCKETS = (
    0.001,
    0.005,
    0.01,
    0.02,
    0.04,
    0.06,
    0.08,
    0.1,
    0.25,
    0.5,
    0.75,
    1.0,
    2.5,
    5.0,
    7.5,
    10.0,
    20.0,
    40.0,
    80.0,
    160.0,
    640.0,
    2560.0,
)
E2E_BUCKETS = (0.3, 0.5, 0.8, 1.0, 1.5, 2.0, 2.5, 5.0, 10.0, 15.0, 20.0, 30.0, 40.0, 50.0, 60.0, 120.0, 240.0)

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"


class _QueueCollector(Collector):
    """The gauges an endpoint picker (Gateway API Inference Extension) reads, with vLLM's names."""

    def __init__(self, model_name: str) -> None:
        self.model_name = model_name
        self.admission: Admission | None = None
        self.kv_cache_usage: Callable[[], float | None] = lambda: None

    def collect(self) -> Iterator[Metric]:
        running = GaugeMetricFamily(
            "vllm:num_requests_running", "Number of requests generating now.", labels=["model_name"]
        )
        waiting = GaugeMetricFamily(
            "vllm:num_requests_waiting", "Number of requests waiting for a slot.", labels=["model_name"]
        )
        admission = self.admission
        running.add_metric([self.model_name], admission.running if admission else 0)
        waiting.add_metric([self.model_name], admission.waiting if admission else 0)
        rejected = CounterMetricFamily(
            "localmodel:requests_rejected",
            "Requests refused because every slot was taken and the queue was full (429).",
            labels=["model_name"],
        )
        rejected.add_metric([self.model_name], admission.rejected if admission else 0)
        usage = GaugeMetricFamily(
            "vllm:kv_cache_usage_perc",
            "Share of the KV cache held by running requests (1 = full); busy slots for backends that "
            "do not report their cache.",
            labels=["model_name"],
        )
        usage.add_metric([self.model_name], self._usage(admission))
        yield running
        yield waiting
        yield rejected
        yield usage

    def _usage(self, admission: Admission | None) -> float:
        measured = self.kv_cache_usage()
        if measured is not None:
            return measured
        if admission is None:
            return 0.0
        return min(1.0, admission.running / max(1, admission.settings.limit))


class ServerMetrics:
    def __init__(self, model_name: str) -> None:
        self.registry = CollectorRegistry()
        self._queue = _QueueCollector(model_name)
        self.registry.register(self._queue)
        labels = ["model_name"]
        self.ttft = Histogram(
            "vllm:time_to_first_token_seconds",
            "Time from the request's arrival to its first generated token.",
            labels,
            buckets=TTFT_BUCKETS,
            registry=self.registry,
        ).labels(model_name)
        self.e2e = Histogram(
            "vllm:e2e_request_latency_seconds",
            "Time from the request's arrival to its last token.",
            labels,
            buckets=E2E_BUCKETS,
            registry=self.registry,
        ).labels(model_name)
        self.prompt_tokens = Counter(
            "vllm:prompt_tokens", "Prompt tokens processed.", labels, registry=self.registry
        ).labels(model_name)
        self.generation_tokens = Counter(
            "vllm:generation_tokens", "Tokens generated.", labels, registry=self.registry
        ).labels(model_name)
        success = Counter(
            "vllm:request_success",
            "Requests that finished, by finish reason.",
            ["model_name", "finished_reason"],
            registry=self.registry,
        )
        self.finished = {reason: success.labels(model_name, reason) for reason in ("stop", "length", "abort")}

    def watch(self, admission: Admission, kv_cache_usage: Callable[[], float | None] | None = None) -> None:
        self._queue.admission = admission
        if kv_cache_usage is not None:
            self._queue.kv_cache_usage = kv_cache_usage

    def request_done(
        self, arrival: float, first_token: float | None, end: float, prompt: int, generated: int, reason: str
    ) -> None:
        if first_token is not None:
            self.ttft.observe(first_token - arrival)
        self.e2e.observe(end - arrival)
        self.prompt_tokens.inc(prompt)
        self.generation_tokens.inc(generated)
        self.finished[reason if reason in self.finished else "abort"].inc()

    def render(self) -> bytes:
        return generate_latest(self.registry)
