"""Prometheus metrics of the gateway (one registry per app, so tests can run several)."""

from __future__ import annotations

from dataclasses import dataclass, field

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram


@dataclass
class GatewayMetrics:
    registry: CollectorRegistry = field(default_factory=CollectorRegistry)

    def __post_init__(self) -> None:
        r = self.registry
        self.requests = Counter(
            "starcompute_requests", "Chat requests by outcome", ["status"], registry=r
        )
        self.tokens = Counter(
            "starcompute_completion_tokens", "Tokens generated in orbit", registry=r
        )
        self.in_flight = Gauge("starcompute_in_flight", "Requests in flight", registry=r)
        self.orbit_latency = Histogram(
            "starcompute_orbit_latency_seconds",
            "Ground -> orbit -> ground latency on the orbit clock",
            buckets=(1, 2, 5, 10, 20, 30, 60, 120, 300, 600, 1800, 3600, 7200),
            registry=r,
        )
        self.wall_ttft = Histogram(
            "starcompute_time_to_first_token_seconds",
            "Wall time from request to first token",
            buckets=(0.05, 0.1, 0.25, 0.5, 1, 2, 5, 10, 30, 60),
            registry=r,
        )
