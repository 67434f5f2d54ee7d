"""Service ports → iptables nat rules, with upstream kube-proxy's chain layout and names (pure).

KUBE-SERVICES (from PREROUTING and OUTPUT) matches VIP:port and jumps to KUBE-SVC-<hash> (all
endpoints), KUBE-SVL-<hash> (this node's endpoints) or KUBE-EXT-<hash> (external traffic:
nodePorts, externalIPs, load-balancer IPs); those pick a KUBE-SEP-<hash> chain with
`-m statistic --mode random --probability 1/N, 1/(N-1), …` which DNATs. Traffic that needs SNAT
is marked by KUBE-MARK-MASQ and masqueraded in KUBE-POSTROUTING.
"""

from __future__ import annotations

from .model import (NodeInfo, ServicePort, cluster_endpoints, endpoint_hash, local_endpoints,
                    needs_cluster, port_proto_hash, uses_local)

SERVICES = "KUBE-SERVICES"
NODEPORTS = "KUBE-NODEPORTS"
POSTROUTING = "KUBE-POSTROUTING"
MARK_MASQ = "KUBE-MARK-MASQ"
MASQ_BIT = "0x4000"
BASE_CHAINS = (SERVICES, NODEPORTS, POSTROUTING, MARK_MASQ)
# builtin chain → the jump kube-proxy inserts into it (installed once, at start)
JUMPS = {"PREROUTING": SERVICES, "OUTPUT": SERVICES, "POSTROUTING": POSTROUTING}

Chains = dict[str, list[str]]


def svc_chain(sp: ServicePort) -> str:
    return "KUBE-SVC-" + port_proto_hash(sp.port_key, sp.proto)


def svl_chain(sp: ServicePort) -> str:
    return "KUBE-SVL-" + port_proto_hash(sp.port_key, sp.proto)


def ext_chain(sp: ServicePort) -> str:
    return "KUBE-EXT-" + port_proto_hash(sp.port_key, sp.proto)


def sep_chain(sp: ServicePort, addr: str) -> str:
    return "KUBE-SEP-" + endpoint_hash(sp.port_key, sp.proto, addr)


def _comment(text: str) -> str:
    return f'-m comment --comment "{text}"'


def probability(i: int, n: int) -> str:
    """The i-th of n endpoints is taken with 1/(n-i) of what is left: uniform overall."""
    return f"{1.0 / (n - i):0.10f}"


def _balance(chains: Chains, chain: str, sp: ServicePort, eps, comment: str) -> None:
    rules = chains[chain]
    seps = [sep_chain(sp, e.addr) for e in eps]
    if sp.affinity_seconds:
        for sep in seps:
            rules.append(f"-A {chain} {comment} -m recent --name {sep} --mask 255.255.255.255 "
                         f"--rsource --rcheck --seconds {sp.affinity_seconds} --reap -j {sep}")
    n = len(seps)
    for i, sep in enumerate(seps):
        stat = "" if i == n - 1 else f" -m statistic --mode random --probability {probability(i, n)}"
        rules.append(f"-A {chain} {comment}{stat} -j {sep}")


def _endpoint(chains: Chains, sp: ServicePort, ep) -> None:
    chain = sep_chain(sp, ep.addr)
    if chain in chains:
        return
    c = _comment(sp.port_key)
    recent = (f" -m recent --name {chain} --mask 255.255.255.255 --rsource --set"
              if sp.affinity_seconds else "")
    chains[chain] = [
        f"-A {chain} {c} -s {ep.ip}/32 -j {MARK_MASQ}",      # hairpin: pod → its own service
        f"-A {chain} {c} -p {sp.proto}{recent} -m {sp.proto} -j DNAT --to-destination {ep.addr}",
    ]


def render(ports: list[ServicePort], node: NodeInfo) -> Chains:
    """The whole nat ruleset kube-proxy owns, as chain → rule lines (iptables-restore syntax)."""
    chains: Chains = {c: [] for c in BASE_CHAINS}
    chains[MARK_MASQ].append(f"-A {MARK_MASQ} -j MARK --or-mark {MASQ_BIT}")
    chains[POSTROUTING] += [
        f"-A {POSTROUTING} -m mark ! --mark {MASQ_BIT}/{MASQ_BIT} -j RETURN",
        f"-A {POSTROUTING} -j MARK --xor-mark {MASQ_BIT}",
        f"-A {POSTROUTING} {_comment('kubernetes service traffic requiring SNAT')} "
        f"-j MASQUERADE --random-fully",
    ]
    services, nodeports = chains[SERVICES], chains[NODEPORTS]
    for sp in ports:
        key, p = sp.port_key, sp.proto
        match = f"-p {p} -m {p} --dport {sp.port}"
        cluster = cluster_endpoints(sp) if needs_cluster(sp) else []
        local = local_endpoints(sp, node.name) if uses_local(sp) else []
        svc, svl, ext = svc_chain(sp), svl_chain(sp), ext_chain(sp)
        if cluster:
            chains[svc] = [f"-A {svc} {_comment(key + ' cluster IP')} ! -s {node.cluster_cidr} "
                           f"-d {sp.cluster_ip}/32 {match} -j {MARK_MASQ}"]
            _balance(chains, svc, sp, cluster, _comment(key + " -> endpoints"))
        if local:
            chains[svl] = []
            _balance(chains, svl, sp, local, _comment(key + " -> local endpoints"))
        for ep in cluster + local:
            _endpoint(chains, sp, ep)
        internal = svl if sp.internal_local else svc
        if internal in chains:
            services.append(f"-A {SERVICES} {_comment(key + ' cluster IP')} "
                            f"-d {sp.cluster_ip}/32 {match} -j {internal}")
        if not sp.has_external or not (cluster or local):
            continue
        if sp.external_local:
            rules = [f"-A {ext} {_comment('pod traffic for ' + key + ' external destinations')} "
                     f"-s {node.cluster_cidr} -j {svc}",
                     f"-A {ext} {_comment('masquerade LOCAL traffic for ' + key + ' external destinations')} "
                     f"-m addrtype --src-type LOCAL -j {MARK_MASQ}",
                     f"-A {ext} {_comment('route LOCAL traffic for ' + key + ' external destinations')} "
                     f"-m addrtype --src-type LOCAL -j {svc}"] if cluster else []
            if local:
                rules.append(f"-A {ext} -j {svl}")
        else:
            rules = [f"-A {ext} {_comment('masquerade traffic for ' + key + ' external destinations')} "
                     f"-j {MARK_MASQ}", f"-A {ext} -j {svc}"]
        chains[ext] = rules
        for ip in sp.external_ips:
            services.append(f"-A {SERVICES} {_comment(key + ' external IP')} -d {ip}/32 {match} -j {ext}")
        for ip in sp.lb_ips:
            services.append(f"-A {SERVICES} {_comment(key + ' loadbalancer IP')} -d {ip}/32 {match} -j {ext}")
        if sp.node_port:
            nodeports.append(f"-A {NODEPORTS} {_comment(key)} -p {p} -m {p} --dport {sp.node_port} -j {ext}")
    services.append(f"-A {SERVICES} {_comment('kubernetes service nodeports; NOTE: this must be the last rule in this chain')} "
                    f"-m addrtype --dst-type LOCAL ! -d 127.0.0.0/8 -j {NODEPORTS}")
    return chains


def restore_script(old: dict[str, list[str] | None] | None, new: Chains) -> str | None:
    """An `iptables-restore --noflush` script rewriting only the chains that changed and deleting
    the ones that went away; None when nothing changed. `old` None means "nothing known"."""
    old = old or {}
    changed = [c for c in new if old.get(c, ()) != new[c] or c not in old]
    stale = [c for c in old if c not in new]
    if not changed and not stale:
        return None
    lines = ["*nat"]
    # Declaring a chain in --noflush mode creates it or flushes it.
    lines += [f":{c} - [0:0]" for c in changed + stale]
    for c in changed:
        lines += new[c]
    lines += [f"-X {c}" for c in stale]
    lines.append("COMMIT")
    return "\n".join(lines) + "\n"


def is_owned(chain: str) -> bool:
    return chain in BASE_CHAINS or chain.startswith(("KUBE-SVC-", "KUBE-SVL-", "KUBE-EXT-", "KUBE-SEP-", "KUBE-FW-"))


def owned_chains(save_output: str) -> dict[str, None]:
    """Chains of ours found in `iptables-save -t nat` output (content unknown: rewrite them)."""
    out: dict[str, None] = {}
    for line in save_output.splitlines():
        if line.startswith(":"):
            name = line[1:].split()[0]
            if is_owned(name):
                out[name] = None
    return out
