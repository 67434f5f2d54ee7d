"""Defaulting of built-in kinds, as upstream's SetDefaults_* functions do it.

`apply(api_version, kind, obj)` fills unset fields in place so that stored objects read back the
way a real cluster shows them (`kubectl get -o yaml`). Only unset (absent or null) fields are
touched; what the client sent always wins. Values set by the registry rather than the defaulters
upstream (Namespace finalizers, Service ipFamilies) are included because no one else sets them.
"""

from __future__ import annotations

from typing import Callable

DEFAULT_MODE = 420  # 0644, volumes' file mode


def _set(d: dict, key: str, value: object) -> None:
    if d.get(key) is None:
        d[key] = value


def _dict(d: dict, key: str) -> dict:
    """d[key] as a dict, created when unset (a non-dict is left for validation to report)."""
    value = d.get(key)
    if value is None:
        value = d[key] = {}
    return value if isinstance(value, dict) else {}


def _dicts(value: object) -> list[dict]:
    return [x for x in value if isinstance(x, dict)] if isinstance(value, list) else []


def _sub(d: object, *keys: str) -> dict | None:
    for key in keys:
        if not isinstance(d, dict):
            return None
        d = d.get(key)
    return d if isinstance(d, dict) else None


# --- pods ------------------------------------------------------------------------------------------

def pull_policy(image: object) -> str:
    """Always for `:latest` or untagged images, IfNotPresent for tags and digests."""
    if not isinstance(image, str):
        return "IfNotPresent"
    if "@" in image:
        return "IfNotPresent"
    last = image.rsplit("/", 1)[-1]
    tag = last.rsplit(":", 1)[1] if ":" in last else ""
    return "Always" if tag in ("", "latest") else "IfNotPresent"


def _probe(probe: object) -> None:
    if not isinstance(probe, dict):
        return
    _set(probe, "timeoutSeconds", 1)
    _set(probe, "periodSeconds", 10)
    _set(probe, "successThreshold", 1)
    _set(probe, "failureThreshold", 3)
    _handler(probe)


def _handler(handler: object) -> None:
    http = _sub(handler, "httpGet")
    if http is not None:
        _set(http, "path", "/")
        _set(http, "scheme", "HTTP")


def container(c: dict, host_network: bool = False) -> None:
    """SetDefaults_Container plus the nested ports, probes, env and lifecycle defaults."""
    if c.get("imagePullPolicy") is None:
        c["imagePullPolicy"] = pull_policy(c.get("image"))
    _set(c, "terminationMessagePath", "/dev/termination-log")
    _set(c, "terminationMessagePolicy", "File")
    _set(c, "resources", {})
    # Absent parts are skipped before any call: most containers have few of them.
    ports = c.get("ports")
    if ports:
        for port in _dicts(ports):
            _set(port, "protocol", "TCP")
            if host_network and port.get("hostPort") is None:
                port["hostPort"] = port.get("containerPort")
    for key in ("livenessProbe", "readinessProbe", "startupProbe"):
        probe = c.get(key)
        if probe is not None:
            _probe(probe)
    lifecycle = c.get("lifecycle")
    if isinstance(lifecycle, dict):
        for key in ("postStart", "preStop"):
            _handler(_sub(lifecycle, key))
    env_vars = c.get("env")
    if env_vars:
        for env in _dicts(env_vars):
            field_ref = _sub(env, "valueFrom", "fieldRef")
            if field_ref is not None:
                _set(field_ref, "apiVersion", "v1")


def volume(v: dict) -> None:
    from kybernetes.api.validation_kinds import VOLUME_SOURCES
    if not any(v.get(s) is not None for s in VOLUME_SOURCES):
        v["emptyDir"] = {}
    for key in ("configMap", "secret", "downwardAPI", "projected"):
        source = _sub(v, key)
        if source is not None:
            _set(source, "defaultMode", DEFAULT_MODE)
    host_path = _sub(v, "hostPath")
    if host_path is not None:
        _set(host_path, "type", "")
    for source in _dicts((_sub(v, "projected") or {}).get("sources")):
        token = _sub(source, "serviceAccountToken")
        if token is not None:
            _set(token, "expirationSeconds", 3600)
    for item in _dicts((_sub(v, "downwardAPI") or {}).get("items")):
        ref = _sub(item, "fieldRef")
        if ref is not None:
            _set(ref, "apiVersion", "v1")
    claim = _sub(v, "ephemeral", "volumeClaimTemplate", "spec")
    if claim is not None:
        _set(claim, "volumeMode", "Filesystem")


def pod_spec(spec: dict) -> None:
    """SetDefaults_PodSpec (shared by Pods and every pod template)."""
    _set(spec, "dnsPolicy", "ClusterFirst")
    _set(spec, "restartPolicy", "Always")
    _set(spec, "terminationGracePeriodSeconds", 30)
    _set(spec, "securityContext", {})
    _set(spec, "schedulerName", "default-scheduler")
    host_network = spec.get("hostNetwork") is True
    for key in ("initContainers", "containers", "ephemeralContainers"):
        items = spec.get(key)
        if items:  # most specs lack the other two lists
            for c in _dicts(items):
                container(c, host_network)
    volumes = spec.get("volumes")
    if volumes:
        for v in _dicts(volumes):
            volume(v)


def pod(obj: dict) -> None:
    """SetDefaults_Pod: only for Pods, not templates (enableServiceLinks, requests=limits)."""
    spec = _dict(obj, "spec")
    pod_spec(spec)
    _set(spec, "enableServiceLinks", True)
    _set(spec, "preemptionPolicy", "PreemptLowerPriority")  # the Priority admission's value
    for key in ("initContainers", "containers"):
        items = spec.get(key)
        if not items:
            continue
        for c in _dicts(items):
            resources = _dict(c, "resources")
            limits = resources.get("limits")
            if isinstance(limits, dict) and limits:
                requests = _dict(resources, "requests")
                for name, value in limits.items():
                    requests.setdefault(name, value)


def _template(spec: object, *keys: str) -> None:
    tspec = _sub(spec, *keys, "spec") if keys else None
    if tspec is not None:
        pod_spec(tspec)


def qos_class(pod_obj: dict) -> str:
    """The pod's QoS class (status.qosClass), from its containers' requests and limits."""
    spec = pod_obj.get("spec") if isinstance(pod_obj.get("spec"), dict) else {}
    containers = _dicts(spec.get("containers")) + _dicts(spec.get("initContainers"))
    any_set, guaranteed = False, True
    for c in containers:
        res = c.get("resources")
        req = lim = _EMPTY
        if isinstance(res, dict):
            req, lim = res.get("requests"), res.get("limits")
            req = req if isinstance(req, dict) else _EMPTY
            lim = lim if isinstance(lim, dict) else _EMPTY
        # Only cpu and memory count; looked up by name rather than filtered copies.
        if "cpu" in req or "memory" in req or "cpu" in lim or "memory" in lim:
            any_set = True
        if guaranteed and ("cpu" not in lim or "memory" not in lim
                           or req.get("cpu", lim["cpu"]) != lim["cpu"]
                           or req.get("memory", lim["memory"]) != lim["memory"]):
            guaranteed = False
    if not any_set:
        return "BestEffort"
    return "Guaranteed" if guaranteed else "Burstable"


_EMPTY: dict = {}  # read only


# --- workloads -------------------------------------------------------------------------------------

def deployment(obj: dict) -> None:
    spec = _dict(obj, "spec")
    _set(spec, "replicas", 1)
    strategy = _dict(spec, "strategy")
    _set(strategy, "type", "RollingUpdate")
    if strategy.get("type") == "RollingUpdate":
        rolling = _dict(strategy, "rollingUpdate")
        _set(rolling, "maxUnavailable", "25%")
        _set(rolling, "maxSurge", "25%")
    _set(spec, "revisionHistoryLimit", 10)
    _set(spec, "progressDeadlineSeconds", 600)
    _template(spec, "template")


def replicaset(obj: dict) -> None:
    spec = _dict(obj, "spec")
    _set(spec, "replicas", 1)
    _template(spec, "template")


def replication_controller(obj: dict) -> None:
    spec = _dict(obj, "spec")
    labels = _sub(spec, "template", "metadata", "labels")
    if labels:
        if not spec.get("selector"):
            spec["selector"] = dict(labels)
        meta = _dict(obj, "metadata")
        if not meta.get("labels"):
            meta["labels"] = dict(labels)
    _set(spec, "replicas", 1)
    _template(spec, "template")


def statefulset(obj: dict) -> None:
    spec = _dict(obj, "spec")
    _set(spec, "podManagementPolicy", "OrderedReady")
    strategy = _dict(spec, "updateStrategy")
    _set(strategy, "type", "RollingUpdate")
    if strategy.get("type") == "RollingUpdate":
        _set(_dict(strategy, "rollingUpdate"), "partition", 0)
    _set(spec, "replicas", 1)
    _set(spec, "revisionHistoryLimit", 10)
    retention = _dict(spec, "persistentVolumeClaimRetentionPolicy")
    _set(retention, "whenDeleted", "Retain")
    _set(retention, "whenScaled", "Retain")
    for claim in _dicts(spec.get("volumeClaimTemplates")):
        _set(claim, "apiVersion", "v1")
        _set(claim, "kind", "PersistentVolumeClaim")
        pvc(claim)
    _template(spec, "template")


def daemonset(obj: dict) -> None:
    spec = _dict(obj, "spec")
    strategy = _dict(spec, "updateStrategy")
    _set(strategy, "type", "RollingUpdate")
    if strategy.get("type") == "RollingUpdate":
        rolling = _dict(strategy, "rollingUpdate")
        _set(rolling, "maxUnavailable", 1)
        _set(rolling, "maxSurge", 0)
    _set(spec, "revisionHistoryLimit", 10)
    _template(spec, "template")


def job(obj: dict) -> None:
    spec = _dict(obj, "spec")
    if spec.get("completions") is None and spec.get("parallelism") is None:
        spec["completions"] = 1
        spec["parallelism"] = 1
    _set(spec, "parallelism", 1)
    _set(spec, "backoffLimit", 2**31 - 1 if spec.get("backoffLimitPerIndex") is not None else 6)
    _set(spec, "completionMode", "NonIndexed")
    _set(spec, "suspend", False)
    _set(spec, "podReplacementPolicy",
         "Failed" if spec.get("podFailurePolicy") is not None else "TerminatingOrFailed")
    _template(spec, "template")


def generate_job_selector(obj: dict) -> None:
    """The Job strategy's create step (not a defaulter): unless `manualSelector` is true, select
    the Job's pods by its uid and label the template so. Call once metadata.uid is assigned."""
    meta, spec = _dict(obj, "metadata"), _dict(obj, "spec")
    uid, name = meta.get("uid"), meta.get("name")
    if spec.get("manualSelector") is True or not uid:
        return
    template_meta = _dict(_dict(spec, "template"), "metadata")
    labels = _dict(template_meta, "labels")
    labels.update({"batch.kubernetes.io/controller-uid": uid, "controller-uid": uid})
    if name:
        labels.update({"batch.kubernetes.io/job-name": name, "job-name": name})
    _set(spec, "selector", {"matchLabels": {"batch.kubernetes.io/controller-uid": uid}})


def cronjob(obj: dict) -> None:
    spec = _dict(obj, "spec")
    _set(spec, "concurrencyPolicy", "Allow")
    _set(spec, "suspend", False)
    _set(spec, "successfulJobsHistoryLimit", 3)
    _set(spec, "failedJobsHistoryLimit", 1)
    _template(spec, "jobTemplate", "spec", "template")


def pod_template(obj: dict) -> None:
    _template(obj, "template")


# --- services and the rest -------------------------------------------------------------------------

def service(obj: dict) -> None:
    spec = _dict(obj, "spec")
    _set(spec, "type", "ClusterIP")
    stype = spec.get("type")
    _set(spec, "sessionAffinity", "None")
    if spec.get("sessionAffinity") == "ClientIP":
        client_ip = _dict(_dict(spec, "sessionAffinityConfig"), "clientIP")
        _set(client_ip, "timeoutSeconds", 10800)
    for port in _dicts(spec.get("ports")):
        _set(port, "protocol", "TCP")
        if port.get("targetPort") is None:
            port["targetPort"] = port.get("port")
    if stype in ("NodePort", "LoadBalancer"):
        _set(spec, "externalTrafficPolicy", "Cluster")
    if stype == "LoadBalancer":
        _set(spec, "allocateLoadBalancerNodePorts", True)
    if stype == "ExternalName":
        return
    _set(spec, "internalTrafficPolicy", "Cluster")
    cluster_ip = spec.get("clusterIP")
    if cluster_ip and not spec.get("clusterIPs"):
        spec["clusterIPs"] = [cluster_ip]
    # The registry picks IP families at create time; a single-stack IPv4 cluster's choice.
    headless_no_selector = cluster_ip == "None" and not spec.get("selector")
    _set(spec, "ipFamilyPolicy", "RequireDualStack" if headless_no_selector else "SingleStack")
    _set(spec, "ipFamilies", ["IPv4"])


def secret(obj: dict) -> None:
    _set(obj, "type", "Opaque")


def namespace(obj: dict) -> None:
    meta = _dict(obj, "metadata")
    name = meta.get("name")
    if isinstance(name, str) and name:
        labels = _dict(meta, "labels")
        labels["kubernetes.io/metadata.name"] = name  # always overwritten upstream too
    _set(_dict(obj, "spec"), "finalizers", ["kubernetes"])
    _set(_dict(obj, "status"), "phase", "Active")


def pvc(obj: dict) -> None:
    _set(_dict(obj, "spec"), "volumeMode", "Filesystem")
    _set(_dict(obj, "status"), "phase", "Pending")


def pv(obj: dict) -> None:
    spec = _dict(obj, "spec")
    _set(spec, "persistentVolumeReclaimPolicy", "Retain")
    _set(spec, "volumeMode", "Filesystem")
    host_path = _sub(spec, "hostPath")
    if host_path is not None:
        _set(host_path, "type", "")
    _set(_dict(obj, "status"), "phase", "Pending")


def _ports_tcp(ports: object) -> None:
    for port in _dicts(ports):
        _set(port, "protocol", "TCP")


def endpoints(obj: dict) -> None:
    for subset in _dicts(obj.get("subsets")):
        _ports_tcp(subset.get("ports"))


def endpointslice(obj: dict) -> None:
    _ports_tcp(obj.get("ports"))


def network_policy(obj: dict) -> None:
    spec = _dict(obj, "spec")
    if not spec.get("policyTypes"):
        types = ["Ingress"]
        if spec.get("egress"):
            types.append("Egress")
        spec["policyTypes"] = types
    for rule in _dicts(spec.get("ingress")) + _dicts(spec.get("egress")):
        _ports_tcp(rule.get("ports"))


def hpa_v2(obj: dict) -> None:
    spec = _dict(obj, "spec")
    _set(spec, "minReplicas", 1)
    if not spec.get("metrics"):
        spec["metrics"] = [{"type": "Resource", "resource": {
            "name": "cpu", "target": {"type": "Utilization", "averageUtilization": 80}}}]
    behavior = _sub(spec, "behavior")
    if behavior is not None:
        up = _dict(behavior, "scaleUp")
        _set(up, "stabilizationWindowSeconds", 0)
        _set(up, "selectPolicy", "Max")
        _set(up, "policies", [{"type": "Pods", "value": 4, "periodSeconds": 15},
                              {"type": "Percent", "value": 100, "periodSeconds": 15}])
        down = _dict(behavior, "scaleDown")
        _set(down, "stabilizationWindowSeconds", 300)
        _set(down, "selectPolicy", "Max")
        _set(down, "policies", [{"type": "Percent", "value": 100, "periodSeconds": 15}])


def hpa_v1(obj: dict) -> None:
    _set(_dict(obj, "spec"), "minReplicas", 1)


def _binding(obj: dict) -> None:
    for subject in _dicts(obj.get("subjects")):
        if subject.get("apiGroup") is None:
            kind = subject.get("kind")
            if kind in ("User", "Group"):
                subject["apiGroup"] = "rbac.authorization.k8s.io"
            elif kind == "ServiceAccount":
                subject["apiGroup"] = ""


def storage_class(obj: dict) -> None:
    _set(obj, "reclaimPolicy", "Delete")
    _set(obj, "volumeBindingMode", "Immediate")


def csi_driver(obj: dict) -> None:
    spec = _dict(obj, "spec")
    for key, value in (("attachRequired", True), ("podInfoOnMount", False),
                       ("requiresRepublish", False), ("storageCapacity", False),
                       ("seLinuxMount", False), ("fsGroupPolicy", "ReadWriteOnceWithFSType"),
                       ("volumeLifecycleModes", ["Persistent"])):
        _set(spec, key, value)


def priority_class(obj: dict) -> None:
    _set(obj, "preemptionPolicy", "PreemptLowerPriority")


DEFAULTERS: dict[tuple[str, str], Callable[[dict], None]] = {
    ("v1", "Pod"): pod,
    ("v1", "PodTemplate"): pod_template,
    ("v1", "ReplicationController"): replication_controller,
    ("v1", "Service"): service,
    ("v1", "Secret"): secret,
    ("v1", "Namespace"): namespace,
    ("v1", "PersistentVolumeClaim"): pvc,
    ("v1", "PersistentVolume"): pv,
    ("v1", "Endpoints"): endpoints,
    ("apps/v1", "Deployment"): deployment,
    ("apps/v1", "ReplicaSet"): replicaset,
    ("apps/v1", "StatefulSet"): statefulset,
    ("apps/v1", "DaemonSet"): daemonset,
    ("batch/v1", "Job"): job,
    ("batch/v1", "CronJob"): cronjob,
    ("autoscaling/v2", "HorizontalPodAutoscaler"): hpa_v2,
    ("autoscaling/v1", "HorizontalPodAutoscaler"): hpa_v1,
    ("networking.k8s.io/v1", "NetworkPolicy"): network_policy,
    ("discovery.k8s.io/v1", "EndpointSlice"): endpointslice,
    ("rbac.authorization.k8s.io/v1", "RoleBinding"): _binding,
    ("rbac.authorization.k8s.io/v1", "ClusterRoleBinding"): _binding,
    ("storage.k8s.io/v1", "StorageClass"): storage_class,
    ("storage.k8s.io/v1", "CSIDriver"): csi_driver,
    ("scheduling.k8s.io/v1", "PriorityClass"): priority_class,
}


def apply(api_version: str, kind: str, obj: dict) -> None:
    """Fill defaults into `obj` in place; unknown kinds and malformed objects are left alone."""
    defaulter = DEFAULTERS.get((api_version, kind))
    if defaulter is not None and isinstance(obj, dict):
        defaulter(obj)
