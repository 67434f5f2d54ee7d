"""Namespace controller: empties a namespace being deleted, then releases it (upstream
pkg/controller/namespace/deletion/namespaced_resources_deleter.go).

For a namespace with a deletionTimestamp: make sure status.phase is Terminating; delete every
namespaced resource in it (deletecollection per resource where supported, else one by one);
report progress in the namespace's deletion conditions; once nothing is left, PUT
namespaces/NAME/finalize without "kubernetes" in spec.finalizers — the API server removes the
namespace when no finalizer is left. Pods with a grace period are waited for (the kubelet
confirms their deletion); other leftovers are retried with backoff, as upstream does.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
from dataclasses import dataclass, field

from kybernetes.api.errors import ApiError
from kybernetes.api.registry import Resource
from kybernetes.client import Controller, resource, split_key
from kybernetes.client.discovery import preferred_resources, supports
from kybernetes.api.clock import now_rfc3339

log = logging.getLogger(__name__)

NAMESPACES = resource("v1", "Namespace")
PODS = resource("v1", "Pod")
FINALIZER = "kubernetes"
FINALIZER_ESTIMATE_SECONDS = 15  # upstream's guess for objects held by finalizers

DISCOVERY_FAILURE = "NamespaceDeletionDiscoveryFailure"
GV_PARSING_FAILURE = "NamespaceDeletionGroupVersionParsingFailure"
CONTENT_FAILURE = "NamespaceDeletionContentFailure"
CONTENT_REMAINING = "NamespaceContentRemaining"
FINALIZERS_REMAINING = "NamespaceFinalizersRemaining"
CONDITION_TYPES = (DISCOVERY_FAILURE, GV_PARSING_FAILURE, CONTENT_FAILURE, CONTENT_REMAINING,
                   FINALIZERS_REMAINING)
OK_CONDITIONS = {
    DISCOVERY_FAILURE: ("ResourcesDiscovered", "All resources successfully discovered"),
    GV_PARSING_FAILURE: ("ParsedGroupVersions", "All legacy kube types successfully parsed"),
    CONTENT_FAILURE: ("ContentDeleted", "All content successfully deleted, may be waiting on finalization"),
    CONTENT_REMAINING: ("ContentRemoved", "All content successfully removed"),
    FINALIZERS_REMAINING: ("ContentHasNoFinalizers", "All content-preserving finalizers finished"),
}


_now = now_rfc3339


def _parse_time(ts: str) -> dt.datetime:
    return dt.datetime.strptime(ts, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=dt.timezone.utc)


def gvr_string(r: Resource) -> str:
    """GroupVersionResource as Go prints it in upstream's error messages."""
    return f"{r.group}/{r.version}, Resource={r.plural}"


# ---- pure parts ----

@dataclass
class Remaining:
    """What is left in a namespace after one deletion pass."""
    estimate: int = 0
    by_resource: dict[str, int] = field(default_factory=dict)   # "plural.group" → count
    by_finalizer: dict[str, int] = field(default_factory=dict)
    errors: list[str] = field(default_factory=list)
    discovery_error: str | None = None

    def add(self, r: Resource, items: list[dict], estimate: int) -> None:
        if items:
            self.by_resource[f"{r.plural}.{r.group}"] = len(items)
        for item in items:
            for f in item["metadata"].get("finalizers") or []:
                self.by_finalizer[f] = self.by_finalizer.get(f, 0) + 1
        self.estimate = max(self.estimate, estimate)


def remaining_for(r: Resource, items: list[dict], grace_estimate: int, namespace: str) -> tuple[int, str | None]:
    """Upstream's verdict on what a resource left behind: (estimate seconds, error or None).
    Pods still within their grace period are expected; objects held by finalizers get the
    default estimate; anything else left over is an error (retried)."""
    if not items or grace_estimate:
        return grace_estimate, None
    if any(item["metadata"].get("finalizers") for item in items):
        return FINALIZER_ESTIMATE_SECONDS, None
    return 0, f"unexpected items still remain in namespace: {namespace} for gvr: {gvr_string(r)}"


def pod_grace_estimate(pods: list[dict], deleted_at: dt.datetime, now: dt.datetime) -> int:
    """Longest grace period of non-terminal pods, or 0 once that long has passed since the
    namespace's deletion (upstream estimateGracefulTerminationForPods)."""
    estimate = 0
    for pod in pods:
        if (pod.get("status") or {}).get("phase") in ("Succeeded", "Failed"):
            continue
        grace = (pod.get("spec") or {}).get("terminationGracePeriodSeconds")
        if grace is not None:
            estimate = max(estimate, int(grace))
    if (now - deleted_at).total_seconds() >= estimate:
        return 0
    return estimate


def desired_conditions(rem: Remaining) -> dict[str, tuple[str, str, str]]:
    """Condition type → (status, reason, message) for every condition the controller owns."""
    out = {t: ("False", *OK_CONDITIONS[t]) for t in CONDITION_TYPES}
    if rem.discovery_error:
        out[DISCOVERY_FAILURE] = ("True", "DiscoveryFailed", rem.discovery_error)
    if rem.errors:
        msgs = sorted(rem.errors)
        out[CONTENT_FAILURE] = ("True", "ContentDeletionFailed",
                                f"Failed to delete all resource types, {len(msgs)} remaining: "
                                + ", ".join(msgs))
    parts = sorted(f"{gr} has {n} resource instances" for gr, n in rem.by_resource.items() if n)
    if parts:
        out[CONTENT_REMAINING] = ("True", "SomeResourcesRemain",
                                  "Some resources are remaining: " + ", ".join(parts))
    fins = sorted(f"{f} in {n} resource instances" for f, n in rem.by_finalizer.items() if n)
    if fins:
        out[FINALIZERS_REMAINING] = ("True", "SomeFinalizersRemain",
                                     "Some content in the namespace has finalizers remaining: "
                                     + ", ".join(fins))
    return out


def merge_conditions(current: list[dict], desired: dict[str, tuple[str, str, str]],
                     now: str) -> tuple[list[dict], bool]:
    """Apply `desired` to the namespace's conditions; lastTransitionTime moves only when the
    status flips. Returns (conditions, changed)."""
    out = [dict(c) for c in current]
    changed = False
    for ctype in CONDITION_TYPES:
        status, reason, message = desired[ctype]
        old = next((c for c in out if c.get("type") == ctype), None)
        if old is None:
            out.append({"type": ctype, "status": status, "lastTransitionTime": now,
                        "reason": reason, "message": message})
            changed = True
        elif (old.get("status"), old.get("reason"), old.get("message")) != (status, reason, message):
            if old.get("status") != status:
                old["lastTransitionTime"] = now
            old.update(status=status, reason=reason, message=message)
            changed = True
    return out, changed


def finalized_spec(finalizers: list[str]) -> list[str]:
    return sorted({f for f in finalizers if f != FINALIZER})


# ---- the controller ----

class NamespaceController(Controller):
    name = "namespace"
    workers = 4

    def setup(self) -> None:
        self.namespaces = self.factory.informer(NAMESPACES)
        self.namespaces.add_handler(self._changed, lambda old, new: self._changed(new), None)

    def _changed(self, ns: dict) -> None:
        if ns["metadata"].get("deletionTimestamp"):
            self.enqueue(ns)

    async def reconcile(self, key: str) -> float | None:
        _, name = split_key(key)
        try:
            ns = await self.client.get(NAMESPACES, name)  # latest: others edit it too
        except ApiError as e:
            if e.code == 404:
                return None
            raise
        meta = ns["metadata"]
        if not meta.get("deletionTimestamp"):
            return None
        status = ns.setdefault("status", {})
        if status.get("phase") != "Terminating":
            status["phase"] = "Terminating"
            ns = await self.client.update_status(NAMESPACES, ns)
        if FINALIZER not in ((ns.get("spec") or {}).get("finalizers") or []):
            return None
        rem = await self.delete_content(name, _parse_time(meta["deletionTimestamp"]))
        conditions, changed = merge_conditions((ns.get("status") or {}).get("conditions") or [],
                                               desired_conditions(rem), _now())
        if changed:
            ns["status"]["conditions"] = conditions
            try:
                ns = await self.client.update_status(NAMESPACES, ns)
            except ApiError as e:
                log.warning("namespace %s: status conditions not updated: %s", name, e)
                if e.code == 409:
                    ns = await self.client.get(NAMESPACES, name)
        if rem.errors or rem.discovery_error:
            raise ApiError(500, "InternalError", "; ".join(rem.errors or [rem.discovery_error]))
        if rem.estimate > 0:
            return rem.estimate / 2 + 1
        ns["spec"]["finalizers"] = finalized_spec(ns["spec"].get("finalizers") or [])
        try:
            await self.client.update(NAMESPACES, ns, subresource="finalize")
        except ApiError as e:
            if e.code != 404:
                raise
        log.info("namespace %s: content removed, finalized", name)
        return None

    async def delete_content(self, namespace: str, deleted_at: dt.datetime) -> Remaining:
        rem = Remaining()
        try:
            resources, failed = await preferred_resources(self.client)
        except ApiError as e:
            rem.discovery_error = str(e)
            return rem
        if failed:
            rem.discovery_error = (f"Discovery failed for some groups, {len(failed)} failing: "
                                   f"unable to retrieve the complete list of server APIs: "
                                   + ", ".join(f"{gv}: the server is currently unable to handle the request"
                                               for gv in failed))
        deletable = [r for r in resources if r.namespaced and supports(r, "delete")]
        sem = asyncio.Semaphore(8)

        async def one(r: Resource) -> None:
            async with sem:
                try:
                    items, estimate = await self._delete_resource(r, namespace, deleted_at)
                except ApiError as e:
                    rem.errors.append(f"{gvr_string(r)}: {e}")
                    return
                estimate, err = remaining_for(r, items, estimate, namespace)
                rem.add(r, items, estimate)
                if err:
                    rem.errors.append(err)

        await asyncio.gather(*(one(r) for r in deletable))
        return rem

    async def _delete_resource(self, r: Resource, namespace: str,
                               deleted_at: dt.datetime) -> tuple[list[dict], int]:
        """Delete everything of one resource; returns (items still there, grace estimate)."""
        estimate = 0
        if r.group == "" and r.plural == "pods":
            pods, _ = await self.client.list_all(PODS, namespace)
            estimate = pod_grace_estimate(pods, deleted_at, dt.datetime.now(dt.timezone.utc))
        # Background propagation: the garbage collector must not add orphan finalizers here.
        opts = {"kind": "DeleteOptions", "apiVersion": "v1", "propagationPolicy": "Background"}
        path = self.client.path(r, namespace)
        if supports(r, "deletecollection"):
            await self._ignoring_absent(self.client.request("DELETE", path, body=opts))
        elif supports(r, "list"):
            items, _ = await self.client.list_all(r, namespace)
            for item in items:
                await self._ignoring_absent(self.client.request(
                    "DELETE", self.client.path(r, namespace, item["metadata"]["name"]), body=opts))
        if not supports(r, "list"):
            return [], estimate
        items, _ = await self.client.list_all(r, namespace)
        return items, estimate

    @staticmethod
    async def _ignoring_absent(call) -> None:
        try:
            await call
        except ApiError as e:
            if e.code not in (404, 405):
                raise
