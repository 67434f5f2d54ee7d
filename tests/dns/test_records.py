"""The cluster zone's answers, through DnsServer.answer (real DNS packets, no sockets).

Matched against the "Kubernetes DNS-Based Service Discovery" spec (kubernetes/dns
docs/specification.md) and CoreDNS' kubernetes plugin defaults (ttl 5, `pods insecure`,
dashed-IP endpoint names, NODATA for empty non-terminals)."""

from __future__ import annotations

import ipaddress

from dnslib import EDNS0, QTYPE, RCODE, DNSRecord
from hypothesis import given, settings
from hypothesis import strategies as st

from kybernetes.dns.cluster import dashed, undashed
from kybernetes.dns.records import Zone, reverse_ip
from kybernetes.dns.server import DnsServer

import pytest
from dns_helpers import FakeCluster, endpoint_slice, ep, namespace, service

ZONE = "cluster.local"


@pytest.fixture
def fake() -> FakeCluster:
    return FakeCluster()


def make_server(fake: FakeCluster, **kw) -> DnsServer:
    return DnsServer(Zone(fake.state, ZONE, pod_mode=kw.pop("pod_mode", "insecure")), **kw)


def ask(server: DnsServer, name: str, qtype: str = "A", proto: str = "udp",
        edns: int | None = None) -> DNSRecord:
    q = DNSRecord.question(name, qtype)
    if edns:
        q.add_ar(EDNS0(udp_len=edns))
    out = server.answer(q.pack(), proto)
    assert isinstance(out, bytes)
    reply = DNSRecord.parse(out)
    assert reply.header.id == q.header.id
    return reply


def values(reply: DNSRecord, qtype: str | None = None) -> list[str]:
    return sorted(str(r.rdata) for r in reply.rr
                  if qtype is None or r.rtype == getattr(QTYPE, qtype))


def rcode(reply: DNSRecord) -> str:
    return RCODE.get(reply.header.rcode)


def soa_in_authority(reply: DNSRecord) -> bool:
    return any(r.rtype == QTYPE.SOA for r in reply.auth)


def test_cluster_ip_service_a_and_nodata_for_aaaa(fake):
    fake.apply(namespace("ns"))
    fake.apply(service("ns", "web", "10.43.5.6", ports=[{"name": "http", "port": 80}]))
    s = make_server(fake)
    r = ask(s, "web.ns.svc.cluster.local")
    assert rcode(r) == "NOERROR" and values(r) == ["10.43.5.6"]
    assert r.header.aa and r.rr[0].ttl == 5
    nodata = ask(s, "web.ns.svc.cluster.local", "AAAA")
    assert rcode(nodata) == "NOERROR" and not nodata.rr and soa_in_authority(nodata)
    missing = ask(s, "nope.ns.svc.cluster.local")
    assert rcode(missing) == "NXDOMAIN" and soa_in_authority(missing)


def test_names_are_case_insensitive_and_keep_the_asked_case(fake):
    fake.apply(namespace("ns"))
    fake.apply(service("ns", "web", "10.43.5.6"))
    r = ask(make_server(fake), "WeB.Ns.SVC.Cluster.Local")
    assert values(r) == ["10.43.5.6"]
    assert str(r.rr[0].rname) == "WeB.Ns.SVC.Cluster.Local."


def test_dual_stack_service_has_a_and_aaaa(fake):
    fake.apply(namespace("ns"))
    fake.apply(service("ns", "web", ["10.43.0.7", "fd00:43::7"]))
    s = make_server(fake)
    assert values(ask(s, "web.ns.svc.cluster.local", "A")) == ["10.43.0.7"]
    assert values(ask(s, "web.ns.svc.cluster.local", "AAAA")) == ["fd00:43::7"]


def test_headless_service_answers_every_ready_endpoint(fake):
    fake.apply(namespace("ns"))
    fake.apply(service("ns", "db", "None"))
    fake.apply(endpoint_slice("ns", "db", "db-a", [ep("10.42.0.5"), ep("10.42.1.5"),
                                                   ep("10.42.2.5", ready=False),
                                                   ep("10.42.3.5", ready=None)]))
    fake.apply(endpoint_slice("ns", "db", "db-b", [ep("10.42.4.5"), ep("10.42.0.5")]))
    r = ask(make_server(fake), "db.ns.svc.cluster.local")
    assert values(r) == ["10.42.0.5", "10.42.1.5", "10.42.3.5", "10.42.4.5"]


def test_headless_without_ready_endpoints_is_nxdomain_unless_publishing_not_ready(fake):
    """Spec 2.4.1: no ready endpoints → NXDOMAIN."""
    fake.apply(namespace("ns"))
    fake.apply(service("ns", "db", "None"))
    fake.apply(endpoint_slice("ns", "db", "db-a", [ep("10.42.0.5", ready=False)]))
    s = make_server(fake)
    assert rcode(ask(s, "db.ns.svc.cluster.local")) == "NXDOMAIN"
    fake.apply(service("ns", "db", "None", publish_not_ready=True), "MODIFIED")
    assert values(ask(s, "db.ns.svc.cluster.local")) == ["10.42.0.5"]


def test_statefulset_hostnames_and_dashed_ip_names(fake):
    fake.apply(namespace("ns"))
    fake.apply(service("ns", "nginx", "None"))
    fake.apply(endpoint_slice("ns", "nginx", "nginx-x", [
        ep("10.42.0.10", hostname="web-0"), ep("10.42.1.11", hostname="web-1"),
        ep("10.42.2.12")]))
    s = make_server(fake)
    assert values(ask(s, "web-0.nginx.ns.svc.cluster.local")) == ["10.42.0.10"]
    assert values(ask(s, "WEB-1.nginx.ns.svc.cluster.local")) == ["10.42.1.11"]
    assert values(ask(s, "10-42-2-12.nginx.ns.svc.cluster.local")) == ["10.42.2.12"]
    assert rcode(ask(s, "web-2.nginx.ns.svc.cluster.local")) == "NXDOMAIN"


def test_srv_for_named_ports_of_a_cluster_ip_service(fake):
    fake.apply(namespace("ns"))
    fake.apply(service("ns", "web", "10.43.1.1", ports=[
        {"name": "http", "port": 80, "protocol": "TCP"},
        {"name": "dns", "port": 53, "protocol": "UDP"}]))
    s = make_server(fake)
    r = ask(s, "_http._tcp.web.ns.svc.cluster.local", "SRV")
    assert [(x.rdata.port, str(x.rdata.target)) for x in r.rr] == [(80, "web.ns.svc.cluster.local.")]
    assert values_additional(r) == ["10.43.1.1"]
    assert [x.rdata.port for x in ask(s, "_dns._udp.web.ns.svc.cluster.local", "SRV").rr] == [53]
    assert rcode(ask(s, "_http._udp.web.ns.svc.cluster.local", "SRV")) == "NXDOMAIN"
    ent = ask(s, "_tcp.web.ns.svc.cluster.local", "SRV")          # empty non-terminal
    assert rcode(ent) == "NOERROR" and not ent.rr
    # The A name holds the SRV set of every named port too (CoreDNS).
    assert sorted(x.rdata.port for x in ask(s, "web.ns.svc.cluster.local", "SRV").rr) == [53, 80]


def test_unnamed_ports_have_no_srv(fake):
    fake.apply(namespace("ns"))
    fake.apply(service("ns", "web", "10.43.1.1", ports=[{"port": 80, "protocol": "TCP"}]))
    r = ask(make_server(fake), "web.ns.svc.cluster.local", "SRV")
    assert rcode(r) == "NOERROR" and not r.rr


def values_additional(reply: DNSRecord) -> list[str]:
    return sorted(str(r.rdata) for r in reply.ar if r.rtype in (QTYPE.A, QTYPE.AAAA))


def test_headless_srv_one_record_per_endpoint(fake):
    """Spec 2.4.2: N ready endpoints × M named ports, target <hostname>.<svc>.<ns>.svc.<zone>."""
    fake.apply(namespace("ns"))
    fake.apply(service("ns", "nginx", "None", ports=[{"name": "web", "port": 80}]))
    fake.apply(endpoint_slice("ns", "nginx", "nginx-x", [
        ep("10.42.0.10", hostname="web-0"), ep("10.42.1.11"), ep("10.42.9.9", ready=False)],
        ports=[{"name": "web", "port": 8080, "protocol": "TCP"}]))
    r = ask(make_server(fake), "_web._tcp.nginx.ns.svc.cluster.local", "SRV")
    assert sorted((x.rdata.port, str(x.rdata.target)) for x in r.rr) == [
        (8080, "10-42-1-11.nginx.ns.svc.cluster.local."),
        (8080, "web-0.nginx.ns.svc.cluster.local.")]
    assert values_additional(r) == ["10.42.0.10", "10.42.1.11"]


def test_external_name_is_a_cname(fake):
    fake.apply(namespace("ns"))
    fake.apply(service("ns", "ext", type="ExternalName", external_name="www.example.com"))
    fake.apply(service("ns", "alias", type="ExternalName",
                       external_name="web.ns.svc.cluster.local"))
    fake.apply(service("ns", "web", "10.43.1.1"))
    s = make_server(fake)
    r = ask(s, "ext.ns.svc.cluster.local")
    assert [(QTYPE.get(x.rtype), str(x.rdata)) for x in r.rr] == [("CNAME", "www.example.com.")]
    chased = ask(s, "alias.ns.svc.cluster.local")
    assert [(QTYPE.get(x.rtype), str(x.rdata)) for x in chased.rr] == [
        ("CNAME", "web.ns.svc.cluster.local."), ("A", "10.43.1.1")]


def test_ptr_for_cluster_ips_and_endpoints(fake):
    fake.apply(namespace("ns"))
    fake.apply(service("ns", "web", "10.43.1.1"))
    fake.apply(service("ns", "nginx", "None"))
    fake.apply(endpoint_slice("ns", "nginx", "n", [ep("10.42.0.10", hostname="web-0"),
                                                   ep("10.42.0.11")]))
    s = make_server(fake)
    assert values(ask(s, "1.1.43.10.in-addr.arpa", "PTR")) == ["web.ns.svc.cluster.local."]
    assert values(ask(s, "10.0.42.10.in-addr.arpa", "PTR")) == ["web-0.nginx.ns.svc.cluster.local."]
    assert values(ask(s, "11.0.42.10.in-addr.arpa", "PTR")) == [
        "10-42-0-11.nginx.ns.svc.cluster.local."]
    assert rcode(ask(s, "9.9.9.10.in-addr.arpa", "PTR")) == "NXDOMAIN"


def test_pod_records_in_insecure_and_verified_mode(fake):
    fake.apply(namespace("ns"))
    s = make_server(fake)
    assert values(ask(s, "10-42-0-9.ns.pod.cluster.local")) == ["10.42.0.9"]
    assert values(ask(s, "fd00--9.ns.pod.cluster.local", "AAAA")) == ["fd00::9"]
    assert rcode(ask(s, "10-42-0-9.other.pod.cluster.local")) == "NXDOMAIN"
    assert rcode(ask(s, "not-an-ip.ns.pod.cluster.local")) == "NXDOMAIN"

    verified = FakeCluster(pods=True)
    verified.apply(namespace("ns"))
    verified.apply({"kind": "Pod", "apiVersion": "v1", "metadata": {"name": "p", "namespace": "ns"},
                    "status": {"podIP": "10.42.0.9", "podIPs": [{"ip": "10.42.0.9"}]}})
    v = make_server(verified, pod_mode="verified")
    assert values(ask(v, "10-42-0-9.ns.pod.cluster.local")) == ["10.42.0.9"]
    assert rcode(ask(v, "10-42-0-8.ns.pod.cluster.local")) == "NXDOMAIN"


def test_apex_version_and_empty_non_terminals(fake):
    fake.apply(namespace("ns"))
    s = make_server(fake)
    soa = ask(s, "cluster.local", "SOA")
    assert rcode(soa) == "NOERROR" and [QTYPE.get(r.rtype) for r in soa.rr] == ["SOA"]
    assert values(ask(s, "cluster.local", "NS")) == ["ns.dns.cluster.local."]
    assert values(ask(s, "dns-version.cluster.local", "TXT")) == ['"1.1.0"']
    for name in ("svc.cluster.local", "ns.svc.cluster.local", "pod.cluster.local"):
        r = ask(s, name)
        assert rcode(r) == "NOERROR" and not r.rr and soa_in_authority(r), name
    for name in ("gone.svc.cluster.local", "foo.cluster.local", "a.b.web.ns.svc.cluster.local"):
        assert rcode(ask(s, name)) == "NXDOMAIN", name


def test_names_outside_the_cluster_are_refused_without_upstreams(fake):
    r = ask(make_server(fake), "example.com")
    assert rcode(r) == "REFUSED" and not r.rr


def test_big_udp_answer_is_truncated_and_tcp_gets_everything(fake):
    fake.apply(namespace("ns"))
    fake.apply(service("ns", "big", "None"))
    ips = [f"10.42.{i // 250}.{i % 250 + 1}" for i in range(120)]
    fake.apply(endpoint_slice("ns", "big", "big-x", [ep(ip) for ip in ips]))
    s = make_server(fake)
    udp = ask(s, "big.ns.svc.cluster.local")
    assert udp.header.tc and not udp.rr
    assert str(udp.q.qname) == "big.ns.svc.cluster.local."
    tcp = ask(s, "big.ns.svc.cluster.local", proto="tcp")
    assert not tcp.header.tc and values(tcp) == sorted(ips)
    # A client announcing a big EDNS0 buffer gets it all over UDP.
    big = ask(s, "big.ns.svc.cluster.local", edns=4096)
    assert not big.header.tc and len(big.rr) == len(ips)


def test_cached_answers_follow_changes(fake):
    fake.apply(namespace("ns"))
    fake.apply(service("ns", "db", "None"))
    sl = fake.apply(endpoint_slice("ns", "db", "db-a", [ep("10.42.0.5")]))
    s = make_server(fake)
    assert values(ask(s, "db.ns.svc.cluster.local")) == ["10.42.0.5"]
    assert values(ask(s, "db.ns.svc.cluster.local")) == ["10.42.0.5"]
    sl["endpoints"] = [ep("10.42.0.6")]
    fake.apply(sl, "MODIFIED")
    assert values(ask(s, "db.ns.svc.cluster.local")) == ["10.42.0.6"]
    fake.apply(sl, "DELETED")
    assert rcode(ask(s, "db.ns.svc.cluster.local")) == "NXDOMAIN"


ip_addresses = st.one_of(st.ip_addresses(v=4), st.ip_addresses(v=6)).map(str)


@given(ip_addresses)
def test_dashed_names_round_trip(ip):
    assert undashed(dashed(ip)) == ip


@given(ip_addresses)
def test_reverse_names_round_trip(ip):
    labels = tuple(ipaddress.ip_address(ip).reverse_pointer.split("."))
    assert reverse_ip(labels) == ip


@settings(max_examples=50)
@given(st.text(alphabet="aAbBsSvVcC", min_size=1, max_size=8).filter(lambda s: s.isalpha()))
def test_any_case_of_a_service_name_finds_it(name):
    fake = FakeCluster()
    fake.apply(namespace("ns"))
    fake.apply(service("ns", name.lower(), "10.43.2.2"))
    s = make_server(fake, cache=False)
    flipped = "".join(c.swapcase() if i % 2 else c for i, c in enumerate(name))
    assert values(ask(s, f"{flipped}.NS.svc.cluster.local")) == ["10.43.2.2"]


def test_malformed_and_non_query_packets(fake):
    s = make_server(fake)
    garbage = b"\x12\x34" + b"\xff" * 9
    reply = DNSRecord.parse(s.answer(garbage, "udp"))
    assert reply.header.id == 0x1234 and RCODE.get(reply.header.rcode) == "FORMERR"
    notify = DNSRecord.question("cluster.local", "SOA")
    notify.header.opcode = 4
    assert rcode(DNSRecord.parse(s.answer(bytes(notify.pack()), "udp"))) == "NOTIMP"


def test_upstream_addresses_parse():
    from kybernetes.dns.forward import parse_hostport
    assert parse_hostport("10.0.0.1") == ("10.0.0.1", 53)
    assert parse_hostport("127.0.0.2:5353") == ("127.0.0.2", 5353)
    assert parse_hostport("[fd00::1]:54") == ("fd00::1", 54)
    assert parse_hostport("fd00::1") == ("fd00::1", 53)
    with pytest.raises(ValueError):
        parse_hostport("dns.example.com:53")
