"""The plumbing of a lab: a bridge in the host's network namespace with no route anywhere else,
and one network namespace per lab host joined to it by a veth pair.

Everything here shells out to `ip` (iproute2): each step is one command a reader can replay.
"""

from __future__ import annotations

import ipaddress
import json
import os
import subprocess
from dataclasses import asdict, dataclass


class LabError(RuntimeError):
    pass


def ip(*args: str, check: bool = True) -> subprocess.CompletedProcess:
    p = subprocess.run(["ip", *args], capture_output=True, text=True)
    if check and p.returncode != 0:
        raise LabError(f"ip {' '.join(args)}: {p.stderr.strip()}")
    return p


def in_netns(netns: str, *argv: str, check: bool = True) -> subprocess.CompletedProcess:
    return ip("netns", "exec", netns, *argv, check=check)


@dataclass
class Host:
    name: str          # the Node's name, the netns' name
    ip: str            # address on the lab bridge
    veth: str          # host-side end of the veth pair (in the root netns, on the bridge)

    def to_dict(self) -> dict:
        return asdict(self)


def link_prefix(prefix: str) -> str:
    """Interface names from the lab's name (≤ 15 characters): kyb-lab → kyblab."""
    return prefix.replace("-", "")[:9]


def plan_hosts(count: int, subnet: str, prefix: str = "kyb-lab") -> list[Host]:
    """Host i (1-based) gets the subnet's address .10+i; the bridge keeps .1."""
    net = ipaddress.ip_network(subnet)
    if count < 1 or count > min(200, net.num_addresses - 12):
        raise LabError(f"--nodes must be between 1 and {min(200, net.num_addresses - 12)}")
    return [Host(f"{prefix}-{i}", str(net.network_address + 10 + i), f"{link_prefix(prefix)}-{i}")
            for i in range(1, count + 1)]


def bridge_address(subnet: str) -> str:
    net = ipaddress.ip_network(subnet)
    return f"{net.network_address + 1}/{net.prefixlen}"


def subnet_in_use(subnet: str) -> str | None:
    """An address or route of this netns that overlaps the lab subnet, if any."""
    net = ipaddress.ip_network(subnet)
    for entry in json.loads(ip("-j", "-4", "addr").stdout or "[]"):
        for a in entry.get("addr_info", []):
            if ipaddress.ip_network(f"{a['local']}/{a['prefixlen']}", strict=False).overlaps(net):
                return f"{a['local']}/{a['prefixlen']} on {entry['ifname']}"
    for r in json.loads(ip("-j", "-4", "route").stdout or "[]"):
        dst = r.get("dst", "")
        if dst and dst != "default" and ipaddress.ip_network(dst, strict=False).overlaps(net):
            return f"route {dst}"
    return None


def link_exists(name: str) -> bool:
    return ip("link", "show", name, check=False).returncode == 0


def netns_exists(name: str) -> bool:
    return os.path.exists(f"/run/netns/{name}")


def create_bridge(name: str, subnet: str) -> None:
    ip("link", "add", name, "type", "bridge")
    ip("addr", "add", bridge_address(subnet), "dev", name)
    ip("link", "set", name, "up")


def create_host(h: Host, bridge: str, subnet: str, mtu: int = 1500,
                service_cidr: str = "10.43.0.0/16") -> None:
    """netns + veth (eth0 inside); no default route, so nothing in it can reach past the lab."""
    prefix = ipaddress.ip_network(subnet).prefixlen
    ip("netns", "add", h.name)
    ip("link", "add", h.veth, "mtu", str(mtu), "type", "veth", "peer", "name", "eth0",
       "netns", h.name)
    ip("link", "set", h.veth, "master", bridge, "up")
    ip("-n", h.name, "addr", "add", f"{h.ip}/{prefix}", "dev", "eth0")
    ip("-n", h.name, "link", "set", "eth0", "up")
    ip("-n", h.name, "link", "set", "lo", "up")
    # Pods behind this host need forwarding; bridged pod traffic needs nothing more here.
    in_netns(h.name, "sysctl", "-qw", "net.ipv4.ip_forward=1")
    # Service addresses are local to every node (as kube-proxy routes them), from the start:
    # the node-local DNS can bind 10.43.0.10 before the proxy's first sync.
    ip("-n", h.name, "route", "replace", "local", service_cidr, "dev", "lo")


def remove_host(h: Host) -> None:
    if link_exists(h.veth):
        ip("link", "del", h.veth, check=False)
    if netns_exists(h.name):
        ip("netns", "del", h.name, check=False)


def remove_bridge(name: str) -> None:
    if link_exists(name):
        ip("link", "del", name, check=False)


def set_link(h: Host, up: bool) -> None:
    ip("link", "set", h.veth, "up" if up else "down")
