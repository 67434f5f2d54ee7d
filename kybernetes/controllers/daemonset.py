"""The DaemonSet controller: one pod on every eligible node.

As upstream pkg/controller/daemon (daemon_controller.go, update.go, util/): a node is eligible
when the pod's nodeSelector and required node affinity match it and its NoSchedule/NoExecute
taints are tolerated (daemon pods get upstream's default tolerations, so not-ready, cordoned
or pressured nodes keep their daemons); a pod whose node stops fitting keeps running unless a
NoExecute taint is not tolerated. Pods are pinned with a required node affinity on
metadata.name and placed by the scheduler, as upstream. Rolling updates delete old pods up to
maxUnavailable, or with maxSurge start the new pod beside the old one and delete the old one
once the new is available. Templates are versioned with ControllerRevisions (history.py).
"""

from __future__ import annotations

import copy
import logging
from dataclasses import dataclass, field
from datetime import datetime, timezone

from kybernetes.api.errors import ApiError
from kybernetes.api.quantity import scaled_value
from kybernetes.api.selectors import SelectorError, label_selector_from_object
from kybernetes.client import Controller, EventRecorder, controller_of, object_key, resource, split_key
from kybernetes.scheduler.plugins.nodeaffinity import required_matches
from kybernetes.scheduler.plugins.tainttoleration import first_untolerated, tolerates

from . import history
from .replicas import Expectations, is_pod_available, is_pod_ready, slow_start_batch

log = logging.getLogger(__name__)

DAEMONSETS = resource("apps/v1", "DaemonSet")
PODS = resource("v1", "Pod")
NODES = resource("v1", "Node")
HASH_LABEL = "controller-revision-hash"          # upstream DefaultDaemonSetUniqueLabelKey
GENERATION_LABEL = "pod-template-generation"     # upstream DaemonSetTemplateGenerationKey

_DEFAULT_TOLERATIONS = [
    ("node.kubernetes.io/not-ready", "NoExecute"),
    ("node.kubernetes.io/unreachable", "NoExecute"),
    ("node.kubernetes.io/disk-pressure", "NoSchedule"),
    ("node.kubernetes.io/memory-pressure", "NoSchedule"),
    ("node.kubernetes.io/pid-pressure", "NoSchedule"),
    ("node.kubernetes.io/unschedulable", "NoSchedule"),
]


# ---- pods for nodes -------------------------------------------------------------------------------

def add_daemon_tolerations(pod_spec: dict) -> None:
    """Upstream AddOrUpdateDaemonPodTolerations (network-unavailable only for hostNetwork)."""
    wanted = list(_DEFAULT_TOLERATIONS)
    if pod_spec.get("hostNetwork"):
        wanted.append(("node.kubernetes.io/network-unavailable", "NoSchedule"))
    tols = pod_spec.setdefault("tolerations", [])
    for key, effect in wanted:
        t = {"key": key, "operator": "Exists", "effect": effect}
        if t not in tols:
            tols.append(t)


def pin_to_node(pod_spec: dict, node: str) -> None:
    """Replace the required node affinity by metadata.name=<node> (upstream
    ReplaceDaemonSetPodNodeNameNodeAffinity); the node already satisfied the original terms."""
    term = {"matchFields": [{"key": "metadata.name", "operator": "In", "values": [node]}]}
    aff = pod_spec.setdefault("affinity", {}).setdefault("nodeAffinity", {})
    aff["requiredDuringSchedulingIgnoredDuringExecution"] = {"nodeSelectorTerms": [term]}


def target_node(pod: dict) -> str:
    """The node a daemon pod is on, or is pinned to while unscheduled (upstream GetTargetNodeName)."""
    spec = pod.get("spec") or {}
    if spec.get("nodeName"):
        return spec["nodeName"]
    req = ((spec.get("affinity") or {}).get("nodeAffinity") or {}).get(
        "requiredDuringSchedulingIgnoredDuringExecution") or {}
    for term in req.get("nodeSelectorTerms") or []:
        for f in term.get("matchFields") or []:
            if f.get("key") == "metadata.name" and f.get("operator") == "In" and \
                    len(f.get("values") or []) == 1:
                return f["values"][0]
    return ""


def new_daemon_pod(ds: dict, node: str, hash_: str) -> dict:
    meta = ds["metadata"]
    template = (ds.get("spec") or {}).get("template") or {}
    tmeta = template.get("metadata") or {}
    labels = dict(tmeta.get("labels") or {})
    labels[HASH_LABEL] = hash_
    labels[GENERATION_LABEL] = str(meta.get("generation") or 1)
    pod_meta: dict = {"generateName": f"{meta['name']}-", "namespace": meta["namespace"],
                      "labels": labels,
                      "ownerReferences": [{"apiVersion": "apps/v1", "kind": "DaemonSet",
                                           "name": meta["name"], "uid": meta["uid"],
                                           "controller": True, "blockOwnerDeletion": True}]}
    if tmeta.get("annotations"):
        pod_meta["annotations"] = dict(tmeta["annotations"])
    spec = copy.deepcopy(template.get("spec") or {})
    add_daemon_tolerations(spec)
    pin_to_node(spec, node)
    return {"apiVersion": "v1", "kind": "Pod", "metadata": pod_meta, "spec": spec}


def should_run(ds: dict, node: dict) -> tuple[bool, bool]:
    """(should run, should continue running) — upstream NodeShouldRunDaemonPod."""
    spec = copy.deepcopy(((ds.get("spec") or {}).get("template") or {}).get("spec") or {})
    name = node["metadata"]["name"]
    if spec.get("nodeName") and spec["nodeName"] != name:
        return False, False
    add_daemon_tolerations(spec)
    if not required_matches(spec, node["metadata"].get("labels") or {}, name):
        return False, False
    taints = (node.get("spec") or {}).get("taints") or []
    tols = spec.get("tolerations") or []
    if first_untolerated(taints, tols) is None:
        return True, True
    no_execute = any(t.get("effect") == "NoExecute" and not any(tolerates(x, t) for x in tols)
                     for t in taints)
    return False, not no_execute


# ---- the decisions of one sync ---------------------------------------------------------------------

def _by_age(pods: list[dict]) -> list[dict]:
    """Oldest first; on a tie, a running pod first (upstream podByCreationTimestampAndPhase)."""
    return sorted(pods, key=lambda p: (p["metadata"].get("creationTimestamp") or "",
                                       (p.get("status") or {}).get("phase") != "Running",
                                       p["metadata"]["name"]))


@dataclass
class Manage:
    create: list[str] = field(default_factory=list)        # node names
    delete: list[dict] = field(default_factory=list)       # pods
    failed: list[dict] = field(default_factory=list)       # failed pods among `delete`


def max_surge_unavailable(ds: dict, desired: int) -> tuple[int, int]:
    """Upstream updatedDesiredNodeCounts: both rounded up; 0/0 becomes maxUnavailable=1."""
    strategy = (ds.get("spec") or {}).get("updateStrategy") or {}
    if strategy.get("type", "RollingUpdate") != "RollingUpdate":
        return 0, 1
    ru = strategy.get("rollingUpdate") or {}
    surge = scaled_value(ru.get("maxSurge", 0) or 0, desired, True)
    unavailable = scaled_value(ru.get("maxUnavailable", 1) if ru.get("maxUnavailable") is not None else 1,
                               desired, True)
    if surge == 0 and unavailable == 0:
        unavailable = 1
    return surge, unavailable


def plan_manage(ds: dict, nodes: list[dict], node_pods: dict[str, list[dict]], hash_: str,
                now: datetime) -> Manage:
    """Pods to create and delete so each eligible node runs one daemon pod (upstream manage +
    podsShouldBeOnNode). With surge allowed, a node may keep one old and one new pod."""
    out = Manage()
    min_ready = int((ds.get("spec") or {}).get("minReadySeconds") or 0)
    surge, _ = max_surge_unavailable(ds, len(nodes))
    names = set()
    for node in nodes:
        name = node["metadata"]["name"]
        names.add(name)
        run, keep = should_run(ds, node)
        pods = node_pods.get(name) or []
        if run and not pods:
            out.create.append(name)
        elif run:
            running = []
            for p in pods:
                if p["metadata"].get("deletionTimestamp"):
                    continue
                phase = (p.get("status") or {}).get("phase")
                if phase == "Failed":
                    out.delete.append(p)
                    out.failed.append(p)
                elif phase == "Succeeded":
                    out.delete.append(p)
                else:
                    running.append(p)
            if len(running) <= 1:
                continue
            running = _by_age(running)
            if not surge:
                out.delete.extend(running[1:])
                continue
            oldest_new = oldest_old = None
            for p in running:
                is_new = (p["metadata"].get("labels") or {}).get(HASH_LABEL) == hash_
                if is_new and oldest_new is None:
                    oldest_new = p
                elif not is_new and oldest_old is None:
                    oldest_old = p
                else:
                    out.delete.append(p)
            if oldest_new is not None and oldest_old is not None and (
                    not is_pod_ready(oldest_old) or is_pod_available(oldest_new, min_ready, now)):
                out.delete.append(oldest_old)
        elif not keep:
            out.delete.extend(p for p in pods if not p["metadata"].get("deletionTimestamp"))
    for name, pods in node_pods.items():
        if name not in names:  # pinned to (or on) a node that is gone
            out.delete.extend(p for p in pods if not p["metadata"].get("deletionTimestamp"))
    return out


def _split_on_node(pods: list[dict], hash_: str) -> tuple[dict | None, dict | None, bool]:
    """(new pod, old pod, ok) — ok is False when a node has more than one of either
    (upstream findUpdatedPodsOnNode)."""
    new = old = None
    for p in pods:
        if p["metadata"].get("deletionTimestamp"):
            continue
        if (p["metadata"].get("labels") or {}).get(HASH_LABEL) == hash_:
            if new is not None:
                return None, None, False
            new = p
        else:
            if old is not None:
                return None, None, False
            old = p
    return new, old, True


def plan_rolling_update(ds: dict, nodes: list[dict], node_pods: dict[str, list[dict]],
                        hash_: str, now: datetime) -> tuple[list[dict], list[str]]:
    """(old pods to delete, nodes to start a new pod on) — upstream rollingUpdate."""
    min_ready = int((ds.get("spec") or {}).get("minReadySeconds") or 0)
    eligible = {n["metadata"]["name"]: should_run(ds, n)[0] for n in nodes}
    desired = sum(eligible.values())
    surge, max_unavailable = max_surge_unavailable(ds, desired)
    nodes_sorted = sorted(node_pods)
    if surge == 0:
        unavailable = 0
        replace: list[dict] = []
        candidates: list[dict] = []
        for name in nodes_sorted:
            new, old, ok = _split_on_node(node_pods[name], hash_)
            if not ok or (new is None) == (old is None):
                unavailable += 1
            elif new is not None:
                if not is_pod_available(new, min_ready, now):
                    unavailable += 1
            elif not is_pod_available(old, min_ready, now):
                replace.append(old)
            elif unavailable < max_unavailable:
                candidates.append(old)
        room = max(0, min(max_unavailable - unavailable, len(candidates)))
        return replace + candidates[:room], []
    to_delete: list[dict] = []
    allowed: list[str] = []
    candidates_nodes: list[str] = []
    surged = 0
    for name in nodes_sorted:
        new, old, ok = _split_on_node(node_pods[name], hash_)
        if not ok:
            surged += 1
            continue
        if old is None:
            continue
        if new is None:
            if not is_pod_available(old, min_ready, now):
                if eligible.get(name):
                    allowed.append(name)
                else:
                    to_delete.append(old)
            elif surged < surge:
                candidates_nodes.append(name)
        elif not is_pod_available(new, min_ready, now):
            surged += 1
        else:
            to_delete.append(old)
    room = max(0, min(surge - surged, len(candidates_nodes)))
    return to_delete, allowed + candidates_nodes[:room]


def compute_status(ds: dict, nodes: list[dict], node_pods: dict[str, list[dict]], hash_: str,
                   now: datetime) -> dict:
    """Upstream updateDaemonSetStatus: per eligible node, its oldest pod decides readiness."""
    min_ready = int((ds.get("spec") or {}).get("minReadySeconds") or 0)
    st = {"currentNumberScheduled": 0, "numberMisscheduled": 0, "desiredNumberScheduled": 0,
          "numberReady": 0, "updatedNumberScheduled": 0, "numberAvailable": 0}
    for node in nodes:
        name = node["metadata"]["name"]
        run, _ = should_run(ds, node)
        pods = node_pods.get(name) or []
        if not run:
            st["numberMisscheduled"] += bool(pods)
            continue
        st["desiredNumberScheduled"] += 1
        if not pods:
            continue
        st["currentNumberScheduled"] += 1
        pod = _by_age(pods)[0]
        if is_pod_ready(pod):
            st["numberReady"] += 1
            if is_pod_available(pod, min_ready, now):
                st["numberAvailable"] += 1
        if (pod["metadata"].get("labels") or {}).get(HASH_LABEL) == hash_:
            st["updatedNumberScheduled"] += 1
    st["numberUnavailable"] = st["desiredNumberScheduled"] - st["numberAvailable"]
    st["observedGeneration"] = ds["metadata"].get("generation") or 0
    collision = (ds.get("status") or {}).get("collisionCount")
    if collision is not None:
        st["collisionCount"] = collision
    return st


# ---- the controller -------------------------------------------------------------------------------

def _controller_uid(obj: dict) -> list[str]:
    ref = controller_of(obj)
    return [ref["uid"]] if ref and ref.get("uid") else []


def _node_view(node: dict) -> tuple:
    """What about a node can change where daemons run."""
    return ((node["metadata"].get("labels") or {}), (node.get("spec") or {}).get("taints"),
            (node.get("spec") or {}).get("unschedulable"))


class DaemonSetController(Controller):
    name = "daemonset"
    workers = 2

    def setup(self) -> None:
        self.recorder = EventRecorder(self.client, "daemonset-controller")
        self.expectations = Expectations()
        self.sets = self.factory.informer(DAEMONSETS)
        self.pods = self.factory.informer(PODS)
        self.nodes = self.factory.informer(NODES)
        self.revisions = self.factory.informer(history.REVISIONS)
        self.pods.add_index("controller-uid", _controller_uid)
        self.revisions.add_index("controller-uid", _controller_uid)
        self.sets.add_handler(self.enqueue, lambda old, new: self.enqueue(new), self._set_deleted)
        self.pods.add_handler(self._pod_added, self._pod_updated, self._pod_deleted)
        self.nodes.add_handler(self._all, self._node_updated, self._all)
        self.revisions.add_handler(None, None, lambda r: self.enqueue_owner(r, "DaemonSet"))

    def _all(self, _node: dict | None = None) -> None:
        for ds in self.sets.list():
            self.enqueue(ds)

    def _node_updated(self, old: dict, new: dict) -> None:
        if _node_view(old) != _node_view(new):
            self._all()

    def _set_deleted(self, ds: dict) -> None:
        self.expectations.delete(object_key(ds))
        self.enqueue(ds)

    def _owner_key(self, pod: dict) -> str | None:
        ref = controller_of(pod)
        if not ref or ref.get("kind") != "DaemonSet":
            return None
        return f"{pod['metadata'].get('namespace')}/{ref['name']}"

    def _pod_added(self, pod: dict) -> None:
        key = self._owner_key(pod)
        if key:
            self.expectations.creation_observed(key)
            self.queue.add(key)

    def _pod_updated(self, old: dict, pod: dict) -> None:
        key = self._owner_key(pod)
        if not key:
            return
        if pod["metadata"].get("deletionTimestamp") and not old["metadata"].get("deletionTimestamp"):
            self.expectations.deletion_observed(key, object_key(pod))
        self.queue.add(key)
        ds = self.sets.get(key)
        min_ready = ((ds or {}).get("spec") or {}).get("minReadySeconds") or 0
        if min_ready and not is_pod_ready(old) and is_pod_ready(pod):
            self.queue.add_after(key, float(min_ready))

    def _pod_deleted(self, pod: dict) -> None:
        key = self._owner_key(pod)
        if key:
            self.expectations.deletion_observed(key, object_key(pod))
            self.queue.add(key)

    @staticmethod
    def typed(obj: dict) -> dict:
        return obj if obj.get("kind") else dict(obj, apiVersion="apps/v1", kind="DaemonSet")

    # ---- reconcile ----

    async def reconcile(self, key: str) -> float | None:
        ds = self.sets.get(key)
        if ds is None:
            self.expectations.delete(key)
            return None
        ds = dict(self.typed(ds))  # a copy: the collision count may be noted on it
        try:
            selector = label_selector_from_object(ds["spec"].get("selector"))
        except SelectorError as e:
            log.error("daemonset %s: invalid selector: %s", key, e)
            return None
        ns, _ = split_key(key)
        uid = ds["metadata"]["uid"]
        pods = [p for p in self.pods.by_index("controller-uid", uid)
                if selector.matches(p["metadata"].get("labels") or {})]
        node_pods: dict[str, list[dict]] = {}
        for p in pods:
            node_pods.setdefault(target_node(p), []).append(p)
        nodes = self.nodes.list()
        now = datetime.now(timezone.utc)
        if ds["metadata"].get("deletionTimestamp"):
            return None
        current, old_revisions = await self._revisions(ds)
        hash_ = (current["metadata"].get("labels") or {}).get(HASH_LABEL) or ""
        error: Exception | None = None
        if self.expectations.satisfied(key):
            try:
                plan = plan_manage(ds, nodes, node_pods, hash_, now)
                for p in plan.failed:
                    self.recorder.event(ds, "Warning", "FailedDaemonPod",
                                        f"Found failed daemon pod {ns}/{p['metadata']['name']} on "
                                        f"node {target_node(p)}, will try to kill it")
                acted = await self._sync_nodes(ds, key, plan.delete, plan.create, hash_)
                strategy = (ds["spec"].get("updateStrategy") or {}).get("type", "RollingUpdate")
                if not acted and strategy == "RollingUpdate":
                    delete, create = plan_rolling_update(ds, nodes, node_pods, hash_, now)
                    await self._sync_nodes(ds, key, delete, create, hash_)
            except ApiError as e:
                error = e
        await self._write_status(ds, compute_status(ds, nodes, node_pods, hash_, now))
        await self._cleanup_history(ds, pods, current, old_revisions)
        if error is not None:
            raise error
        min_ready = int(ds["spec"].get("minReadySeconds") or 0)
        st = compute_status(ds, nodes, node_pods, hash_, now)
        if min_ready and st["numberReady"] != st["numberAvailable"]:
            return float(min_ready)
        return None

    async def _sync_nodes(self, ds: dict, key: str, delete: list[dict], create: list[str],
                          hash_: str) -> bool:
        """Delete then create (upstream syncNodes), with expectations for both."""
        if not delete and not create:
            return False
        meta = ds["metadata"]
        node_names = {n["metadata"]["name"] for n in self.nodes.list()}
        self.expectations.expect_deletions(key, [object_key(p) for p in delete])
        for p in delete:
            name = p["metadata"]["name"]
            gone = target_node(p) not in node_names
            try:
                # A pod on a node that no longer exists has no kubelet to confirm a graceful delete.
                await self.client.delete(PODS, name, meta["namespace"],
                                         grace_seconds=0 if gone else None)
            except ApiError as e:
                self.expectations.deletion_observed(key, object_key(p))
                if e.code == 404:
                    continue
                self.recorder.event(ds, "Warning", "FailedDelete", f"Error deleting: {e.message}")
                raise
            self.recorder.event(ds, "Normal", "SuccessfulDelete", f"Deleted pod: {name}")
        if not create:
            return True
        self.expectations.expect_creations(key, len(create))
        pending = list(create)

        async def create_one() -> None:
            node = pending.pop(0)
            try:
                pod = await self.client.create(PODS, new_daemon_pod(ds, node, hash_), meta["namespace"])
            except ApiError as e:
                self.recorder.event(ds, "Warning", "FailedCreate", f"Error creating: {e.message}")
                raise
            self.recorder.event(ds, "Normal", "SuccessfulCreate",
                                f"Created pod: {pod['metadata']['name']}")

        created, err = await slow_start_batch(len(create), create_one)
        for _ in range(len(create) - created):
            self.expectations.creation_observed(key)
        if err is not None:
            raise err
        return True

    async def _revisions(self, ds: dict) -> tuple[dict, list[dict]]:
        """(current revision, the others) — upstream constructHistory."""
        revisions = self.revisions.by_index("controller-uid", ds["metadata"]["uid"])
        data = history.template_patch(ds)
        cur = [r for r in revisions if history.canonical(r.get("data") or {}) == history.canonical(data)]
        old = [r for r in revisions if r not in cur]
        number = history.next_revision(old)
        if cur:
            current = max(cur, key=lambda r: r.get("revision") or 0)
            if (current.get("revision") or 0) < number:
                current = await history.bump_revision(self.client, current, number)
            return current, old + [r for r in cur if r is not current]
        labels = ((ds["spec"].get("template") or {}).get("metadata") or {}).get("labels") or {}
        collision = int((ds.get("status") or {}).get("collisionCount") or 0)

        def make(c: int) -> dict:
            rev = history.new_revision(ds, labels, data, number, c)
            rev["metadata"]["labels"][HASH_LABEL] = rev["metadata"]["labels"][history.HASH_LABEL]
            return rev

        current, used = await history.create_revision(self.client, ds, make(collision), collision, make)
        if used != collision:
            ds["status"] = dict(ds.get("status") or {}, collisionCount=used)
        return current, old

    async def _cleanup_history(self, ds: dict, pods: list[dict], current: dict,
                               old: list[dict]) -> None:
        live = {(p["metadata"].get("labels") or {}).get(HASH_LABEL) for p in pods}
        keep = {r["metadata"]["name"] for r in old
                if (r["metadata"].get("labels") or {}).get(HASH_LABEL) in live}
        keep.add(current["metadata"]["name"])
        limit = ds["spec"].get("revisionHistoryLimit")
        victims = history.revisions_to_delete(old, keep, 10 if limit is None else int(limit))
        await history.delete_revisions(self.client, victims)

    async def _write_status(self, ds: dict, status: dict) -> None:
        old = ds.get("status") or {}
        if all((old.get(k) or 0) == (v or 0) for k, v in status.items()):
            return
        try:
            await self.client.update_status(DAEMONSETS, dict(ds, status=status))
        except ApiError as e:
            if e.code == 409:
                self.queue.add(object_key(ds))
            elif e.code != 404:
                raise
