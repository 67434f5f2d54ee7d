"""The garbage collector's owner → dependents graph and its pure decisions.

Nodes are keyed by uid. An owner that is referenced but not (yet) observed has no node; its
dependents are still indexed under its uid, so they can be found when it turns out to be gone.
Nothing here does I/O: the controller feeds observed metadata in and acts on the plans out.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from kybernetes.api.registry import Resource

ORPHAN = "orphan"
FOREGROUND = "foregroundDeletion"

# Owner states, as upstream's classifyReferences names them.
SOLID = "solid"          # exists with the referenced uid and is not waiting for its dependents
DANGLING = "dangling"    # absent, or the name now belongs to another uid
WAITING = "waiting"      # being deleted in the foreground: dependents must go first


@dataclass(slots=True)
class Node:
    uid: str
    resource: Resource
    namespace: str | None
    name: str
    owners: list[dict] = field(default_factory=list)
    deleting: bool = False
    finalizers: tuple[str, ...] = ()

    @property
    def deleting_dependents(self) -> bool:
        return self.deleting and FOREGROUND in self.finalizers

    @property
    def orphaning(self) -> bool:
        return self.deleting and ORPHAN in self.finalizers

    def owner_uids(self) -> set[str]:
        return {r["uid"] for r in self.owners if r.get("uid")}

    def blocks(self, owner_uid: str) -> bool:
        return any(r.get("uid") == owner_uid and r.get("blockOwnerDeletion")
                   for r in self.owners)


def node_from_meta(r: Resource, meta: dict) -> Node:
    return Node(uid=meta["uid"], resource=r, namespace=meta.get("namespace") or None,
                name=meta["name"], owners=list(meta.get("ownerReferences") or []),
                deleting=bool(meta.get("deletionTimestamp")),
                finalizers=tuple(meta.get("finalizers") or ()))


class Graph:
    def __init__(self) -> None:
        self.nodes: dict[str, Node] = {}
        self._dependents: dict[str, set[str]] = {}

    def __len__(self) -> int:
        return len(self.nodes)

    def get(self, uid: str) -> Node | None:
        return self.nodes.get(uid)

    def upsert(self, node: Node) -> Node | None:
        """Insert or replace; returns the previous node."""
        old = self.nodes.get(node.uid)
        if old is not None:
            self._unlink(old)
        self.nodes[node.uid] = node
        for owner in node.owner_uids():
            self._dependents.setdefault(owner, set()).add(node.uid)
        return old

    def remove(self, uid: str) -> Node | None:
        old = self.nodes.pop(uid, None)
        if old is not None:
            self._unlink(old)
        return old

    def _unlink(self, node: Node) -> None:
        for owner in node.owner_uids():
            deps = self._dependents.get(owner)
            if deps is not None:
                deps.discard(node.uid)
                if not deps:
                    del self._dependents[owner]

    def dependents(self, uid: str) -> list[Node]:
        return [self.nodes[d] for d in self._dependents.get(uid, ()) if d in self.nodes]

    def blocking_dependents(self, uid: str) -> list[Node]:
        """Dependents whose reference to `uid` has blockOwnerDeletion: a foreground deletion
        of `uid` waits until they are gone."""
        return [d for d in self.dependents(uid) if d.blocks(uid)]


# ---- pure decisions ----

def owner_state(ref: dict, live_meta: dict | None) -> str:
    """Classify one owner reference from a live read of the owner (None: not found)."""
    if live_meta is None or live_meta.get("uid") != ref.get("uid"):
        return DANGLING
    if live_meta.get("deletionTimestamp") and FOREGROUND in (live_meta.get("finalizers") or ()):
        return WAITING
    return SOLID


@dataclass(frozen=True)
class Plan:
    """What to do with a dependent: nothing, drop some owner references, or delete it."""
    action: str                       # "none" | "remove-owners" | "delete"
    owners: tuple[str, ...] = ()      # uids to drop (remove-owners) or unblock (delete)
    policy: str | None = None         # propagationPolicy of the delete


def plan_dependent(refs: list[dict], states: dict[str, str], has_dependents: bool,
                   finalizers: tuple[str, ...] | list[str], *,
                   dependent_deleting_dependents: bool = False) -> Plan:
    """Upstream attemptToDeleteItem's decision for an object with owner references.

    - some owner solid: keep the object, drop references to dangling/waiting owners;
    - an owner waits for its dependents and this object has dependents of its own: delete it
      in the foreground too; if one of those is itself deleting its dependents (a possible
      cycle), first unblock this object's references to the waiting owners;
    - otherwise delete it, honouring an orphan/foreground finalizer it already carries.
    """
    uids = [r["uid"] for r in refs if r.get("uid")]
    solid = [u for u in uids if states.get(u) == SOLID]
    dangling = [u for u in uids if states.get(u) == DANGLING]
    waiting = [u for u in uids if states.get(u) == WAITING]
    if solid:
        drop = tuple(dangling + waiting)
        return Plan("remove-owners", drop) if drop else Plan("none")
    if waiting and has_dependents:
        return Plan("delete", tuple(waiting) if dependent_deleting_dependents else (),
                    "Foreground")
    if ORPHAN in finalizers:
        return Plan("delete", (), "Orphan")
    if FOREGROUND in finalizers:
        return Plan("delete", (), "Foreground")
    return Plan("delete", (), "Background")


def without_owners(refs: list[dict], uids: set[str] | tuple[str, ...]) -> list[dict]:
    return [r for r in refs if r.get("uid") not in uids]


def unblocked(refs: list[dict], uids: set[str] | tuple[str, ...]) -> list[dict]:
    return [dict(r, blockOwnerDeletion=False) if r.get("uid") in uids and r.get("blockOwnerDeletion")
            else r for r in refs]


def owner_refs_patch(meta: dict, new_refs: list[dict]) -> list[dict]:
    """A JSON patch replacing ownerReferences, guarded by the uid and resourceVersion read."""
    ops = [{"op": "test", "path": "/metadata/uid", "value": meta["uid"]},
           {"op": "test", "path": "/metadata/resourceVersion", "value": meta["resourceVersion"]}]
    if new_refs:
        ops.append({"op": "replace", "path": "/metadata/ownerReferences", "value": new_refs})
    else:
        ops.append({"op": "remove", "path": "/metadata/ownerReferences"})
    return ops


def finalizer_patch(meta: dict, finalizer: str) -> list[dict] | None:
    """A JSON patch removing one finalizer (None if absent), guarded like owner_refs_patch."""
    current = list(meta.get("finalizers") or [])
    if finalizer not in current:
        return None
    rest = [f for f in current if f != finalizer]
    ops = [{"op": "test", "path": "/metadata/uid", "value": meta["uid"]},
           {"op": "test", "path": "/metadata/resourceVersion", "value": meta["resourceVersion"]}]
    if rest:
        ops.append({"op": "replace", "path": "/metadata/finalizers", "value": rest})
    else:
        ops.append({"op": "remove", "path": "/metadata/finalizers"})
    return ops


def needs_attention(node: Node, graph: Graph) -> bool:
    """Whether a dependent must be looked at (with live reads): an owner is unknown to the
    graph, is a different object than referenced, or is waiting for its dependents."""
    for ref in node.owners:
        owner = graph.get(ref.get("uid", ""))
        if owner is None or owner.deleting_dependents:
            return True
        if owner.name != ref.get("name") or owner.resource.kind != ref.get("kind"):
            return True
        if owner.resource.namespaced and owner.namespace != node.namespace:
            return True
    return False


def ref_string(ref: dict, namespace: str | None) -> str:
    """objectReference as upstream prints it in OwnerRefInvalidNamespace events."""
    return (f"[{ref.get('apiVersion')}/{ref.get('kind')}, namespace: {namespace or ''}, "
            f"name: {ref.get('name')}, uid: {ref.get('uid')}]")
