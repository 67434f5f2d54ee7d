"""The VXLAN overlay agent between real network namespaces ("hosts") on a test bridge.

Each host runs `kyb overlay` against a real API server bound to the test bridge; the test plays
node IPAM and the kubelet (Node objects with podCIDR and InternalIP) and plays pods too (a netns
on a `cni0` bridge per host). Behaviour matched: flannel's vxlan backend with the kube subnet
manager (flannel pkg/backend/vxlan: per remote lease one route `<subnet> via <subnet>.0 dev
flannel.1 onlink`, one permanent neighbour and one fdb entry; removed when the lease goes).
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from kybernetes.network import masq, overlay

from kybtest import start_apiserver, stop_process, wait_for
from netlab import add_fake_pod, ip, netns_exists, ping, run_in

pytestmark = pytest.mark.skipif(os.geteuid() != 0 or not shutil.which("ip"),
                                reason="needs root and iproute2 (network namespaces)")

SUBNET = "172.31.251"       # the test bridge's /24: nothing else on this machine uses it
BRIDGE = "kybtovl0"
HOSTS = {f"kybt-ovl-{i}": (f"{SUBNET}.{10 + i}", f"10.42.{10 + i}.0/24") for i in (1, 2, 3)}


def pod_ns(host: str) -> str:
    return f"{host}-pod"


def pod_ip(host: str) -> str:
    return HOSTS[host][1].replace(".0/24", ".2")


def _kubectl(kubeconfig: Path, *args: str, input: str | None = None) -> str:
    p = subprocess.run(["kubectl", "--kubeconfig", str(kubeconfig), *args], input=input,
                       capture_output=True, text=True, timeout=30)
    assert p.returncode == 0, p.stderr
    return p.stdout


def node_manifest(name: str) -> str:
    node_ip, cidr = HOSTS[name]
    return json.dumps({"apiVersion": "v1", "kind": "Node", "metadata": {"name": name},
                       "spec": {"podCIDR": cidr, "podCIDRs": [cidr]}})


def add_node(kubeconfig: Path, name: str) -> None:
    _kubectl(kubeconfig, "create", "-f", "-", input=node_manifest(name))
    address = {"status": {"addresses": [{"type": "InternalIP", "address": HOSTS[name][0]}]}}
    _kubectl(kubeconfig, "patch", "node", name, "--subresource=status", "--type=merge",
             "-p", json.dumps(address))


def overlay_routes(host: str) -> set[str]:
    out = ip("-n", host, "-j", "route", "show", "dev", overlay.DEVICE, check=False)
    return {r["dst"] for r in json.loads(out.stdout or "[]")} if out.returncode == 0 else set()


@pytest.fixture(scope="module")
def net(tmp_path_factory):
    """Bridge + three host namespaces + an API server on the bridge + fake pods."""
    clash = ip("-4", "-o", "addr").stdout
    if f" {SUBNET}." in clash or ip("link", "show", BRIDGE, check=False).returncode == 0:
        pytest.skip(f"{SUBNET}.0/24 or {BRIDGE} is already in use here")
    data = tmp_path_factory.mktemp("overlay")
    procs: dict[str, subprocess.Popen] = {}
    try:
        ip("link", "add", BRIDGE, "type", "bridge")
        ip("addr", "add", f"{SUBNET}.1/24", "dev", BRIDGE)
        ip("link", "set", BRIDGE, "up")
        for i, (host, (addr, cidr)) in enumerate(HOSTS.items(), 1):
            ip("netns", "add", host)
            ip("link", "add", f"kybtov-{i}", "type", "veth", "peer", "name", "eth0", "netns", host)
            ip("link", "set", f"kybtov-{i}", "master", BRIDGE, "up")
            ip("-n", host, "addr", "add", f"{addr}/24", "dev", "eth0")
            ip("-n", host, "link", "set", "eth0", "up")
            ip("-n", host, "link", "set", "lo", "up")
            run_in(host, "sysctl", "-qw", "net.ipv4.ip_forward=1")
            add_fake_pod(host, pod_ns(host), cidr.replace(".0/24", ".1/24"), pod_ip(host))
        procs["apiserver"] = start_apiserver(data, host=f"{SUBNET}.1").proc
        kubeconfig = data / "kubeconfig.yaml"
        for host in list(HOSTS)[:2]:
            add_node(kubeconfig, host)
        for host in HOSTS:
            log = open(data / f"{host}.log", "ab")
            procs[host] = subprocess.Popen(
                ["ip", "netns", "exec", host, sys.executable, "-m", "kybernetes", "overlay",
                 "--kubeconfig", str(kubeconfig), "--node-name", host, "--iface", "eth0",
                 "--cleanup-on-exit"], stdout=log, stderr=subprocess.STDOUT)
        yield {"kubeconfig": kubeconfig, "procs": procs, "data": data}
    finally:
        for p in reversed(procs.values()):
            stop_process(p)
        for i, host in enumerate(HOSTS, 1):
            for ns in (pod_ns(host), host):
                if netns_exists(ns):
                    ip("netns", "del", ns, check=False)
            ip("link", "del", f"kybtov-{i}", check=False)
        ip("link", "del", BRIDGE, check=False)


def _wait_mesh(hosts: list[str]) -> None:
    for h in hosts:
        want = {HOSTS[o][1] for o in hosts if o != h}
        wait_for(lambda: want <= overlay_routes(h), what=f"routes on {h}: {want}", every=0.05)


def test_pods_reach_each_other_across_hosts(net):
    h1, h2, h3 = HOSTS
    _wait_mesh([h1, h2])
    # The third node appears later: every host learns it without a restart.
    started = time.monotonic()
    add_node(net["kubeconfig"], h3)
    _wait_mesh([h1, h2, h3])
    print(f"overlay programming latency (node created -> routes on all hosts): "
          f"{time.monotonic() - started:.3f}s")
    for src in HOSTS:
        for dst in HOSTS:
            if src != dst:
                r = ping(pod_ns(src), pod_ip(dst))
                assert r.returncode == 0, f"{src} -> {dst}: {r.stdout}{r.stderr}"
    print(ping(pod_ns(h1), pod_ip(h3), count=5).stdout.strip().splitlines()[-1])


def test_tcp_keeps_the_pod_source_address(net):
    """Pod → pod across nodes is not masqueraded: the server sees the client pod's IP."""
    h1, _, h3 = HOSTS
    _wait_mesh(list(HOSTS))
    peer = _tcp_peer(pod_ns(h3), pod_ip(h3), pod_ns(h1))
    assert peer == pod_ip(h1)


def test_traffic_leaving_the_pod_network_is_masqueraded(net):
    """Pod → an address outside the cluster CIDR leaves with its node's address."""
    h1, h2, _ = HOSTS
    _wait_mesh(list(HOSTS))
    chain = run_in(h1, "iptables", "-w", "-t", "nat", "-S", masq.CHAIN).stdout
    assert "MASQUERADE" in chain
    peer = _tcp_peer(h2, HOSTS[h2][0], pod_ns(h1))
    assert peer == HOSTS[h1][0]


def _tcp_peer(server_ns: str, server_ip: str, client_ns: str) -> str:
    code = ("import socket,sys; s=socket.socket(); s.setsockopt(socket.SOL_SOCKET,"
            "socket.SO_REUSEADDR,1); s.bind((sys.argv[1], 5555)); s.listen(); print('ready',"
            " flush=True); c,a=s.accept(); c.sendall(b'hi'); print(a[0], flush=True)")
    srv = subprocess.Popen(["ip", "netns", "exec", server_ns, sys.executable, "-c", code,
                            server_ip], stdout=subprocess.PIPE, text=True)
    try:
        assert srv.stdout.readline().strip() == "ready"
        client = ("import socket,sys; c=socket.create_connection((sys.argv[1],5555),timeout=5);"
                  "print(c.recv(2).decode())")
        out = run_in(client_ns, sys.executable, "-c", client, server_ip).stdout
        assert out.strip() == "hi"
        return srv.stdout.readline().strip()
    finally:
        if srv.poll() is None:
            srv.kill()
        srv.wait()


def test_mtu_fits_the_overlay(net):
    h1, h2, _ = HOSTS
    _wait_mesh(list(HOSTS))
    link = json.loads(ip("-n", h1, "-j", "-d", "link", "show", overlay.DEVICE).stdout)[0]
    assert link["mtu"] == 1450
    info = link["linkinfo"]["info_data"]
    assert (info["id"], info["port"], info.get("learning", False)) == (1, 8472, False)
    # A full-size pod packet (1450 bytes: 20 IP + 8 ICMP + 1422) crosses in one piece.
    assert ping(pod_ns(h1), pod_ip(h2), size=1422, count=2).returncode == 0


def test_cluster_addresses_never_take_the_default_route(net):
    h1 = next(iter(HOSTS))
    _wait_mesh(list(HOSTS))
    # A default route that would carry anything unmatched out of the host (to a gateway that
    # does not exist, so that nothing could actually leave during the test)...
    ip("-n", h1, "route", "replace", "default", "via", f"{SUBNET}.254")
    try:
        for dst in ("10.42.200.7", "10.43.0.99"):
            r = ip("-n", h1, "route", "get", dst, check=False)
            assert r.returncode != 0 and "No route to host" in r.stderr, r.stdout + r.stderr
        # ...while addresses outside the cluster would follow it.
        assert "via" in ip("-n", h1, "route", "get", "198.51.100.1").stdout
    finally:
        ip("-n", h1, "route", "del", "default", check=False)


def test_node_removal_removes_its_entries(net):
    h1, h2, h3 = HOSTS
    _wait_mesh(list(HOSTS))
    mac = json.loads(json.loads(_kubectl(net["kubeconfig"], "get", "node", h3, "-o", "json"))
                     ["metadata"]["annotations"][overlay.BACKEND_DATA])["VtepMAC"]
    _kubectl(net["kubeconfig"], "delete", "node", h3)
    for h in (h1, h2):
        wait_for(lambda: HOSTS[h3][1] not in overlay_routes(h), what=f"route gone on {h}", every=0.05)
        wait_for(lambda: mac not in ip("-n", h, "neigh", "show", "dev", overlay.DEVICE).stdout
                 and mac not in ip("-n", h, "-4", "route").stdout
                 and mac not in subprocess.run(["bridge", "-n", h, "fdb", "show", "dev",
                                                overlay.DEVICE], capture_output=True,
                                               text=True).stdout, what="neigh/fdb gone", every=0.05)
        r = ip("-n", h, "route", "get", pod_ip(h3), check=False)
        assert r.returncode != 0, r.stdout
    assert ping(pod_ns(h1), pod_ip(h3), count=1).returncode != 0
    # The remaining hosts still reach each other.
    assert ping(pod_ns(h1), pod_ip(h2), count=1).returncode == 0
    add_node(net["kubeconfig"], h3)   # back, for tests that run after this one
    _wait_mesh(list(HOSTS))


def test_cleanup_on_exit_removes_everything(net):
    """Stopping an agent with --cleanup-on-exit leaves no device, route or rule behind."""
    h3 = list(HOSTS)[2]
    _wait_mesh(list(HOSTS))
    p = net["procs"][h3]
    p.send_signal(signal.SIGTERM)
    assert p.wait(20) == 0
    assert ip("-n", h3, "link", "show", overlay.DEVICE, check=False).returncode != 0
    routes = ip("-n", h3, "route").stdout
    assert "10.42.0.0/16" not in routes and "10.43.0.0/16" not in routes
    assert masq.CHAIN not in run_in(h3, "iptables", "-w", "-t", "nat", "-S").stdout
