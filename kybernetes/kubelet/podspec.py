"""From a Pod's spec to CRI configs: the sandbox, each container (env, resources, security).

Pure functions except for where values come from other objects (ConfigMaps, Secrets): those are
looked up through a `Lookup` given by the caller, so the rules here can be tested on their own.
"""

from __future__ import annotations

import base64
import re
from decimal import ROUND_CEILING, Decimal
from typing import Awaitable, Callable

from kybernetes.api.quantity import Quantity

from .cri.client import messages as pb

Lookup = Callable[[str, str, str], Awaitable[dict | None]]  # (kind, namespace, name) → object

POD_NAME, POD_NS, POD_UID = "io.kubernetes.pod.name", "io.kubernetes.pod.namespace", "io.kubernetes.pod.uid"
CONTAINER_NAME = "io.kubernetes.container.name"
KIND_LABEL = "io.kubernetes.kyb.kind"  # "init" or "regular"
MIN_SHARES, PERIOD = 2, 100_000


class ConfigError(Exception):
    """The container cannot be configured yet (CreateContainerConfigError)."""


def sandbox_labels(pod: dict) -> dict[str, str]:
    m = pod["metadata"]
    return {**(m.get("labels") or {}), POD_NAME: m["name"], POD_NS: m["namespace"],
            POD_UID: m["uid"]}


def log_dir(root: str, pod: dict) -> str:
    m = pod["metadata"]
    return f"{root}/{m['namespace']}_{m['name']}_{m['uid']}"


def sandbox_config(pod: dict, attempt: int, logs_root: str,
                   cluster_dns: str | None = None, cluster_domain: str = "cluster.local"
                   ) -> pb.PodSandboxConfig:
    m, spec = pod["metadata"], pod.get("spec") or {}
    host_network = bool(spec.get("hostNetwork"))
    ns = pb.NamespaceOption(network=pb.NODE if host_network else pb.POD,
                            pid=pb.POD if spec.get("shareProcessNamespace") else pb.CONTAINER,
                            ipc=pb.NODE if spec.get("hostIPC") else pb.POD)
    if spec.get("hostPID"):
        ns.pid = pb.NODE
    psc = spec.get("securityContext") or {}
    sec = pb.LinuxSandboxSecurityContext(
        namespace_options=ns,
        privileged=any((c.get("securityContext") or {}).get("privileged")
                       for c in _all_containers(spec)))
    if psc.get("runAsUser") is not None:
        sec.run_as_user.value = int(psc["runAsUser"])
    if psc.get("runAsGroup") is not None:
        sec.run_as_group.value = int(psc["runAsGroup"])
    sec.supplemental_groups.extend(int(g) for g in psc.get("supplementalGroups") or ())
    ports = [pb.PortMapping(protocol=_protocol(p.get("protocol")),
                            container_port=int(p["containerPort"]),
                            host_port=int(p["hostPort"]), host_ip=p.get("hostIP", ""))
             for c in spec.get("containers") or () for p in c.get("ports") or ()
             if p.get("hostPort")]
    cfg = pb.PodSandboxConfig(
        metadata=pb.PodSandboxMetadata(name=m["name"], namespace=m["namespace"], uid=m["uid"],
                                       attempt=attempt),
        hostname="" if host_network else _hostname(pod),
        log_directory=log_dir(logs_root, pod),
        port_mappings=ports,
        labels=sandbox_labels(pod),
        annotations=m.get("annotations") or {},
        linux=pb.LinuxPodSandboxConfig(security_context=sec, sysctls={
            s["name"]: s["value"] for s in psc.get("sysctls") or ()}))
    dns = dns_config(pod, cluster_dns, cluster_domain)
    if dns is not None:
        cfg.dns_config.CopyFrom(dns)
    return cfg


def _hostname(pod: dict) -> str:
    spec = pod.get("spec") or {}
    return (spec.get("hostname") or pod["metadata"]["name"])[:63]


def dns_config(pod: dict, cluster_dns: str | None, domain: str) -> pb.DNSConfig | None:
    """ClusterFirst with a cluster DNS: its address and the usual search list; otherwise (no
    cluster DNS, or dnsPolicy Default) the runtime copies the host's resolv.conf."""
    spec = pod.get("spec") or {}
    policy = spec.get("dnsPolicy") or "ClusterFirst"
    custom = spec.get("dnsConfig") or {}
    ns = pod["metadata"]["namespace"]
    if policy == "None":
        return pb.DNSConfig(servers=custom.get("nameservers") or [],
                            searches=custom.get("searches") or [],
                            options=[_opt(o) for o in custom.get("options") or ()])
    if policy == "ClusterFirstWithHostNet" or (policy == "ClusterFirst" and not spec.get("hostNetwork")):
        if cluster_dns:
            return pb.DNSConfig(
                servers=[cluster_dns] + (custom.get("nameservers") or []),
                searches=[f"{ns}.svc.{domain}", f"svc.{domain}", domain] + (custom.get("searches") or []),
                options=["ndots:5"] + [_opt(o) for o in custom.get("options") or ()])
    return None


def _opt(o: dict) -> str:
    return f"{o['name']}:{o['value']}" if o.get("value") is not None else o["name"]


def _protocol(p: str | None) -> int:
    return {"UDP": pb.UDP, "SCTP": pb.SCTP}.get(p or "TCP", pb.TCP)


def _all_containers(spec: dict) -> list[dict]:
    return list(spec.get("initContainers") or ()) + list(spec.get("containers") or ())


# ---- environment ----

_VAR = re.compile(r"\$\(([A-Za-z_][A-Za-z0-9_.-]*)\)|\$\$")


def expand(text: str, env: dict[str, str]) -> str:
    """$(VAR) references as the kubelet expands them: unknown ones stay, $$ escapes a $."""
    def sub(m: re.Match) -> str:
        if m.group(0) == "$$":
            return "$"
        name = m.group(1)
        return env.get(name, m.group(0))
    return _VAR.sub(sub, text)


def field_value(pod: dict, path: str) -> str:
    m, spec, status = pod["metadata"], pod.get("spec") or {}, pod.get("status") or {}
    simple = {"metadata.name": m.get("name"), "metadata.namespace": m.get("namespace"),
              "metadata.uid": m.get("uid"), "spec.nodeName": spec.get("nodeName"),
              "spec.serviceAccountName": spec.get("serviceAccountName"),
              "status.hostIP": status.get("hostIP"), "status.podIP": status.get("podIP"),
              "status.hostIPs": ",".join(i["ip"] for i in status.get("hostIPs") or ()),
              "status.podIPs": ",".join(i["ip"] for i in status.get("podIPs") or ())}
    if path in simple:
        return simple[path] or ""
    mm = re.fullmatch(r"metadata\.(labels|annotations)\['(.+)'\]", path)
    if mm:
        return (m.get(mm.group(1)) or {}).get(mm.group(2), "")
    if path in ("metadata.labels", "metadata.annotations"):
        items = m.get(path.split(".")[1]) or {}
        return "\n".join(f'{k}="{v}"' for k, v in sorted(items.items()))
    raise ConfigError(f"unsupported fieldRef {path}")


def resource_value(container: dict, ref: dict, node_allocatable: dict | None = None) -> str:
    """resourceFieldRef: limits/requests of the container, divided by the divisor, rounded up;
    an unset limit means the node's allocatable, as upstream."""
    res = container.get("resources") or {}
    what = ref["resource"]
    kind, _, name = what.partition(".")
    value = (res.get(kind) or {}).get(name)
    if value is None and kind == "limits":
        value = (node_allocatable or {}).get(name)
    if value is None and kind == "requests":
        value = "0"
    amount = Quantity.parse(value or "0").amount
    divisor = Quantity.parse(ref.get("divisor") or "1").amount or Decimal(1)
    return str(int((amount / divisor).to_integral_value(rounding=ROUND_CEILING)))


def _decode(kind: str, obj: dict, key: str) -> str | None:
    if kind == "Secret":
        raw = (obj.get("data") or {}).get(key)
        if raw is not None:
            return base64.b64decode(raw).decode(errors="replace")
        return (obj.get("stringData") or {}).get(key)
    if key in (obj.get("data") or {}):
        return obj["data"][key]
    raw = (obj.get("binaryData") or {}).get(key)
    return base64.b64decode(raw).decode(errors="replace") if raw is not None else None


async def environment(pod: dict, container: dict, lookup: Lookup,
                      node_allocatable: dict | None = None) -> dict[str, str]:
    """The container's environment in upstream's order: envFrom first, then env (later wins)."""
    ns = pod["metadata"]["namespace"]
    env: dict[str, str] = {}
    for src in container.get("envFrom") or ():
        prefix = src.get("prefix", "")
        for kind, key in (("ConfigMap", "configMapRef"), ("Secret", "secretRef")):
            ref = src.get(key)
            if not ref:
                continue
            obj = await lookup(kind, ns, ref["name"])
            if obj is None:
                if ref.get("optional"):
                    continue
                raise ConfigError(f'{kind.lower() if kind == "Secret" else "configmap"} '
                                  f'"{ref["name"]}" not found')
            for k in list((obj.get("data") or {})) + list((obj.get("binaryData") or {})):
                v = _decode(kind, obj, k)
                if v is not None:
                    env[prefix + k] = v
    for e in container.get("env") or ():
        name, src = e["name"], e.get("valueFrom")
        if not src:
            env[name] = expand(e.get("value", ""), env)
        elif "fieldRef" in src:
            env[name] = field_value(pod, src["fieldRef"]["fieldPath"])
        elif "resourceFieldRef" in src:
            env[name] = resource_value(container, src["resourceFieldRef"], node_allocatable)
        else:
            for kind, key in (("ConfigMap", "configMapKeyRef"), ("Secret", "secretKeyRef")):
                ref = src.get(key)
                if not ref:
                    continue
                obj = await lookup(kind, ns, ref["name"])
                value = _decode(kind, obj, ref["key"]) if obj is not None else None
                if value is None:
                    if ref.get("optional"):
                        break
                    if obj is None:
                        raise ConfigError(f'{"secret" if kind == "Secret" else "configmap"} '
                                          f'"{ref["name"]}" not found')
                    raise ConfigError(f"couldn't find key {ref['key']} in {kind} {ns}/{ref['name']}")
                env[name] = value
    return env


# ---- resources and security ----

def linux_resources(container: dict) -> pb.LinuxContainerResources:
    res = container.get("resources") or {}
    limits, requests = res.get("limits") or {}, res.get("requests") or {}
    r = pb.LinuxContainerResources()
    cpu_req = requests.get("cpu", limits.get("cpu"))
    milli = Quantity.parse(cpu_req).milli_value() if cpu_req is not None else 0
    r.cpu_shares = max(MIN_SHARES, milli * 1024 // 1000) if milli else MIN_SHARES
    if limits.get("cpu") is not None:
        lim = Quantity.parse(limits["cpu"]).milli_value()
        r.cpu_period = PERIOD
        r.cpu_quota = max(1000, lim * PERIOD // 1000)
    if limits.get("memory") is not None:
        r.memory_limit_in_bytes = Quantity.parse(limits["memory"]).value()
    return r


def qos_class(pod: dict) -> str:
    """Guaranteed / Burstable / BestEffort from requests and limits (upstream's rules)."""
    containers = _all_containers(pod.get("spec") or {})
    requests: dict[str, Quantity] = {}
    limits: dict[str, Quantity] = {}
    guaranteed = True
    for c in containers:
        res = c.get("resources") or {}
        req, lim = res.get("requests") or {}, res.get("limits") or {}
        for name in ("cpu", "memory"):
            if name in req and not Quantity.parse(req[name]).is_zero():
                requests[name] = requests.get(name, Quantity(0)) + Quantity.parse(req[name])
            if name in lim and not Quantity.parse(lim[name]).is_zero():
                limits[name] = limits.get(name, Quantity(0)) + Quantity.parse(lim[name])
        if not all(n in lim for n in ("cpu", "memory")):
            guaranteed = False
    if not requests and not limits:
        return "BestEffort"
    if guaranteed and all(requests.get(n, limits[n]) == limits[n] for n in ("cpu", "memory")):
        return "Guaranteed"
    return "Burstable"


def security_context(pod: dict, container: dict) -> pb.LinuxContainerSecurityContext:
    psc = (pod.get("spec") or {}).get("securityContext") or {}
    csc = container.get("securityContext") or {}
    s = pb.LinuxContainerSecurityContext(
        privileged=bool(csc.get("privileged")),
        readonly_rootfs=bool(csc.get("readOnlyRootFilesystem")),
        no_new_privs=csc.get("allowPrivilegeEscalation") is False,
        namespace_options=pb.NamespaceOption(
            network=pb.NODE if (pod.get("spec") or {}).get("hostNetwork") else pb.POD,
            pid=pb.POD if (pod.get("spec") or {}).get("shareProcessNamespace") else pb.CONTAINER,
            ipc=pb.POD))
    if (pod.get("spec") or {}).get("hostPID"):
        s.namespace_options.pid = pb.NODE
    user = csc.get("runAsUser", psc.get("runAsUser"))
    group = csc.get("runAsGroup", psc.get("runAsGroup"))
    if user is not None:
        s.run_as_user.value = int(user)
    if group is not None:
        s.run_as_group.value = int(group)
    s.supplemental_groups.extend(int(g) for g in psc.get("supplementalGroups") or ())
    caps = csc.get("capabilities") or {}
    if caps:
        s.capabilities.CopyFrom(pb.Capability(
            add_capabilities=[_cap(c) for c in caps.get("add") or ()],
            drop_capabilities=[_cap(c) for c in caps.get("drop") or ()]))
    return s


def _cap(name: str) -> str:
    name = name.upper()
    return name if name.startswith("CAP_") or name == "ALL" else f"CAP_{name}"


async def container_config(pod: dict, container: dict, *, attempt: int, kind: str,
                           image_ref: str, lookup: Lookup, mounts: list[pb.Mount] | None = None,
                           node_allocatable: dict | None = None) -> pb.ContainerConfig:
    env = await environment(pod, container, lookup, node_allocatable)
    name = container["name"]
    m = pod["metadata"]
    return pb.ContainerConfig(
        metadata=pb.ContainerMetadata(name=name, attempt=attempt),
        image=pb.ImageSpec(image=image_ref, user_specified_image=container.get("image", "")),
        command=[expand(c, env) for c in container.get("command") or ()],
        args=[expand(a, env) for a in container.get("args") or ()],
        working_dir=container.get("workingDir", ""),
        envs=[pb.KeyValue(key=k, value=v) for k, v in env.items()],
        mounts=mounts or [],
        labels={POD_NAME: m["name"], POD_NS: m["namespace"], POD_UID: m["uid"],
                CONTAINER_NAME: name, KIND_LABEL: kind},
        annotations={"io.kubernetes.container.restartCount": str(attempt),
                     "io.kubernetes.container.terminationMessagePath":
                         container.get("terminationMessagePath", "/dev/termination-log"),
                     "io.kubernetes.pod.terminationGracePeriod":
                         str((pod.get("spec") or {}).get("terminationGracePeriodSeconds", 30))},
        log_path=f"{name}/{attempt}.log",
        stdin=bool(container.get("stdin")), stdin_once=bool(container.get("stdinOnce")),
        tty=bool(container.get("tty")),
        linux=pb.LinuxContainerConfig(resources=linux_resources(container),
                                      security_context=security_context(pod, container)))
