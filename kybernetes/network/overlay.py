"""The VXLAN overlay agent: flannel's job (vxlan backend, kube subnet manager), from Node objects.

Each node publishes its VTEP (the MAC of its `kyb.1` VXLAN device) and public IP as flannel's own
node annotations, so the data is where flannel users expect it:

    flannel.alpha.coreos.com/backend-type: vxlan
    flannel.alpha.coreos.com/backend-data: {"VNI":1,"VtepMAC":"…"}
    flannel.alpha.coreos.com/public-ip: <InternalIP>
    flannel.alpha.coreos.com/kube-subnet-manager: "true"

For every other node with a podCIDR and those annotations, this node programs (like flannel):
  route  <podCIDR> via <podCIDR .0> dev kyb.1 onlink
  neigh  <podCIDR .0> lladdr <VtepMAC> PERMANENT        (no ARP over the overlay)
  fdb    <VtepMAC> dst <public-ip> self permanent       (no learning, no flooding)
`kyb.1` itself carries this node's <podCIDR .0>/32. `unreachable` routes for the whole cluster and
service CIDRs make sure no pod/service address ever follows the default route out of the machine
(the more specific per-node routes win). Reconciling is level-triggered: any Node change wakes one
loop that compares the wanted entries with the kernel's and fixes the difference.
"""

from __future__ import annotations

import asyncio
import ipaddress
import json
import logging
import socket
import time
from dataclasses import dataclass, field

from pyroute2 import AsyncIPRoute
from pyroute2.netlink.exceptions import NetlinkError
from pyroute2.netlink.rtnl import ndmsg

from kybernetes.client import Client, InformerFactory, resource

from . import masq

log = logging.getLogger("kyb.overlay")

NODES = resource("v1", "Node")
PREFIX = "flannel.alpha.coreos.com/"
BACKEND_TYPE = PREFIX + "backend-type"
BACKEND_DATA = PREFIX + "backend-data"
PUBLIC_IP = PREFIX + "public-ip"
SUBNET_MANAGER = PREFIX + "kube-subnet-manager"

DEVICE = "kyb.1"
VNI = 1
PORT = 8472
MTU = 1450
CLUSTER_CIDR = "10.42.0.0/16"
SERVICE_CIDR = "10.43.0.0/16"
_ONLINK = 4          # RTNH_F_ONLINK
_PERMANENT = ndmsg.states["permanent"]
_SELF = ndmsg.flags["self"]


@dataclass(frozen=True)
class Peer:
    """What this node needs to know to reach one other node's pods."""
    name: str
    pod_cidr: str
    gateway: str      # the peer's podCIDR .0, carried by its kyb.1
    vtep_mac: str
    public_ip: str


@dataclass
class State:
    """The overlay entries, as sets, for comparison (wanted or found in the kernel)."""
    routes: set[tuple[str, str]] = field(default_factory=set)   # (podCIDR, gateway)
    neighs: set[tuple[str, str]] = field(default_factory=set)   # (gateway, mac)
    fdbs: set[tuple[str, str]] = field(default_factory=set)     # (mac, public ip)


def gateway_of(pod_cidr: str) -> str:
    return str(ipaddress.ip_network(pod_cidr, strict=False).network_address)


def internal_ip(node: dict) -> str | None:
    for a in (node.get("status") or {}).get("addresses") or []:
        if a.get("type") == "InternalIP":
            return a.get("address")
    return None


def peer_of(node: dict) -> Peer | None:
    """The node's overlay data, or None while it lacks a podCIDR or VTEP annotations."""
    meta, spec = node["metadata"], node.get("spec") or {}
    ann = meta.get("annotations") or {}
    cidr = spec.get("podCIDR")
    if not cidr or ann.get(BACKEND_TYPE, "vxlan") != "vxlan" or not ann.get(BACKEND_DATA):
        return None
    try:
        data = json.loads(ann[BACKEND_DATA])
        mac = str(data["VtepMAC"]).lower()
        net = ipaddress.ip_network(cidr, strict=False)
    except (ValueError, KeyError, TypeError):
        return None
    ip = ann.get(PUBLIC_IP) or internal_ip(node)
    if not ip or net.version != 4:
        return None
    return Peer(meta["name"], str(net), str(net.network_address), mac, ip)


def wanted(nodes: list[dict], self_name: str, cluster_cidr: str = CLUSTER_CIDR) -> State:
    """The entries this node should have for every other node (pure)."""
    cluster = ipaddress.ip_network(cluster_cidr)
    out = State()
    for node in sorted(nodes, key=lambda n: n["metadata"]["name"]):
        p = peer_of(node)
        if p is None or p.name == self_name or not ipaddress.ip_network(p.pod_cidr).subnet_of(cluster):
            continue
        if any(c == p.pod_cidr for c, _ in out.routes):
            continue    # two nodes claiming one podCIDR: the first (by name) keeps it
        out.routes.add((p.pod_cidr, p.gateway))
        out.neighs.add((p.gateway, p.vtep_mac))
        out.fdbs.add((p.vtep_mac, p.public_ip))
    return out


def backend_annotations(mac: str, public_ip: str) -> dict[str, str]:
    return {BACKEND_TYPE: "vxlan", BACKEND_DATA: json.dumps({"VNI": VNI, "VtepMAC": mac},
                                                            separators=(",", ":")),
            PUBLIC_IP: public_ip, SUBNET_MANAGER: "true"}


class Datapath:
    """The kernel side: the VXLAN device and its routes, neighbours and fdb entries."""

    def __init__(self, device: str = DEVICE):
        self.device = device
        self.index = 0

    async def ensure_device(self, local_ip: str, iface: str | None, mtu: int = MTU) -> str:
        """Create (or keep) the VXLAN device; its MAC is this node's VtepMAC."""
        async with AsyncIPRoute() as ipr:
            found = await ipr.link_lookup(ifname=self.device)
            if found and not await self._matches(ipr, found[0], local_ip):
                await ipr.link("del", index=found[0])   # a leftover with other settings
                found = []
            if not found:
                kw = {}
                if iface:
                    kw["vxlan_link"] = (await ipr.link_lookup(ifname=iface))[0]
                await ipr.link("add", ifname=self.device, kind="vxlan", vxlan_id=VNI,
                               vxlan_port=PORT, vxlan_learning=0, vxlan_local=local_ip, **kw)
                found = await ipr.link_lookup(ifname=self.device)
            self.index = found[0]
            await ipr.link("set", index=self.index, mtu=mtu, state="up")
            link = (await ipr.link("get", index=self.index))[0]
            return link.get("address")

    @staticmethod
    async def _matches(ipr: AsyncIPRoute, index: int, local_ip: str) -> bool:
        link = (await ipr.link("get", index=index))[0]
        info = link.get(("linkinfo", "data"))
        return bool(info) and info.get("vxlan_id") == VNI and info.get("vxlan_local") == local_ip \
            and info.get("vxlan_port") == PORT

    async def set_address(self, gateway: str) -> None:
        """This node's podCIDR .0/32 on kyb.1 (and nothing else)."""
        async with AsyncIPRoute() as ipr:
            have = [a.get("address") async for a in await ipr.addr("dump", index=self.index)
                    if a["family"] == socket.AF_INET]
            for a in have:
                if a != gateway:
                    await ipr.addr("del", index=self.index, address=a, prefixlen=32)
            if gateway not in have:
                await ipr.addr("add", index=self.index, address=gateway, prefixlen=32)

    async def guard(self, *cidrs: str) -> None:
        """`unreachable` for whole CIDRs: pod/service addresses never take the default route."""
        async with AsyncIPRoute() as ipr:
            for cidr in cidrs:
                await ipr.route("replace", dst=cidr, type="unreachable")

    async def unguard(self, *cidrs: str) -> None:
        async with AsyncIPRoute() as ipr:
            for cidr in cidrs:
                try:
                    await ipr.route("del", dst=cidr, type="unreachable")
                except NetlinkError:
                    pass

    async def current(self) -> State:
        out = State()
        async with AsyncIPRoute() as ipr:
            async for r in await ipr.route("dump", family=socket.AF_INET):
                if r.get("oif") == self.index and r.get("gateway") and r.get("table") == 254:
                    out.routes.add((f"{r.get('dst')}/{r['dst_len']}", r.get("gateway")))
            async for n in await ipr.neigh("dump", ifindex=self.index, family=socket.AF_INET):
                if n["ifindex"] == self.index and n["state"] & _PERMANENT and n.get("lladdr"):
                    out.neighs.add((n.get("dst"), n.get("lladdr")))
            async for f in await ipr.fdb("dump", ifindex=self.index):
                mac = f.get("lladdr")
                if f["ifindex"] == self.index and f.get("dst") and mac and mac != "00:00:00:00:00:00":
                    out.fdbs.add((mac, f.get("dst")))
        return out

    async def apply(self, want: State) -> int:
        """Make the kernel match `want`; returns how many entries changed. Order: fdb and neigh
        before the route that uses them; the route goes first when removing."""
        have = await self.current()
        changes = 0
        async with AsyncIPRoute() as ipr:
            for cidr, gw in have.routes - want.routes:
                await self._try(ipr.route("del", dst=cidr, gateway=gw, oif=self.index))
                changes += 1
            for ip, mac in have.neighs - want.neighs:
                await self._try(ipr.neigh("del", dst=ip, lladdr=mac, ifindex=self.index))
                changes += 1
            for mac, dst in have.fdbs - want.fdbs:
                await self._try(ipr.fdb("del", ifindex=self.index, lladdr=mac, dst=dst))
                changes += 1
            for mac, dst in want.fdbs - have.fdbs:
                await ipr.fdb("append", ifindex=self.index, lladdr=mac, dst=dst,
                              state=_PERMANENT, flags=_SELF)
                changes += 1
            for ip, mac in want.neighs - have.neighs:
                await ipr.neigh("replace", dst=ip, lladdr=mac, ifindex=self.index,
                                state=_PERMANENT)
                changes += 1
            for cidr, gw in want.routes - have.routes:
                await ipr.route("replace", dst=cidr, gateway=gw, oif=self.index, flags=_ONLINK)
                changes += 1
        return changes

    @staticmethod
    async def _try(coro) -> None:
        try:
            await coro
        except NetlinkError as e:   # already gone
            log.debug("overlay delete: %s", e)

    async def remove_device(self) -> None:
        async with AsyncIPRoute() as ipr:
            for i in await ipr.link_lookup(ifname=self.device):
                await ipr.link("del", index=i)


class OverlayAgent:
    """Runs in the node's network namespace; embeddable (start/stop) or run as `kyb overlay`."""

    def __init__(self, client: Client, node_name: str, *, iface: str | None = None,
                 cluster_cidr: str = CLUSTER_CIDR, service_cidr: str = SERVICE_CIDR,
                 masquerade: bool = True, device: str = DEVICE, mtu: int = MTU):
        self.client = client
        self.node_name = node_name
        self.iface = iface
        self.cluster_cidr = cluster_cidr
        self.service_cidr = service_cidr
        self.masquerade = masquerade
        self.mtu = mtu
        self.datapath = Datapath(device)
        self.factory = InformerFactory(client)
        self.nodes = self.factory.informer(NODES)
        self.nodes.add_handler(self._changed, lambda old, new: self._changed(new), self._changed)
        self._dirty = asyncio.Event()
        self._first_change: float | None = None
        self._task: asyncio.Task | None = None
        self.vtep_mac: str | None = None
        self.syncs = 0
        self.last_latency: float | None = None   # first Node event seen → kernel programmed

    def _changed(self, _obj: dict) -> None:
        if self._first_change is None:
            self._first_change = time.monotonic()
        self._dirty.set()

    async def start(self) -> None:
        # Guard first: from here on no cluster address can leave by the default route.
        await self.datapath.guard(self.cluster_cidr, self.service_cidr)
        if self.masquerade:
            await masq.ensure(self.cluster_cidr, self.service_cidr)
        self.factory.start()
        await self.factory.wait_for_sync()
        me = await self._wait_self()
        local_ip = self._local_ip(me)
        self.vtep_mac = await self.datapath.ensure_device(local_ip, self.iface, self.mtu)
        await self.datapath.set_address(gateway_of(me["spec"]["podCIDR"]))
        await self._publish(me, local_ip)
        self._task = asyncio.create_task(self._loop(), name="overlay-sync")
        log.info("overlay on %s: %s VTEP %s local %s, podCIDR %s", self.node_name,
                 self.datapath.device, self.vtep_mac, local_ip, me["spec"]["podCIDR"])

    async def _wait_self(self) -> dict:
        """Our own Node, once it has a podCIDR (the agent registers it; node IPAM fills it)."""
        while True:
            me = self.nodes.get(self.node_name)
            if me and (me.get("spec") or {}).get("podCIDR"):
                return me
            self._dirty.clear()
            try:
                await asyncio.wait_for(self._dirty.wait(), 5)
            except TimeoutError:
                log.info("waiting for node %s and its podCIDR", self.node_name)

    def _local_ip(self, me: dict) -> str:
        ip = internal_ip(me)
        if self.iface:
            import fcntl
            import struct
            with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
                req = struct.pack("256s", self.iface.encode()[:15])
                ip = socket.inet_ntoa(fcntl.ioctl(s.fileno(), 0x8915, req)[20:24])  # SIOCGIFADDR
        if not ip:
            raise RuntimeError(f"node {self.node_name} has no InternalIP; give --iface")
        return ip

    async def _publish(self, me: dict, local_ip: str) -> None:
        want = backend_annotations(self.vtep_mac or "", local_ip)
        have = me["metadata"].get("annotations") or {}
        if any(have.get(k) != v for k, v in want.items()):
            await self.client.patch(NODES, self.node_name, {"metadata": {"annotations": want}})

    async def _loop(self) -> None:
        self._dirty.set()
        while True:
            await self._dirty.wait()
            self._dirty.clear()
            started, self._first_change = self._first_change, None
            try:
                me = self.nodes.get(self.node_name)
                if me:
                    cidr = (me.get("spec") or {}).get("podCIDR")
                    if cidr:
                        await self.datapath.set_address(gateway_of(cidr))
                    local_ip = self._local_ip(me)
                    if self.vtep_mac:
                        await self._publish(me, local_ip)
                changes = await self.datapath.apply(
                    wanted(self.nodes.list(), self.node_name, self.cluster_cidr))
                self.syncs += 1
                if changes and started is not None:
                    self.last_latency = time.monotonic() - started
                    log.info("overlay: %d entries changed, %.3fs after the node change",
                             changes, self.last_latency)
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("overlay sync failed; retrying")
                await asyncio.sleep(1)
                self._dirty.set()

    async def stop(self, cleanup: bool = False) -> None:
        if self._task:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
            self._task = None
        await self.factory.stop()
        if cleanup:
            await cleanup_host(self.datapath.device, self.cluster_cidr, self.service_cidr,
                               self.masquerade)


async def cleanup_host(device: str = DEVICE, cluster_cidr: str = CLUSTER_CIDR,
                       service_cidr: str = SERVICE_CIDR, masquerade: bool = True) -> None:
    """Remove everything the overlay put in this network namespace."""
    dp = Datapath(device)
    await dp.remove_device()   # its routes, neighbours and fdb entries go with it
    await dp.unguard(cluster_cidr, service_cidr)
    if masquerade:
        await masq.remove()


async def serve(kubeconfig: str, node_name: str, *, iface: str | None = None,
                cluster_cidr: str = CLUSTER_CIDR, service_cidr: str = SERVICE_CIDR,
                masquerade: bool = True, cleanup_on_exit: bool = False) -> None:
    import signal

    client = Client.from_kubeconfig(kubeconfig, user_agent=f"kyb-overlay/{node_name}")
    agent = OverlayAgent(client, node_name, iface=iface, cluster_cidr=cluster_cidr,
                         service_cidr=service_cidr, masquerade=masquerade)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    try:
        starting = asyncio.create_task(agent.start())
        stopping = asyncio.create_task(stop.wait())
        await asyncio.wait({starting, stopping}, return_when=asyncio.FIRST_COMPLETED)
        if starting.done():
            starting.result()
            await stopping
        else:
            starting.cancel()
            await asyncio.gather(starting, return_exceptions=True)
            stopping.cancel()
    finally:
        await agent.stop(cleanup=cleanup_on_exit)
        await client.close()
