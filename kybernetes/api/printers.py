"""Per-kind Table columns and cells for built-in resources (kube-apiserver's internal printers).

Each printer is registered under (group, plural resource) with its column list and a function
obj -> cells. Cells always include the priority-1 ("wide") columns: the API server renders
tables as wide and kubectl hides priority>0 columns unless `-o wide`. Descriptions are
references into the official OpenAPI definitions ("@core.v1.PodSpec.nodeName"), resolved by
tables.py.
"""

from __future__ import annotations

import ipaddress
from datetime import datetime
from typing import Any, Callable

from kybernetes.api.duration import age, parse_time
from kybernetes.api.selectors import SelectorError, label_selector_from_object

Obj = dict[str, Any]
Column = tuple[str, str, str, int]  # name, type, description ref, priority
Printer = tuple[list[Column], Callable[[Obj, datetime], list[Any]]]

NAME: Column = ("Name", "string", "@meta.v1.ObjectMeta.name", 0)
AGE: Column = ("Age", "string", "@meta.v1.ObjectMeta.creationTimestamp", 0)


def meta(obj: Obj) -> Obj:
    return obj.get("metadata") or {}


def created(obj: Obj, now: datetime) -> str:
    return age(meta(obj).get("creationTimestamp"), now)


def format_labels(labels: dict[str, str] | None) -> str:
    """labels.FormatLabels: sorted k=v pairs, "<none>" when empty."""
    text = ",".join(f"{k}={v}" for k, v in sorted((labels or {}).items()))
    return text or "<none>"


def selector_string(sel: Obj | None) -> str | None:
    """LabelSelectorAsSelector(sel).String(); None when the selector is invalid."""
    try:
        return str(label_selector_from_object(sel))
    except SelectorError:
        return None


def format_label_selector(sel: Obj | None) -> str:
    """metav1.FormatLabelSelector: "<none>" for an empty/nil selector, "<error>" if invalid."""
    text = selector_string(sel)
    if text is None:
        return "<error>"
    return text or "<none>"


def list_with_more(items: list[str], total: int, limit: int = 3, empty: str = "<unset>") -> str:
    text = ",".join(items[:limit])
    if total > limit:
        return f"{text} + {total - limit} more..."
    return text or empty


def first_condition(conditions: list[Obj] | None, ctype: str) -> Obj | None:
    for cond in conditions or []:
        if cond.get("type") == ctype:
            return cond
    return None


# --- core/v1 ---------------------------------------------------------------------------------


def _service_cluster_ip(spec: Obj) -> str:
    # v1 → internal conversion: clusterIP is authoritative, clusterIPs fills in when it is unset
    ip = spec.get("clusterIP") or ""
    ips = spec.get("clusterIPs") or []
    return ip or (ips[0] if ips else "") or "<none>"


def _lb_ingress(status: Obj) -> list[str]:
    found = {i.get("ip") or i.get("hostname") for i in (status.get("loadBalancer") or {}).get("ingress") or []}
    return sorted(x for x in found if x)


def _service_external_ip(svc: Obj) -> str:
    spec = svc.get("spec") or {}
    stype = spec.get("type") or "ClusterIP"
    external = spec.get("externalIPs") or []
    if stype in ("ClusterIP", "NodePort"):
        return ",".join(external) if external else "<none>"
    if stype == "LoadBalancer":
        lb = _lb_ingress(svc.get("status") or {})
        if external:
            return ",".join(lb + external)
        return ",".join(lb) if lb else "<pending>"
    if stype == "ExternalName":
        return spec.get("externalName") or ""
    return "<unknown>"


def _service_ports(ports: list[Obj] | None) -> str:
    pieces = []
    for p in ports or []:
        proto = p.get("protocol") or "TCP"
        node_port = p.get("nodePort") or 0
        pieces.append(f"{p.get('port', 0)}:{node_port}/{proto}" if node_port > 0 else f"{p.get('port', 0)}/{proto}")
    return ",".join(pieces) or "<none>"


def _service(obj: Obj, now: datetime) -> list[Any]:
    spec = obj.get("spec") or {}
    return [meta(obj).get("name", ""), spec.get("type") or "ClusterIP", _service_cluster_ip(spec),
            _service_external_ip(obj), _service_ports(spec.get("ports")), created(obj, now),
            format_labels(spec.get("selector"))]


def _host_port(ip: str, port: int) -> str:
    try:
        if isinstance(ipaddress.ip_address(ip), ipaddress.IPv6Address):
            return f"[{ip}]:{port}"
    except ValueError:
        if ":" in ip:
            return f"[{ip}]:{port}"
    return f"{ip}:{port}"


def _endpoints_text(obj: Obj) -> str:
    subsets = obj.get("subsets") or []
    if not subsets:
        return "<none>"
    shown: list[str] = []
    count = 0
    for ss in subsets:
        addrs = [a.get("ip", "") for a in ss.get("addresses") or []]
        ports = ss.get("ports") or []
        if not ports:  # headless services may have no ports
            count += len(addrs)
            shown.extend(addrs[: max(0, 3 - len(shown))])
            continue
        for port in ports:
            count += len(addrs)
            for ip in addrs:
                if len(shown) == 3:
                    break
                shown.append(_host_port(ip, port.get("port", 0)))
    text = ",".join(shown)
    return f"{text} + {count - 3} more..." if count > 3 else text


def _node_roles(labels: dict[str, str]) -> list[str]:
    roles = set()
    for key, value in labels.items():
        if key.startswith("node-role.kubernetes.io/"):
            role = key[len("node-role.kubernetes.io/"):]
            if role:
                roles.add(role)
        elif key == "kubernetes.io/role" and value:
            roles.add(value)
    return sorted(roles)


def _node_address(status: Obj, kind: str) -> str:
    for addr in status.get("addresses") or []:
        if addr.get("type") == kind:
            return addr.get("address", "")
    return "<none>"


def _node(obj: Obj, now: datetime) -> list[Any]:
    status = obj.get("status") or {}
    info = status.get("nodeInfo") or {}
    # only the Ready condition counts; the last one of that type wins, as in a map
    ready = None
    for cond in status.get("conditions") or []:
        if cond.get("type") == "Ready":
            ready = cond
    states = ["Unknown"] if ready is None else ["Ready" if ready.get("status") == "True" else "NotReady"]
    if (obj.get("spec") or {}).get("unschedulable"):
        states.append("SchedulingDisabled")
    roles = ",".join(_node_roles(meta(obj).get("labels") or {})) or "<none>"
    return [meta(obj).get("name", ""), ",".join(states), roles, created(obj, now), info.get("kubeletVersion", ""),
            _node_address(status, "InternalIP"), _node_address(status, "ExternalIP"),
            info.get("osImage") or "<unknown>", info.get("kernelVersion") or "<unknown>",
            info.get("containerRuntimeVersion") or "<unknown>"]


def _event_fields(obj: Obj, events_api: bool) -> Obj:
    """events.k8s.io/v1 names mapped onto the core/v1 Event fields the printer reads."""
    if not events_api:
        return obj
    return {
        "metadata": obj.get("metadata"), "firstTimestamp": obj.get("deprecatedFirstTimestamp"),
        "lastTimestamp": obj.get("deprecatedLastTimestamp"), "eventTime": obj.get("eventTime"),
        "count": obj.get("deprecatedCount"), "series": obj.get("series"), "involvedObject": obj.get("regarding"),
        "type": obj.get("type"), "reason": obj.get("reason"), "message": obj.get("note"),
        "source": obj.get("deprecatedSource"), "reportingComponent": obj.get("reportingController"),
        "reportingInstance": obj.get("reportingInstance"),
    }


def _event(obj: Obj, now: datetime, events_api: bool = False) -> list[Any]:
    ev = _event_fields(obj, events_api)
    first = ev.get("firstTimestamp") if parse_time(ev.get("firstTimestamp")) else ev.get("eventTime")
    first_seen = age(first, now)
    last_seen = age(ev.get("lastTimestamp"), now) if parse_time(ev.get("lastTimestamp")) else first_seen
    count = ev.get("count") or 0
    series = ev.get("series")
    if series is not None:
        last_seen = age(series.get("lastObservedTime"), now)
        count = series.get("count") or 0
    elif count == 0:
        count = 1  # singleton events have no count in the new API
    involved = ev.get("involvedObject") or {}
    kind = (involved.get("kind") or "").lower()
    target = f"{kind}/{involved['name']}" if involved.get("name") else kind
    source = ev.get("source") or {}
    component = source.get("component") or ev.get("reportingComponent") or ""
    instance = source.get("host") or ev.get("reportingInstance") or ""
    source_text = f"{component}, {instance}" if instance else component
    message = (ev.get("message") or "").strip()
    return [last_seen, ev.get("type") or "", ev.get("reason") or "", target, involved.get("fieldPath") or "",
            source_text, message, first_seen, int(count), meta(obj).get("name", "")]


_ACCESS_MODES = (("ReadWriteOnce", "RWO"), ("ReadOnlyMany", "ROX"), ("ReadWriteMany", "RWX"), ("ReadWriteOncePod", "RWOP"))


def _access_modes(modes: list[str] | None) -> str:
    return ",".join(short for full, short in _ACCESS_MODES if full in (modes or []))


def _storage_class(obj: Obj) -> str:
    beta = (meta(obj).get("annotations") or {}).get("volume.beta.kubernetes.io/storage-class")
    if beta is not None:
        return beta
    return (obj.get("spec") or {}).get("storageClassName") or ""


def _pv(obj: Obj, now: datetime) -> list[Any]:
    spec, status = obj.get("spec") or {}, obj.get("status") or {}
    claim = spec.get("claimRef")
    claim_text = f"{claim.get('namespace', '')}/{claim.get('name', '')}" if claim is not None else ""
    phase = "Terminating" if meta(obj).get("deletionTimestamp") else status.get("phase", "")
    return [meta(obj).get("name", ""), str((spec.get("capacity") or {}).get("storage", "0")),
            _access_modes(spec.get("accessModes")), spec.get("persistentVolumeReclaimPolicy", ""), phase,
            claim_text, _storage_class(obj), spec.get("volumeAttributesClassName") or "<unset>",
            status.get("reason", ""), created(obj, now), spec.get("volumeMode") or "<unset>"]


def _pvc(obj: Obj, now: datetime) -> list[Any]:
    spec, status = obj.get("spec") or {}, obj.get("status") or {}
    phase = "Terminating" if meta(obj).get("deletionTimestamp") else status.get("phase", "")
    capacity = modes = ""
    if spec.get("volumeName"):
        modes = _access_modes(status.get("accessModes"))
        capacity = str((status.get("capacity") or {}).get("storage", "0"))
    return [meta(obj).get("name", ""), phase, spec.get("volumeName", ""), capacity, modes, _storage_class(obj),
            spec.get("volumeAttributesClassName") or "<unset>", created(obj, now), spec.get("volumeMode") or "<unset>"]


def _resource_quota(obj: Obj, now: datetime) -> list[Any]:
    status = obj.get("status") or {}
    hard, used = status.get("hard") or {}, status.get("used") or {}
    requests, limits = [], []
    for name in sorted(hard):
        text = f"{name}: {used.get(name, '0')}/{hard[name]}"
        (limits if name.split(".")[0] == "limits" and "." in name else requests).append(text)
    return [meta(obj).get("name", ""), ", ".join(requests), ", ".join(limits), created(obj, now)]


def _component_status(obj: Obj, now: datetime) -> list[Any]:
    status, message, error = "Unknown", "", ""
    cond = first_condition(obj.get("conditions"), "Healthy")
    if cond is not None:
        status = "Healthy" if cond.get("status") == "True" else "Unhealthy"
        message, error = cond.get("message", ""), cond.get("error", "")
    return [meta(obj).get("name", ""), status, message, error]


def _name_age(obj: Obj, now: datetime) -> list[Any]:
    return [meta(obj).get("name", ""), created(obj, now)]


CORE_PRINTERS: dict[str, Printer] = {
    "services": ([NAME, ("Type", "string", "@core.v1.ServiceSpec.type", 0),
                  ("Cluster-IP", "string", "@core.v1.ServiceSpec.clusterIP", 0),
                  ("External-IP", "string", "@core.v1.ServiceSpec.externalIPs", 0),
                  ("Port(s)", "string", "@core.v1.ServiceSpec.ports", 0), AGE,
                  ("Selector", "string", "@core.v1.ServiceSpec.selector", 1)], _service),
    "endpoints": ([NAME, ("Endpoints", "string", "@core.v1.Endpoints.subsets", 0), AGE],
                  lambda o, now: [meta(o).get("name", ""), _endpoints_text(o), created(o, now)]),
    "nodes": ([NAME, ("Status", "string", "The status of the node", 0), ("Roles", "string", "The roles of the node", 0),
               AGE, ("Version", "string", "@core.v1.NodeSystemInfo.kubeletVersion", 0),
               ("Internal-IP", "string", "@core.v1.NodeStatus.addresses", 1),
               ("External-IP", "string", "@core.v1.NodeStatus.addresses", 1),
               ("OS-Image", "string", "@core.v1.NodeSystemInfo.osImage", 1),
               ("Kernel-Version", "string", "@core.v1.NodeSystemInfo.kernelVersion", 1),
               ("Container-Runtime", "string", "@core.v1.NodeSystemInfo.containerRuntimeVersion", 1)], _node),
    "events": ([("Last Seen", "string", "@core.v1.Event.lastTimestamp", 0), ("Type", "string", "@core.v1.Event.type", 0),
                ("Reason", "string", "@core.v1.Event.reason", 0), ("Object", "string", "@core.v1.Event.involvedObject", 0),
                ("Subobject", "string", "@core.v1.ObjectReference.fieldPath", 1),
                ("Source", "string", "@core.v1.Event.source", 1), ("Message", "string", "@core.v1.Event.message", 0),
                ("First Seen", "string", "@core.v1.Event.firstTimestamp", 1),
                ("Count", "string", "@core.v1.Event.count", 1),
                ("Name", "string", "@meta.v1.ObjectMeta.name", 1)], _event),
    "namespaces": ([NAME, ("Status", "string", "The status of the namespace", 0), AGE],
                   lambda o, now: [meta(o).get("name", ""), (o.get("status") or {}).get("phase", ""), created(o, now)]),
    "secrets": ([NAME, ("Type", "string", "@core.v1.Secret.type", 0), ("Data", "string", "@core.v1.Secret.data", 0), AGE],
                lambda o, now: [meta(o).get("name", ""), o.get("type", ""), len(o.get("data") or {}), created(o, now)]),
    "configmaps": ([NAME, ("Data", "string", "@core.v1.ConfigMap.data", 0), AGE],
                   lambda o, now: [meta(o).get("name", ""), len(o.get("data") or {}) + len(o.get("binaryData") or {}),
                                   created(o, now)]),
    "serviceaccounts": ([NAME, ("Secrets", "string", "@core.v1.ServiceAccount.secrets", 0), AGE],
                        lambda o, now: [meta(o).get("name", ""), len(o.get("secrets") or []), created(o, now)]),
    "persistentvolumes": ([NAME, ("Capacity", "string", "@core.v1.PersistentVolumeSpec.capacity", 0),
                           ("Access Modes", "string", "@core.v1.PersistentVolumeSpec.accessModes", 0),
                           ("Reclaim Policy", "string", "@core.v1.PersistentVolumeSpec.persistentVolumeReclaimPolicy", 0),
                           ("Status", "string", "@core.v1.PersistentVolumeStatus.phase", 0),
                           ("Claim", "string", "@core.v1.PersistentVolumeSpec.claimRef", 0),
                           ("StorageClass", "string", "StorageClass of the pv", 0),
                           ("VolumeAttributesClass", "string", "VolumeAttributesClass of the pv", 0),
                           ("Reason", "string", "@core.v1.PersistentVolumeStatus.reason", 0), AGE,
                           ("VolumeMode", "string", "@core.v1.PersistentVolumeSpec.volumeMode", 1)], _pv),
    "persistentvolumeclaims": ([NAME, ("Status", "string", "@core.v1.PersistentVolumeClaimStatus.phase", 0),
                                ("Volume", "string", "@core.v1.PersistentVolumeClaimSpec.volumeName", 0),
                                ("Capacity", "string", "@core.v1.PersistentVolumeClaimStatus.capacity", 0),
                                ("Access Modes", "string", "@core.v1.PersistentVolumeClaimStatus.accessModes", 0),
                                ("StorageClass", "string", "StorageClass of the pvc", 0),
                                ("VolumeAttributesClass", "string", "VolumeAttributesClass of the pvc", 0), AGE,
                                ("VolumeMode", "string", "@core.v1.PersistentVolumeClaimSpec.volumeMode", 1)], _pvc),
    "resourcequotas": ([NAME, ("Request", "string", "Request represents a minimum amount of cpu/memory that a container may consume.", 0),
                        ("Limit", "string", "Limits control the maximum amount of cpu/memory that a container may use independent of contention on the node.", 0),
                        AGE], _resource_quota),
    "componentstatuses": ([NAME, ("Status", "string", "Status of the component conditions", 0),
                           ("Message", "string", "Message of the component conditions", 0),
                           ("Error", "string", "Error of the component conditions", 0)], _component_status),
}


def _event_v1(obj: Obj, now: datetime) -> list[Any]:
    return _event(obj, now, events_api=True)


def all_printers() -> dict[tuple[str, str], Printer]:
    """Every built-in printer keyed by (group, resource)."""
    # imported here: those modules build on the helpers above
    from kybernetes.api.printers_other import OTHER_PRINTERS
    from kybernetes.api.printers_workloads import WORKLOAD_PRINTERS

    table: dict[tuple[str, str], Printer] = {("", r): p for r, p in CORE_PRINTERS.items()}
    table[("events.k8s.io", "events")] = (CORE_PRINTERS["events"][0], _event_v1)
    table.update(WORKLOAD_PRINTERS)
    table.update(OTHER_PRINTERS)
    return table
