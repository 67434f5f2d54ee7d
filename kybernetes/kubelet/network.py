"""The pod network of one node: a CNI config list for containerd's CRI plugin.

Bridge (`cni0` by default) with host-local IPAM over the node's podCIDR, portmap for hostPorts,
MTU 1450 so pod traffic fits the VXLAN overlay between nodes. containerd runs the plugins itself
in each sandbox's network namespace; we only write the file.
"""

from __future__ import annotations

import ipaddress
import json
from pathlib import Path

MTU = 1450


def conflist(pod_cidr: str, *, name: str = "kyb", bridge: str = "cni0",
             ipam_dir: str | None = None, mtu: int = MTU, masquerade: bool = True) -> dict:
    net = ipaddress.ip_network(pod_cidr, strict=False)
    gateway = str(next(net.hosts()))
    ipam: dict = {"type": "host-local", "ranges": [[{"subnet": str(net), "gateway": gateway}]],
                  "routes": [{"dst": "0.0.0.0/0" if net.version == 4 else "::/0"}]}
    if ipam_dir:
        ipam["dataDir"] = ipam_dir
    return {
        "cniVersion": "1.0.0",
        "name": name,
        "plugins": [
            {"type": "bridge", "bridge": bridge, "isGateway": True, "ipMasq": masquerade,
             "hairpinMode": True, "mtu": mtu, "ipam": ipam},
            {"type": "portmap", "capabilities": {"portMappings": True}, "snat": True},
        ],
    }


def write_conflist(conf_dir: Path, pod_cidr: str, **kw) -> Path:
    """Write (atomically) the only config file in conf_dir; containerd picks it up by itself."""
    conf_dir.mkdir(parents=True, exist_ok=True)
    path = conf_dir / "10-kyb.conflist"
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(conflist(pod_cidr, **kw), indent=2))
    tmp.replace(path)
    return path
