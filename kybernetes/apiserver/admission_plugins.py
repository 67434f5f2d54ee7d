"""Mutating admission for pods, as kube-apiserver's default plugins do it:

- Priority: spec.priority (and preemptionPolicy) from the pod's PriorityClass or the global
  default; an unknown class is refused.
- DefaultTolerationSeconds: tolerate not-ready/unreachable NoExecute taints for 300 s, so a
  node failure evicts pods after five minutes rather than at once.
- ServiceAccount: spec.serviceAccountName defaults to "default" and, unless automounting is
  off, a projected token volume is mounted at /var/run/secrets/kubernetes.io/serviceaccount.
  (The account's existence is not checked: a pod created before the controller made
  `default` would be refused only to succeed a moment later.) Mirror pods (a kubelet's static
  pods, annotated kubernetes.io/config.mirror) are left as they are and may not name a service
  account: changing their spec would change the hash their kubelet checks.
"""

from __future__ import annotations

import random

from kybernetes.api import errors

SYSTEM_PRIORITY_CLASSES = {
    "system-node-critical": 2000001000,
    "system-cluster-critical": 2000000000,
}
_TOLERATED = ("node.kubernetes.io/not-ready", "node.kubernetes.io/unreachable")
_SA_MOUNT = "/var/run/secrets/kubernetes.io/serviceaccount"
_ALPHABET = "bcdfghjklmnpqrstvwxz2456789"
MIRROR_ANNOTATION = "kubernetes.io/config.mirror"


def admit_pod(pod: dict, priority_classes: list[dict]) -> None:
    spec = pod.setdefault("spec", {})
    _priority(pod, spec, priority_classes)
    _default_tolerations(spec)
    if MIRROR_ANNOTATION in ((pod.get("metadata") or {}).get("annotations") or {}):
        if spec.get("serviceAccountName") or spec.get("serviceAccount"):
            raise errors.forbidden(
                f'pods "{pod["metadata"].get("name", "")}" is forbidden: a mirror pod may not '
                "reference service accounts", "pods", pod["metadata"].get("name", ""))
        return
    _service_account(spec)


def _priority(pod: dict, spec: dict, classes: list[dict]) -> None:
    name = spec.get("priorityClassName")
    chosen = None
    if name:
        chosen = next((c for c in classes if c["metadata"]["name"] == name), None)
        if chosen is None:
            raise errors.forbidden(
                f'pods "{pod["metadata"].get("name", "")}" is forbidden: no PriorityClass with name {name} was found',
                "pods", pod["metadata"].get("name", ""))
    else:
        defaults = [c for c in classes if c.get("globalDefault")]
        if defaults:
            chosen = min(defaults, key=lambda c: c.get("value", 0))
            spec["priorityClassName"] = chosen["metadata"]["name"]
    value = chosen.get("value", 0) if chosen else 0
    if spec.get("priority") is not None and spec["priority"] != value:
        raise errors.forbidden(
            "the integer value of priority must not be provided in pod spec; priority admission controller computed "
            f"{value} from the given PriorityClass name", "pods", pod["metadata"].get("name", ""))
    spec["priority"] = value
    if chosen and chosen.get("preemptionPolicy"):
        spec["preemptionPolicy"] = chosen["preemptionPolicy"]
    else:
        spec.setdefault("preemptionPolicy", "PreemptLowerPriority")


def _list_field(owner: dict, key: str) -> list:
    """owner[key] as a list to append to: null (or absent) becomes a new one, as Go decodes
    null into a nil slice. Other shapes were refused before admission."""
    value = owner.get(key)
    if not isinstance(value, list):
        value = owner[key] = []
    return value


def _default_tolerations(spec: dict) -> None:
    tolerations = _list_field(spec, "tolerations")
    for key in _TOLERATED:
        if tolerations and any(_tolerates(t, key) for t in tolerations):
            continue
        tolerations.append({"key": key, "operator": "Exists", "effect": "NoExecute",
                            "tolerationSeconds": 300})


def _tolerates(t: dict | None, key: str) -> bool:
    if not isinstance(t, dict):     # a null entry: validation reports it
        return False
    if t.get("effect") not in (None, "", "NoExecute"):
        return False
    if t.get("operator") == "Exists" and not t.get("key"):
        return True
    return t.get("key") == key


def _suffix() -> str:
    """Five letters as random.choices(_ALPHABET, k=5) draws them (the same for the same
    state), without its per-call setup. Names, not secrets: a plain PRNG is enough."""
    r, a, n = random.random, _ALPHABET, float(len(_ALPHABET))
    return a[int(r() * n)] + a[int(r() * n)] + a[int(r() * n)] + a[int(r() * n)] + a[int(r() * n)]


def _service_account(spec: dict) -> None:
    sa = spec.get("serviceAccountName") or spec.get("serviceAccount") or "default"
    spec["serviceAccountName"] = sa
    spec["serviceAccount"] = sa  # the deprecated alias upstream still fills
    if spec.get("automountServiceAccountToken") is False:
        return
    # Null entries are left for validation to report (Go decodes them as empty containers).
    containers = [c for key in ("containers", "initContainers") for c in spec.get(key) or ()
                  if isinstance(c, dict)]
    if any(isinstance(m, dict) and m.get("mountPath") == _SA_MOUNT
           for c in containers for m in c.get("volumeMounts") or ()):
        return
    name = "kube-api-access-" + _suffix()
    _list_field(spec, "volumes").append({"name": name, "projected": {
        "defaultMode": 420,
        "sources": [
            {"serviceAccountToken": {"expirationSeconds": 3607, "path": "token"}},
            {"configMap": {"name": "kube-root-ca.crt", "items": [{"key": "ca.crt", "path": "ca.crt"}]}},
            {"downwardAPI": {"items": [{"path": "namespace", "fieldRef": {
                "apiVersion": "v1", "fieldPath": "metadata.namespace"}}]}},
        ]}})
    for c in containers:
        _list_field(c, "volumeMounts").append({"name": name, "readOnly": True,
                                               "mountPath": _SA_MOUNT})
