"""Semantic checks for Service, ConfigMap, Secret, Namespace, Node, Job and CronJob.

Paths and wording follow upstream pkg/apis/core/validation and pkg/apis/batch/validation.
"""

from __future__ import annotations

import base64
import binascii

from kybernetes.api import names
from kybernetes.api.validation_errors import (Cause, Raw, duplicate, forbidden, immutable,
                                              invalid, label_selector_repr, non_negative,
                                              not_supported, required, too_long)
from kybernetes.api.validation_kinds import (MAX_SECRET_SIZE, NODE_PORT_RANGE, _d, _l,
                                             _label_selector, _protocol, _selector_matches,
                                             _template)

SERVICE_TYPES = ["ClusterIP", "ExternalName", "LoadBalancer", "NodePort"]


# --- Service ---------------------------------------------------------------------------------------

def validate_service(obj: dict, old: dict | None) -> list[Cause]:
    spec = _d(obj.get("spec"))
    errs: list[Cause] = []
    stype = spec.get("type")
    cluster_ip = spec.get("clusterIP")
    headless = cluster_ip == "None"
    ports = _l(spec.get("ports"))
    if not stype:
        errs.append(required("spec.type"))
    elif stype not in SERVICE_TYPES:
        errs.append(not_supported("spec.type", stype, SERVICE_TYPES))
    if stype == "ExternalName":
        ext = spec.get("externalName")
        if not ext:
            errs.append(required("spec.externalName"))
        elif isinstance(ext, str):
            for msg in names.is_dns1123_subdomain(ext.rstrip(".")):
                errs.append(invalid("spec.externalName", ext, msg))
    elif not ports and not headless:
        errs.append(required("spec.ports"))
    port_names: set[str] = set()
    seen_ports: set[tuple] = set()
    for i, port in enumerate(ports):
        errs += _service_port(_d(port), f"spec.ports[{i}]", len(ports) > 1, port_names,
                              stype, headless)
        key = (_d(port).get("port"), _d(port).get("protocol"))
        if key in seen_ports:
            errs.append(duplicate(f"spec.ports[{i}]", Raw(_port_repr(_d(port)))))
        seen_ports.add(key)
    for i, ip in enumerate(_l(spec.get("clusterIPs"))):
        if ip == "None" and i == 0:
            continue
        if isinstance(ip, str) and ip:
            for msg in names.is_valid_ip(ip):
                errs.append(invalid(f"spec.clusterIPs[{i}]", ip, msg))
    affinity = spec.get("sessionAffinity")
    if affinity and affinity not in ("ClientIP", "None"):
        errs.append(not_supported("spec.sessionAffinity", affinity, ["ClientIP", "None"]))
    for key in ("externalTrafficPolicy", "internalTrafficPolicy"):
        value = spec.get(key)
        if value and value not in ("Cluster", "Local"):
            errs.append(not_supported(f"spec.{key}", value, ["Cluster", "Local"]))
    if spec.get("externalTrafficPolicy") and stype not in ("NodePort", "LoadBalancer"):
        errs.append(invalid("spec.externalTrafficPolicy", spec["externalTrafficPolicy"],
                            "may only be set for externally-accessible services"))
    from kybernetes.api.validation import validate_labels
    errs += validate_labels(spec.get("selector"), "spec.selector")
    if old is not None:
        ospec = _d(old.get("spec"))
        old_ip = ospec.get("clusterIP")
        if old_ip and cluster_ip and cluster_ip != old_ip and stype != "ExternalName" and \
                ospec.get("type") != "ExternalName":
            errs.append(invalid("spec.clusterIPs[0]", cluster_ip, "may not change once set"))
    return errs


def _port_repr(port: dict) -> str:
    return (f'core.ServicePort{{Name:{_q(port.get("name"))}, Protocol:{_q(port.get("protocol"))}'
            f', Port:{port.get("port") or 0}, NodePort:{port.get("nodePort") or 0}}}')


def _q(v: object) -> str:
    return '"' + str(v or "") + '"'


def _service_port(port: dict, p: str, many: bool, seen: set[str], stype: object,
                  headless: bool) -> list[Cause]:
    errs: list[Cause] = []
    name = port.get("name")
    if many and not name:
        errs.append(required(f"{p}.name"))
    elif isinstance(name, str) and name:
        for msg in names.is_dns1123_label(name):
            errs.append(invalid(f"{p}.name", name, msg))
        if name in seen:
            errs.append(duplicate(f"{p}.name", name))
        seen.add(name)
    number = port.get("port")
    if number is not None:
        for msg in names.is_valid_port_num(number):
            errs.append(invalid(f"{p}.port", number, msg))
    errs += _protocol(port.get("protocol"), f"{p}.protocol")
    target = port.get("targetPort")
    if isinstance(target, int) and not isinstance(target, bool):
        if target != 0 or not headless:
            for msg in names.is_valid_port_num(target):
                errs.append(invalid(f"{p}.targetPort", target, msg))
    elif isinstance(target, str):
        for msg in names.is_valid_port_name(target):
            errs.append(invalid(f"{p}.targetPort", target, msg))
    node_port = port.get("nodePort")
    if node_port:
        if stype not in ("NodePort", "LoadBalancer"):
            errs.append(forbidden(f"{p}.nodePort", f"may not be used when `type` is '{stype}'"))
        elif not NODE_PORT_RANGE[0] <= node_port <= NODE_PORT_RANGE[1]:
            errs.append(invalid(f"{p}.nodePort", node_port,
                                "provided port is not in the valid range. The range of valid "
                                f"ports is {NODE_PORT_RANGE[0]}-{NODE_PORT_RANGE[1]}"))
    return errs


# --- ConfigMap / Secret ----------------------------------------------------------------------------

def _keys(data: dict, path: str) -> list[Cause]:
    errs: list[Cause] = []
    for key in data:
        for msg in names.is_config_map_key(key):
            errs.append(invalid(f"{path}[{key}]", key, msg))
    return errs


def _immutable_data(obj: dict, old: dict | None, fields: tuple[str, ...]) -> list[Cause]:
    if old is None or old.get("immutable") is not True:
        return []
    errs: list[Cause] = []
    if obj.get("immutable") is not True:
        errs.append(forbidden("immutable", "field is immutable when `immutable` is set"))
    for f in fields:
        if (obj.get(f) or {}) != (old.get(f) or {}):
            errs.append(forbidden(f, "field is immutable when `immutable` is set"))
    return errs


def validate_configmap(obj: dict, old: dict | None) -> list[Cause]:
    data, binary = _d(obj.get("data")), _d(obj.get("binaryData"))
    errs = _keys(data, "data") + _keys(binary, "binaryData")
    for key in data:
        if key in binary:
            errs.append(invalid(f"data[{key}]", key, "duplicate of key present in binaryData"))
    size = sum(len(str(v).encode()) for v in data.values())
    size += sum(len(_b64len(v)) for v in binary.values())
    if size > MAX_SECRET_SIZE:
        errs.append(too_long("", MAX_SECRET_SIZE))
    return errs + _immutable_data(obj, old, ("data", "binaryData"))


def _b64len(value: object) -> bytes:
    try:
        return base64.b64decode(value or "")
    except (binascii.Error, ValueError, TypeError):
        return b""


SECRET_REQUIRED_KEYS = {
    "kubernetes.io/dockercfg": (".dockercfg",),
    "kubernetes.io/dockerconfigjson": (".dockerconfigjson",),
    "kubernetes.io/tls": ("tls.crt", "tls.key"),
}


def validate_secret(obj: dict, old: dict | None) -> list[Cause]:
    data = _d(obj.get("data"))
    errs = _keys(data, "data")
    size = sum(len(_b64len(v)) for v in data.values())
    if size > MAX_SECRET_SIZE:
        errs.append(too_long("data", MAX_SECRET_SIZE))
    stype = obj.get("type") or "Opaque"
    string_data = _d(obj.get("stringData"))
    for key in SECRET_REQUIRED_KEYS.get(stype, ()):
        if key not in data and key not in string_data:
            errs.append(required(f"data[{key}]"))
    if stype == "kubernetes.io/service-account-token":
        annotations = _d(_d(obj.get("metadata")).get("annotations"))
        if not annotations.get("kubernetes.io/service-account.name"):
            errs.append(required("metadata.annotations[kubernetes.io/service-account.name]"))
    if old is not None:
        errs += immutable("type", stype, old.get("type") or "Opaque")
        errs += _immutable_data(obj, old, ("data",))
    return errs


# --- Namespace / Node ------------------------------------------------------------------------------

def validate_namespace(obj: dict, old: dict | None) -> list[Cause]:
    errs: list[Cause] = []
    for i, fin in enumerate(_l(_d(obj.get("spec")).get("finalizers"))):
        if isinstance(fin, str):
            for msg in names.is_qualified_name(fin):
                errs.append(invalid(f"spec.finalizers[{i}]", fin, msg))
    return errs


def validate_node(obj: dict, old: dict | None) -> list[Cause]:
    errs: list[Cause] = []
    spec = _d(obj.get("spec"))
    import ipaddress
    for i, cidr in enumerate(_l(spec.get("podCIDRs"))):
        try:
            ipaddress.ip_network(cidr)
        except (ValueError, TypeError):
            errs.append(invalid(f"spec.podCIDRs[{i}]", cidr,
                                "must be a valid CIDR value, (e.g. 10.9.8.0/24 or 2001:db8::/64)"))
    for i, taint in enumerate(_l(spec.get("taints"))):
        effect = _d(taint).get("effect")
        supported = ["NoSchedule", "PreferNoSchedule", "NoExecute"]
        if not effect:
            errs.append(required(f"spec.taints[{i}].effect"))
        elif effect not in supported:
            errs.append(not_supported(f"spec.taints[{i}].effect", effect, supported))
    return errs


# --- batch -----------------------------------------------------------------------------------------

def validate_job_spec(spec: dict, path: str) -> list[Cause]:
    errs: list[Cause] = []
    for key in ("parallelism", "completions", "backoffLimit", "ttlSecondsAfterFinished"):
        errs += non_negative(f"{path}.{key}", spec.get(key))
    ads = spec.get("activeDeadlineSeconds")
    if isinstance(ads, int) and ads <= 0:
        errs.append(invalid(f"{path}.activeDeadlineSeconds", ads, "must be greater than 0"))
    mode = spec.get("completionMode")
    if mode and mode not in ("NonIndexed", "Indexed"):
        errs.append(not_supported(f"{path}.completionMode", mode, ["NonIndexed", "Indexed"]))
    if mode == "Indexed" and spec.get("completions") is None:
        errs.append(required(f"{path}.completions",
                             "when completion mode is Indexed"))
    selector = spec.get("selector")
    labels = _d(_d(_d(spec.get("template")).get("metadata")).get("labels"))
    if isinstance(selector, dict):
        errs += _label_selector(selector, f"{path}.selector")
        if spec.get("manualSelector") is True and not _selector_matches(selector, labels):
            errs.append(invalid(f"{path}.template.metadata.labels", labels,
                                "`selector` does not match template `labels`"))
    errs += _template(spec, path, ("OnFailure", "Never"))
    return errs


def validate_job(obj: dict, old: dict | None) -> list[Cause]:
    spec = _d(obj.get("spec"))
    errs = validate_job_spec(spec, "spec")
    if old is not None:
        ospec = _d(old.get("spec"))
        errs += immutable("spec.selector", spec.get("selector"), ospec.get("selector"),
                          Raw(label_selector_repr(spec.get("selector"))))
        errs += immutable("spec.completionMode", spec.get("completionMode"),
                          ospec.get("completionMode"))
        if spec.get("template") != ospec.get("template"):
            errs.append(invalid("spec.template", Raw("core.PodTemplateSpec{...}"),
                                "field is immutable"))
    return errs


def validate_cronjob(obj: dict, old: dict | None) -> list[Cause]:
    spec = _d(obj.get("spec"))
    errs: list[Cause] = []
    name = _d(obj.get("metadata")).get("name")
    if isinstance(name, str) and len(name) > 52:
        errs.append(invalid("metadata.name", name, "must be no more than 52 characters"))
    schedule = spec.get("schedule")
    if not schedule:
        errs.append(required("spec.schedule"))
    elif isinstance(schedule, str):
        problem = schedule_error(schedule)
        if problem:
            errs.append(invalid("spec.schedule", schedule, problem))
    policy = spec.get("concurrencyPolicy")
    if not policy:
        errs.append(required("spec.concurrencyPolicy"))
    elif policy not in ("Allow", "Forbid", "Replace"):
        errs.append(not_supported("spec.concurrencyPolicy", policy,
                                  ["Allow", "Forbid", "Replace"]))
    for key in ("startingDeadlineSeconds", "successfulJobsHistoryLimit",
                "failedJobsHistoryLimit"):
        errs += non_negative(f"spec.{key}", spec.get(key))
    job_spec = _d(spec.get("jobTemplate")).get("spec")
    if isinstance(job_spec, dict):
        errs += validate_job_spec(job_spec, "spec.jobTemplate.spec")
    return errs


def schedule_error(schedule: str) -> str | None:
    """The reason a cron schedule is refused, or None (robfig/cron's standard parser rules)."""
    if "TZ" in schedule:
        return "cannot use TZ or CRON_TZ in schedule, use timeZone field instead"
    if schedule.startswith("@"):
        known = {"@yearly", "@annually", "@monthly", "@weekly", "@daily", "@midnight",
                 "@hourly"}
        return None if schedule in known else f"unrecognized descriptor: {schedule}"
    fields = schedule.split()
    if len(fields) != 5:
        return f"expected exactly 5 fields, found {len(fields)}: [{' '.join(fields)}]"
    from croniter import croniter
    try:
        croniter(schedule)
    except (ValueError, KeyError, TypeError) as e:
        return str(e) or "invalid schedule"
    return None
