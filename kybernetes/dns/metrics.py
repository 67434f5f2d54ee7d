"""Prometheus metrics under CoreDNS' names, so existing CoreDNS dashboards and alerts work."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest

_BUCKETS = (0.00025, 0.0005, 0.001, 0.002, 0.004, 0.008, 0.016, 0.032, 0.064, 0.128, 0.256,
            0.512, 1.024, 2.048, 4.096, 8.192)


class Metrics:
    def __init__(self, server: str, zone: str):
        self.registry = CollectorRegistry()
        self.server, self.zone = server, zone
        self.requests = Counter("coredns_dns_requests_total", "DNS requests.",
                                ["server", "zone", "proto", "family", "type"],
                                registry=self.registry)
        self.responses = Counter("coredns_dns_responses_total", "DNS responses by rcode.",
                                 ["server", "zone", "rcode", "plugin"], registry=self.registry)
        self.duration = Histogram("coredns_dns_request_duration_seconds",
                                  "Time to answer a DNS request.", ["server", "zone", "type"],
                                  buckets=_BUCKETS, registry=self.registry)
        self.cache_hits = Counter("coredns_cache_hits_total", "Answers served from the cache.",
                                  ["server"], registry=self.registry)
        self.cache_misses = Counter("coredns_cache_misses_total", "Answers not in the cache.",
                                    ["server"], registry=self.registry)
        self.forwards = Counter("coredns_forward_requests_total", "Queries sent upstream.",
                                ["to"], registry=self.registry)

    def observe(self, *, proto: str, family: str, qtype: str, rcode: str, plugin: str,
                zone: str, seconds: float) -> None:
        self.requests.labels(self.server, zone, proto, family, qtype).inc()
        self.responses.labels(self.server, zone, rcode, plugin).inc()
        self.duration.labels(self.server, zone, qtype).observe(seconds)

    def exposition(self) -> bytes:
        return generate_latest(self.registry)
