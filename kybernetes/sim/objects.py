"""Plain builders for what a simulated kubelet writes: its Node, its Lease, its heartbeats.

Addresses come from 198.18.0.0/15 (RFC 2544's benchmarking range: never routed, never
contacted, and large enough for tens of thousands of nodes); pod IPs without a podCIDR from
per-node /24s in 10.128.0.0/9.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import ipaddress
import uuid
from dataclasses import dataclass, field

KUBELET_VERSION = "v1.33.0-kyb-sim"
FREEZE_LABEL = "sim.kybernetes.io/freeze"
MARKER_LABEL = "type"  # kwok marks its nodes type=kwok; selectors written for kwok keep working
MARKER_VALUE = "kwok"
LEASE_NAMESPACE = "kube-node-lease"
LEASE_DURATION = 40
_NODE_NET = ipaddress.ip_network("198.18.0.0/15")
_FAKE_POD_NET = ipaddress.ip_network("10.128.0.0/9")
_EFFECTS = ("NoSchedule", "PreferNoSchedule", "NoExecute")


def now_time(now: float | None = None) -> str:
    """metav1.Time: whole seconds."""
    t = dt.datetime.fromtimestamp(now, dt.timezone.utc) if now is not None else dt.datetime.now(dt.timezone.utc)
    return t.strftime("%Y-%m-%dT%H:%M:%SZ")


def now_micro(now: float | None = None) -> str:
    """metav1.MicroTime, as Lease renewTime is written."""
    t = dt.datetime.fromtimestamp(now, dt.timezone.utc) if now is not None else dt.datetime.now(dt.timezone.utc)
    return t.strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def parse_time(value: str | None) -> float | None:
    if not value:
        return None
    return dt.datetime.fromisoformat(value.replace("Z", "+00:00")).timestamp()


def parse_labels(text: str) -> dict[str, str]:
    """`k=v,k2=v2` as --labels takes it."""
    out = {}
    for part in filter(None, (p.strip() for p in text.split(","))):
        k, sep, v = part.partition("=")
        if not sep or not k:
            raise ValueError(f"label {part!r}: want key=value")
        out[k] = v
    return out


def parse_taints(text: str) -> list[dict]:
    """`k=v:Effect,k2:Effect` as kubelet's --register-with-taints takes it."""
    out = []
    for part in filter(None, (p.strip() for p in text.split(","))):
        kv, sep, effect = part.rpartition(":")
        if not sep or effect not in _EFFECTS:
            raise ValueError(f"taint {part!r}: want key[=value]:{'|'.join(_EFFECTS)}")
        k, _, v = kv.partition("=")
        taint = {"key": k, "effect": effect}
        if v:
            taint["value"] = v
        out.append(taint)
    return out


def node_ip(index: int) -> str:
    return str(_NODE_NET[index + 1])


def fake_pod_cidr(index: int) -> str:
    return str(ipaddress.ip_network((int(_FAKE_POD_NET.network_address) + 256 * index, 24)))


@dataclass
class NodeTemplate:
    """What every simulated node reports; per-node parts (name, IP, zone) come from its index."""
    cpu: str = "8"
    memory: str = "32Gi"
    pods: str = "110"
    ephemeral_storage: str = "100Gi"
    labels: dict[str, str] = field(default_factory=dict)
    taints: list[dict] = field(default_factory=list)
    zones: list[str] = field(default_factory=list)

    def resources(self) -> dict[str, str]:
        return {"cpu": self.cpu, "memory": self.memory, "pods": self.pods,
                "ephemeral-storage": self.ephemeral_storage,
                "hugepages-1Gi": "0", "hugepages-2Mi": "0"}


def _id(name: str, salt: str) -> str:
    return hashlib.sha256(f"{salt}/{name}".encode()).hexdigest()


def conditions(now: str, transitions: dict[str, str] | None = None) -> list[dict]:
    """A healthy kubelet's node conditions (types, reasons and messages as the kubelet writes
    them); `transitions` keeps each condition's earlier lastTransitionTime."""
    transitions = transitions or {}
    rows = [
        ("NetworkUnavailable", "False", "SimNetworkReady", "simulated pod network is up"),
        ("MemoryPressure", "False", "KubeletHasSufficientMemory", "kubelet has sufficient memory available"),
        ("DiskPressure", "False", "KubeletHasNoDiskPressure", "kubelet has no disk pressure"),
        ("PIDPressure", "False", "KubeletHasSufficientPID", "kubelet has sufficient PID available"),
        ("Ready", "True", "KubeletReady", "kubelet is posting ready status"),
    ]
    return [{"type": t, "status": s, "lastHeartbeatTime": now,
             "lastTransitionTime": transitions.get(t, now), "reason": r, "message": m}
            for t, s, r, m in rows]


def heartbeat_transitions(node: dict) -> dict[str, str]:
    """lastTransitionTime of conditions already in our state, so a heartbeat keeps them."""
    healthy = {c["type"]: c["status"] for c in conditions("")}
    return {c["type"]: c["lastTransitionTime"] for c in (node.get("status") or {}).get("conditions") or []
            if c.get("lastTransitionTime") and healthy.get(c.get("type")) == c.get("status")}


def build_node(name: str, index: int, tpl: NodeTemplate, now: str) -> dict:
    labels = {
        "beta.kubernetes.io/arch": "amd64", "beta.kubernetes.io/os": "linux",
        "kubernetes.io/arch": "amd64", "kubernetes.io/os": "linux",
        "kubernetes.io/hostname": name, "node.kubernetes.io/instance-type": "sim",
        MARKER_LABEL: MARKER_VALUE,
    }
    if tpl.zones:
        labels["topology.kubernetes.io/zone"] = tpl.zones[index % len(tpl.zones)]
    labels.update(tpl.labels)
    spec: dict = {}
    if tpl.taints:
        spec["taints"] = [dict(t) for t in tpl.taints]
    return {
        "apiVersion": "v1", "kind": "Node",
        "metadata": {"name": name, "labels": labels,
                     "annotations": {"node.alpha.kubernetes.io/ttl": "0",
                                     "kwok.x-k8s.io/node": "fake"}},
        "spec": spec,
        "status": node_status(name, index, tpl, now),
    }


def node_status(name: str, index: int, tpl: NodeTemplate, now: str,
                transitions: dict[str, str] | None = None) -> dict:
    return {
        "capacity": tpl.resources(),
        "allocatable": tpl.resources(),
        "conditions": conditions(now, transitions),
        "addresses": [{"type": "InternalIP", "address": node_ip(index)},
                      {"type": "Hostname", "address": name}],
        "daemonEndpoints": {"kubeletEndpoint": {"Port": 10250}},
        "nodeInfo": {
            "machineID": _id(name, "machine")[:32], "systemUUID": str(_uuid(name)),
            "bootID": str(_uuid(name + "/boot")), "kernelVersion": "6.1.0-kyb-sim",
            "osImage": "kybernetes simulated node", "containerRuntimeVersion": "sim://1.0.0",
            "kubeletVersion": KUBELET_VERSION, "kubeProxyVersion": "",
            "operatingSystem": "linux", "architecture": "amd64",
        },
    }


def _uuid(name: str) -> uuid.UUID:
    return uuid.uuid5(uuid.NAMESPACE_URL, f"kybernetes-sim:{name}")


def build_lease(node: dict, now: str) -> dict:
    """The node's heartbeat Lease, owned by the Node as the kubelet makes it."""
    meta = node["metadata"]
    return {
        "apiVersion": "coordination.k8s.io/v1", "kind": "Lease",
        "metadata": {"name": meta["name"], "namespace": LEASE_NAMESPACE,
                     "ownerReferences": [{"apiVersion": "v1", "kind": "Node", "name": meta["name"],
                                          "uid": meta["uid"]}]},
        "spec": {"holderIdentity": meta["name"], "leaseDurationSeconds": LEASE_DURATION,
                 "renewTime": now},
    }


def is_frozen(node: dict | None) -> bool:
    return bool(node) and (node["metadata"].get("labels") or {}).get(FREEZE_LABEL) == "true"
