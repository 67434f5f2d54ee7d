"""`kyb agent`: the node agent. Starts (or connects to) containerd, registers the Node, writes the
pod network's CNI config, serves the kubelet API and runs a pod worker per pod bound here, and
per static pod of its manifest folder (static.py). The eviction manager (eviction.py) watches
memory and admits or evicts pods under pressure."""

from __future__ import annotations

import asyncio
import logging
import os
import signal
from dataclasses import dataclass, field
from pathlib import Path

from kybernetes.client import Client, ClientConfig, EventRecorder, InformerFactory, load_kubeconfig
from kybernetes.network import masq

from . import machine, network, static
from .bootstrap import BootstrapError, NodeCredentials
from .containerd import Containerd
from .eviction import DEFAULT_HARD, EvictionManager, ThresholdError, parse_thresholds
from .mirror import ImageMirror
from .cri.client import CRI, CRIError
from .node import NodeConfig, NodeReporter, default_node_name
from .podworkers import PODS, PodWorkers
from .server import KubeletServer
from .static import StaticPods
from .stats import StatsProvider
from .volumes import VolumeManager

log = logging.getLogger("kyb.kubelet")


@dataclass
class AgentConfig:
    data_dir: Path
    kubeconfig: str | None = None
    server: str | None = None
    token: str | None = None
    node_name: str | None = None
    node_ip: str | None = None
    runtime_endpoint: str | None = None
    kubelet_port: int = 10250
    pod_cidr: str | None = None  # used when node IPAM assigns none
    pod_cidr_wait: float = 3.0
    fail_swap_on: bool = True
    ca_dir: Path | None = None
    cluster_dns: str | None = None
    cni_bridge: str = "cni0"
    # Pod traffic leaving these ranges is masqueraded by our chain (kybernetes.network.masq)
    # rather than by the CNI bridge plugin's ipMasq, which costs iptables runs per pod.
    cluster_cidr: str | None = None
    service_cidr: str = "10.43.0.0/16"
    masquerade: bool = True
    labels: dict[str, str] = field(default_factory=dict)
    pod_manifest_path: Path | None = None  # default: DATA/manifests
    eviction_hard: str | None = None  # None: the kubelet's defaults; "": no thresholds
    eviction_period: float = 10.0  # the eviction manager's housekeeping interval
    eviction_pressure_transition_period: float = 300.0


class SwapError(RuntimeError):
    pass


def client_config(cfg: AgentConfig) -> ClientConfig:
    return load_kubeconfig(cfg.kubeconfig, user_agent=f"kubelet/{cfg.node_name}")


def join_credentials(cfg: AgentConfig) -> NodeCredentials | None:
    """Joining with --server/--token: the node's certificates come through CSRs (bootstrap.py)."""
    if cfg.kubeconfig:
        return None
    if not (cfg.server and cfg.token):
        raise SystemExit("kyb agent: give --kubeconfig, or --server and --token")
    return NodeCredentials(cfg.server, cfg.token, cfg.node_name, cfg.data_dir, cfg.ca_dir,
                           user_agent=f"kubelet/{cfg.node_name}")


def find_ca_dir(cfg: AgentConfig) -> Path | None:
    """The cluster CA's directory, when its key is on this host (the server's data dir)."""
    candidates = [cfg.ca_dir] if cfg.ca_dir else []
    if cfg.kubeconfig:
        candidates.append(Path(cfg.kubeconfig).resolve().parent / "tls")
    return next((d for d in candidates if d and (d / "ca.key").exists()), None)


class Agent:
    def __init__(self, cfg: AgentConfig):
        self.cfg = cfg
        cfg.data_dir = cfg.data_dir.resolve()
        cfg.node_name = (cfg.node_name or default_node_name()).lower()
        self.containerd: Containerd | None = None
        self.cri: CRI | None = None
        self.client: Client | None = None
        self.workers: PodWorkers | None = None
        self.reporter: NodeReporter | None = None
        self.server: KubeletServer | None = None
        self.factory: InformerFactory | None = None
        self.recorder: EventRecorder | None = None
        self.mirror: ImageMirror | None = None
        self.static: StaticPods | None = None
        self.eviction: EvictionManager | None = None

    async def start(self) -> None:
        cfg = self.cfg
        try:
            thresholds = parse_thresholds(DEFAULT_HARD if cfg.eviction_hard is None
                                          else cfg.eviction_hard)
        except ThresholdError as e:
            raise SystemExit(f"kyb agent: --eviction-hard: {e}") from None
        if cfg.fail_swap_on and machine.swap_on():
            raise SwapError("running with swap on is not supported, please disable swap or set "
                            "--fail-swap-on=false")
        cfg.data_dir.mkdir(parents=True, exist_ok=True)
        join = join_credentials(cfg)  # trust and credentials first: a refused join starts nothing
        try:
            self.client = Client(await join.client_config() if join else client_config(cfg))
        except BootstrapError as e:
            raise SystemExit(f"kyb agent: {e}") from None
        endpoint = cfg.runtime_endpoint
        if not endpoint:
            self.containerd = Containerd(cfg.data_dir)
            await self.containerd.start()
            self.mirror = ImageMirror(cfg.data_dir)
            await self.mirror.start(self.containerd)
            await self._import_images()
            endpoint = self.containerd.endpoint
        self.cri = CRI(endpoint)
        version = await self.cri.version()
        node_ip = cfg.node_ip or machine.default_ip()
        ncfg = NodeConfig(name=cfg.node_name, node_ip=node_ip, kubelet_port=cfg.kubelet_port,
                          data_dir=str(cfg.data_dir), labels=cfg.labels,
                          runtime_version=f"{version.runtime_name}://{version.runtime_version}")
        self.reporter = NodeReporter(self.client, ncfg, pressures=lambda: (
            self.eviction.pressures() if self.eviction else
            {"MemoryPressure": False, "DiskPressure": False, "PIDPressure": False}))
        await self.reporter.register()
        self.reporter.start()
        # An explicit --pod-cidr is a fallback after a short wait; without one, node IPAM has a
        # minute: two nodes guessing the same default would hand out the same pod IPs.
        wait = cfg.pod_cidr_wait if cfg.pod_cidr else 60.0
        cidr = await self.reporter.wait_pod_cidr(wait) or cfg.pod_cidr or "10.42.0.0/24"
        if self.containerd:
            network.write_conflist(self.containerd.cni_conf, cidr, bridge=cfg.cni_bridge,
                                   name=f"kyb-{cfg.cni_bridge}",
                                   ipam_dir=str(cfg.data_dir / "cni" / "networks"),
                                   masquerade=not cfg.masquerade)
            if cfg.masquerade:
                await masq.ensure(cfg.cluster_cidr or cidr, cfg.service_cidr)
        log.info("node %s: %s, pod CIDR %s", cfg.node_name, ncfg.runtime_version, cidr)
        allocatable = lambda: (self.reporter.node.get("status") or {}).get("allocatable") or {}  # noqa: E731
        self.recorder = EventRecorder(self.client, "kubelet", host=cfg.node_name)
        self.workers = PodWorkers(self.client, self.cri, node_name=cfg.node_name, host_ip=node_ip,
                                  logs_root=str(cfg.data_dir / "pods"),
                                  cluster_dns=cfg.cluster_dns, allocatable=allocatable,
                                  volumes=VolumeManager(self.client, cfg.data_dir / "volumes",
                                                        allocatable),
                                  recorder=self.recorder)
        cert, key, ca = await join.serving_cert(self.client, node_ip) if join \
            else self._serving_cert(node_ip)
        pods_of = lambda: list(self.workers.pods.values())  # noqa: E731
        stats = StatsProvider(self.cri, cfg.node_name, pods_of)
        self.server = KubeletServer(self.cri, pods_of, port=cfg.kubelet_port, cert=cert, key=key,
                                    ca=ca, stats=stats)
        await self.server.start()
        self.eviction = EvictionManager(
            thresholds, client=self.client, cri=self.cri, stats=stats, workers=self.workers,
            recorder=self.recorder, node_name=cfg.node_name, data_dir=str(cfg.data_dir),
            period=cfg.eviction_period,
            transition_period=cfg.eviction_pressure_transition_period,
            on_change=self.reporter.write_status)
        # Static pods join the workers before those look for orphaned sandboxes.
        self.static = StaticPods(
            self.client, self.workers, self.cri, node_name=cfg.node_name,
            folder=cfg.pod_manifest_path or cfg.data_dir / "manifests",
            node_uid=lambda: (self.reporter.node.get("metadata") or {}).get("uid", ""))
        self.static.load()
        self.factory = InformerFactory(self.client)
        pods = self.factory.informer(PODS, field_selector=f"spec.nodeName={cfg.node_name}")
        pods.add_handler(self._pod_seen, lambda old, new: self._pod_seen(new), self._pod_gone)
        self.factory.start()
        self.workers.start()
        self.static.start()
        self.eviction.start()
        await self.factory.wait_for_sync()
        self.workers.mark_synced()
        self.static.mark_synced()
        log.info("agent ready: kubelet API on :%d", cfg.kubelet_port)

    def _pod_seen(self, pod: dict) -> None:
        if static.is_mirror(pod):  # the API's copy of a static pod: not run from here
            self.static.mirror_changed(pod)
            return
        if pod["metadata"]["uid"] not in self.workers.pods and not self.eviction.admit(pod):
            return  # rejected: the eviction manager marks it Failed
        self.workers.upsert(pod)

    def _pod_gone(self, pod: dict) -> None:
        if static.is_mirror(pod):
            self.static.mirror_removed(pod)
            return
        self.workers.remove(pod)

    def _serving_cert(self, node_ip: str) -> tuple[Path | None, Path | None, Path | None]:
        ca_dir = find_ca_dir(self.cfg)
        pki = self.cfg.data_dir / "pki"
        pki.mkdir(exist_ok=True)
        if ca_dir is None:
            # No CA key here: a self-signed certificate (the API server must skip verification).
            from kybernetes.apiserver.certs import CertificateAuthority
            own = CertificateAuthority(pki / "self")
            cert_pem, key_pem = own.issue(self.cfg.node_name, ips=(node_ip,),
                                          dns_names=(self.cfg.node_name,), server=True)
            ca_file = None
        else:
            from kybernetes.apiserver.certs import CertificateAuthority
            from kybernetes.apiserver.proxy import kubelet_serving_cert
            ca = CertificateAuthority(ca_dir)
            cert_pem, key_pem = kubelet_serving_cert(ca, self.cfg.node_name,
                                                     (node_ip, self.cfg.node_name))
            ca_file = ca.cert_path
        cert, key = pki / "kubelet.crt", pki / "kubelet.key"
        cert.write_bytes(cert_pem)
        fd = os.open(key, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "wb") as f:
            f.write(key_pem)
        return cert, key, ca_file

    async def _import_images(self) -> None:
        """Every tarball in DATA/images (k3s' air-gap convention); the built-in images come
        from the mirror."""
        extra = self.cfg.data_dir / "images"
        if not extra.is_dir():
            return
        for t in sorted(p for p in extra.iterdir() if p.name.endswith((".tar", ".tar.gz"))):
            try:
                await self.containerd.ctr("images", "import", str(t))
            except RuntimeError as e:
                log.warning("importing %s: %s", t, e)

    async def stop(self, remove_pods: bool = False) -> None:
        if self.factory:
            await self.factory.stop()
        if self.eviction:
            await self.eviction.stop()
        if self.static:
            await self.static.stop()
        if self.workers:
            await self.workers.stop()
            if remove_pods:
                await self.workers.kill_all()
        if self.server:
            await self.server.stop()
        if self.recorder:
            await self.recorder.flush()
        if self.reporter:
            await self.reporter.stop()
        if self.client:
            await self.client.close()
        if self.cri:
            await self.cri.close()
        if self.mirror:
            await self.mirror.stop()
        if self.containerd:
            await self.containerd.stop()


async def run(cfg: AgentConfig, remove_pods_on_exit: bool = False) -> None:
    agent = Agent(cfg)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    try:
        await agent.start()
        await stop.wait()
    finally:
        await agent.stop(remove_pods=remove_pods_on_exit)


async def teardown(data_dir: Path, bridge: str | None = None) -> None:
    """Remove every pod sandbox an agent left in its containerd (containers, network namespaces,
    CNI state), then stop that containerd and drop the pod bridge: a node's uninstall."""
    c = Containerd(data_dir.resolve())
    await c.start()
    cri = CRI(c.endpoint)
    try:
        for _ in range(100):  # the CRI plugin answers "not initialized" for a moment after start
            try:
                sandboxes = (await cri.list_pod_sandbox()).items
                break
            except CRIError as e:
                if "not initialized" not in e.details:
                    raise
                await asyncio.sleep(0.1)
        else:
            sandboxes = []
        for sb in sandboxes:
            try:
                await cri.stop_pod_sandbox(pod_sandbox_id=sb.id)
                await cri.remove_pod_sandbox(pod_sandbox_id=sb.id)
            except CRIError as e:
                log.warning("removing sandbox %s: %s", sb.id[:12], e.details)
    finally:
        await cri.close()
        await c.stop()
    await masq.remove()
    volumes = data_dir.resolve() / "volumes"
    if volumes.is_dir():  # tmpfs emptyDirs of pods that were not deleted through the API
        for uid in VolumeManager(None, volumes).known():
            await VolumeManager(None, volumes).teardown(uid)
    if bridge:
        p = await asyncio.create_subprocess_exec("ip", "link", "del", bridge,
                                                 stderr=asyncio.subprocess.DEVNULL)
        await p.wait()
