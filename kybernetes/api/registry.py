"""Which resources exist: group, versions, kind, plural, scope, short names, subresources.

The API server serves discovery, routes REST paths and names store keys from this table; CRDs add
entries at run time. Plain data, no I/O.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace

ALL_VERBS = ("create", "delete", "deletecollection", "get", "list", "patch", "update", "watch")
CREATE_ONLY = ("create",)


@dataclass(frozen=True, slots=True)
class Resource:
    group: str  # "" for the core group
    version: str
    kind: str
    plural: str
    namespaced: bool = True
    short_names: tuple[str, ...] = ()
    categories: tuple[str, ...] = ()
    subresources: tuple[str, ...] = ()  # "status", "scale", "log", ...
    verbs: tuple[str, ...] = ALL_VERBS
    # The group/version objects are kept in; other versions of the same resource convert to it.
    storage_version: str = ""
    storage_group: str | None = None  # events.k8s.io events live with core events
    singular: str = ""
    # For CRDs: the definition's schema and printer columns, filled by the CRD handler.
    schema: dict | None = field(default=None, compare=False, hash=False)
    printer_columns: tuple = field(default=(), compare=False, hash=False)
    scale_paths: tuple[str, str, str] | None = None  # specReplicas, statusReplicas, labelSelector

    @property
    def api_version(self) -> str:
        return f"{self.group}/{self.version}" if self.group else self.version

    @property
    def group_resource(self) -> str:
        return f"{self.plural}.{self.group}" if self.group else self.plural

    @property
    def list_kind(self) -> str:
        return self.kind + "List"

    @property
    def singular_name(self) -> str:
        return self.singular or self.kind.lower()

    @property
    def is_storage_version(self) -> bool:
        return not self.storage_version or self.storage_version == self.version

    def key_prefix(self) -> str:
        """Store key prefix shared by every version of this resource."""
        group = self.group if self.storage_group is None else self.storage_group
        return f"/registry/{group or 'core'}/{self.plural}/"

    def key(self, namespace: str | None, name: str) -> str:
        if self.namespaced:
            return f"{self.key_prefix()}{namespace}/{name}"
        return f"{self.key_prefix()}{name}"


def _r(group: str, version: str, kind: str, plural: str, **kw) -> Resource:
    return Resource(group, version, kind, plural, **kw)


_ALL = ("all",)
_POD_SUBS = ("status", "binding", "eviction", "log", "exec", "attach", "portforward", "proxy",
             "ephemeralcontainers", "resize")

BUILTIN: tuple[Resource, ...] = (
    # core/v1
    _r("", "v1", "Pod", "pods", short_names=("po",), categories=_ALL, subresources=_POD_SUBS),
    _r("", "v1", "Service", "services", short_names=("svc",), categories=_ALL,
       subresources=("status", "proxy")),
    _r("", "v1", "Endpoints", "endpoints", short_names=("ep",), singular="endpoints"),
    _r("", "v1", "Namespace", "namespaces", namespaced=False, short_names=("ns",),
       subresources=("status", "finalize"),
       verbs=("create", "delete", "get", "list", "patch", "update", "watch")),
    _r("", "v1", "Node", "nodes", namespaced=False, short_names=("no",),
       subresources=("status", "proxy")),
    _r("", "v1", "ConfigMap", "configmaps", short_names=("cm",)),
    _r("", "v1", "Secret", "secrets"),
    _r("", "v1", "ServiceAccount", "serviceaccounts", short_names=("sa",),
       subresources=("token",)),
    _r("", "v1", "Event", "events", short_names=("ev",)),
    _r("", "v1", "PersistentVolume", "persistentvolumes", namespaced=False, short_names=("pv",),
       subresources=("status",)),
    _r("", "v1", "PersistentVolumeClaim", "persistentvolumeclaims", short_names=("pvc",),
       subresources=("status",)),
    _r("", "v1", "ReplicationController", "replicationcontrollers", short_names=("rc",),
       categories=_ALL, subresources=("status", "scale")),
    _r("", "v1", "ResourceQuota", "resourcequotas", short_names=("quota",),
       subresources=("status",)),
    _r("", "v1", "LimitRange", "limitranges", short_names=("limits",)),
    _r("", "v1", "PodTemplate", "podtemplates"),
    _r("", "v1", "Binding", "bindings", verbs=CREATE_ONLY),
    _r("", "v1", "ComponentStatus", "componentstatuses", namespaced=False, short_names=("cs",),
       verbs=("get", "list")),
    # apps/v1
    _r("apps", "v1", "Deployment", "deployments", short_names=("deploy",), categories=_ALL,
       subresources=("status", "scale")),
    _r("apps", "v1", "ReplicaSet", "replicasets", short_names=("rs",), categories=_ALL,
       subresources=("status", "scale")),
    _r("apps", "v1", "StatefulSet", "statefulsets", short_names=("sts",), categories=_ALL,
       subresources=("status", "scale")),
    _r("apps", "v1", "DaemonSet", "daemonsets", short_names=("ds",), categories=_ALL,
       subresources=("status",)),
    _r("apps", "v1", "ControllerRevision", "controllerrevisions"),
    # batch/v1
    _r("batch", "v1", "Job", "jobs", categories=_ALL, subresources=("status",)),
    _r("batch", "v1", "CronJob", "cronjobs", short_names=("cj",), categories=_ALL,
       subresources=("status",)),
    # autoscaling: v2 is stored, v1 converts
    _r("autoscaling", "v2", "HorizontalPodAutoscaler", "horizontalpodautoscalers",
       short_names=("hpa",), categories=_ALL, subresources=("status",), storage_version="v2"),
    _r("autoscaling", "v1", "HorizontalPodAutoscaler", "horizontalpodautoscalers",
       short_names=("hpa",), categories=_ALL, subresources=("status",), storage_version="v2"),
    # networking.k8s.io/v1
    _r("networking.k8s.io", "v1", "Ingress", "ingresses", short_names=("ing",),
       subresources=("status",)),
    _r("networking.k8s.io", "v1", "IngressClass", "ingressclasses", namespaced=False),
    _r("networking.k8s.io", "v1", "NetworkPolicy", "networkpolicies", short_names=("netpol",)),
    # policy/v1
    _r("policy", "v1", "PodDisruptionBudget", "poddisruptionbudgets", short_names=("pdb",),
       subresources=("status",)),
    # rbac.authorization.k8s.io/v1
    _r("rbac.authorization.k8s.io", "v1", "Role", "roles"),
    _r("rbac.authorization.k8s.io", "v1", "RoleBinding", "rolebindings"),
    _r("rbac.authorization.k8s.io", "v1", "ClusterRole", "clusterroles", namespaced=False),
    _r("rbac.authorization.k8s.io", "v1", "ClusterRoleBinding", "clusterrolebindings",
       namespaced=False),
    # coordination.k8s.io/v1
    _r("coordination.k8s.io", "v1", "Lease", "leases"),
    # discovery.k8s.io/v1
    _r("discovery.k8s.io", "v1", "EndpointSlice", "endpointslices"),
    # events.k8s.io/v1 shares storage with core/v1 events (converted)
    _r("events.k8s.io", "v1", "Event", "events", short_names=("ev",), storage_group=""),
    # storage.k8s.io/v1
    _r("storage.k8s.io", "v1", "StorageClass", "storageclasses", namespaced=False,
       short_names=("sc",)),
    _r("storage.k8s.io", "v1", "CSIDriver", "csidrivers", namespaced=False),
    _r("storage.k8s.io", "v1", "CSINode", "csinodes", namespaced=False),
    _r("storage.k8s.io", "v1", "VolumeAttachment", "volumeattachments", namespaced=False,
       subresources=("status",)),
    _r("storage.k8s.io", "v1", "CSIStorageCapacity", "csistoragecapacities"),
    # scheduling.k8s.io/v1
    _r("scheduling.k8s.io", "v1", "PriorityClass", "priorityclasses", namespaced=False,
       short_names=("pc",)),
    # node.k8s.io/v1
    _r("node.k8s.io", "v1", "RuntimeClass", "runtimeclasses", namespaced=False),
    # certificates.k8s.io/v1
    _r("certificates.k8s.io", "v1", "CertificateSigningRequest", "certificatesigningrequests",
       namespaced=False, short_names=("csr",), subresources=("status", "approval")),
    # admissionregistration.k8s.io/v1
    _r("admissionregistration.k8s.io", "v1", "ValidatingWebhookConfiguration",
       "validatingwebhookconfigurations", namespaced=False),
    _r("admissionregistration.k8s.io", "v1", "MutatingWebhookConfiguration",
       "mutatingwebhookconfigurations", namespaced=False),
    # apiregistration.k8s.io/v1
    _r("apiregistration.k8s.io", "v1", "APIService", "apiservices", namespaced=False,
       subresources=("status",)),
    # apiextensions.k8s.io/v1
    _r("apiextensions.k8s.io", "v1", "CustomResourceDefinition", "customresourcedefinitions",
       namespaced=False, short_names=("crd", "crds"), categories=("api-extensions",),
       subresources=("status",)),
    # review APIs: create-only, never stored
    _r("authentication.k8s.io", "v1", "TokenReview", "tokenreviews", namespaced=False,
       verbs=CREATE_ONLY),
    _r("authentication.k8s.io", "v1", "SelfSubjectReview", "selfsubjectreviews",
       namespaced=False, verbs=CREATE_ONLY),
    _r("authorization.k8s.io", "v1", "SelfSubjectAccessReview", "selfsubjectaccessreviews",
       namespaced=False, verbs=CREATE_ONLY),
    _r("authorization.k8s.io", "v1", "SelfSubjectRulesReview", "selfsubjectrulesreviews",
       namespaced=False, verbs=CREATE_ONLY),
    _r("authorization.k8s.io", "v1", "SubjectAccessReview", "subjectaccessreviews",
       namespaced=False, verbs=CREATE_ONLY),
    _r("authorization.k8s.io", "v1", "LocalSubjectAccessReview", "localsubjectaccessreviews",
       verbs=CREATE_ONLY),
)

# Preferred version per group, in discovery order (kube-apiserver's order, roughly).
GROUP_ORDER = (
    "", "apiregistration.k8s.io", "apps", "events.k8s.io", "authentication.k8s.io",
    "authorization.k8s.io", "autoscaling", "batch", "certificates.k8s.io", "networking.k8s.io",
    "policy", "rbac.authorization.k8s.io", "storage.k8s.io", "admissionregistration.k8s.io",
    "apiextensions.k8s.io", "scheduling.k8s.io", "coordination.k8s.io", "node.k8s.io",
    "discovery.k8s.io",
)
PREFERRED = {"autoscaling": "v2"}


class Registry:
    """Lookup tables over the resources served; CRDs add and remove entries at run time."""

    def __init__(self, resources: tuple[Resource, ...] | list[Resource] = BUILTIN):
        self._by_path: dict[tuple[str, str, str], Resource] = {}
        self.generation = 0  # bumps on every change, so discovery/openapi caches can refresh
        for r in resources:
            self.add(r)

    def add(self, r: Resource) -> None:
        self._by_path[(r.group, r.version, r.plural)] = r
        self.generation += 1

    def remove(self, group: str, plural: str) -> None:
        for k in [k for k in self._by_path if k[0] == group and k[2] == plural]:
            del self._by_path[k]
        self.generation += 1

    def get(self, group: str, version: str, plural: str) -> Resource | None:
        return self._by_path.get((group, version, plural))

    def by_kind(self, api_version: str, kind: str) -> Resource | None:
        group, _, version = api_version.rpartition("/")
        for r in self._by_path.values():
            if r.group == group and r.version == version and r.kind == kind:
                return r
        return None

    def all(self) -> list[Resource]:
        return list(self._by_path.values())

    def groups(self) -> list[tuple[str, list[str]]]:
        """[(group, [versions, preferred first])] in discovery order."""
        versions: dict[str, list[str]] = {}
        for r in self._by_path.values():
            vs = versions.setdefault(r.group, [])
            if r.version not in vs:
                vs.append(r.version)
        order = {g: i for i, g in enumerate(GROUP_ORDER)}
        out = []
        for g in sorted(versions, key=lambda g: (order.get(g, len(order)), g)):
            vs = sorted(versions[g], key=_version_priority)
            pref = PREFERRED.get(g)
            if pref in vs:
                vs.remove(pref)
                vs.insert(0, pref)
            out.append((g, vs))
        return out

    def in_group_version(self, group: str, version: str) -> list[Resource]:
        return [r for r in self._by_path.values() if r.group == group and r.version == version]

    def storage_resource(self, r: Resource) -> Resource:
        """The version objects of `r`'s resource are stored in."""
        if r.is_storage_version:
            return r
        return self.get(r.group, r.storage_version, r.plural) or r

    def with_changes(self, r: Resource, **kw) -> Resource:
        return replace(r, **kw)


def _version_priority(v: str) -> tuple:
    """Kubernetes' version ordering: GA > beta > alpha, higher numbers first."""
    import re

    m = re.fullmatch(r"v(\d+)(?:(alpha|beta)(\d+))?", v)
    if not m:
        return (3, v)
    major, stage, minor = int(m.group(1)), m.group(2), int(m.group(3) or 0)
    rank = {None: 0, "beta": 1, "alpha": 2}[stage]
    return (rank, -major, -minor)
