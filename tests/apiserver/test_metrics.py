"""The API server's /metrics: request counts by verb, resource and code, and the latency
histogram, in Prometheus' text format as a scraper (or `kubectl get --raw /metrics`) reads it."""

from __future__ import annotations

import uuid

from prometheus_client.parser import text_string_to_metric_families

from kybtest import needs_kubectl


def _samples(text: str) -> dict:
    return {(s.name, tuple(sorted(s.labels.items()))): s.value
            for fam in text_string_to_metric_families(text) for s in fam.samples}


def _requests(samples: dict, verb: str, resource: str, code: str) -> float:
    return samples.get(("apiserver_request_total",
                        (("code", code), ("resource", resource), ("verb", verb))), 0.0)


@needs_kubectl
def test_metrics_count_requests_and_latency(kubectl133):
    name = f"cm-{uuid.uuid4().hex[:8]}"
    before = _samples(kubectl133("get", "--raw", "/metrics"))
    kubectl133("create", "configmap", name, "--from-literal=a=b")
    for _ in range(3):
        kubectl133("get", "configmap", name)
    kubectl133("get", "configmap", "missing-" + name, check=False)
    after = _samples(kubectl133("get", "--raw", "/metrics"))

    assert _requests(after, "POST", "configmaps", "201") - _requests(before, "POST", "configmaps", "201") == 1
    assert _requests(after, "GET", "configmaps", "200") - _requests(before, "GET", "configmaps", "200") >= 3
    assert _requests(after, "GET", "configmaps", "404") - _requests(before, "GET", "configmaps", "404") >= 1

    # Buckets are cumulative and end in +Inf, which equals the count.
    buckets = sorted(((float(dict(labels)["le"]), v) for (n, labels), v in after.items()
                      if n == "apiserver_request_duration_seconds_bucket"
                      and dict(labels)["verb"] == "GET"))
    counts = [v for _, v in buckets]
    assert counts == sorted(counts) and buckets[-1][0] == float("inf")
    assert buckets[-1][1] == after[("apiserver_request_duration_seconds_count", (("verb", "GET"),))]
    assert after[("apiserver_request_duration_seconds_sum", (("verb", "GET"),))] > 0


def test_latency_bucket_bounds_are_inclusive():
    """Prometheus' `le`: an observation equal to a bound counts in that bucket."""
    from prometheus_client import generate_latest

    from kybernetes.apiserver.server import Metrics

    m = Metrics()
    for seconds in (0.005, 0.0051, 5.0, 7.0):
        m.observe("GET", "pods", 200, seconds)
    s = _samples(generate_latest(m.registry).decode())
    bucket = lambda le: s[("apiserver_request_duration_seconds_bucket", (("le", le), ("verb", "GET")))]
    assert (bucket("0.005"), bucket("0.01"), bucket("5.0"), bucket("+Inf")) == (1, 2, 3, 4)
    assert _requests(s, "GET", "pods", "200") == 4
