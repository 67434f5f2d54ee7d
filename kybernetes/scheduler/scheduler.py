"""The scheduler: informers feed the cache and the queue; one loop runs scheduling cycles
(synchronous, so the cache is the snapshot) and hands each decision to an asynchronous binding
cycle (PreBind, Bind, PostBind) with many bindings in flight."""

from __future__ import annotations

import asyncio
import logging

from kybernetes.api.errors import ApiError
from kybernetes.api.selectors import LabelSelector, label_selector_from_object
from kybernetes.client import Client, EventRecorder, InformerFactory, resource
from kybernetes.api.clock import now_rfc3339

from .cache import Cache, NodeInfo
from .config import SchedulerConfig, load
from .events import LimitedWrites
from .cycle import NodeStatuses, find_feasible, num_feasible_nodes_to_find, score_and_pick
from .framework import ERROR, SKIP, CycleState, Status, WaitingPod
from .plugins import REGISTRY
from .plugins.defaultpreemption import victim_condition
from .podinfo import PodInfo, pod_priority
from .profile import Profile
from .queue import QueuedPod, SchedulingQueue

log = logging.getLogger("kyb.scheduler")

PODS = resource("v1", "Pod")
_KINDS = {
    "Node": ("v1", "Node"), "Pod": ("v1", "Pod"), "Namespace": ("v1", "Namespace"),
    "PriorityClass": ("scheduling.k8s.io/v1", "PriorityClass"),
    "PersistentVolume": ("v1", "PersistentVolume"),
    "PersistentVolumeClaim": ("v1", "PersistentVolumeClaim"),
    "StorageClass": ("storage.k8s.io/v1", "StorageClass"),
    "PodDisruptionBudget": ("policy/v1", "PodDisruptionBudget"),
    "Service": ("v1", "Service"), "ReplicaSet": ("apps/v1", "ReplicaSet"),
    "StatefulSet": ("apps/v1", "StatefulSet"),
    "ReplicationController": ("v1", "ReplicationController"),
}
# Owners whose selector spreads their pods by default (upstream DefaultSelector's kinds).
_CONTROLLERS = {"ReplicaSet": "apps/v1", "StatefulSet": "apps/v1", "ReplicationController": "v1"}
# Below the client's 100 connections (with room for events and status writes): a binding that
# finds every connection busy waits for one under a timer of its own, which cost ~2% of the
# scheduler's CPU when 128 were allowed.
BINDS_IN_FLIGHT = 96


def fit_error_message(total: int, statuses: dict[str, Status], prefilter: Status | None,
                      post: str = "") -> str:
    """Upstream FitError.Error(): '0/N nodes are available: <sorted histogram>.' + PostFilter."""
    msg = f"0/{total} nodes are available:"
    if prefilter is not None:
        msg += f" {prefilter.message()}."
    else:
        hist: dict[str, int] = {}
        for st in statuses.values():
            for r in st.reasons:
                hist[r] = hist.get(r, 0) + 1
        msg += " " + ", ".join(sorted(f"{c} {r}" for r, c in hist.items())) + "."
    if post:
        msg += " " + post
    return msg


def _pod_changed(old: dict, new: dict) -> bool:
    om, nm = old["metadata"], new["metadata"]
    return (old.get("spec") != new.get("spec") or om.get("labels") != nm.get("labels")
            or om.get("annotations") != nm.get("annotations")
            or om.get("deletionTimestamp") != nm.get("deletionTimestamp"))


_now = now_rfc3339


def _without_managed_fields(pod: dict) -> dict:
    pod.get("metadata", {}).pop("managedFields", None)
    return pod


class Scheduler:
    def __init__(self, client: Client, config: SchedulerConfig | None = None):
        self.client = client
        self.config = config or load()
        self.factory = InformerFactory(client)
        self.recorder = EventRecorder(LimitedWrites(client), "default-scheduler")
        self.cache = Cache()
        self.informers = {k: self.factory.informer(resource(*v)) for k, v in _KINDS.items()
                          if k != "Pod"}
        self.informers["Pod"] = self.factory.informer(
            PODS, field_selector="status.phase!=Succeeded,status.phase!=Failed")
        # As upstream's newPodInformer: the scheduler never reads managedFields (it only
        # patches pods); they are about half the dicts and lists of a small pod.
        self.informers["Pod"].set_transform(_without_managed_fields)
        self.profiles = {p.scheduler_name: Profile(p, self) for p in self.config.profiles}
        first = next(iter(self.profiles.values()))
        self.queue = SchedulingQueue(first.sort_key, self.config.initial_backoff,
                                     self.config.max_backoff,
                                     events_of=lambda name: REGISTRY[name].events
                                     if name in REGISTRY else ())
        self.priorities: dict[str, int] = {}
        self.default_priority = 0
        self.nominated: dict[str, dict[str, PodInfo]] = {}   # node → pods nominated to it
        self._nominated_to: dict[str, str] = {}              # pod key → its nominated node
        self._next_start = 0
        self._reps: dict = {}
        self._binds = asyncio.Semaphore(BINDS_IN_FLIGHT)
        self._tasks: set[asyncio.Task] = set()
        self.waiting: dict[str, WaitingPod] = {}   # uid → pod held by Permit, all profiles
        self.scheduled = 0

    # ---- handle for plugins ----

    def get(self, kind: str, key: str) -> dict | None:
        return self.informers[kind].get(key)

    def list(self, kind: str) -> list[dict]:
        return self.informers[kind].list()

    def resource(self, kind: str):
        return resource(*_KINDS[kind])

    def namespace_labels(self) -> dict[str, dict]:
        return {ns["metadata"]["name"]: ns["metadata"].get("labels") or {}
                for ns in self.informers["Namespace"].list()}

    def get_waiting_pod(self, uid: str) -> WaitingPod | None:
        return self.waiting.get(uid)

    def iterate_over_waiting_pods(self, fn) -> None:
        for wp in list(self.waiting.values()):
            fn(wp)

    def reject_waiting_pod(self, uid: str) -> bool:
        wp = self.waiting.get(uid)
        if wp is None:
            return False
        wp.reject("", "removed")
        return True

    def framework_for(self, pi: PodInfo) -> Profile:
        return self.profiles[pi.spec.get("schedulerName") or "default-scheduler"]

    def default_selector(self, pi: PodInfo) -> LabelSelector | None:
        """Upstream DefaultSelector: services selecting the pod, and its controller's selector."""
        reqs = []
        for svc in self.informers["Service"].by_index("namespace", pi.namespace):
            sel = (svc.get("spec") or {}).get("selector")
            if sel and all(pi.labels.get(k) == v for k, v in sel.items()):
                reqs.extend(label_selector_from_object({"matchLabels": sel}).requirements)
        for ref in pi.pod["metadata"].get("ownerReferences") or ():
            if ref.get("controller") and _CONTROLLERS.get(ref.get("kind")) == ref.get("apiVersion"):
                owner = self.get(ref["kind"], f"{pi.namespace}/{ref['name']}")
                if owner is not None:
                    sel = owner["spec"].get("selector")
                    if ref["kind"] == "ReplicationController":
                        sel = {"matchLabels": sel} if sel else None
                    if sel:
                        reqs.extend(label_selector_from_object(sel).requirements)
        return LabelSelector(reqs) if reqs else None

    # ---- informer events ----

    def _priority(self, pod: dict) -> int:
        return pod_priority(pod, self.priorities, self.default_priority)

    def _ours(self, pod: dict) -> bool:
        return (pod["spec"].get("schedulerName") or "default-scheduler") in self.profiles

    def _on_pod_add(self, pod: dict, pi: PodInfo | None = None) -> None:
        if pi is None:
            pi = PodInfo(pod, self._priority(pod))
        if pi.node_name:
            self.cache.add_pod(pi)
            self.queue.delete(pi.key)
            self._unnominate(pi.key)
            if self.queue.unschedulable:
                self.queue.on_event("Pod/Add")
        elif not pi.terminating and self._ours(pod):
            self.queue.add(pi, gated=self._gated(pi))
            self._nominate(pi)

    def _on_pod_update(self, old: dict, pod: dict) -> None:
        if pod["spec"].get("nodeName"):
            was = bool(old["spec"].get("nodeName"))
            self._on_pod_add(pod, None if was else self._confirmed(old, pod))
            if was and self.queue.unschedulable:
                self.queue.on_event("Pod/Update")
            return
        pi = PodInfo(pod, self._priority(pod))
        if pi.terminating or not self._ours(pod):
            self.queue.delete(pi.key)
            return
        if self.cache.is_assumed(pi.key):
            return   # our own binding is on its way; the informer hasn't seen it yet
        if not _pod_changed(old, pod):
            # Status-only writes (ours included) don't make a pod schedulable (upstream isPodUpdated).
            qp = self.queue.pods.get(pi.key)
            if qp is not None:
                qp.info = pi
            self._nominate(pi)
            return
        self.queue.update(pi, gated=self._gated(pi))
        self._nominate(pi)

    def _confirmed(self, old: dict, pod: dict) -> PodInfo | None:
        """The informer's view of our own binding: reuse the assumed PodInfo when nothing but
        nodeName (and status) changed, instead of parsing the pod again."""
        key = f"{pod['metadata'].get('namespace')}/{pod['metadata']['name']}"
        assumed = self.cache.pod(key) if self.cache.is_assumed(key) else None
        if assumed is None or assumed.uid != pod["metadata"].get("uid", ""):
            return None
        om, nm, os_ = old["metadata"], pod["metadata"], old["spec"]
        if (om.get("labels") != nm.get("labels")
                or om.get("deletionTimestamp") != nm.get("deletionTimestamp")
                or len(os_) + 1 != len(pod["spec"])):
            return None
        ns_ = dict(pod["spec"])
        del ns_["nodeName"]
        if ns_ != os_:       # one comparison in C rather than one per field in Python
            return None
        return assumed.with_pod(pod)

    def _on_pod_delete(self, pod: dict) -> None:
        key = f"{pod['metadata'].get('namespace')}/{pod['metadata']['name']}"
        if self.waiting:
            self.reject_waiting_pod(pod["metadata"].get("uid", ""))
        self.queue.delete(key)
        self._unnominate(key)
        if self.cache.remove_pod(key) is not None and self.queue.unschedulable:
            self.queue.on_event("Pod/Delete")

    def _gated(self, pi: PodInfo) -> bool:
        return self.framework_for(pi).run_pre_enqueue(pi) is not None

    def _nominate(self, pi: PodInfo) -> None:
        self._unnominate(pi.key)
        node = (pi.pod.get("status") or {}).get("nominatedNodeName")
        if node:
            self.nominated.setdefault(node, {})[pi.key] = pi
            self._nominated_to[pi.key] = node

    def _unnominate(self, key: str) -> None:
        node = self._nominated_to.pop(key, None)
        if node is not None:
            pods = self.nominated[node]
            del pods[key]
            if not pods:
                del self.nominated[node]

    def _on_node_add(self, node: dict) -> None:
        self.cache.add_node(node)
        self.queue.on_event("Node/Add")

    def _on_node_update(self, old: dict, node: dict) -> None:
        self.cache.update_node(node)
        o, n = old, node
        if ((o["metadata"].get("labels") != n["metadata"].get("labels"))
                or (o.get("spec") != n.get("spec"))
                or ((o.get("status") or {}).get("allocatable") != (n.get("status") or {}).get("allocatable"))):
            self.queue.on_event("Node/Update")

    def _on_node_delete(self, node: dict) -> None:
        self.cache.remove_node(node["metadata"]["name"])

    def _on_priority_class(self, *objs) -> None:
        pcs = self.informers["PriorityClass"].list()
        self.priorities = {pc["metadata"]["name"]: pc.get("value", 0) for pc in pcs}
        self.default_priority = next((pc.get("value", 0) for pc in pcs if pc.get("globalDefault")), 0)

    def _on_other(self, kind: str):
        def add(obj):
            self.queue.on_event(f"{kind}/Add")

        def update(old, obj):
            self.queue.on_event(f"{kind}/Update")
        return add, update, None

    def setup(self) -> None:
        pc = self._on_priority_class
        self.informers["PriorityClass"].add_handler(pc, lambda o, n: pc(), pc)
        self.informers["Node"].add_handler(self._on_node_add, self._on_node_update, self._on_node_delete)
        self.informers["Pod"].add_handler(self._on_pod_add, self._on_pod_update, self._on_pod_delete)
        for kind in ("PersistentVolume", "PersistentVolumeClaim", "StorageClass"):
            self.informers[kind].add_handler(*self._on_other(kind))

    # ---- the loop ----

    async def run(self) -> None:
        self.setup()
        # Priority classes first, so the pods' priorities are right when they arrive.
        self.informers["PriorityClass"].start()
        await self.informers["PriorityClass"].synced.wait()
        self.factory.start()
        await self.factory.wait_for_sync()
        log.info("scheduler synced: %d nodes, %d pods queued", len(self.cache.node_list), len(self.queue))
        flusher = asyncio.create_task(self._flush_loop())
        try:
            while True:
                qp = await self.queue.pop()
                try:
                    self.schedule_one(qp)
                except Exception:
                    log.exception("scheduling %s", qp.info.key)
                    self.queue.requeue(qp, set(), error=True)
                await asyncio.sleep(0)   # let informers and bindings run between pods
        finally:
            flusher.cancel()
            for t in list(self._tasks):
                t.cancel()
            await asyncio.gather(flusher, *self._tasks, return_exceptions=True)
            await self.factory.stop()
            await self.recorder.flush()

    async def _flush_loop(self) -> None:
        while True:
            await asyncio.sleep(30)
            self.queue.flush_unschedulable()

    def _spawn(self, coro) -> None:
        t = asyncio.get_running_loop().create_task(coro)
        self._tasks.add(t)
        t.add_done_callback(self._tasks.discard)

    def find_nodes(self, fw: Profile, state: CycleState, pi: PodInfo,
                   statuses: NodeStatuses) -> list[NodeInfo]:
        nodes = self.cache.node_list
        total = len(nodes)
        want = num_feasible_nodes_to_find(
            fw.percentage if fw.percentage is not None else self.config.percentage_of_nodes_to_score,
            total)
        start = self._next_start % total if total else 0
        nominated = self.nominated

        def with_nominated(ni: NodeInfo) -> NodeInfo:
            return self._with_nominated(ni, pi) if ni.name in nominated else ni
        feasible, processed, self._reps = find_feasible(state["filters"], state, pi, nodes, start,
                                                        want, statuses,
                                                        with_nominated if nominated else None,
                                                        sids=self.cache.sids,
                                                        column=self.cache.column)
        self._next_start = (start + processed) % total if total else 0
        return feasible

    def _with_nominated(self, ni: NodeInfo, pi: PodInfo) -> NodeInfo:
        others = [p for k, p in self.nominated[ni.name].items()
                  if k != pi.key and p.priority >= pi.priority and k not in ni.pods]
        if not others:
            return ni
        c = ni.clone()
        for p in others:
            c.add_pod(p)
        return c

    def schedule_one(self, qp: QueuedPod) -> None:
        pi = qp.info
        fw = self.framework_for(pi)
        state = CycleState()
        statuses = NodeStatuses()
        nodes = self.cache.node_list
        if not nodes:
            self._fail(qp, fw, state, "0/0 nodes are available: no nodes available to schedule pods.",
                       set(["NodeResourcesFit"]), statuses, run_post=False)
            return
        st = fw.run_pre_filter(state, pi, nodes)
        if st is not None:
            if st.code == ERROR:
                self._fail(qp, fw, state, st.message(), set(), statuses, error=True)
                return
            for ni in nodes:
                statuses[ni.name] = st
            self._fail(qp, fw, state, fit_error_message(len(nodes), statuses, st), {st.plugin},
                       statuses)
            return
        feasible = self.find_nodes(fw, state, pi, statuses)
        if not feasible:
            rejectors = {s.plugin for s in statuses.values()}
            self._fail(qp, fw, state, None, rejectors, statuses)
            return
        if len(feasible) == 1:
            host = feasible[0]      # upstream skips scoring when one node fits
        else:
            host = score_and_pick(fw.scorers(state, pi, feasible), state, pi, feasible,
                                  self._reps)
        node_name = host.name
        self.cache.assume(pi, node_name)
        for p in fw.reserve:
            st = p.reserve(state, pi, node_name)
            if st is not None:
                self._unreserve(fw, state, pi, node_name)
                self._fail(qp, fw, state, st.message(), {p.name}, statuses, error=True)
                return
        wp = None
        if fw.permit:
            st, waits = fw.run_permit(state, pi, node_name)
            if st is not None:
                self._unreserve(fw, state, pi, node_name)
                if st.rejected:   # upstream: a FitError over the one suggested node
                    statuses = NodeStatuses()
                    statuses[node_name] = st
                    self._fail(qp, fw, state, fit_error_message(1, statuses, None), {st.plugin},
                               statuses, run_post=False)
                else:
                    self._fail(qp, fw, state, st.message(), set(), statuses, error=True)
                return
            if waits:
                wp = self.waiting[pi.uid] = WaitingPod(pi, waits)
        if wp is None:
            self.queue.done(pi.key)
        # else it stays in flight in the queue until allowed, as upstream's does until Done
        self._spawn(self._binding_cycle(fw, state, qp, node_name, wp))

    def _unreserve(self, fw: Profile, state, pi: PodInfo, node: str) -> None:
        for p in reversed(fw.reserve):
            un = getattr(p, "unreserve", None)
            if un:
                un(state, pi, node)
        self.cache.forget(pi.key)

    async def _binding_cycle(self, fw: Profile, state, qp: QueuedPod, node: str,
                             wp: WaitingPod | None = None) -> None:
        pi = qp.info
        if wp is not None:
            # Upstream WaitOnPermit, outside the bind slots: only bindings hold those.
            try:
                st = await wp.result
            finally:
                wp.stop()
                if self.waiting.get(pi.uid) is wp:
                    del self.waiting[pi.uid]
            if st is not None:
                self._binding_failed(fw, state, qp, node, st)
                return
            self.queue.done(pi.key)
        async with self._binds:
            st = None
            for p in fw.pre_bind:
                st = await p.pre_bind(state, pi, node)
                if st is not None:
                    break
            if st is None:
                for p in fw.bind:
                    st = await p.bind(state, pi, node)
                    if st is None or st.code != SKIP:
                        break
        if st is not None:
            log.info("binding %s to %s failed: %s", pi.key, node, st.message())
            self._binding_failed(fw, state, qp, node,
                                 Status(ERROR, f"Binding rejected: {st.message()}"))
            return
        self.scheduled += 1
        self.recorder.event(pi.pod, "Normal", "Scheduled",
                            f"Successfully assigned {pi.key} to {node}")
        for p in fw.post_bind:
            p.post_bind(state, pi, node)

    # ---- failures ----

    def _binding_failed(self, fw: Profile, state, qp: QueuedPod, node: str, st: Status) -> None:
        """Upstream handleBindingCycleError: Unreserve and forget the assumed pod, whose room
        may let other pods fit (a Pod/Delete for them, not for it), then requeue it: rejected
        (by Permit) as unschedulable, an error with backoff."""
        pi = qp.info
        alive = self.cache.is_assumed(pi.key)   # not deleted (nor seen bound) meanwhile
        self._unreserve(fw, state, pi, node)
        if alive:
            rejected = st.rejected
            self.queue.readd(qp, {st.plugin} if rejected else set(), error=not rejected)
            msg = st.message()
            self.recorder.event(pi.pod, "Warning", "FailedScheduling", msg)
            self._spawn(self._set_unschedulable(pi, msg, None,
                                                "Unschedulable" if rejected else "SchedulerError"))
        if self.queue.unschedulable:
            self.queue.on_event("Pod/Delete", skip=pi.key)

    def _fail(self, qp: QueuedPod, fw: Profile, state, message: str | None, rejectors: set[str],
              statuses: dict[str, Status], error: bool = False, run_post: bool = True) -> None:
        pi = qp.info
        nominated = None
        post_msg = ""
        if message is None or (run_post and not error and statuses):
            for p in fw.post_filter:
                cand, st = p.post_filter(state, pi, statuses)
                if cand is not None:
                    nominated = cand
                    break
                if st is not None:
                    post_msg = st.message()
        if message is None:
            message = fit_error_message(len(self.cache.node_list), statuses, None, post_msg)
        if nominated is not None:
            self._spawn(self._preempt(fw, pi, nominated))
        self.queue.requeue(qp, rejectors, error=error or nominated is not None)
        self.recorder.event(pi.pod, "Warning", "FailedScheduling", message)
        self._spawn(self._set_unschedulable(pi, message,
                                            nominated.node if nominated is not None else None))

    async def _set_unschedulable(self, pi: PodInfo, message: str, nominated: str | None,
                                 reason: str = "Unschedulable") -> None:
        cond = {"type": "PodScheduled", "status": "False", "reason": reason,
                "message": message, "lastProbeTime": None, "lastTransitionTime": _now()}
        status: dict = {"conditions": [cond]}
        if nominated:
            status["nominatedNodeName"] = nominated
        try:
            await self.client.patch(PODS, pi.name, {"status": status}, pi.namespace,
                                    type="strategic", subresource="status")
        except ApiError as e:
            log.debug("status of %s: %s", pi.key, e)

    async def _preempt(self, fw: Profile, pi: PodInfo, cand) -> None:
        """Victims get a DisruptionTarget condition and are deleted; lower-priority pods
        nominated to the same node lose their nomination (upstream prepareCandidate)."""
        for v in cand.victims:
            try:
                await self.client.patch(PODS, v.name, {"status": {"conditions": [
                    victim_condition(fw.name)]}}, v.namespace, type="strategic", subresource="status")
                await self.client.delete(PODS, v.name, v.namespace)
                self.recorder.event(v.pod, "Normal", "Preempted",
                                    f"Preempted by pod {pi.uid} on node {cand.node}")
            except ApiError as e:
                if e.code != 404:
                    log.info("preempting %s: %s", v.key, e)
        for key, other in list(self.nominated.get(cand.node, {}).items()):
            if other.priority < pi.priority and key != pi.key:
                try:
                    await self.client.patch(PODS, other.name, {"status": {"nominatedNodeName": None}},
                                            other.namespace, type="merge", subresource="status")
                except ApiError:
                    pass


