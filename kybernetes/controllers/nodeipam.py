"""Node IPAM: each Node gets a pod CIDR (spec.podCIDR and spec.podCIDRs) from the cluster CIDR.

As pkg/controller/nodeipam's range allocator: /24 ranges of 10.42.0.0/16 by default, handed out
round-robin from the last one given (so a released range is not reused at once), never two
nodes the same range; ranges already on Nodes are taken first (they survive restarts); a
deleted Node's range goes back to the pool. When the pool is empty the Node gets a
`CIDRNotAvailable` event and is retried.

Configuration: --cluster-cidr (default 10.42.0.0/16), --node-cidr-mask-size (default 24).
"""

from __future__ import annotations

import ipaddress
import logging

from kybernetes.api.errors import ApiError
from kybernetes.client import Controller, resource

from .options import OPTIONS

log = logging.getLogger(__name__)

NODES = resource("v1", "Node")
DEFAULT_CLUSTER_CIDR = "10.42.0.0/16"
DEFAULT_MASK = 24


class CIDRSet:
    """The /mask subnets of one cluster CIDR, allocated round-robin."""

    def __init__(self, cluster_cidr: str, mask: int):
        self.net = ipaddress.ip_network(cluster_cidr, strict=False)
        if mask < self.net.prefixlen or mask > self.net.max_prefixlen:
            raise ValueError(f"node mask /{mask} does not fit in {self.net}")
        self.mask = mask
        self.size = 1 << (mask - self.net.prefixlen)
        self.used: set[int] = set()
        self.next = 0

    def cidr(self, index: int) -> str:
        step = 1 << (self.net.max_prefixlen - self.mask)
        base = int(self.net.network_address) + index * step
        return f"{ipaddress.ip_address(base)}/{self.mask}"

    def index(self, cidr: str) -> int | None:
        """The index of `cidr` if it is one of our subnets."""
        try:
            sub = ipaddress.ip_network(cidr, strict=False)
        except ValueError:
            return None
        if sub.version != self.net.version or sub.prefixlen != self.mask or not sub.subnet_of(self.net):
            return None
        step = 1 << (self.net.max_prefixlen - self.mask)
        return (int(sub.network_address) - int(self.net.network_address)) // step

    def allocate(self) -> int | None:
        for i in range(self.size):
            candidate = (self.next + i) % self.size
            if candidate not in self.used:
                self.used.add(candidate)
                self.next = (candidate + 1) % self.size
                return candidate
        return None

    def occupy(self, index: int) -> None:
        self.used.add(index)

    def release(self, index: int) -> None:
        self.used.discard(index)


def node_cidrs(node: dict) -> list[str]:
    spec = node.get("spec") or {}
    return list(spec.get("podCIDRs") or ([spec["podCIDR"]] if spec.get("podCIDR") else []))


class NodeIpamController(Controller):
    name = "node-ipam-controller"
    workers = 1  # allocation order is simpler to reason about with one worker

    def setup(self) -> None:
        self.cidrs = CIDRSet(OPTIONS.cluster_cidr, OPTIONS.node_cidr_mask_size)
        self.owner: dict[str, int] = {}  # node name → index of its range
        self._primed = False
        self.nodes = self.factory.informer(NODES)
        self.nodes.add_handler(self.enqueue, lambda old, new: self.enqueue(new), self.enqueue)

    def _prime(self) -> None:
        """Take every range already on a Node before handing any out (restart safety)."""
        for node in self.nodes.list():
            self._occupy(node)
        self._primed = True

    def _occupy(self, node: dict) -> None:
        name = node["metadata"]["name"]
        for c in node_cidrs(node):
            i = self.cidrs.index(c)
            if i is None:
                continue  # outside our cluster CIDR: not ours to track
            if i in self.cidrs.used and self.owner.get(name) != i:
                holder = next((n for n, j in self.owner.items() if j == i), None)
                if holder is not None and holder != name:
                    log.error("node %s claims %s, already given to %s", name, c, holder)
                    continue
            self.cidrs.occupy(i)
            self.owner[name] = i

    async def reconcile(self, key: str) -> float | None:
        if not self._primed:
            self._prime()
        node = self.nodes.get(key)
        if node is None or node["metadata"].get("deletionTimestamp"):
            i = self.owner.pop(key, None)
            if i is not None and node is None:
                self.cidrs.release(i)
            elif i is not None:
                self.owner[key] = i  # keep it until the Node is really gone
            return None
        if node_cidrs(node):
            self._occupy(node)
            return None
        i = self.owner.get(key)
        if i is None:
            i = self.cidrs.allocate()
            if i is None:
                self.recorder.event(node, "Normal", "CIDRNotAvailable",
                                    f"Node {key} status is now: CIDRNotAvailable")
                return 30.0
            self.owner[key] = i
        cidr = self.cidrs.cidr(i)
        try:
            await self.client.patch(NODES, key, {"spec": {"podCIDR": cidr, "podCIDRs": [cidr]}})
        except ApiError as e:
            if e.code == 404:
                self.owner.pop(key, None)
                self.cidrs.release(i)
                return None
            self.recorder.event(node, "Warning", "CIDRAssignmentFailed",
                                f"Node {key} status is now: CIDRAssignmentFailed")
            raise
        return None
