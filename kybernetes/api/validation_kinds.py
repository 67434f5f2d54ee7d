"""Per-kind semantic checks (upstream pkg/apis/{core,apps,batch}/validation), the ones users hit.

Each checker takes (obj, old-or-None) and returns causes; paths and wording follow upstream.
"""

from __future__ import annotations

from decimal import Decimal, InvalidOperation

from kybernetes.api import names
from kybernetes.api.validation_errors import (Cause, Raw, duplicate, forbidden, immutable,
                                              invalid, label_selector_repr, non_negative,
                                              not_found, not_supported, required)

MAX_SECRET_SIZE = 1024 * 1024
NODE_PORT_RANGE = (30000, 32767)
PROTOCOLS = ("SCTP", "TCP", "UDP")
VOLUME_SOURCES = (
    "hostPath", "emptyDir", "gcePersistentDisk", "awsElasticBlockStore", "gitRepo", "secret",
    "nfs", "iscsi", "glusterfs", "persistentVolumeClaim", "rbd", "flexVolume", "cinder", "cephfs",
    "flocker", "downwardAPI", "fc", "azureFile", "configMap", "vsphereVolume", "quobyte",
    "azureDisk", "photonPersistentDisk", "projected", "portworxVolume", "scaleIO", "storageos",
    "csi", "ephemeral", "image")
POD_UPDATABLE = ("`spec.containers[*].image`", "`spec.initContainers[*].image`",
                 "`spec.activeDeadlineSeconds`",
                 "`spec.tolerations` (only additions to existing tolerations)",
                 "`spec.terminationGracePeriodSeconds` (allow it to be set to 1 if it was "
                 "previously negative)")


def _d(x: object) -> dict:
    return x if isinstance(x, dict) else {}


def _l(x: object) -> list:
    return x if isinstance(x, list) else []


# --- quantities (just enough to compare requests with limits) -----------------------------------

_SUFFIX = {"Ki": 2**10, "Mi": 2**20, "Gi": 2**30, "Ti": 2**40, "Pi": 2**50, "Ei": 2**60,
           "n": Decimal("1e-9"), "u": Decimal("1e-6"), "m": Decimal("1e-3"), "": 1,
           "k": 10**3, "M": 10**6, "G": 10**9, "T": 10**12, "P": 10**15, "E": 10**18}


def parse_quantity(q: object) -> Decimal | None:
    if isinstance(q, str):
        # Every pod of a workload repeats the same few quantities: parse each string once.
        try:
            return _parsed[q]
        except KeyError:
            value = _parse_quantity(q)
            if len(_parsed) >= _PARSED_MAX:
                _parsed.clear()
            _parsed[q] = value
            return value
    return _parse_quantity(q)


_parsed: dict[str, Decimal | None] = {}  # Decimals are immutable: safe to hand out again
_PARSED_MAX = 4096


def _parse_quantity(q: object) -> Decimal | None:
    if isinstance(q, (int, float)) and not isinstance(q, bool):
        return Decimal(str(q))
    if not isinstance(q, str) or not q:
        return None
    for suffix in ("Ki", "Mi", "Gi", "Ti", "Pi", "Ei", "n", "u", "m", "k", "M", "G", "T", "P",
                   "E"):
        if q.endswith(suffix):
            number, mult = q[:-len(suffix)], _SUFFIX[suffix]
            break
    else:
        number, mult = q, 1
    try:
        return Decimal(number) * Decimal(mult)
    except InvalidOperation:
        return None


# --- pods ------------------------------------------------------------------------------------------

_RESTART_POLICIES = ("Always", "OnFailure", "Never")
_DNS_POLICIES = ("ClusterFirst", "ClusterFirstWithHostNet", "Default", "None")
_PULL_POLICIES = ("Always", "IfNotPresent", "Never")
_MESSAGE_POLICIES = ("File", "FallbackToLogsOnError")
_VOLUME_SOURCE_SET = frozenset(VOLUME_SOURCES)
_VOLUME_SOURCE_ORDER = {s: i for i, s in enumerate(VOLUME_SOURCES)}


def validate_pod_spec(spec: dict, path: str) -> list[Cause]:
    # Field paths are built only for the errors found: most specs have none.
    errs: list[Cause] = []
    volumes = _validate_volumes(_l(spec.get("volumes")), path, errs)
    containers = _l(spec.get("containers"))
    if not containers:
        errs.append(required(f"{path}.containers"))
    seen: set[str] = set()
    for group in ("initContainers", "containers", "ephemeralContainers"):
        items = containers if group == "containers" else _l(spec.get(group))
        for i, c in enumerate(items):
            errs += _validate_container(_d(c), path, group, i, seen, volumes,
                                        image_required=group != "ephemeralContainers")
    policy = spec.get("restartPolicy")
    if not policy:
        errs.append(required(f"{path}.restartPolicy"))
    elif policy not in _RESTART_POLICIES:
        errs.append(not_supported(f"{path}.restartPolicy", policy, _RESTART_POLICIES))
    dns = spec.get("dnsPolicy")
    if not dns:
        errs.append(required(f"{path}.dnsPolicy"))
    elif dns not in _DNS_POLICIES:
        errs.append(not_supported(f"{path}.dnsPolicy", dns, _DNS_POLICIES))
    ads = spec.get("activeDeadlineSeconds")
    if isinstance(ads, int) and not 1 <= ads <= 2**31 - 1:
        errs.append(invalid(f"{path}.activeDeadlineSeconds", ads,
                            "must be between 1 and 2147483647, inclusive"))
    grace = spec.get("terminationGracePeriodSeconds")
    if grace is not None:
        errs += non_negative(f"{path}.terminationGracePeriodSeconds", grace)
    node_selector = spec.get("nodeSelector")
    if node_selector:  # node selectors are label maps
        errs += _validation.validate_labels(node_selector, f"{path}.nodeSelector")
    for key in ("serviceAccountName", "nodeName"):
        value = spec.get(key)
        if isinstance(value, str) and value:
            for msg in names.is_dns1123_subdomain(value):
                errs.append(invalid(f"{path}.{key}", value, msg))
    hostname = spec.get("hostname")
    if isinstance(hostname, str) and hostname:
        for msg in names.is_dns1123_label(hostname):
            errs.append(invalid(f"{path}.hostname", hostname, msg))
    return errs


def _unique_label(name: object, p: str, seen: set[str], errs: list[Cause]) -> None:
    """`p`.name: required, a DNS-1123 label, not one already in `seen` (volumes, containers)."""
    if not name:
        errs.append(required(f"{p}.name"))
    elif isinstance(name, str):
        for msg in names.is_dns1123_label(name):
            errs.append(invalid(f"{p}.name", name, msg))
        if name in seen:
            errs.append(duplicate(f"{p}.name", name))
        seen.add(name)


def _validate_volumes(volumes: list, spec_path: str, errs: list[Cause]) -> set[str]:
    seen: set[str] = set()
    for i, v in enumerate(volumes):
        v = _d(v)
        _unique_label(v.get("name"), f"{spec_path}.volumes[{i}]", seen, errs)
        # The volume's own keys, not all thirty source names, in VOLUME_SOURCES order.
        sources = [k for k, s in v.items() if s is not None and k in _VOLUME_SOURCE_SET]
        if not sources:
            errs.append(required(f"{spec_path}.volumes[{i}]", "must specify a volume type"))
        elif len(sources) > 1:
            sources.sort(key=_VOLUME_SOURCE_ORDER.__getitem__)
            errs.append(forbidden(f"{spec_path}.volumes[{i}].{sources[1]}",
                                  "may not specify more than 1 volume type"))
    return seen


def _validate_container(c: dict, spec_path: str, group: str, i: int, seen: set[str],
                        volumes: set[str], image_required: bool) -> list[Cause]:
    errs: list[Cause] = []
    p = f"{spec_path}.{group}[{i}]"
    _unique_label(c.get("name"), p, seen, errs)
    image = c.get("image")
    if not image:
        if image_required:
            errs.append(required(f"{p}.image"))
    elif isinstance(image, str) and image != image.strip():
        errs.append(invalid(f"{p}.image", image, "must not have leading or trailing whitespace"))
    pull = c.get("imagePullPolicy")
    if not pull:
        errs.append(required(f"{p}.imagePullPolicy"))
    elif pull not in _PULL_POLICIES:
        errs.append(not_supported(f"{p}.imagePullPolicy", pull, _PULL_POLICIES))
    tmp = c.get("terminationMessagePolicy")
    if not tmp:
        errs.append(required(f"{p}.terminationMessagePolicy"))
    elif tmp not in _MESSAGE_POLICIES:
        errs.append(not_supported(f"{p}.terminationMessagePolicy", tmp,
                                  _MESSAGE_POLICIES))
    ports = c.get("ports")
    if ports:
        port_names: set[str] = set()
        for j, port in enumerate(_l(ports)):
            errs += _container_port(_d(port), f"{p}.ports[{j}]", port_names)
    env_vars = c.get("env")
    if env_vars:
        for j, env in enumerate(_l(env_vars)):
            env = _d(env)
            env_name = env.get("name")
            if not env_name:
                errs.append(required(f"{p}.env[{j}].name"))
            elif isinstance(env_name, str):
                for msg in names.is_env_var_name(env_name):
                    errs.append(invalid(f"{p}.env[{j}].name", env_name, msg))
            if env.get("valueFrom") is not None and env.get("value"):
                errs.append(invalid(f"{p}.env[{j}].valueFrom", "",
                                    "may not be specified when `value` is not empty"))
    mounts = c.get("volumeMounts")
    if mounts:
        mount_paths: set[str] = set()
        for j, m in enumerate(_l(mounts)):
            m = _d(m)
            mount_name = m.get("name")
            if not mount_name:
                errs.append(required(f"{p}.volumeMounts[{j}].name"))
            elif mount_name not in volumes:
                errs.append(not_found(f"{p}.volumeMounts[{j}].name", mount_name))
            mount_path = m.get("mountPath")
            if not mount_path:
                errs.append(required(f"{p}.volumeMounts[{j}].mountPath"))
            elif mount_path in mount_paths:
                errs.append(invalid(f"{p}.volumeMounts[{j}].mountPath", mount_path,
                                    "must be unique"))
            else:
                mount_paths.add(mount_path)
    resources = c.get("resources")
    if resources:
        errs += _resources(_d(resources), p)
    return errs


def _container_port(port: dict, p: str, seen: set[str]) -> list[Cause]:
    errs: list[Cause] = []
    name = port.get("name")
    if isinstance(name, str) and name:
        for msg in names.is_valid_port_name(name):
            errs.append(invalid(f"{p}.name", name, msg))
        if name in seen:
            errs.append(duplicate(f"{p}.name", name))
        seen.add(name)
    cp = port.get("containerPort")
    if not cp:
        errs.append(required(f"{p}.containerPort"))
    else:
        for msg in names.is_valid_port_num(cp):
            errs.append(invalid(f"{p}.containerPort", cp, msg))
    hp = port.get("hostPort")
    if hp:
        for msg in names.is_valid_port_num(hp):
            errs.append(invalid(f"{p}.hostPort", hp, msg))
    errs += _protocol(port.get("protocol"), f"{p}.protocol")
    return errs


def _protocol(proto: object, path: str) -> list[Cause]:
    if not proto:
        return [required(path)]
    if proto not in PROTOCOLS:
        return [not_supported(path, proto, PROTOCOLS)]
    return []


def _resources(res: dict, container_path: str) -> list[Cause]:
    errs: list[Cause] = []
    limits, requests = _d(res.get("limits")), _d(res.get("requests"))
    for group, values in (("limits", limits), ("requests", requests)):
        for rname, q in values.items():
            value = parse_quantity(q)
            if value is None:
                errs.append(invalid(f"{container_path}.resources.{group}[{rname}]", q,
                                    "quantities must match the regular expression "
                                    "'^([+-]?[0-9.]+)([eEinumkKMGTP]*[-+]?[0-9]*)$'"))
            elif value < 0:
                errs.append(invalid(f"{container_path}.resources.{group}[{rname}]", q,
                                    "must be greater than or equal to 0"))
    if not limits:
        return errs
    for rname, q in requests.items():
        if rname not in limits:
            continue
        req, lim = parse_quantity(q), parse_quantity(limits[rname])
        if req is not None and lim is not None and req > lim:
            errs.append(invalid(f"{container_path}.resources.requests[{rname}]", str(q),
                                f"must be less than or equal to {rname} limit of "
                                f"{limits[rname]}"))
    return errs


def validate_pod(obj: dict, old: dict | None) -> list[Cause]:
    spec = _d(obj.get("spec"))
    errs = validate_pod_spec(spec, "spec")
    if old is not None:
        errs += _pod_update(spec, _d(old.get("spec")))
    return errs


def _pod_update(spec: dict, old: dict) -> list[Cause]:
    """Pods are immutable but for images, activeDeadlineSeconds, added tolerations, grace."""
    def munged(s: dict, images_from: dict) -> dict:
        s = dict(s)
        for group in ("containers", "initContainers"):
            src = _l(images_from.get(group))
            items = []
            for i, c in enumerate(_l(s.get(group))):
                c = dict(_d(c))
                if i < len(src):
                    c["image"] = _d(src[i]).get("image")
                items.append(c)
            s[group] = items
        for key in ("activeDeadlineSeconds", "terminationGracePeriodSeconds"):
            s.pop(key, None)
        return s

    errs: list[Cause] = []
    new_tol, old_tol = _l(spec.get("tolerations")), _l(old.get("tolerations"))
    tolerations_ok = all(t in new_tol for t in old_tol)
    new_m, old_m = munged(spec, old), munged(old, old)
    new_m.pop("tolerations", None)
    old_m.pop("tolerations", None)
    ads_new, ads_old = spec.get("activeDeadlineSeconds"), old.get("activeDeadlineSeconds")
    if ads_old is not None and (ads_new is None or ads_new > ads_old):
        errs.append(invalid("spec.activeDeadlineSeconds", ads_new,
                            "must be less than or equal to previous value"))
    if new_m != old_m or not tolerations_ok:
        changed = sorted(k for k in set(new_m) | set(old_m) if new_m.get(k) != old_m.get(k))
        diff = "".join(f"\n  {k}: changed" for k in changed)
        errs.append(forbidden("spec", "pod updates may not change fields other than "
                              + ",".join(POD_UPDATABLE) + diff))
    return errs


# --- workloads -------------------------------------------------------------------------------------

def _selector_matches(selector: dict, labels: dict) -> bool:
    for k, v in _d(selector.get("matchLabels")).items():
        if labels.get(k) != v:
            return False
    for e in _l(selector.get("matchExpressions")):
        e = _d(e)
        key, op, values = e.get("key"), e.get("operator"), _l(e.get("values"))
        if op == "In" and labels.get(key) not in values:
            return False
        if op == "NotIn" and key in labels and labels[key] in values:
            return False
        if op == "Exists" and key not in labels:
            return False
        if op == "DoesNotExist" and key in labels:
            return False
    return True


def _label_selector(sel: dict, path: str) -> list[Cause]:
    errs = _validation.validate_labels(sel.get("matchLabels"), f"{path}.matchLabels")
    for i, e in enumerate(_l(sel.get("matchExpressions"))):
        e = _d(e)
        p = f"{path}.matchExpressions[{i}]"
        op, values = e.get("operator"), _l(e.get("values"))
        if op in ("In", "NotIn") and not values:
            errs.append(required(f"{p}.values",
                                 "must be specified when `operator` is 'In' or 'NotIn'"))
        elif op in ("Exists", "DoesNotExist") and values:
            errs.append(forbidden(f"{p}.values",
                                  "may not be specified when `operator` is 'Exists' or "
                                  "'DoesNotExist'"))
        elif op not in ("In", "NotIn", "Exists", "DoesNotExist"):
            errs.append(invalid(f"{p}.operator", op or "", "not a valid selector operator"))
        key = e.get("key")
        if isinstance(key, str):
            for msg in names.is_qualified_name(key):
                errs.append(invalid(f"{p}.key", key, msg))
    return errs


def _template(spec: dict, path: str, restart: tuple[str, ...] | None) -> list[Cause]:
    template = spec.get("template")
    if not isinstance(template, dict):
        return [required(f"{path}.template")]
    tmeta = _d(template.get("metadata"))
    errs = _validation.validate_labels(tmeta.get("labels"), f"{path}.template.metadata.labels")
    errs += _validation.validate_annotations(tmeta.get("annotations"),
                                 f"{path}.template.metadata.annotations")
    tspec = _d(template.get("spec"))
    errs += validate_pod_spec(tspec, f"{path}.template.spec")
    policy = tspec.get("restartPolicy")
    if restart is not None and policy and policy not in restart:
        errs.append(not_supported(f"{path}.template.spec.restartPolicy", policy, restart))
    ads = tspec.get("activeDeadlineSeconds")
    if restart == ("Always",) and ads is not None:
        errs.append(forbidden(f"{path}.template.spec.activeDeadlineSeconds",
                              "activeDeadlineSeconds in ReplicaSet is not Supported"))
    return errs


def _workload(obj: dict, old: dict | None, what: str, selector_required: bool = True
              ) -> list[Cause]:
    """What Deployment/ReplicaSet/StatefulSet/DaemonSet share: selector, template, replicas."""
    spec = _d(obj.get("spec"))
    errs = non_negative("spec.replicas", spec.get("replicas"))
    errs += non_negative("spec.minReadySeconds", spec.get("minReadySeconds"))
    errs += non_negative("spec.revisionHistoryLimit", spec.get("revisionHistoryLimit"))
    selector = spec.get("selector")
    template_labels = _d(_d(_d(spec.get("template")).get("metadata")).get("labels"))
    if not isinstance(selector, dict):
        if selector_required:
            errs.append(required("spec.selector"))
    else:
        errs += _label_selector(selector, "spec.selector")
        if not selector.get("matchLabels") and not selector.get("matchExpressions"):
            errs.append(invalid("spec.selector", Raw(label_selector_repr(selector)),
                                f"empty selector is invalid for {what}"))
        elif isinstance(spec.get("template"), dict) and not _selector_matches(
                selector, template_labels):
            errs.append(invalid("spec.template.metadata.labels", template_labels,
                                "`selector` does not match template `labels`"))
    errs += _template(spec, "spec", ("Always",))
    if old is not None:
        old_sel = _d(old.get("spec")).get("selector")
        errs += immutable("spec.selector", selector, old_sel, Raw(label_selector_repr(selector)))
    return errs


def _int_or_percent(value: object, path: str) -> tuple[list[Cause], int | None, bool]:
    """Returns (errors, number, is_percent) for maxSurge/maxUnavailable-like fields."""
    if isinstance(value, int) and not isinstance(value, bool):
        return non_negative(path, value), value, False
    if isinstance(value, str):
        if not value.endswith("%") or not value[:-1].isdigit():
            return [invalid(path, value, "a valid percent string must be a numeric string "
                                         "followed by an ending '%' (e.g. '1%',  or '93%', "
                                         "regex used for validation is '[0-9]+%')")], None, True
        n = int(value[:-1])
        if n > 100:
            return [invalid(path, value, "must not be greater than 100%")], n, True
        return [], n, True
    return [], None, False


def validate_deployment(obj: dict, old: dict | None) -> list[Cause]:
    errs = _workload(obj, old, "deployment")
    spec = _d(obj.get("spec"))
    strategy = _d(spec.get("strategy"))
    stype = strategy.get("type")
    ru = strategy.get("rollingUpdate")
    if not stype:
        errs.append(required("spec.strategy.type"))
    elif stype not in ("Recreate", "RollingUpdate"):
        errs.append(not_supported("spec.strategy.type", stype, ["Recreate", "RollingUpdate"]))
    elif stype == "Recreate" and ru is not None:
        errs.append(forbidden("spec.strategy.rollingUpdate",
                              "may not be specified when strategy `type` is 'Recreate'"))
    if stype == "RollingUpdate" and isinstance(ru, dict):
        p = "spec.strategy.rollingUpdate"
        e1, surge, _ = _int_or_percent(ru.get("maxSurge"), f"{p}.maxSurge")
        e2, unavailable, _ = _int_or_percent(ru.get("maxUnavailable"), f"{p}.maxUnavailable")
        errs += e1 + e2
        if surge == 0 and unavailable == 0:
            errs.append(invalid(f"{p}.maxUnavailable", ru.get("maxUnavailable"),
                                "may not be 0 when `maxSurge` is 0"))
    pds, mrs = spec.get("progressDeadlineSeconds"), spec.get("minReadySeconds") or 0
    if isinstance(pds, int):
        errs += non_negative("spec.progressDeadlineSeconds", pds)
        if isinstance(mrs, int) and pds <= mrs:
            errs.append(invalid("spec.progressDeadlineSeconds", pds,
                                "must be greater than minReadySeconds"))
    return errs


def validate_replicaset(obj: dict, old: dict | None) -> list[Cause]:
    return _workload(obj, old, "replicaset")


def validate_daemonset(obj: dict, old: dict | None) -> list[Cause]:
    errs = _workload(obj, old, "daemonset")
    stype = _d(_d(obj.get("spec")).get("updateStrategy")).get("type")
    if stype and stype not in ("OnDelete", "RollingUpdate"):
        errs.append(not_supported("spec.updateStrategy.type", stype, ["OnDelete",
                                                                      "RollingUpdate"]))
    return errs


def _with_claim_volumes(obj: dict) -> dict:
    """Containers may mount volumeClaimTemplates by name: each pod gets a volume of that name
    (upstream validates StatefulSet templates without requiring it in the pod spec)."""
    spec = _d(obj.get("spec"))
    claims = [_d(_d(t).get("metadata")).get("name") for t in _l(spec.get("volumeClaimTemplates"))]
    template = spec.get("template")
    if not claims or not isinstance(template, dict) or not isinstance(template.get("spec"), dict):
        return obj
    tspec = template["spec"]
    have = {_d(v).get("name") for v in _l(tspec.get("volumes"))}
    extra = [{"name": n, "persistentVolumeClaim": {"claimName": n}} for n in claims
             if isinstance(n, str) and n not in have]
    if not extra:
        return obj
    new_tspec = dict(tspec, volumes=_l(tspec.get("volumes")) + extra)
    return dict(obj, spec=dict(spec, template=dict(template, spec=new_tspec)))


def validate_statefulset(obj: dict, old: dict | None) -> list[Cause]:
    errs = _workload(_with_claim_volumes(obj), old, "statefulset")
    spec = _d(obj.get("spec"))
    pmp = spec.get("podManagementPolicy")
    if pmp and pmp not in ("OrderedReady", "Parallel"):
        errs.append(not_supported("spec.podManagementPolicy", pmp, ["OrderedReady", "Parallel"]))
    stype = _d(spec.get("updateStrategy")).get("type")
    if stype and stype not in ("OnDelete", "RollingUpdate"):
        errs.append(not_supported("spec.updateStrategy.type", stype, ["OnDelete",
                                                                      "RollingUpdate"]))
    if old is not None:
        ospec = _d(old.get("spec"))
        allowed = {"replicas", "ordinals", "template", "updateStrategy",
                   "persistentVolumeClaimRetentionPolicy", "minReadySeconds",
                   "revisionHistoryLimit"}
        if any(spec.get(k) != ospec.get(k) for k in set(spec) | set(ospec) if k not in allowed):
            errs.append(forbidden("spec", "updates to statefulset spec for fields other than "
                                  "'replicas', 'ordinals', 'template', 'updateStrategy', "
                                  "'revisionHistoryLimit', 'persistentVolumeClaimRetentionPolicy'"
                                  " and 'minReadySeconds' are forbidden"))
    return errs


def validate_replication_controller(obj: dict, old: dict | None) -> list[Cause]:
    spec = _d(obj.get("spec"))
    errs = non_negative("spec.replicas", spec.get("replicas"))
    selector = _d(spec.get("selector"))
    if not selector:
        errs.append(required("spec.selector"))
    labels = _d(_d(_d(spec.get("template")).get("metadata")).get("labels"))
    if selector and isinstance(spec.get("template"), dict) and \
            not _selector_matches({"matchLabels": selector}, labels):
        errs.append(invalid("spec.template.metadata.labels", labels,
                            "`selector` does not match template `labels`"))
    return errs + _template(spec, "spec", ("Always",))


# Last, as validation imports this module at its top: bound as a module, read at call time.
from kybernetes.api import validation as _validation  # noqa: E402
