"""ControllerRevisions: the template history of StatefulSets and DaemonSets.

Like upstream pkg/controller/history: a revision stores `data` = the patch that restores the
owner's pod template ({"spec": {"template": {..., "$patch": "replace"}}}), a monotonically
increasing `revision` number, and is named `<owner>-<hash>` where the hash covers the data and
the owner's collisionCount (bumped when a different revision already holds the name). kubectl's
history viewer and rollbacker read exactly these objects (owned by the set, matched by its
selector), so `kubectl rollout history/undo` works against them.
"""

from __future__ import annotations

import copy

import orjson

from kybernetes.api.errors import ApiError
from kybernetes.client import Client, controller_of, resource

REVISIONS = resource("apps/v1", "ControllerRevision")
HASH_LABEL = "controller.kubernetes.io/hash"      # upstream ControllerRevisionHashLabel
_ALPHANUMS = "bcdfghjklmnpqrstvwxz2456789"       # upstream rand.SafeEncodeString alphabet
_FNV32_OFFSET, _FNV32_PRIME = 2166136261, 16777619
_MAX_PREFIX = 223                                  # 253 minus room for "-" and the hash


def fnv32(data: bytes) -> int:
    """FNV-1 (32 bit), Go's hash/fnv.New32 that upstream hashes revisions with."""
    h = _FNV32_OFFSET
    for b in data:
        h = (h * _FNV32_PRIME) & 0xFFFFFFFF
        h ^= b
    return h


def safe_encode(s: str) -> str:
    """Upstream rand.SafeEncodeString: no vowels, so no words in names."""
    return "".join(_ALPHANUMS[b % len(_ALPHANUMS)] for b in s.encode())


def canonical(data: dict) -> bytes:
    return orjson.dumps(data, option=orjson.OPT_SORT_KEYS)


def hash_data(data: dict, collision_count: int | None = None) -> str:
    """Upstream HashControllerRevision: FNV over the raw data, then the collision count."""
    raw = canonical(data)
    if collision_count is not None:
        raw += str(collision_count).encode()
    return safe_encode(str(fnv32(raw)))


def revision_name(prefix: str, hash_: str) -> str:
    return f"{prefix[:_MAX_PREFIX]}-{hash_}"


def template_patch(obj: dict) -> dict:
    """What a revision stores: the pod template, marked to replace the whole template."""
    template = copy.deepcopy((obj.get("spec") or {}).get("template") or {})
    template["$patch"] = "replace"
    return {"spec": {"template": template}}


def template_of(revision: dict) -> dict:
    """The pod template a revision restores."""
    t = copy.deepcopy(((revision.get("data") or {}).get("spec") or {}).get("template") or {})
    t.pop("$patch", None)
    return t


def apply_revision(obj: dict, revision: dict) -> dict:
    """A copy of `obj` with the revision's template (upstream ApplyRevision)."""
    out = copy.deepcopy(obj)
    out.setdefault("spec", {})["template"] = template_of(revision)
    return out


def new_revision(owner: dict, template_labels: dict, data: dict, number: int,
                 collision_count: int | None, extra_labels: dict | None = None) -> dict:
    """An unsaved revision owned by `owner` (upstream NewControllerRevision): labels from the
    template plus the hash label; the owner's annotations (kubernetes.io/change-cause) copied
    so that `kubectl rollout history` shows them."""
    h = hash_data(data, collision_count)
    labels = dict(template_labels or {})
    labels.update(extra_labels or {})
    labels[HASH_LABEL] = h
    meta = owner["metadata"]
    rev_meta: dict = {"name": revision_name(meta["name"], h), "namespace": meta["namespace"],
                      "labels": labels,
                      "ownerReferences": [{"apiVersion": owner["apiVersion"], "kind": owner["kind"],
                                           "name": meta["name"], "uid": meta["uid"],
                                           "controller": True, "blockOwnerDeletion": True}]}
    if meta.get("annotations"):
        rev_meta["annotations"] = dict(meta["annotations"])
    return {"apiVersion": "apps/v1", "kind": "ControllerRevision", "metadata": rev_meta,
            "data": data, "revision": number}


def equal_revision(a: dict, b: dict) -> bool:
    """The same stored data (upstream EqualRevision compares the raw bytes; the hash label
    also covers the collision count, so it is not compared here)."""
    return canonical(a.get("data") or {}) == canonical(b.get("data") or {})


def find_equal(revisions: list[dict], needle: dict) -> list[dict]:
    return [r for r in revisions if equal_revision(r, needle)]


def sort_revisions(revisions: list[dict]) -> list[dict]:
    """Oldest first: by revision number, then creation time, then name."""
    return sorted(revisions, key=lambda r: (r.get("revision") or 0,
                                             r["metadata"].get("creationTimestamp") or "",
                                             r["metadata"]["name"]))


def next_revision(revisions: list[dict]) -> int:
    return max((r.get("revision") or 0 for r in revisions), default=0) + 1


def owned_revisions(revisions: list[dict], owner: dict) -> list[dict]:
    uid = owner["metadata"]["uid"]
    return [r for r in revisions if (controller_of(r) or {}).get("uid") == uid]


def revisions_to_delete(revisions: list[dict], live: set[str], limit: int) -> list[dict]:
    """Oldest revisions beyond the history limit that no pod (nor current/update) uses."""
    history = [r for r in sort_revisions(revisions) if r["metadata"]["name"] not in live]
    extra = len(history) - max(limit, 0)
    return history[:extra] if extra > 0 else []


async def create_revision(client: Client, owner: dict, revision: dict,
                          collision_count: int, make) -> tuple[dict, int]:
    """Create `revision`; on a name clash with different data bump the collision count and
    rebuild with `make(collision_count)` (upstream CreateControllerRevision).
    Returns (the stored revision, the collision count used)."""
    for _ in range(100):
        try:
            return await client.create(REVISIONS, revision, owner["metadata"]["namespace"]), collision_count
        except ApiError as e:
            if e.code != 409:
                raise
        existing = await client.get(REVISIONS, revision["metadata"]["name"],
                                    owner["metadata"]["namespace"])
        if equal_revision(existing, revision) and \
                (controller_of(existing) or {}).get("uid") == owner["metadata"]["uid"]:
            return existing, collision_count
        collision_count += 1
        revision = make(collision_count)
    raise RuntimeError("too many ControllerRevision hash collisions")


async def bump_revision(client: Client, revision: dict, number: int) -> dict:
    """Give an older revision the newest number again (a rollback to it)."""
    if revision.get("revision") == number:
        return revision
    body = copy.deepcopy(revision)
    body["revision"] = number
    body.setdefault("apiVersion", "apps/v1")
    body.setdefault("kind", "ControllerRevision")
    return await client.update(REVISIONS, body)


async def delete_revisions(client: Client, revisions: list[dict]) -> None:
    for r in revisions:
        try:
            await client.delete(REVISIONS, r["metadata"]["name"], r["metadata"]["namespace"])
        except ApiError as e:
            if e.code != 404:
                raise
