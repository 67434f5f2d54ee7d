"""Per-kind work the API server does around writes: Service IPs and node ports, CRDs becoming
REST resources. Allocations are store keys created with create-if-absent, so they are unique
even with concurrent writers."""

from __future__ import annotations

import ipaddress
import logging
import random

import orjson

from kybernetes.api import errors
from kybernetes.api.registry import Registry, Resource
from kybernetes.store import KeyExistsError, KeyNotFoundError, Store

from .admission_plugins import admit_pod
from .objects import now_rfc3339

log = logging.getLogger(__name__)

SERVICE_CIDR = "10.43.0.0/16"
NODE_PORTS = (30000, 32767)
_IP_KEYS = "/registry/ranges/serviceips/"
_PORT_KEYS = "/registry/ranges/servicenodeports/"


class Hooks:
    async def admit(self, obj: dict) -> None:
        """Mutating admission of a new object, before it is validated."""

    async def before_create(self, obj: dict) -> None:
        pass

    async def after_create(self, obj: dict) -> None:
        pass

    async def after_delete(self, obj: dict) -> None:
        pass

    async def before_update(self, new: dict, old: dict) -> None:
        """Allocations an update needs (it may run again when the write is retried)."""


class PodHooks(Hooks):
    """Pods pass the Priority, DefaultTolerationSeconds and ServiceAccount admissions."""

    def __init__(self, priority_classes):
        self.priority_classes = priority_classes  # () -> list of PriorityClass objects

    async def admit(self, obj: dict) -> None:
        admit_pod(obj, self.priority_classes())


def _ports(spec: dict) -> list[dict]:
    """The service's ports that are objects: a null entry is validation's to report (Go
    decodes it as an empty port), not something to allocate for."""
    return [p for p in spec.get("ports") or () if isinstance(p, dict)]


class ServiceHooks(Hooks):
    def __init__(self, store: Store, cidr: str = SERVICE_CIDR):
        self.store = store
        self.net = ipaddress.ip_network(cidr)

    async def _claim(self, key: str, owner: str) -> bool:
        """Take KEY for OWNER; true also when OWNER holds it already (a retried write)."""
        try:
            await self.store.create(key, orjson.dumps({"owner": owner}))
            return True
        except KeyExistsError as e:
            held = e.current or await self.store.get(key)
            return held is not None and orjson.loads(held.value).get("owner") == owner

    async def before_update(self, new: dict, old: dict) -> None:
        """A type change allocates what the new type needs (node ports for NodePort and
        LoadBalancer, a cluster IP when leaving ExternalName) and drops what it no longer
        has, as kube-apiserver does."""
        spec, old_spec = new.setdefault("spec", {}), old.get("spec") or {}
        meta = new["metadata"]
        owner = f"{meta.get('namespace')}/{meta['name']}"
        kind = spec.get("type") or "ClusterIP"
        if kind in ("NodePort", "LoadBalancer"):
            for port in _ports(spec):
                if not port.get("nodePort"):
                    await self._node_port(port, owner, meta["name"])
        else:  # fields of the external types go with them (upstream's dropTypeDependentFields)
            for port in _ports(spec):
                port.pop("nodePort", None)
            for field in ("externalTrafficPolicy", "healthCheckNodePort",
                          "allocateLoadBalancerNodePorts", "loadBalancerClass"):
                spec.pop(field, None)
        kept = {p.get("nodePort") for p in _ports(spec)}
        for port in _ports(old_spec):
            if port.get("nodePort") and port["nodePort"] not in kept:
                await self._release(f"{_PORT_KEYS}{port['nodePort']}")
        if kind != "ExternalName" and old_spec.get("type") == "ExternalName" and not spec.get("clusterIP"):
            spec["clusterIP"] = await self._allocate_ip(owner)
            spec["clusterIPs"] = [spec["clusterIP"]]
            spec.setdefault("ipFamilies", ["IPv4"])
            spec.setdefault("ipFamilyPolicy", "SingleStack")

    async def before_create(self, obj: dict) -> None:
        spec = obj.setdefault("spec", {})
        meta = obj["metadata"]
        owner = f"{meta.get('namespace')}/{meta['name']}"
        if spec.get("type") == "ExternalName":
            return
        ip = spec.get("clusterIP")
        if ip == "None":
            spec["clusterIPs"] = ["None"]
        elif ip:
            try:
                addr = ipaddress.ip_address(ip)
            except ValueError:
                raise errors.invalid("Service", meta["name"], [{"reason": "FieldValueInvalid",
                    "field": "spec.clusterIPs", "message": f'Invalid value: "{ip}": must be a valid IP address'}]) from None
            if addr not in self.net:
                raise errors.invalid("Service", meta["name"], [{"reason": "FieldValueInvalid",
                    "field": "spec.clusterIPs",
                    "message": f'Invalid value: ["{ip}"]: failed to allocate IP {ip}: the provided IP ({ip}) is not in the valid range. The range of valid IPs is {self.net}'}])
            if not await self._claim(_IP_KEYS + ip, owner):
                raise errors.invalid("Service", meta["name"], [{"reason": "FieldValueInvalid",
                    "field": "spec.clusterIPs",
                    "message": f'Invalid value: ["{ip}"]: failed to allocate IP {ip}: provided IP is already allocated'}])
            spec["clusterIPs"] = [ip]
        else:
            spec["clusterIP"] = await self._allocate_ip(owner)
            spec["clusterIPs"] = [spec["clusterIP"]]
        spec.setdefault("ipFamilies", ["IPv4"])
        spec.setdefault("ipFamilyPolicy", "SingleStack")
        if spec.get("type") in ("NodePort", "LoadBalancer"):
            for port in _ports(spec):
                await self._node_port(port, owner, meta["name"])

    async def _allocate_ip(self, owner: str) -> str:
        size = self.net.num_addresses
        base = int(self.net.network_address)
        # .1 is the kubernetes service, .10 the cluster DNS: take those only when asked.
        for _ in range(64):
            offset = random.randrange(11, size - 1)
            ip = str(ipaddress.ip_address(base + offset))
            if await self._claim(_IP_KEYS + ip, owner):
                return ip
        raise errors.ApiError(500, "InternalError", "Internal error occurred: failed to allocate a serviceIP: range is full")

    async def _node_port(self, port: dict, owner: str, name: str) -> None:
        want = port.get("nodePort")
        if want:
            if not (NODE_PORTS[0] <= want <= NODE_PORTS[1]):
                raise errors.invalid("Service", name, [{"reason": "FieldValueInvalid",
                    "field": "spec.ports[0].nodePort",
                    "message": f"Invalid value: {want}: provided port is not in the valid range. The range of valid ports is {NODE_PORTS[0]}-{NODE_PORTS[1]}"}])
            if not await self._claim(f"{_PORT_KEYS}{want}", owner):
                raise errors.invalid("Service", name, [{"reason": "FieldValueInvalid",
                    "field": "spec.ports[0].nodePort",
                    "message": f"Invalid value: {want}: provided port is already allocated"}])
            return
        for _ in range(64):
            p = random.randint(*NODE_PORTS)
            if await self._claim(f"{_PORT_KEYS}{p}", owner):
                port["nodePort"] = p
                return
        raise errors.ApiError(500, "InternalError", "Internal error occurred: failed to allocate a nodePort: range is full")

    async def after_delete(self, obj: dict) -> None:
        spec = obj.get("spec") or {}
        for ip in spec.get("clusterIPs") or []:
            if ip and ip != "None":
                await self._release(_IP_KEYS + ip)
        for port in _ports(spec):
            if port.get("nodePort"):
                await self._release(f"{_PORT_KEYS}{port['nodePort']}")

    async def _release(self, key: str) -> None:
        try:
            await self.store.delete(key)
        except KeyNotFoundError:
            pass


def crd_resources(crd: dict) -> list[Resource]:
    """The REST resources a CustomResourceDefinition defines (one per served version)."""
    spec = crd.get("spec") or {}
    names = spec.get("names") or {}
    group = spec.get("group", "")
    storage = next((v["name"] for v in spec.get("versions") or [] if v.get("storage")), "")
    out = []
    for v in spec.get("versions") or []:
        if not v.get("served", True):
            continue
        subs = v.get("subresources") or {}
        sub_names = tuple(s for s in ("status", "scale") if s in subs)
        scale = subs.get("scale")
        scale_paths = None
        if scale:
            scale_paths = (scale.get("specReplicasPath", ".spec.replicas"),
                           scale.get("statusReplicasPath", ".status.replicas"),
                           scale.get("labelSelectorPath") or "")
        schema = ((v.get("schema") or {}).get("openAPIV3Schema")) or {"type": "object",
                                                                        "x-kubernetes-preserve-unknown-fields": True}
        out.append(Resource(
            group=group, version=v["name"], kind=names.get("kind", ""),
            plural=names.get("plural", ""), namespaced=spec.get("scope") == "Namespaced",
            short_names=tuple(names.get("shortNames") or ()),
            categories=tuple(names.get("categories") or ()),
            subresources=sub_names, storage_version=storage,
            singular=names.get("singular", ""), schema=schema,
            printer_columns=tuple(v.get("additionalPrinterColumns") or ()),
            scale_paths=scale_paths,
        ))
    return out


class CrdHooks(Hooks):
    """Accept a CRD's names and serve its resources at once (apiextensions' controllers)."""

    def __init__(self, registry: Registry, rest):
        self.registry = registry
        self.rest = rest

    async def after_create(self, obj: dict) -> None:
        crds = self.registry.get("apiextensions.k8s.io", "v1", "customresourcedefinitions")
        name = obj["metadata"]["name"]

        async def mutate(current: dict) -> dict:
            spec = current.get("spec") or {}
            now = now_rfc3339()
            current["status"] = {
                "conditions": [
                    {"type": "NamesAccepted", "status": "True", "reason": "NoConflicts",
                     "message": "no conflicts found", "lastTransitionTime": now},
                    {"type": "Established", "status": "True", "reason": "InitialNamesAccepted",
                     "message": "the initial names have been accepted", "lastTransitionTime": now},
                ],
                "acceptedNames": spec.get("names") or {},
                "storedVersions": [v["name"] for v in spec.get("versions") or [] if v.get("storage")],
            }
            return current

        await self.rest.objects.update(crds, None, name, mutate)

    async def after_delete(self, obj: dict) -> None:
        """The CRD is gone: so are its custom resources (upstream's customresourcecleanup
        finalizer does this before the CRD goes; here it happens right after)."""
        resources = crd_resources(obj)
        if not resources:
            return
        r = resources[0]
        store = self.rest.objects.store
        # Every version shares one key prefix; each delete is a DELETED event for watchers.
        res = await store.range(r.key_prefix(), limit=500)
        while True:
            for kv in res.kvs:
                try:
                    await store.delete(kv.key)
                except KeyNotFoundError:
                    pass
            if not res.more or not res.kvs:
                break
            res = await store.range(r.key_prefix(), limit=500, start_after=res.kvs[-1].key)


def sync_crds(registry: Registry, event_type: str, crd: dict, prev: dict | None) -> None:
    """Keep the registry in step with CRD objects (also after a restart: the cache replays)."""
    if prev is not None:
        spec = prev.get("spec") or {}
        registry.remove(spec.get("group", ""), (spec.get("names") or {}).get("plural", ""))
    if event_type != "DELETED":
        for r in crd_resources(crd):
            registry.add(r)
