"""Table printers for networking, storage, RBAC, certificates, scheduling, admission and the rest."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from kybernetes.api.duration import human_duration
from kybernetes.api.printers import (
    AGE, NAME, Obj, Printer, created, first_condition, format_label_selector, list_with_more, meta,
)


def _name(obj: Obj) -> str:
    return meta(obj).get("name", "")


def _bool_or(value: Any, default: bool) -> bool:
    return default if value is None else bool(value)


# --- networking ------------------------------------------------------------------------------


def _ingress_hosts(rules: list[Obj]) -> str:
    # formatHosts: at most three hosts; the "more" count is over rules, not hosts
    hosts: list[str] = []
    more = False
    for rule in rules:
        if len(hosts) == 3:
            more = True
        if not more and rule.get("host"):
            hosts.append(rule["host"])
    if not hosts:
        return "*"
    text = ",".join(hosts)
    return f"{text} + {len(rules) - 3} more..." if more else text


def _ingress(obj: Obj, now: datetime) -> list[Any]:
    spec, status = obj.get("spec") or {}, obj.get("status") or {}
    found = {i.get("ip") or i.get("hostname") for i in (status.get("loadBalancer") or {}).get("ingress") or []}
    address = ",".join(sorted(x for x in found if x))
    ports = "80, 443" if spec.get("tls") else "80"
    return [_name(obj), spec.get("ingressClassName") or "<none>", _ingress_hosts(spec.get("rules") or []), address,
            ports, created(obj, now)]


def _ingress_class(obj: Obj, now: datetime) -> list[Any]:
    spec = obj.get("spec") or {}
    params = spec.get("parameters")
    text = "<none>"
    if params is not None:
        text = params.get("kind", "")
        if params.get("apiGroup") is not None:
            text += "." + params["apiGroup"]
        text += "/" + params.get("name", "")
    return [_name(obj), spec.get("controller", ""), text, created(obj, now)]


def _slice_ports(ports: list[Obj]) -> str:
    texts = []
    for p in ports:
        if p.get("port") is not None:
            texts.append(str(p["port"]))
        elif p.get("name") is not None:
            texts.append(p["name"])
        else:
            texts.append("*")
    return list_with_more(texts, len(texts))


def _slice_endpoints(endpoints: list[Obj]) -> str:
    addresses = [a for ep in endpoints for a in ep.get("addresses") or []]
    return list_with_more(addresses, len(addresses))


def _endpoint_slice(obj: Obj, now: datetime) -> list[Any]:
    return [_name(obj), obj.get("addressType", ""), _slice_ports(obj.get("ports") or []),
            _slice_endpoints(obj.get("endpoints") or []), created(obj, now)]


def _ip_address(obj: Obj, now: datetime) -> list[Any]:
    ref = (obj.get("spec") or {}).get("parentRef")
    text = "<none>"
    if ref is not None:
        resource, group = ref.get("resource", ""), ref.get("group", "")
        text = (f"{resource}.{group}" if group else resource).lower()
        if ref.get("namespace"):
            text += "/" + ref["namespace"]
        text += "/" + ref.get("name", "")
    return [_name(obj), text, created(obj, now)]


# --- storage ---------------------------------------------------------------------------------


def _is_default_class(obj: Obj, prefix: str = "storageclass") -> bool:
    annotations = meta(obj).get("annotations") or {}
    return (annotations.get(f"{prefix}.kubernetes.io/is-default-class") == "true"
            or annotations.get(f"{prefix}.beta.kubernetes.io/is-default-class") == "true")


def _storage_class(obj: Obj, now: datetime) -> list[Any]:
    name = _name(obj) + (" (default)" if _is_default_class(obj) else "")
    return [name, obj.get("provisioner", ""), obj.get("reclaimPolicy") or "Delete",
            obj.get("volumeBindingMode") or "Immediate", _bool_or(obj.get("allowVolumeExpansion"), False),
            created(obj, now)]


def _volume_attributes_class(obj: Obj, now: datetime) -> list[Any]:
    name = _name(obj) + (" (default)" if _is_default_class(obj, "volumeattributesclass") else "")
    return [name, obj.get("driverName", ""), created(obj, now)]


def _csi_driver(obj: Obj, now: datetime) -> list[Any]:
    spec = obj.get("spec") or {}
    tokens = spec.get("tokenRequests")
    token_text = "<unset>" if tokens is None else ",".join(t.get("audience", "") for t in tokens)
    modes = ",".join(spec.get("volumeLifecycleModes") or []) or "<none>"
    return [_name(obj), _bool_or(spec.get("attachRequired"), True), _bool_or(spec.get("podInfoOnMount"), False),
            _bool_or(spec.get("storageCapacity"), False), token_text, _bool_or(spec.get("requiresRepublish"), False),
            modes, created(obj, now)]


def _volume_attachment(obj: Obj, now: datetime) -> list[Any]:
    spec = obj.get("spec") or {}
    pv = (spec.get("source") or {}).get("persistentVolumeName") or ""
    return [_name(obj), spec.get("attacher", ""), pv, spec.get("nodeName", ""),
            bool((obj.get("status") or {}).get("attached")), created(obj, now)]


# --- rbac, certificates, coordination, scheduling, node -------------------------------------


def _subjects(subjects: list[Obj]) -> list[str]:
    users, groups, accounts = [], [], []
    for s in subjects:
        kind = s.get("kind")
        if kind == "ServiceAccount":
            accounts.append(f"{s.get('namespace', '')}/{s.get('name', '')}")
        elif kind == "User":
            users.append(s.get("name", ""))
        elif kind == "Group":
            groups.append(s.get("name", ""))
    return [", ".join(users), ", ".join(groups), ", ".join(accounts)]


def _binding(obj: Obj, now: datetime) -> list[Any]:
    ref = obj.get("roleRef") or {}
    return [_name(obj), f"{ref.get('kind', '')}/{ref.get('name', '')}", created(obj, now),
            *_subjects(obj.get("subjects") or [])]


def _csr_condition(obj: Obj) -> str:
    status = obj.get("status") or {}
    types = {c.get("type") for c in status.get("conditions") or []}
    text = "Denied" if "Denied" in types else "Approved" if "Approved" in types else "Pending"
    if "Failed" in types:
        text += ",Failed"
    if status.get("certificate"):
        text += ",Issued"
    return text


def _csr(obj: Obj, now: datetime) -> list[Any]:
    spec = obj.get("spec") or {}
    seconds = spec.get("expirationSeconds")
    return [_name(obj), created(obj, now), spec.get("signerName") or "<none>", spec.get("username", ""),
            "<none>" if seconds is None else human_duration(float(seconds)), _csr_condition(obj)]


def _priority_class(obj: Obj, now: datetime) -> list[Any]:
    return [_name(obj), obj.get("value") or 0, bool(obj.get("globalDefault")), created(obj, now),
            obj.get("preemptionPolicy") or ""]


def _apiservice(obj: Obj, now: datetime) -> list[Any]:
    spec = obj.get("spec") or {}
    svc = spec.get("service")
    service = "Local" if svc is None else f"{svc.get('namespace', '')}/{svc.get('name', '')}"
    cond = first_condition((obj.get("status") or {}).get("conditions"), "Available")
    available = "Unknown"
    if cond is not None:
        available = cond.get("status", "")
        if available != "True" and cond.get("reason"):
            available = f"{available} ({cond['reason']})"
    return [_name(obj), service, available, created(obj, now)]


def _param_ref(ref: Obj | None) -> str:
    if ref is None:
        return "<unset>"
    if ref.get("name"):
        return f"{ref.get('namespace') or '*'}/{ref['name']}"
    if ref.get("selector") is not None:
        return format_label_selector(ref["selector"])
    return "<unset>"


def _policy(count_field: str):
    def cells(obj: Obj, now: datetime) -> list[Any]:
        spec = obj.get("spec") or {}
        kind = spec.get("paramKind")
        param = "<unset>" if kind is None else f"{kind.get('apiVersion', '')}/{kind.get('kind', '')}"
        return [_name(obj), len(spec.get(count_field) or []), param, created(obj, now)]
    return cells


def _policy_binding(obj: Obj, now: datetime) -> list[Any]:
    spec = obj.get("spec") or {}
    return [_name(obj), spec.get("policyName", ""), _param_ref(spec.get("paramRef")), created(obj, now)]


def _webhooks(obj: Obj, now: datetime) -> list[Any]:
    return [_name(obj), len(obj.get("webhooks") or []), created(obj, now)]


def _col(name: str, desc: str, type_: str = "string", priority: int = 0) -> tuple[str, str, str, int]:
    return (name, type_, desc, priority)


_WEBHOOKS = [NAME, _col("Webhooks", "Webhooks indicates the number of webhooks registered in this configuration", "integer"), AGE]
_BINDING_COLUMNS = [NAME, _col("Role", "@rbac.v1.RoleBinding.roleRef"), AGE,
                    _col("Users", "Users in the roleBinding", priority=1),
                    _col("Groups", "Groups in the roleBinding", priority=1),
                    _col("ServiceAccounts", "ServiceAccounts in the roleBinding", priority=1)]
_CLUSTER_BINDING_COLUMNS = [NAME, _col("Role", "@rbac.v1.ClusterRoleBinding.roleRef"), AGE,
                            _col("Users", "Users in the clusterRoleBinding", priority=1),
                            _col("Groups", "Groups in the clusterRoleBinding", priority=1),
                            _col("ServiceAccounts", "ServiceAccounts in the clusterRoleBinding", priority=1)]
_ADMISSION = "admissionregistration.k8s.io"

OTHER_PRINTERS: dict[tuple[str, str], Printer] = {
    ("networking.k8s.io", "ingresses"): ([NAME, _col("Class", "The name of the IngressClass resource that should be used for additional configuration"),
                                          _col("Hosts", "Hosts that incoming requests are matched against before the ingress rule"),
                                          _col("Address", "Address is a list containing ingress points for the load-balancer"),
                                          _col("Ports", "Ports of TLS configurations that open"), AGE], _ingress),
    ("networking.k8s.io", "ingressclasses"): ([NAME, _col("Controller", "Controller that is responsible for handling this class"),
                                               _col("Parameters", "A reference to a resource with additional parameters"), AGE],
                                              _ingress_class),
    ("networking.k8s.io", "networkpolicies"): ([NAME, _col("Pod-Selector", "@networking.v1.NetworkPolicySpec.podSelector"), AGE],
                                               lambda o, now: [_name(o), format_label_selector((o.get("spec") or {}).get("podSelector") or {}),
                                                               created(o, now)]),
    ("networking.k8s.io", "servicecidrs"): ([NAME, _col("CIDRs", "@networking.v1.ServiceCIDRSpec.cidrs"), AGE],
                                            lambda o, now: [_name(o), ",".join((o.get("spec") or {}).get("cidrs") or []), created(o, now)]),
    ("networking.k8s.io", "ipaddresses"): ([NAME, _col("ParentRef", "@networking.v1.IPAddressSpec.parentRef")], _ip_address),
    ("discovery.k8s.io", "endpointslices"): ([NAME, _col("AddressType", "@discovery.v1.EndpointSlice.addressType"),
                                              _col("Ports", "@discovery.v1.EndpointSlice.ports"),
                                              _col("Endpoints", "@discovery.v1.EndpointSlice.endpoints"), AGE], _endpoint_slice),
    ("storage.k8s.io", "storageclasses"): ([NAME, _col("Provisioner", "@storage.v1.StorageClass.provisioner"),
                                            _col("ReclaimPolicy", "@storage.v1.StorageClass.reclaimPolicy"),
                                            _col("VolumeBindingMode", "@storage.v1.StorageClass.volumeBindingMode"),
                                            _col("AllowVolumeExpansion", "@storage.v1.StorageClass.allowVolumeExpansion"), AGE],
                                           _storage_class),
    ("storage.k8s.io", "volumeattributesclasses"): ([NAME, _col("DriverName", "@storage.v1beta1.VolumeAttributesClass.driverName"), AGE],
                                                    _volume_attributes_class),
    ("storage.k8s.io", "csidrivers"): ([NAME, _col("AttachRequired", "@storage.v1.CSIDriverSpec.attachRequired", "boolean"),
                                        _col("PodInfoOnMount", "@storage.v1.CSIDriverSpec.podInfoOnMount", "boolean"),
                                        _col("StorageCapacity", "@storage.v1.CSIDriverSpec.storageCapacity", "boolean"),
                                        _col("TokenRequests", "@storage.v1.CSIDriverSpec.tokenRequests"),
                                        _col("RequiresRepublish", "@storage.v1.CSIDriverSpec.requiresRepublish", "boolean"),
                                        _col("Modes", "@storage.v1.CSIDriverSpec.volumeLifecycleModes"), AGE], _csi_driver),
    ("storage.k8s.io", "csinodes"): ([NAME, _col("Drivers", "Drivers indicates the number of CSI drivers registered on the node", "integer"), AGE],
                                     lambda o, now: [_name(o), len((o.get("spec") or {}).get("drivers") or []), created(o, now)]),
    ("storage.k8s.io", "csistoragecapacities"): ([NAME, _col("StorageClassName", "@storage.v1.CSIStorageCapacity.storageClassName"),
                                                  _col("Capacity", "@storage.v1.CSIStorageCapacity.capacity")],
                                                 lambda o, now: [_name(o), o.get("storageClassName", ""),
                                                                 "<unset>" if o.get("capacity") is None else str(o["capacity"])]),
    # upstream marks Attacher with format "name" as well
    ("storage.k8s.io", "volumeattachments"): ([NAME, ("Attacher", "string", "@storage.v1.VolumeAttachmentSpec.attacher", 0, "name"),
                                               _col("PV", "@storage.v1.VolumeAttachmentSource.persistentVolumeName"),
                                               _col("Node", "@storage.v1.VolumeAttachmentSpec.nodeName"),
                                               _col("Attached", "@storage.v1.VolumeAttachmentStatus.attached", "boolean"), AGE],
                                              _volume_attachment),
    ("rbac.authorization.k8s.io", "rolebindings"): (_BINDING_COLUMNS, _binding),
    ("rbac.authorization.k8s.io", "clusterrolebindings"): (_CLUSTER_BINDING_COLUMNS, _binding),
    ("certificates.k8s.io", "certificatesigningrequests"): ([NAME, AGE, _col("SignerName", "@certificates.v1.CertificateSigningRequestSpec.signerName"),
                                                             _col("Requestor", "@certificates.v1.CertificateSigningRequestSpec.request"),
                                                             _col("RequestedDuration", "@certificates.v1.CertificateSigningRequestSpec.expirationSeconds"),
                                                             _col("Condition", "@certificates.v1.CertificateSigningRequestStatus.conditions")], _csr),
    ("coordination.k8s.io", "leases"): ([NAME, _col("Holder", "@coordination.v1.LeaseSpec.holderIdentity"), AGE],
                                        lambda o, now: [_name(o), (o.get("spec") or {}).get("holderIdentity") or "", created(o, now)]),
    ("scheduling.k8s.io", "priorityclasses"): ([NAME, _col("Value", "@scheduling.v1.PriorityClass.value", "integer"),
                                                _col("Global-Default", "@scheduling.v1.PriorityClass.globalDefault", "boolean"), AGE,
                                                _col("PreemptionPolicy", "@scheduling.v1.PriorityClass.preemptionPolicy", priority=1)],
                                               _priority_class),
    ("node.k8s.io", "runtimeclasses"): ([NAME, _col("Handler", ""), AGE],
                                        lambda o, now: [_name(o), o.get("handler", ""), created(o, now)]),
    ("apiregistration.k8s.io", "apiservices"): ([NAME, _col("Service", "The reference to the service that hosts this API endpoint."),
                                                 _col("Available", "Whether this service is available."), AGE], _apiservice),
    (_ADMISSION, "mutatingwebhookconfigurations"): (_WEBHOOKS, _webhooks),
    (_ADMISSION, "validatingwebhookconfigurations"): (_WEBHOOKS, _webhooks),
    (_ADMISSION, "validatingadmissionpolicies"): ([NAME, _col("Validations", "Validations indicates the number of validation rules defined in this configuration", "integer"),
                                                   _col("ParamKind", "ParamKind specifies the kind of resources used to parameterize this policy"), AGE],
                                                  _policy("validations")),
    (_ADMISSION, "validatingadmissionpolicybindings"): ([NAME, _col("PolicyName", "PolicyName indicates the policy definition which the policy binding binded to"),
                                                         _col("ParamRef", "ParamRef indicates the param resource which sets the configration param"), AGE],
                                                        _policy_binding),
}
