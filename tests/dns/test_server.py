"""The DNS server against a real API server: informers → records → UDP/TCP answers, read with
dnspython's resolver (which applies the pod's search list and ndots like glibc does).

Records as the "Kubernetes DNS-Based Service Discovery" spec (kubernetes/dns
docs/specification.md) describes them; behaviour beyond it as CoreDNS' kubernetes plugin."""

from __future__ import annotations

import asyncio
import socket
import sys
import time
import urllib.request
import uuid
from pathlib import Path

import dns.asyncquery
import dns.asyncresolver
import dns.message
import dns.rcode
import dns.resolver
import dns.reversename
import pytest

sys.path.insert(0, str(Path(__file__).parent.parent))
import kybtest as conftest  # noqa: E402  (the shared test helpers)

from kybernetes.api.errors import ApiError  # noqa: E402
from kybernetes.dns.cluster import NAMESPACES, SERVICES, SLICES  # noqa: E402
from kybernetes.dns.main import Dns, DnsConfig  # noqa: E402

DEADLINE = conftest.PATIENCE


async def eventually(check, timeout: float = DEADLINE):
    """Poll an async check until it returns a truthy value (informers are eventually consistent)."""
    end = time.monotonic() + timeout
    last: Exception | None = None
    while time.monotonic() < end:
        try:
            out = await check()
            if out:
                return out
        except Exception as e:  # noqa: BLE001 - the last failure is reported below
            last = e
        await asyncio.sleep(0.05)
    raise AssertionError(f"not reached in {timeout}s; last error: {last!r}")


@pytest.fixture
def api(client):
    """The session server's API client (tests/conftest.py), by the name these tests use."""
    return client


async def start_dns(apiserver, **kw) -> Dns:
    cfg = DnsConfig(kubeconfig=str(apiserver.kubeconfig), listen=kw.pop("listen", "127.0.0.1:0"),
                    metrics_listen=kw.pop("metrics_listen", "127.0.0.1:0"), **kw)
    d = Dns(cfg)
    await d.start()
    await d.factory.wait_for_sync(DEADLINE)
    return d


@pytest.fixture
async def server(apiserver):
    d = await start_dns(apiserver, cluster_ip="10.43.0.10")
    yield d
    await d.stop()


@pytest.fixture
async def ns(api):
    name = f"dns-{uuid.uuid4().hex[:8]}"
    await api.create(NAMESPACES, {"metadata": {"name": name}})
    yield name
    try:
        await api.delete(NAMESPACES, name)
    except ApiError:
        pass


def resolver_for(server: Dns, namespace: str) -> dns.asyncresolver.Resolver:
    """What a pod in `namespace` gets: search <ns>.svc.<domain> svc.<domain> <domain>, ndots:5."""
    r = dns.asyncresolver.Resolver(configure=False)
    host, port = server.server.address
    r.nameservers, r.port = [host], port
    r.search = [dns.name.from_text(s) for s in (f"{namespace}.svc.cluster.local",
                                                "svc.cluster.local", "cluster.local")]
    r.ndots, r.use_search_by_default = 5, True
    r.lifetime, r.timeout = 5, 2
    return r


async def a_records(r, name: str) -> list[str]:
    return sorted(x.address for x in await r.resolve(name, "A"))


def service(ns: str, name: str, **spec) -> dict:
    return {"metadata": {"name": name, "namespace": ns}, "spec": spec}


def endpoint_slice(ns: str, svc: str, endpoints: list[dict], ports: list[dict] | None = None,
                   name: str | None = None) -> dict:
    return {"metadata": {"name": name or f"{svc}-{uuid.uuid4().hex[:5]}", "namespace": ns,
                         "labels": {"kubernetes.io/service-name": svc}},
            "addressType": "IPv4", "endpoints": endpoints, "ports": ports or []}


async def test_service_names_resolve_through_the_search_path_over_udp_and_tcp(server, api, ns):
    svc = await api.create(SERVICES, service(ns, "web", ports=[
        {"name": "http", "port": 80, "protocol": "TCP"}]), ns)
    ip = svc["spec"]["clusterIP"]
    r = resolver_for(server, ns)
    for name in ("web", f"web.{ns}", f"web.{ns}.svc", f"web.{ns}.svc.cluster.local."):
        assert await eventually(lambda: a_records(r, name)) == [ip], name
    # Over TCP, straight to the server.
    host, port = server.server.address
    q = dns.message.make_query(f"web.{ns}.svc.cluster.local.", "A")
    reply = await dns.asyncquery.tcp(q, host, port=port, timeout=5)
    assert [x.address for rrset in reply.answer for x in rrset] == [ip]
    # SRV for the named port, PTR for the cluster IP.
    srv = await r.resolve(f"_http._tcp.web.{ns}.svc.cluster.local.", "SRV")
    assert [(x.port, str(x.target)) for x in srv] == [(80, f"web.{ns}.svc.cluster.local.")]
    ptr = await r.resolve(dns.reversename.from_address(ip), "PTR")
    assert [str(x.target) for x in ptr] == [f"web.{ns}.svc.cluster.local."]


async def test_nxdomain_and_nodata(server, api, ns):
    await api.create(SERVICES, service(ns, "web", ports=[{"port": 80}]), ns)
    r = resolver_for(server, ns)
    await eventually(lambda: a_records(r, f"web.{ns}.svc.cluster.local."))
    with pytest.raises(dns.resolver.NoAnswer):          # the name exists: NODATA
        await r.resolve(f"web.{ns}.svc.cluster.local.", "AAAA")
    with pytest.raises(dns.resolver.NXDOMAIN):
        await r.resolve(f"nothing.{ns}.svc.cluster.local.", "A")
    host, port = server.server.address
    reply = await dns.asyncquery.udp(dns.message.make_query(f"{ns}.svc.cluster.local.", "A"),
                                     host, port=port, timeout=5)
    assert reply.rcode() == dns.rcode.NOERROR and not reply.answer
    assert [rr.rdtype for rr in reply.authority] == [dns.rdatatype.SOA]


async def test_headless_service_statefulset_names_and_endpoint_changes(server, api, ns):
    await api.create(SERVICES, service(ns, "nginx", clusterIP="None", ports=[
        {"name": "web", "port": 80}]), ns)
    ports = [{"name": "web", "port": 8080, "protocol": "TCP"}]
    sl = await api.create(SLICES, endpoint_slice(ns, "nginx", [
        {"addresses": ["10.42.0.10"], "hostname": "web-0", "conditions": {"ready": True}},
        {"addresses": ["10.42.1.11"], "hostname": "web-1", "conditions": {"ready": True}},
        {"addresses": ["10.42.2.12"], "hostname": "web-2", "conditions": {"ready": False}},
    ], ports), ns)
    r = resolver_for(server, ns)
    assert await eventually(lambda: a_records(r, "nginx")) == ["10.42.0.10", "10.42.1.11"]
    assert await a_records(r, f"web-1.nginx.{ns}.svc.cluster.local.") == ["10.42.1.11"]
    assert await a_records(r, "web-0.nginx") == ["10.42.0.10"]
    srv = await r.resolve(f"_web._tcp.nginx.{ns}.svc.cluster.local.", "SRV")
    assert sorted((x.port, str(x.target)) for x in srv) == [
        (8080, f"web-0.nginx.{ns}.svc.cluster.local."),
        (8080, f"web-1.nginx.{ns}.svc.cluster.local.")]

    # web-2 becomes ready, web-0 goes away: the answers follow the EndpointSlice.
    sl["endpoints"] = [
        {"addresses": ["10.42.1.11"], "hostname": "web-1", "conditions": {"ready": True}},
        {"addresses": ["10.42.2.12"], "hostname": "web-2", "conditions": {"ready": True}}]
    await api.update(SLICES, sl)

    async def moved():
        return await a_records(r, "nginx") == ["10.42.1.11", "10.42.2.12"]
    await eventually(moved)
    with pytest.raises(dns.resolver.NXDOMAIN):
        await r.resolve(f"web-0.nginx.{ns}.svc.cluster.local.", "A")
    ptr = await r.resolve(dns.reversename.from_address("10.42.2.12"), "PTR")
    assert [str(x.target) for x in ptr] == [f"web-2.nginx.{ns}.svc.cluster.local."]


async def test_big_answer_truncated_over_udp_and_complete_over_tcp(server, api, ns):
    await api.create(SERVICES, service(ns, "big", clusterIP="None"), ns)
    ips = [f"10.42.{i // 200}.{i % 200 + 1}" for i in range(100)]
    await api.create(SLICES, endpoint_slice(ns, "big", [{"addresses": [ip]} for ip in ips]), ns)
    host, port = server.server.address
    name = f"big.{ns}.svc.cluster.local."

    async def truncated():
        reply = await dns.asyncquery.udp(dns.message.make_query(name, "A"), host, port=port,
                                         timeout=5, ignore_trailing=True)
        return reply.flags & dns.flags.TC
    assert await eventually(truncated)
    # The resolver sees TC and retries over TCP by itself.
    assert await a_records(resolver_for(server, ns), name) == sorted(ips)


async def test_external_name_is_a_cname(server, api, ns):
    await api.create(SERVICES, service(ns, "ext", type="ExternalName",
                                       externalName="db.example.org"), ns)
    host, port = server.server.address

    async def cname():
        q = dns.message.make_query(f"ext.{ns}.svc.cluster.local.", "A")
        reply = await dns.asyncquery.udp(q, host, port=port, timeout=5)
        return [str(x.target) for rrset in reply.answer for x in rrset
                if rrset.rdtype == dns.rdatatype.CNAME]
    assert await eventually(cname) == ["db.example.org."]


async def test_forwarding_to_an_upstream_and_refusing_without_one(apiserver, api, ns):
    """The "upstream" is a second instance on 127.0.0.2 serving another domain; nothing leaves
    the machine."""
    upstream = await start_dns(apiserver, listen="127.0.0.2:0", cluster_domain="upstream.test",
                               cluster_ip=None, metrics_listen=None)
    front = await start_dns(apiserver, cluster_ip=None,
                            upstreams=["%s:%d" % upstream.server.address])
    alone = await start_dns(apiserver, cluster_ip=None)
    try:
        svc = await api.create(SERVICES, service(ns, "web", ports=[{"port": 80}]), ns)
        name = f"web.{ns}.svc.upstream.test."
        r = resolver_for(front, ns)
        assert await eventually(lambda: a_records(r, name)) == [svc["spec"]["clusterIP"]]
        q = dns.message.make_query(name, "A")
        tcp = await dns.asyncquery.tcp(q, *front.server.address[:1], port=front.server.address[1],
                                       timeout=5)
        assert [x.address for rrset in tcp.answer for x in rrset] == [svc["spec"]["clusterIP"]]
        host, port = alone.server.address
        refused = await dns.asyncquery.udp(q, host, port=port, timeout=5)
        assert refused.rcode() == dns.rcode.REFUSED
        metrics = await asyncio.to_thread(http_get, front, "/metrics")
        assert 'coredns_forward_requests_total{to="127.0.0.2:' in metrics
    finally:
        for d in (alone, front, upstream):
            await d.stop()


def http_get(d: Dns, path: str) -> str:
    host, port = d.http_address
    with urllib.request.urlopen(f"http://{host}:{port}{path}", timeout=5) as resp:
        return resp.read().decode()


async def test_metrics_and_health(server, api, ns):
    r = resolver_for(server, ns)
    await api.create(SERVICES, service(ns, "web", ports=[{"port": 80}]), ns)
    await eventually(lambda: a_records(r, f"web.{ns}.svc.cluster.local."))
    with pytest.raises(dns.resolver.NXDOMAIN):
        await r.resolve(f"gone.{ns}.svc.cluster.local.", "A")
    assert await asyncio.to_thread(http_get, server, "/health") == "OK"
    assert await asyncio.to_thread(http_get, server, "/ready") == "OK"
    text = await asyncio.to_thread(http_get, server, "/metrics")
    requests = [line for line in text.splitlines()
                if line.startswith("coredns_dns_requests_total{") and 'type="A"' in line]
    assert requests and float(requests[0].rsplit(" ", 1)[1]) >= 2
    assert 'rcode="NXDOMAIN"' in text and 'rcode="NOERROR"' in text
    assert "coredns_dns_request_duration_seconds_bucket" in text


def free_udp_tcp_port() -> int:
    while True:
        port = conftest.free_port()
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
            try:
                s.bind(("127.0.0.1", port))
                return port
            except OSError:
                continue


async def test_kyb_dns_process_creates_kube_dns_for_cluster_info(apiserver, api, components,
                                                                 kubectl133, ns):
    port, http_port = free_udp_tcp_port(), conftest.free_port()
    components("dns", "--kubeconfig", str(apiserver.kubeconfig), "--listen", f"127.0.0.1:{port}",
               "--metrics-listen", f"127.0.0.1:{http_port}")

    async def ready():
        def get():
            with urllib.request.urlopen(f"http://127.0.0.1:{http_port}/ready", timeout=1) as r:
                return r.status == 200
        return await asyncio.to_thread(get)
    await eventually(ready)

    svc = await eventually(lambda: api.get(SERVICES, "kube-dns", "kube-system"))
    assert svc["spec"]["clusterIP"] == "10.43.0.10"
    assert {(p["name"], p["port"], p["protocol"]) for p in svc["spec"]["ports"]} == {
        ("dns", 53, "UDP"), ("dns-tcp", 53, "TCP"), ("metrics", 9153, "TCP")}
    out = kubectl133("cluster-info")
    assert "Kubernetes control plane is running at" in out
    assert "CoreDNS is running at" in out and "services/kube-dns:dns/proxy" in out

    # The process answers for the kube-dns Service itself.
    q = dns.message.make_query("kube-dns.kube-system.svc.cluster.local.", "A")

    async def answered():
        reply = await dns.asyncquery.udp(q, "127.0.0.1", port=port, timeout=2)
        return [x.address for rrset in reply.answer for x in rrset]
    assert await eventually(answered) == ["10.43.0.10"]
