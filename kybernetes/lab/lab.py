"""`kyb lab`: N hosts as network namespaces on a lab bridge, a cluster across them.

The first host runs the control plane (API server bound inside its namespace and advertised on
its lab address, controller-manager, scheduler); every host runs a node agent (kubelet with its
own containerd), the overlay agent, kube-proxy and DNS when those modules exist. The lab bridge
lives in the root namespace (so kubectl on this machine reaches the API server) but has no route
anywhere else, and the hosts have no default route: lab traffic cannot leave the machine.

Everything created is written to DIR/lab.json before it is created, so `down` can remove it
even after a crash of `up` or of the machine's processes.
"""

from __future__ import annotations

import importlib.util
import json
import os
import shutil
import signal
import ssl
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import yaml

from . import hosts
from .hosts import Host, LabError

SUBNET = "172.31.250.0/24"
NAME = "kyb-lab"    # host names are NAME-1, NAME-2, …; another name (and subnet) = a second lab
BRIDGE = "kyblab0"
API_PORT = 6443
# What a lab cluster needs to run workloads across nodes (named, so that one controller being
# rewritten elsewhere cannot stop the lab's control plane).
CONTROLLERS = ("nodeipam", "nodelifecycle", "replicaset", "deployment", "statefulset", "job",
               "endpoints", "endpointslice", "serviceaccount", "namespace", "garbagecollector",
               "podgc", "root-ca-cert-publisher", "daemonset", "cronjob",
               "persistentvolume-binder", "local-path-provisioner")


def _has(module: str) -> bool:
    try:
        return importlib.util.find_spec(module) is not None
    except ModuleNotFoundError:
        return False


class Lab:
    def __init__(self, data_dir: Path):
        self.dir = data_dir.resolve()
        self.state_path = self.dir / "lab.json"
        self.state: dict = {"bridge": None, "subnet": SUBNET, "hosts": [], "procs": []}
        if self.state_path.exists():
            self.state = json.loads(self.state_path.read_text())

    # ---- state ----

    def save(self) -> None:
        tmp = self.state_path.with_suffix(".tmp")
        tmp.write_text(json.dumps(self.state, indent=2))
        tmp.replace(self.state_path)

    @property
    def hosts(self) -> list[Host]:
        return [Host(**h) for h in self.state["hosts"]]

    def host(self, name: str) -> Host:
        for h in self.hosts:
            if h.name == name:
                return h
        raise LabError(f"no lab host {name!r} (hosts: {', '.join(h.name for h in self.hosts)})")

    @property
    def server(self) -> Host:
        return self.hosts[0]

    @property
    def kubeconfig(self) -> Path:
        return self.dir / "kubeconfig.yaml"

    # ---- up ----

    def up(self, nodes: int, *, agent: bool = True, proxy_mode: str = "iptables",
           subnet: str = SUBNET, name: str = NAME, timeout: float = 120,
           node_monitor_grace: float | None = None) -> None:
        if self.state["hosts"]:
            raise LabError(f"a lab is already recorded in {self.state_path}; run `kyb lab down`")
        bridge = BRIDGE if name == NAME else f"{hosts.link_prefix(name)}0"
        clash = hosts.subnet_in_use(subnet)
        if clash or hosts.link_exists(bridge):
            raise LabError(f"lab subnet {subnet} is in use here ({clash or bridge})")
        planned = hosts.plan_hosts(nodes, subnet, name)
        taken = [h.name for h in planned if hosts.netns_exists(h.name) or hosts.link_exists(h.veth)]
        if taken:
            raise LabError(f"leftovers of another lab: {', '.join(taken)}")
        self.dir.mkdir(parents=True, exist_ok=True)
        self.state.update(bridge=bridge, subnet=subnet, name=name, agent=agent,
                          proxy_mode=proxy_mode, procs=[], hosts=[h.to_dict() for h in planned])
        self.save()     # recorded first: `down` can undo a half-built lab
        try:
            hosts.create_bridge(bridge, subnet)
            for h in planned:
                hosts.create_host(h, bridge, subnet)
            self._start_control_plane(timeout, node_monitor_grace)
            for h in planned:
                self._start_node(h, agent=agent, proxy_mode=proxy_mode)
            if not agent:
                self._register_nodes()
        except BaseException:
            self.down()
            raise

    def add(self) -> Host:
        """One more host joined to the running cluster (a node that joins later)."""
        if not self.state["hosts"]:
            raise LabError(f"no lab is recorded in {self.state_path}; run `kyb lab up` first")
        h = hosts.plan_hosts(len(self.state["hosts"]) + 1, self.state["subnet"],
                             self.state.get("name", NAME))[-1]
        if hosts.netns_exists(h.name) or hosts.link_exists(h.veth):
            raise LabError(f"leftovers of another lab: {h.name}")
        self.state["hosts"].append(h.to_dict())
        self.save()     # recorded first: `down` removes it even if the start fails
        hosts.create_host(h, self.state["bridge"], self.state["subnet"])
        agent = self.state.get("agent", True)
        self._start_node(h, agent=agent, proxy_mode=self.state.get("proxy_mode", "iptables"))
        if not agent:
            self._register_nodes()
        return h

    def _spawn(self, host: Host, name: str, *args: str, env: dict | None = None) -> int:
        """`kyb ARGS` inside the host's netns, in its own session; logs in DIR/hosts/HOST."""
        logdir = self.dir / "hosts" / host.name
        logdir.mkdir(parents=True, exist_ok=True)
        with open(logdir / f"{name}.log", "ab") as log:
            # nsenter joins the network namespace only: `ip netns exec` would also mount a
            # fresh /sys, hiding /sys/fs/cgroup from runc ("no cgroup mount found").
            p = subprocess.Popen(["nsenter", f"--net=/run/netns/{host.name}", sys.executable,
                                  "-m", "kybernetes", *args], stdout=log,
                                 stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                 start_new_session=True,
                                 env={**os.environ, **env} if env else None)
        # nsenter execs the command: this PID is the component's.
        self.state["procs"].append({"host": host.name, "name": name, "pid": p.pid})
        self.save()
        return p.pid

    def _start_control_plane(self, timeout: float, node_monitor_grace: float | None) -> None:
        s = self.server
        sdir = self.dir / "server"
        self._spawn(s, "apiserver", "apiserver", "--data-dir", str(sdir), "--bind-address",
                    "0.0.0.0", "--secure-port", str(API_PORT), "--advertise-address", s.ip,
                    "--tls-san", s.ip)
        self._wait_api(s.ip, sdir, timeout)
        shutil.copyfile(sdir / "kubeconfig.yaml", self.kubeconfig)
        self.kubeconfig.chmod(0o600)
        kc = str(sdir / "kubeconfig.yaml")
        # local-path volumes live in the lab's directory (every host shares this filesystem).
        env = {"KYBERNETES_LOCAL_PATH_DIR": str(self.dir / "storage")}
        grace = []
        if node_monitor_grace is not None:
            # Tests see a cut node go Unknown (and its pods move) in seconds; keep it above
            # the kubelet's 10 s lease renewal or healthy nodes flap.
            grace = ["--node-monitor-grace-period", f"{node_monitor_grace}s"]
        self._spawn(s, "controller-manager", "controller-manager", "--kubeconfig", kc,
                    "--controllers", ",".join(CONTROLLERS), "--leader-elect=false", *grace,
                    env=env)
        if _has("kybernetes.scheduler.main"):
            self._spawn(s, "scheduler", "scheduler", "--kubeconfig", kc, "--leader-elect=false")

    def _wait_api(self, address: str, sdir: Path, timeout: float) -> None:
        ctx = ssl.create_default_context()
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                with urllib.request.urlopen(f"https://{address}:{API_PORT}/readyz", context=ctx,
                                            timeout=2) as r:
                    if r.status == 200 and (sdir / "kubeconfig.yaml").exists():
                        return
            except OSError:
                pass
            if not self._alive(self.state["procs"][0]["pid"]):
                break
            time.sleep(0.2)
        log = self.dir / "hosts" / self.server.name / "apiserver.log"
        raise LabError(f"the API server did not become ready; see {log}")

    def host_kubeconfig(self, h: Host) -> Path:
        """A kubeconfig for the node's components: the node token, the cluster CA."""
        sdir = self.dir / "server"
        doc = yaml.safe_load((sdir / "kubeconfig.yaml").read_text())
        token = (sdir / "node-token").read_text().strip()
        doc["users"] = [{"name": "node", "user": {"token": token}}]
        for c in doc["contexts"]:
            c["context"]["user"] = "node"
        path = self.dir / "hosts" / h.name / "kubeconfig.yaml"
        path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as f:
            yaml.safe_dump(doc, f)
        return path

    def _start_node(self, h: Host, *, agent: bool, proxy_mode: str) -> None:
        kc = str(self.host_kubeconfig(h))
        sdir = self.dir / "server"
        if agent:
            token = (sdir / "node-token").read_text().strip()
            self._spawn(h, "agent", "agent", "--server", f"https://{self.server.ip}:{API_PORT}",
                        "--token", token, "--node-name", h.name, "--node-ip", h.ip,
                        "--data-dir", str(self.dir / "hosts" / h.name / "agent"),
                        "--ca-dir", str(sdir / "tls"), "--fail-swap-on=false",
                        "--cluster-dns", "10.43.0.10", "--remove-pods-on-exit")
        self._spawn(h, "overlay", "overlay", "--kubeconfig", kc, "--node-name", h.name,
                    "--iface", "eth0")
        if _has("kybernetes.proxy.proxier"):
            self._spawn(h, "proxy", "proxy", "--kubeconfig", kc, "--node-name", h.name,
                        "--mode", proxy_mode)
        if _has("kybernetes.dns.main"):
            # Node-local DNS on the kube-dns address (routed locally by the proxy); the first
            # host creates the kube-dns Service.
            self._spawn(h, "dns", "dns", "--kubeconfig", kc, "--metrics-listen", "",
                        "--cluster-ip", "10.43.0.10" if h == self.server else "")

    def _register_nodes(self) -> None:
        """Without agents: Node objects for the hosts, so node IPAM and the overlay work."""
        import asyncio

        from kybernetes.api.errors import ApiError
        from kybernetes.client import Client, resource

        nodes = resource("v1", "Node")

        async def register() -> None:
            async with Client.from_kubeconfig(self.kubeconfig) as c:
                for h in self.hosts:
                    body = {"apiVersion": "v1", "kind": "Node",
                            "metadata": {"name": h.name,
                                         "labels": {"kubernetes.io/hostname": h.name}}}
                    try:
                        await c.create(nodes, body)
                    except ApiError as e:
                        if e.code != 409:
                            raise
                    await c.patch(nodes, h.name, {"status": {"addresses": [
                        {"type": "InternalIP", "address": h.ip},
                        {"type": "Hostname", "address": h.name}]}}, subresource="status")

        asyncio.run(register())

    # ---- down ----

    @staticmethod
    def _alive(pid: int) -> bool:
        try:
            cmd = Path(f"/proc/{pid}/cmdline").read_bytes()
        except OSError:
            return False
        # A recycled PID is someone else's process: only ours run `-m kybernetes`.
        return b"kybernetes" in cmd and Path(f"/proc/{pid}/stat").read_text().split()[2] != "Z"

    def _stop_procs(self, grace: float = 20) -> None:
        procs = [p for p in reversed(self.state["procs"]) if self._alive(p["pid"])]
        # Node components first, the control plane last (agents still talk to it on the way out).
        for group in ([p for p in procs if p["name"] != "apiserver"],
                      [p for p in procs if p["name"] == "apiserver"]):
            for p in group:
                try:
                    os.kill(p["pid"], signal.SIGTERM)
                except ProcessLookupError:
                    pass
            deadline = time.monotonic() + grace
            while any(self._alive(p["pid"]) for p in group) and time.monotonic() < deadline:
                time.sleep(0.1)
            for p in group:
                if self._alive(p["pid"]):
                    try:
                        os.killpg(p["pid"], signal.SIGKILL)
                    except ProcessLookupError:
                        pass

    def _teardown_pods(self, h: Host) -> None:
        """Pods an agent left behind (after a crash): remove them through its containerd."""
        data = self.dir / "hosts" / h.name / "agent"
        if not (data / "containerd" / "config.toml").exists() or not hosts.netns_exists(h.name):
            return
        code = ("import asyncio, sys; from pathlib import Path; "
                "from kybernetes.kubelet.agent import teardown; "
                "asyncio.run(teardown(Path(sys.argv[1]), 'cni0'))")
        hosts.in_netns(h.name, sys.executable, "-c", code, str(data), check=False)

    def down(self) -> None:
        self._stop_procs()
        for h in self.hosts:
            self._teardown_pods(h)
            hosts.remove_host(h)
        if self.state.get("bridge"):
            hosts.remove_bridge(self.state["bridge"])
        self.state.update(hosts=[], procs=[], bridge=None)
        if self.state_path.exists():
            self.state_path.unlink()

    # ---- operations ----

    def cut(self, name: str) -> None:
        hosts.set_link(self.host(name), up=False)

    def heal(self, name: str) -> None:
        hosts.set_link(self.host(name), up=True)

    def exec_argv(self, name: str, argv: list[str]) -> list[str]:
        return ["ip", "netns", "exec", self.host(name).name, *argv]

    def status(self) -> list[dict]:
        return [{"name": p["name"], "host": p["host"], "pid": p["pid"],
                 "alive": self._alive(p["pid"])} for p in self.state["procs"]]
