"""Helpers for network tests: `ip` commands and the namespaces we own."""

from __future__ import annotations

import os
import shutil
import subprocess


def ip(*args: str, check: bool = True) -> subprocess.CompletedProcess:
    p = subprocess.run(["ip", *args], capture_output=True, text=True)
    if check and p.returncode != 0:
        raise AssertionError(f"ip {' '.join(args)}: {p.stderr}")
    return p


def run_in(netns: str, *argv: str, check: bool = True, timeout: float = 20) -> subprocess.CompletedProcess:
    p = subprocess.run(["ip", "netns", "exec", netns, *argv], capture_output=True, text=True,
                       timeout=timeout)
    if check and p.returncode != 0:
        raise AssertionError(f"{netns}: {' '.join(argv)}: {p.stdout}{p.stderr}")
    return p


def ping(netns: str, dst: str, size: int = 56, count: int = 3) -> subprocess.CompletedProcess:
    busybox = shutil.which("busybox")
    argv = [busybox, "ping"] if busybox else ["ping"]
    return run_in(netns, *argv, "-A", "-c", str(count), "-W", "2", "-s", str(size), dst, check=False)


def netns_exists(name: str) -> bool:
    return os.path.exists(f"/run/netns/{name}")


def add_fake_pod(host: str, pod: str, bridge_cidr: str, pod_ip: str, mtu: int = 1450) -> None:
    """A "pod" the way the CNI bridge plugin makes one: a netns on a bridge in the host."""
    gateway = bridge_cidr.split("/")[0]
    prefix = bridge_cidr.split("/")[1]
    if ip("-n", host, "link", "show", "cni0", check=False).returncode != 0:
        ip("-n", host, "link", "add", "cni0", "mtu", str(mtu), "type", "bridge")
        ip("-n", host, "addr", "add", bridge_cidr, "dev", "cni0")
        ip("-n", host, "link", "set", "cni0", "up")
    ip("netns", "add", pod)
    ip("-n", host, "link", "add", f"v{pod[-6:]}", "mtu", str(mtu), "type", "veth", "peer",
       "name", "eth0", "netns", pod)
    ip("-n", host, "link", "set", f"v{pod[-6:]}", "master", "cni0", "up")
    ip("-n", pod, "addr", "add", f"{pod_ip}/{prefix}", "dev", "eth0")
    ip("-n", pod, "link", "set", "eth0", "up")
    ip("-n", pod, "link", "set", "lo", "up")
    ip("-n", pod, "route", "add", "default", "via", gateway)
