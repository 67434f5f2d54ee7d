"""Which conntrack entries to delete after a sync (pure), as upstream's conntrack cleanup.

UDP has no connection end: an entry DNATed to an endpoint that went away keeps sending packets
into the void until it times out. So, for UDP service ports: entries whose reply comes from a
removed endpoint are deleted, and when a port gets its first endpoint, entries to its VIPs
(created while it had none) are deleted too.
"""

from __future__ import annotations

from .model import NodeInfo, ServicePort, reachable_endpoints


def _vips(sp: ServicePort) -> list[str]:
    return [sp.cluster_ip, *sp.external_ips, *sp.lb_ips]


def cleanup_commands(old: list[ServicePort], new: list[ServicePort], node: NodeInfo) -> list[list[str]]:
    def index(ports):
        return {(sp.port_key, sp.protocol): sp for sp in ports if sp.protocol == "UDP"}

    before, after = index(old), index(new)
    cmds: list[list[str]] = []
    for key, sp in before.items():
        gone = {e.ip for e in reachable_endpoints(sp, node.name)}
        now = after.get(key)
        if now is not None:
            gone -= {e.ip for e in reachable_endpoints(now, node.name)}
        for ip in sorted(gone):
            for vip in _vips(sp):
                cmds.append(["conntrack", "-D", "-p", "udp", "--orig-dst", vip, "--dst-nat", ip])
            if sp.node_port:
                cmds.append(["conntrack", "-D", "-p", "udp", "--orig-port-dst", str(sp.node_port),
                             "--dst-nat", ip])
    for key, sp in after.items():
        prev = before.get(key)
        if reachable_endpoints(sp, node.name) and (prev is None or not reachable_endpoints(prev, node.name)):
            for vip in _vips(sp):
                cmds.append(["conntrack", "-D", "-p", "udp", "--orig-dst", vip,
                             "--orig-port-dst", str(sp.port)])
            if sp.node_port:
                cmds.append(["conntrack", "-D", "-p", "udp", "--orig-port-dst", str(sp.node_port)])
    return cmds
