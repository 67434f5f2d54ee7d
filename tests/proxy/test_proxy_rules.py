"""Rule generation is pure: Services + EndpointSlices + node → rules. Properties, not goldens,
checked against upstream kube-proxy's layout (pkg/proxy/iptables/proxier.go, pkg/proxy/nftables,
pkg/proxy/topology.go CategorizeEndpoints)."""

from __future__ import annotations

import base64
import hashlib
import re
from fractions import Fraction

from hypothesis import given, settings
from hypothesis import strategies as st

from kybernetes.proxy import iptables, model, nftables
from kybernetes.proxy.conntrack import cleanup_commands

NODE = model.NodeInfo("n1", "10.42.0.0/16")


def service(name="web", ip="10.43.0.10", ns="default", ports=None, **spec) -> dict:
    ports = ports or [{"name": "http", "port": 80, "protocol": "TCP"}]
    return {"metadata": {"namespace": ns, "name": name},
            "spec": {"clusterIP": ip, "type": "ClusterIP", "ports": ports, **spec}}


def ep(ip, node="n1", ready=True, serving=None, terminating=False) -> dict:
    conds = {"ready": ready, "terminating": terminating}
    if serving is not None:
        conds["serving"] = serving
    return {"addresses": [ip], "nodeName": node, "conditions": conds}


def slice_(svc="web", endpoints=(), ns="default", ports=None, name=None) -> dict:
    return {"metadata": {"namespace": ns, "name": name or f"{svc}-x",
                         "labels": {"kubernetes.io/service-name": svc}},
            "addressType": "IPv4",
            "ports": ports or [{"name": "http", "port": 8080, "protocol": "TCP"}],
            "endpoints": list(endpoints)}


def ipt(services, slices, node=NODE):
    return iptables.render(model.build(services, slices), node)


def jumps(rules: list[str]) -> list[str]:
    return [r.split(" -j ")[-1].split()[0] for r in rules]


# ---- names ----

def test_chain_names_use_upstream_hash():
    """KUBE-SVC-<base32(sha256("ns/name:port" + "tcp"))[:16]>, as upstream's portProtoHash."""
    sp = model.build([service()], [])[0]
    want = base64.b32encode(hashlib.sha256(b"default/web:httptcp").digest()).decode()[:16]
    assert iptables.svc_chain(sp) == "KUBE-SVC-" + want
    unnamed = model.build([service(ports=[{"port": 80}])], [])[0]
    assert unnamed.port_key == "default/web"
    sep = iptables.sep_chain(sp, "10.42.1.5:8080")
    want = base64.b32encode(hashlib.sha256(b"default/web:httptcp10.42.1.5:8080").digest()).decode()[:16]
    assert sep == "KUBE-SEP-" + want


# ---- balancing ----

ips = st.lists(st.integers(2, 250).map(lambda i: f"10.42.1.{i}"), min_size=1, max_size=12, unique=True)


@given(ips)
def test_every_ready_endpoint_has_a_sep_chain_and_uniform_odds(addrs):
    chains = ipt([service()], [slice_(endpoints=[ep(a) for a in addrs])])
    sp = model.build([service()], [])[0]
    svc = iptables.svc_chain(sp)
    seps = [iptables.sep_chain(sp, f"{a}:8080") for a in addrs]
    assert all(s in chains for s in seps)
    for s, a in zip(seps, addrs):
        assert any(f"--to-destination {a}:8080" in r for r in chains[s])
        assert any(f"-s {a}/32 -j KUBE-MARK-MASQ" in r for r in chains[s])   # hairpin
    balance = [r for r in chains[svc] if "KUBE-SEP-" in r]
    assert sorted(jumps(balance)) == sorted(seps)
    # probabilities 1/N, 1/(N-1), … 1/2, then unconditional: each endpoint gets 1/N overall
    left, share = Fraction(1), []
    for i, rule in enumerate(balance):
        m = re.search(r"--probability (\S+)", rule)
        p = Fraction(1) if m is None else Fraction(m.group(1))
        assert (m is None) == (i == len(balance) - 1)
        assert abs(p - Fraction(1, len(balance) - i)) < Fraction(1, 10**9)
        share.append(left * p)
        left -= left * p
    assert all(abs(s - Fraction(1, len(addrs))) < Fraction(1, 10**8) for s in share)


@given(ips, st.lists(st.booleans(), min_size=12, max_size=12))
def test_only_ready_endpoints_serve_unless_none_is_ready(addrs, ready):
    eps = [ep(a, ready=r, serving=r or i % 2 == 0, terminating=not r)
           for i, (a, r) in enumerate(zip(addrs, ready))]
    chains = ipt([service()], [slice_(endpoints=eps)])
    dnat = {m.group(1) for rules in chains.values() for r in rules
            if (m := re.search(r"--to-destination (\S+):", r))}
    ready_ips = {e["addresses"][0] for e in eps if e["conditions"]["ready"]}
    fallback = {e["addresses"][0] for e in eps
                if e["conditions"].get("serving") and e["conditions"]["terminating"]}
    assert dnat == (ready_ips or fallback)


def test_headless_and_external_name_services_get_no_rules():
    hl = service(name="hl", ip="None")
    xn = service(name="xn", ip="", type="ExternalName", externalName="example.org")
    slices = [slice_("hl", [ep("10.42.1.2")]), slice_("xn", [ep("10.42.1.3")])]
    assert model.build([hl, xn], slices) == []
    chains = ipt([hl, xn], slices)
    assert set(chains) == set(iptables.BASE_CHAINS)
    rs = nftables.render(model.build([hl, xn], slices), NODE)
    assert rs.chains == {} and all(not m for m in rs.maps.values())


def test_named_target_port_comes_from_the_slice_port_of_the_same_name():
    svc = service(ports=[{"name": "http", "port": 80, "targetPort": "web"},
                         {"name": "metrics", "port": 9100, "targetPort": "m"}])
    sl = slice_(endpoints=[ep("10.42.1.2")],
                ports=[{"name": "metrics", "port": 9091, "protocol": "TCP"},
                       {"name": "http", "port": 8081, "protocol": "TCP"}])
    ports = {sp.port_name: sp for sp in model.build([svc], [sl])}
    assert [e.addr for e in ports["http"].endpoints] == ["10.42.1.2:8081"]
    assert [e.addr for e in ports["metrics"].endpoints] == ["10.42.1.2:9091"]


def test_internal_traffic_policy_local_only_jumps_to_local_endpoints():
    svc = service(internalTrafficPolicy="Local")
    chains = ipt([svc], [slice_(endpoints=[ep("10.42.1.2"), ep("10.42.2.2", node="n2")])])
    sp = model.build([svc], [])[0]
    entry = [r for r in chains["KUBE-SERVICES"] if "10.43.0.10/32" in r]
    assert jumps(entry) == [iptables.svl_chain(sp)]
    dnat = [r for rules in chains.values() for r in rules if "DNAT" in r]
    assert len(dnat) == 1 and "10.42.1.2:8080" in dnat[0]
    # no local endpoint: no rule at all for the cluster IP
    chains = ipt([svc], [slice_(endpoints=[ep("10.42.2.2", node="n2")])])
    assert not [r for r in chains["KUBE-SERVICES"] if "10.43.0.10/32" in r]


def test_external_traffic_policy_local():
    """External traffic only to local endpoints; pod and node-local sources short-circuit to
    all endpoints (upstream's KUBE-EXT chain)."""
    svc = service(type="NodePort", externalTrafficPolicy="Local",
                  ports=[{"name": "http", "port": 80, "nodePort": 30080}])
    chains = ipt([svc], [slice_(endpoints=[ep("10.42.1.2"), ep("10.42.2.2", node="n2")])])
    sp = model.build([svc], [])[0]
    ext, svl, svcc = iptables.ext_chain(sp), iptables.svl_chain(sp), iptables.svc_chain(sp)
    assert jumps(chains["KUBE-NODEPORTS"]) == [ext]
    assert jumps(chains[ext])[-1] == svl
    assert any("-s 10.42.0.0/16" in r and r.endswith(f"-j {svcc}") for r in chains[ext])
    assert not any(r.endswith("-j KUBE-MARK-MASQ") and "addrtype" not in r for r in chains[ext])
    local = {r.split("--to-destination ")[1] for s in jumps(chains[svl]) for r in chains[s] if "DNAT" in r}
    assert local == {"10.42.1.2:8080"}


def test_external_traffic_policy_cluster_masquerades_external_traffic():
    svc = service(type="LoadBalancer", externalIPs=["192.0.2.7"],
                  ports=[{"name": "http", "port": 80, "nodePort": 30081}])
    svc["status"] = {"loadBalancer": {"ingress": [{"ip": "192.0.2.9"}]}}
    chains = ipt([svc], [slice_(endpoints=[ep("10.42.2.2", node="n2")])])
    sp = model.build([svc], [])[0]
    ext = iptables.ext_chain(sp)
    assert jumps(chains[ext]) == ["KUBE-MARK-MASQ", iptables.svc_chain(sp)]
    for ip in ("192.0.2.7", "192.0.2.9"):
        assert jumps([r for r in chains["KUBE-SERVICES"] if f"-d {ip}/32" in r]) == [ext]
    assert jumps([r for r in chains["KUBE-NODEPORTS"] if "--dport 30081" in r]) == [ext]


def test_session_affinity_uses_recent_with_the_timeout():
    svc = service(sessionAffinity="ClientIP",
                  sessionAffinityConfig={"clientIP": {"timeoutSeconds": 60}})
    chains = ipt([svc], [slice_(endpoints=[ep("10.42.1.2"), ep("10.42.1.3")])])
    sp = model.build([svc], [])[0]
    svc_rules = chains[iptables.svc_chain(sp)]
    checks = [r for r in svc_rules if "--rcheck" in r]
    assert len(checks) == 2 and all("--seconds 60" in r for r in checks)
    assert svc_rules.index(checks[-1]) < min(i for i, r in enumerate(svc_rules) if "statistic" in r)
    for sep in jumps(checks):
        assert any(f"--name {sep}" in r and "--set" in r for r in chains[sep])


# ---- nftables ----

@given(ips)
def test_nft_numgen_covers_every_endpoint(addrs):
    svc = service(sessionAffinity="ClientIP")
    rs = nftables.render(model.build([svc], [slice_(endpoints=[ep(a) for a in addrs])]), NODE)
    sp = model.build([svc], [])[0]
    chain = nftables.service_chain(sp)
    assert rs.maps["service-ips"] == {"10.43.0.10 . tcp . 80": f"goto {chain}"}
    numgen = [r for r in rs.chains[chain] if "numgen" in r]
    assert len(numgen) == 1 and f"mod {len(addrs)} " in numgen[0]
    targets = re.findall(r"(\d+) : goto (\S+?)[,} ]", numgen[0])
    assert [int(i) for i, _ in targets] == list(range(len(addrs)))
    assert {t for _, t in targets} == {nftables.endpoint_chain(sp, a, 8080) for a in addrs}
    for a in addrs:
        rules = rs.chains[nftables.endpoint_chain(sp, a, 8080)]
        assert rules[-1] == f"meta l4proto tcp dnat to {a}:8080"
        assert nftables.affinity_set(sp, a, 8080) in rs.sets


# ---- incremental updates ----

@settings(max_examples=50)
@given(st.lists(st.tuples(st.sampled_from("abcdef"), ips), max_size=5),
       st.lists(st.tuples(st.sampled_from("abcdef"), ips), max_size=5))
def test_restore_script_rewrites_only_changed_chains(before, after):
    def chains(spec):
        spec = dict(spec)
        svcs = [service(name=n, ip=f"10.43.0.{10 + 'abcdef'.index(n)}") for n in spec]
        return ipt(svcs, [slice_(n, [ep(a) for a in eps]) for n, eps in spec.items()])

    old, new = chains(before), chains(after)
    text = iptables.restore_script(old, new)
    if old == new:
        assert text is None
        return
    declared = re.findall(r"^:(\S+) ", text, re.M)
    deleted = re.findall(r"^-X (\S+)$", text, re.M)
    assert set(deleted) == set(old) - set(new)
    assert set(declared) == {c for c in new if old.get(c) != new[c]} | set(deleted)
    for c in declared:
        if c in new:
            assert [line for line in text.splitlines() if line.startswith(f"-A {c} ")] == new[c]


def test_nft_script_is_none_without_change_and_minimal_otherwise():
    svcs = [service(), service(name="db", ip="10.43.0.11")]
    a = nftables.render(model.build(svcs, [slice_(endpoints=[ep("10.42.1.2")]),
                                          slice_("db", [ep("10.42.1.9")])]), NODE)
    b = nftables.render(model.build(svcs, [slice_(endpoints=[ep("10.42.1.3")]),
                                          slice_("db", [ep("10.42.1.9")])]), NODE)
    assert nftables.script(a, a) is None
    text = nftables.script(a, b)
    assert "delete table" not in text
    assert "default/db" not in text                  # untouched service, untouched chains
    assert "delete chain ip kube-proxy endpoint-" in text and "10.42.1.2" in text
    assert nftables.script(None, a).startswith("add table ip kube-proxy\ndelete table")


# ---- conntrack ----

def test_udp_conntrack_cleanup_for_removed_endpoints_only():
    udp = [{"name": "dns", "port": 53, "protocol": "UDP"}]
    svc = service(ports=udp)
    sl_ports = [{"name": "dns", "port": 5353, "protocol": "UDP"}]
    old = model.build([svc], [slice_(endpoints=[ep("10.42.1.2"), ep("10.42.1.3")], ports=sl_ports)])
    new = model.build([svc], [slice_(endpoints=[ep("10.42.1.2")], ports=sl_ports)])
    cmds = cleanup_commands(old, new, NODE)
    assert cmds == [["conntrack", "-D", "-p", "udp", "--orig-dst", "10.43.0.10",
                     "--dst-nat", "10.42.1.3"]]
    # first endpoint of a UDP service: stale entries to the VIP go
    empty = model.build([svc], [])
    assert cleanup_commands(empty, new, NODE) == [
        ["conntrack", "-D", "-p", "udp", "--orig-dst", "10.43.0.10", "--orig-port-dst", "53"]]
    tcp_old = model.build([service()], [slice_(endpoints=[ep("10.42.1.2")])])
    assert cleanup_commands(tcp_old, [], NODE) == []
