"""Service ports → an nftables ruleset in table `ip kube-proxy`, laid out as upstream's nftables
mode (pure): a `service-ips` verdict map (VIP . proto . port → goto chain), a
`service-nodeports` map, per-port `service-`/`local-`/`external-` chains balancing with
`numgen random mod N vmap`, `endpoint-` chains that DNAT, and `affinity-` sets with timeouts for
sessionAffinity ClientIP.
"""

from __future__ import annotations

import base64
import hashlib
from dataclasses import dataclass, field

from .model import (NodeInfo, ServicePort, cluster_endpoints, local_endpoints, needs_cluster,
                    uses_local)

TABLE = "ip kube-proxy"
MASQ_BIT = "0x4000"
MAX_NAME = 200   # nft allows 256; other names are built from these

# Fixed part of the table, created once (atomically with the first sync). nft 1.0.6 needs
# multi-line chain bodies and a numeric priority on the output hook.
STATIC = f"""table {TABLE} {{
	map service-ips {{
		type ipv4_addr . inet_proto . inet_service : verdict
		comment "ClusterIP, ExternalIP and LoadBalancer IP traffic"
	}}
	map service-nodeports {{
		type inet_proto . inet_service : verdict
		comment "NodePort traffic"
	}}
	chain mark-for-masquerade {{
		meta mark set meta mark or {MASQ_BIT}
	}}
	chain masquerading {{
		meta mark & {MASQ_BIT} == 0 return
		meta mark set meta mark xor {MASQ_BIT}
		masquerade fully-random
	}}
	chain services {{
		ip daddr . meta l4proto . th dport vmap @service-ips
		fib daddr type local ip daddr != 127.0.0.0/8 meta l4proto . th dport vmap @service-nodeports
	}}
	chain nat-prerouting {{
		type nat hook prerouting priority -100; policy accept;
		jump services
	}}
	chain nat-output {{
		type nat hook output priority -100; policy accept;
		jump services
	}}
	chain nat-postrouting {{
		type nat hook postrouting priority 100; policy accept;
		jump masquerading
	}}
}}
"""
MAPS = ("service-ips", "service-nodeports")


@dataclass
class Ruleset:
    chains: dict[str, list[str]] = field(default_factory=dict)
    sets: dict[str, str] = field(default_factory=dict)                   # name → body
    maps: dict[str, dict[str, str]] = field(default_factory=lambda: {m: {} for m in MAPS})


def _hashed(prefix: str, base: str) -> str:
    digest = base64.b32encode(hashlib.sha256(base.encode()).digest()).decode()[:8]
    name = f"{prefix}-{digest}-{base}"
    return name if len(name) <= MAX_NAME else name[:MAX_NAME - 3] + "..."


def port_base(sp: ServicePort) -> str:
    return f"{sp.namespace}/{sp.name}/{sp.proto}/{sp.port_name}"


def service_chain(sp: ServicePort) -> str:
    return _hashed("service", port_base(sp))


def local_chain(sp: ServicePort) -> str:
    return _hashed("local", port_base(sp))


def external_chain(sp: ServicePort) -> str:
    return _hashed("external", port_base(sp))


def endpoint_chain(sp: ServicePort, ip: str, port: int) -> str:
    return _hashed("endpoint", f"{port_base(sp)}__{ip}/{port}")


def affinity_set(sp: ServicePort, ip: str, port: int) -> str:
    return _hashed("affinity", f"{port_base(sp)}__{ip}/{port}")


def _balance(rs: Ruleset, chain: str, sp: ServicePort, eps) -> None:
    rules = rs.chains[chain]
    targets = [endpoint_chain(sp, e.ip, e.port) for e in eps]
    if sp.affinity_seconds:
        for e, t in zip(eps, targets):
            rules.append(f"ip saddr @{affinity_set(sp, e.ip, e.port)} goto {t}")
    vmap = ", ".join(f"{i} : goto {t}" for i, t in enumerate(targets))
    rules.append(f"numgen random mod {len(targets)} vmap {{ {vmap} }}")


def _endpoint(rs: Ruleset, sp: ServicePort, ep) -> None:
    chain = endpoint_chain(sp, ep.ip, ep.port)
    if chain in rs.chains:
        return
    rules = [f"ip saddr {ep.ip} jump mark-for-masquerade"]   # hairpin
    if sp.affinity_seconds:
        aff = affinity_set(sp, ep.ip, ep.port)
        rs.sets[aff] = (f"{{ type ipv4_addr; flags dynamic,timeout; "
                        f"timeout {sp.affinity_seconds}s; }}")
        rules.append(f"update @{aff} {{ ip saddr }}")
    rules.append(f"meta l4proto {sp.proto} dnat to {ep.ip}:{ep.port}")
    rs.chains[chain] = rules


def render(ports: list[ServicePort], node: NodeInfo) -> Ruleset:
    rs = Ruleset()
    ips, nodeports = rs.maps["service-ips"], rs.maps["service-nodeports"]
    for sp in ports:
        p = sp.proto
        cluster = cluster_endpoints(sp) if needs_cluster(sp) else []
        local = local_endpoints(sp, node.name) if uses_local(sp) else []
        svc, loc, ext = service_chain(sp), local_chain(sp), external_chain(sp)
        if cluster:
            rs.chains[svc] = [f"ip daddr {sp.cluster_ip} {p} dport {sp.port} "
                              f"ip saddr != {node.cluster_cidr} jump mark-for-masquerade"]
            _balance(rs, svc, sp, cluster)
        if local:
            rs.chains[loc] = []
            _balance(rs, loc, sp, local)
        for ep in cluster + local:
            _endpoint(rs, sp, ep)
        internal = loc if sp.internal_local else svc
        if internal in rs.chains:
            ips[f"{sp.cluster_ip} . {p} . {sp.port}"] = f"goto {internal}"
        if not sp.has_external or not (cluster or local):
            continue
        if sp.external_local:
            rules = [f"ip saddr {node.cluster_cidr} goto {svc}",
                     "fib saddr type local jump mark-for-masquerade",
                     f"fib saddr type local goto {svc}"] if cluster else []
            if local:
                rules.append(f"goto {loc}")
        else:
            rules = ["jump mark-for-masquerade", f"goto {svc}"]
        rs.chains[ext] = rules
        for ip in sp.external_ips + sp.lb_ips:
            ips[f"{ip} . {p} . {sp.port}"] = f"goto {ext}"
        if sp.node_port:
            nodeports[f"{p} . {sp.node_port}"] = f"goto {ext}"
    return rs


def _full(new: Ruleset) -> str:
    lines = [f"add table {TABLE}", f"delete table {TABLE}", STATIC]
    lines += [f"add set {TABLE} {n} {body}" for n, body in new.sets.items()]
    lines += [f"add chain {TABLE} {c}" for c in new.chains]
    for c, rules in new.chains.items():
        lines += [f"add rule {TABLE} {c} {r}" for r in rules]
    for m, elems in new.maps.items():
        lines += [f"add element {TABLE} {m} {{ {k} : {v} }}" for k, v in elems.items()]
    return "\n".join(lines) + "\n"


def script(old: Ruleset | None, new: Ruleset) -> str | None:
    """One `nft -f` transaction turning `old` into `new` (the whole table when old is None or a
    set changed shape); None when nothing changed. Other tables are never touched."""
    if old is None or any(old.sets.get(n, b) != b for n, b in new.sets.items()):
        return _full(new)
    lines: list[str] = []
    lines += [f"add set {TABLE} {n} {b}" for n, b in new.sets.items() if n not in old.sets]
    lines += [f"add chain {TABLE} {c}" for c in new.chains if c not in old.chains]
    for m in MAPS:
        o, n = old.maps.get(m, {}), new.maps.get(m, {})
        lines += [f"delete element {TABLE} {m} {{ {k} }}" for k, v in o.items() if n.get(k) != v]
    for c, rules in new.chains.items():
        if c in old.chains and old.chains[c] == rules:
            continue
        if c in old.chains:
            lines.append(f"flush chain {TABLE} {c}")
        lines += [f"add rule {TABLE} {c} {r}" for r in rules]
    for m in MAPS:
        o, n = old.maps.get(m, {}), new.maps.get(m, {})
        lines += [f"add element {TABLE} {m} {{ {k} : {v} }}" for k, v in n.items() if o.get(k) != v]
    stale = [c for c in old.chains if c not in new.chains]
    # Rules referencing a stale chain must be gone before the chain is deleted.
    lines += [f"flush chain {TABLE} {c}" for c in stale]
    lines += [f"delete chain {TABLE} {c}" for c in stale]
    lines += [f"delete set {TABLE} {n}" for n in old.sets if n not in new.sets]
    return "\n".join(lines) + "\n" if lines else None
