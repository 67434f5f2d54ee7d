"""A small node topology in network namespaces for the proxy tests (root only).

    host ──veth 169.254.X.1/30 ↔ .2── node ns (runs `kyb proxy`; bridge cni0 10.42.1.1/24)
                                        ├── pod ns p1..p3 (10.42.1.11-13, HTTP server answers its name)
                                        └── ext ns 192.168.77.2 ("another machine", for NodePorts)

The API server runs on the host, bound to the host end of the veth only. The node namespace has
no default route, so nothing sent inside can leave the machine. Deleting the namespaces removes
their links and rules; everything is deleted in teardown even when a test fails.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

import pytest

import kybtest
from kybtest import Server, stop_process  # noqa: F401  (stop_process: for the lab's users)


PODS = {"p1": "10.42.1.11", "p2": "10.42.1.12", "p3": "10.42.1.13"}
NODE_EXT_IP = "192.168.77.1"

SERVER = r"""
import socket, sys, http.server
name = sys.argv[1]
class H(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        body = name.encode()
        self.send_response(200); self.send_header("Content-Length", str(len(body)))
        self.send_header("Connection", "close"); self.end_headers(); self.wfile.write(body)
    def log_message(self, *a): pass
http.server.ThreadingHTTPServer(("0.0.0.0", 8080), H).serve_forever()
"""

# N requests, each on a new connection (so each is balanced anew); prints one answer per line.
CLIENT = r"""
import sys, urllib.request
url, n = sys.argv[1], int(sys.argv[2])
for _ in range(n):
    try:
        with urllib.request.urlopen(url, timeout=2) as r:
            print(r.read().decode())
    except Exception as e:
        print("ERR:" + type(e).__name__)
"""

needs_root = pytest.mark.skipif(
    os.geteuid() != 0 or not shutil.which("ip") or not shutil.which("nft"),
    reason="needs root, iproute2 and nftables")


def sh(*argv: str, check: bool = True) -> subprocess.CompletedProcess:
    return subprocess.run(argv, capture_output=True, text=True, check=check, timeout=30)


@dataclass
class Lab:
    tag: str
    node: str
    ext: str
    pods: dict[str, str]          # pod name → netns
    host_link: str
    host_ip: str
    dir: Path
    procs: list[subprocess.Popen] = field(default_factory=list)

    def exec(self, ns: str, *argv: str, check: bool = True) -> subprocess.CompletedProcess:
        return sh("ip", "netns", "exec", ns, *argv, check=check)

    def spawn(self, ns: str, argv: list[str], log: str) -> subprocess.Popen:
        p = subprocess.Popen(["ip", "netns", "exec", ns, *argv],
                             stdout=open(self.dir / log, "ab"), stderr=subprocess.STDOUT)
        self.procs.append(p)
        return p

    def get(self, ns: str, url: str, n: int = 1) -> list[str]:
        out = self.exec(ns, sys.executable, "-c", CLIENT, url, str(n)).stdout
        return out.split()

    def rules(self, mode: str) -> str:
        if mode == "iptables":
            return self.exec(self.node, "iptables-save", "-t", "nat").stdout
        return self.exec(self.node, "nft", "list", "ruleset").stdout


def setup(lab: Lab) -> None:
    n = lab.node
    sh("ip", "netns", "add", n)
    sh("ip", "-n", n, "link", "set", "lo", "up")
    sh("ip", "link", "add", lab.host_link, "type", "veth", "peer", "name", "eth0", "netns", n)
    sh("ip", "addr", "add", f"{lab.host_ip}/30", "dev", lab.host_link)
    sh("ip", "link", "set", lab.host_link, "up")
    node_ip = lab.host_ip.rsplit(".", 1)[0] + "." + str(int(lab.host_ip.rsplit(".", 1)[1]) + 1)
    sh("ip", "-n", n, "addr", "add", f"{node_ip}/30", "dev", "eth0")
    sh("ip", "-n", n, "link", "set", "eth0", "up")
    lab.exec(n, "sysctl", "-qw", "net.ipv4.ip_forward=1")
    # Replies between pods on the bridge must pass conntrack to be un-DNATed.
    lab.exec(n, "sysctl", "-qw", "net.bridge.bridge-nf-call-iptables=1", check=False)
    sh("ip", "-n", n, "link", "add", "cni0", "type", "bridge")
    sh("ip", "-n", n, "addr", "add", "10.42.1.1/24", "dev", "cni0")
    sh("ip", "-n", n, "link", "set", "cni0", "up")
    for i, (pod, ip) in enumerate(PODS.items()):
        ns = lab.pods[pod]
        sh("ip", "netns", "add", ns)
        sh("ip", "-n", ns, "link", "set", "lo", "up")
        sh("ip", "-n", n, "link", "add", f"veth{i}", "type", "veth", "peer", "name", "eth0", "netns", ns)
        sh("ip", "-n", n, "link", "set", f"veth{i}", "master", "cni0")
        sh("ip", "-n", n, "link", "set", f"veth{i}", "type", "bridge_slave", "hairpin", "on")
        sh("ip", "-n", n, "link", "set", f"veth{i}", "up")
        sh("ip", "-n", ns, "addr", "add", f"{ip}/24", "dev", "eth0")
        sh("ip", "-n", ns, "link", "set", "eth0", "up")
        sh("ip", "-n", ns, "route", "add", "default", "via", "10.42.1.1")
        lab.spawn(ns, [sys.executable, "-c", SERVER, pod], f"{pod}.log")
    e = lab.ext
    sh("ip", "netns", "add", e)
    sh("ip", "-n", e, "link", "set", "lo", "up")
    sh("ip", "-n", n, "link", "add", "vext", "type", "veth", "peer", "name", "eth0", "netns", e)
    sh("ip", "-n", n, "addr", "add", f"{NODE_EXT_IP}/24", "dev", "vext")
    sh("ip", "-n", n, "link", "set", "vext", "up")
    sh("ip", "-n", e, "addr", "add", "192.168.77.2/24", "dev", "eth0")
    sh("ip", "-n", e, "link", "set", "eth0", "up")
    sh("ip", "-n", e, "route", "add", "default", "via", NODE_EXT_IP)


def teardown(lab: Lab) -> None:
    for p in reversed(lab.procs):
        stop_process(p, timeout=5)
    for ns in [lab.ext, *lab.pods.values(), lab.node]:
        sh("ip", "netns", "delete", ns, check=False)
    sh("ip", "link", "delete", lab.host_link, check=False)   # gone with the netns, normally


def start_apiserver(data_dir: Path, ip: str) -> Server:
    """kybtest.start_apiserver, bound to the veth address the node netns reaches."""
    return kybtest.start_apiserver(data_dir, host=ip)


