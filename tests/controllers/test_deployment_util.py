"""Unit tests of the Deployment controller's pure logic and of its scaling decisions.

Tables are taken from upstream's pkg/controller/deployment/util/deployment_util_test.go
(TestResolveFenceposts, TestNewRSNewReplicas, TestMaxUnavailable, annotations) and
pkg/controller/deployment/sync_test.go (TestScale, TestDeploymentController_cleanupDeploymentOrder).
"""

from __future__ import annotations

import copy
import itertools

import pytest
from hypothesis import given, strategies as st

from kybernetes.controllers import deployment_util as du

TEMPLATE = {"metadata": {"labels": {"app": "web"}},
            "spec": {"containers": [{"name": "nginx", "image": "nginx:1.25"}]}}


def deployment(replicas=1, surge=0, unavailable=0, strategy="RollingUpdate", status_replicas=0, **spec):
    d = {"apiVersion": "apps/v1", "kind": "Deployment",
         "metadata": {"name": "foo", "namespace": "ns", "uid": "d-uid", "generation": 1},
         "spec": {"replicas": replicas, "selector": {"matchLabels": {"app": "web"}},
                  "template": copy.deepcopy(TEMPLATE),
                  "strategy": {"type": strategy}, **spec},
         "status": {"replicas": status_replicas}}
    if strategy == "RollingUpdate":
        d["spec"]["strategy"]["rollingUpdate"] = {"maxSurge": surge, "maxUnavailable": unavailable}
    return d


_uids = itertools.count()


def rs(name, replicas, created="2024-01-01T00:00:00Z", available=None, revision=None, status_replicas=None):
    obj = {"apiVersion": "apps/v1", "kind": "ReplicaSet",
           "metadata": {"name": name, "namespace": "ns", "uid": f"uid-{next(_uids)}",
                        "creationTimestamp": created, "resourceVersion": "1", "annotations": {},
                        "generation": 1},
           "spec": {"replicas": replicas, "template": copy.deepcopy(TEMPLATE)},
           "status": {"replicas": replicas if status_replicas is None else status_replicas,
                      "availableReplicas": replicas if available is None else available,
                      "observedGeneration": 1}}
    if revision:
        obj["metadata"]["annotations"][du.REVISION] = revision
    return obj


NEWER, OLD, OLDER = "2024-01-03T00:00:00Z", "2024-01-02T00:00:00Z", "2024-01-01T00:00:00Z"


# ---- hashing ----------------------------------------------------------------------------------

def test_hash_ignores_defaulted_fields_null_timestamp_and_empty_values():
    """kubectl rollout undo sends the RS template back with creationTimestamp: null, resources: {}
    and every defaulted field; it must hash (and compare) like the original."""
    defaulted = copy.deepcopy(TEMPLATE)
    defaulted["metadata"]["creationTimestamp"] = None
    defaulted["metadata"]["labels"][du.HASH_LABEL] = "abc"
    c = defaulted["spec"]["containers"][0]
    c.update(resources={}, imagePullPolicy="IfNotPresent", terminationMessagePath="/dev/termination-log",
             terminationMessagePolicy="File")
    defaulted["spec"].update(restartPolicy="Always", dnsPolicy="ClusterFirst", securityContext={},
                             terminationGracePeriodSeconds=30, schedulerName="default-scheduler")
    assert du.compute_hash(defaulted) == du.compute_hash(TEMPLATE)
    assert du.equal_ignore_hash(defaulted, TEMPLATE)


def test_hash_changes_with_template_and_collision_count():
    other = copy.deepcopy(TEMPLATE)
    other["spec"]["containers"][0]["image"] = "nginx:1.26"
    h = du.compute_hash(TEMPLATE)
    assert du.compute_hash(other) != h
    assert not du.equal_ignore_hash(other, TEMPLATE)
    assert len({h, du.compute_hash(TEMPLATE, 0), du.compute_hash(TEMPLATE, 1)}) == 3


def test_hash_is_safe_encoded_and_stable():
    h = du.compute_hash(TEMPLATE)
    assert h == du.compute_hash(copy.deepcopy(TEMPLATE))  # no dependence on dict identity/order
    assert set(h) <= set("bcdfghjklmnpqrstvwxz2456789") and 1 <= len(h) <= 10


def test_fnv32a_and_safe_encode_match_go():
    # Known FNV-1a 32-bit vectors; SafeEncodeString maps each byte modulo the 27-letter alphabet.
    assert du.fnv32a(b"") == 0x811C9DC5
    assert du.fnv32a(b"a") == 0xE40C292C
    assert du.safe_encode("0123") == "4567"  # ord("0") % 27 == 21 → "4"


@given(st.dictionaries(st.sampled_from(["a", "b", "tier", "x"]), st.text("abc", min_size=1, max_size=3)),
       st.sampled_from(["nginx", "nginx:1", "busybox:latest"]))
def test_hash_is_independent_of_key_order(labels, image):
    t1 = {"metadata": {"labels": labels}, "spec": {"containers": [{"name": "c", "image": image}]}}
    t2 = {"spec": {"containers": [{"image": image, "name": "c"}]},
          "metadata": {"labels": dict(reversed(list(labels.items())))}}
    assert du.compute_hash(t1) == du.compute_hash(t2)


# ---- fenceposts (TestResolveFenceposts, TestMaxUnavailable, TestNewRSNewReplicas) ------------

@pytest.mark.parametrize("surge,unavailable,desired,want", [
    ("0%", "0%", 0, (0, 1)),
    ("39%", "39%", 10, (4, 3)),
    (None, None, 10, (0, 1)),
    ("25%", "25%", 8, (2, 2)),
    (1, 1, 2, (1, 1)),
])
def test_resolve_fenceposts(surge, unavailable, desired, want):
    assert du.resolve_fenceposts(surge, unavailable, desired) == want


@pytest.mark.parametrize("surge,unavailable", [("oops", "39%"), ("55%", "urg"), ("5", "1")])
def test_resolve_fenceposts_rejects_bad_values(surge, unavailable):
    with pytest.raises(ValueError):
        du.resolve_fenceposts(surge, unavailable, 10)


@pytest.mark.parametrize("replicas,surge,unavailable,strategy,want", [
    (10, 1, 0, "RollingUpdate", 0),       # maxUnavailable 0 with a surge stays 0
    (10, 0, 1, "RollingUpdate", 1),
    (10, 0, 0, "RollingUpdate", 1),       # both zero → 1
    (10, "0%", "30%", "RollingUpdate", 3),
    (3, 0, 10, "RollingUpdate", 3),       # capped at replicas
    (0, 0, 1, "RollingUpdate", 0),
    (10, 0, 1, "Recreate", 0),
])
def test_max_unavailable(replicas, surge, unavailable, strategy, want):
    assert du.max_unavailable(deployment(replicas, surge, unavailable, strategy)) == want


@pytest.mark.parametrize("strategy,replicas,surge,old,new,want", [
    ("RollingUpdate", 10, "25%", 8, 2, 5),    # 13 allowed, 10 present → +3
    ("RollingUpdate", 10, "25%", 10, 3, 3),   # cannot surge more
    ("RollingUpdate", 10, "25%", 0, 9, 10),   # never above replicas
    ("Recreate", 10, 0, 10, 0, 10),
])
def test_new_rs_new_replicas(strategy, replicas, surge, old, new, want):
    d = deployment(replicas, surge, 0, strategy)
    new_rs, old_rs = rs("new", new), rs("old", old)
    assert du.new_rs_new_replicas(d, [old_rs, new_rs], new_rs) == want


# ---- annotations --------------------------------------------------------------------------------

def test_new_rs_annotations_copy_revision_history_and_replicas():
    d = deployment(3, 1, 0)
    d["metadata"]["annotations"] = {"kubernetes.io/change-cause": "v2", du.REVISION: "9",
                                    du.LAST_APPLIED: "{}"}
    new = rs("new", 0)
    assert du.set_new_rs_annotations(d, new, 1, False)
    ann = new["metadata"]["annotations"]
    assert ann == {"kubernetes.io/change-cause": "v2", du.REVISION: "1",
                   du.DESIRED_REPLICAS: "3", du.MAX_REPLICAS: "4"}
    # Rolling back to it later: the old revision goes into the history.
    assert du.set_new_rs_annotations(d, new, 5, True)
    assert ann[du.REVISION] == "5" and ann[du.REVISION_HISTORY] == "1"
    assert du.set_new_rs_annotations(d, new, 7, True)
    assert ann[du.REVISION_HISTORY] == "1,5"
    assert not du.set_new_rs_annotations(d, new, 7, True)  # nothing left to change


def test_revision_helpers():
    rss = [rs("a", 0, revision="3"), rs("b", 0, revision="1"), rs("c", 0, revision="7"), rs("d", 0)]
    assert du.max_revision(rss) == 7
    assert du.last_revision(rss) == 3


# ---- proportional scaling (sync_test.go TestScale) ---------------------------------------------

class FakeClient:
    def __init__(self):
        self.updates: list[dict] = []
        self.deleted: list[str] = []

    async def update(self, r, obj, **kw):
        self.updates.append(copy.deepcopy(obj))
        return copy.deepcopy(obj)

    async def delete(self, r, name, namespace=None, **kw):
        self.deleted.append(name)
        return {}

    async def create(self, r, obj, namespace=None, **kw):
        return obj

    async def patch(self, *a, **kw):
        return {}


def controller():
    from kybernetes.client import InformerFactory
    from kybernetes.controllers.deployment import DeploymentController
    fake = FakeClient()

    class Recorder:
        def __init__(self):
            self.events = []

        def event(self, obj, type_, reason, message):
            self.events.append((type_, reason, message))

    c = DeploymentController(fake, InformerFactory(fake), Recorder())
    return c, fake


SCALE_CASES = [
    # name, replicas, old replicas, surge, old surge, new, olds, want new, want olds
    ("normal scaling event: 10 -> 12", 12, 10, 0, 0, ("v1", 10, NEWER), [], 12, []),
    ("normal scaling event: 10 -> 5", 5, 10, 0, 0, ("v1", 10, NEWER), [], 5, []),
    ("proportional scaling: 5 -> 10", 10, 5, 0, 0, ("v2", 2, NEWER), [("v1", 3, OLD)], 4, [6]),
    ("proportional scaling: 5 -> 3", 3, 5, 0, 0, ("v2", 2, NEWER), [("v1", 3, OLD)], 1, [2]),
    ("proportional scaling: 9 -> 4", 4, 9, 0, 0, ("v2", 8, NEWER), [("v1", 1, OLD)], 4, [0]),
    ("proportional scaling: 7 -> 10", 10, 7, 0, 0, ("v3", 2, NEWER),
     [("v2", 3, OLD), ("v1", 2, OLDER)], 3, [4, 3]),
    ("proportional scaling: 13 -> 8", 8, 13, 0, 0, ("v3", 2, NEWER),
     [("v2", 8, OLD), ("v1", 3, OLDER)], 1, [5, 2]),
    ("leftover distribution: 3 -> 4", 4, 3, 0, 0, ("v3", 1, NEWER),
     [("v2", 1, OLD), ("v1", 1, OLDER)], 2, [1, 1]),
    ("leftover distribution: 4 -> 3", 3, 4, 0, 0, ("v3", 1, NEWER),
     [("v2", 1, OLD), ("v1", 2, OLDER)], 1, [1, 1]),
    ("(no new rs): 4 -> 5", 5, 4, 0, 0, None, [("v2", 2, OLD), ("v1", 2, OLDER)], None, [3, 2]),
    ("proportional scaling: 6 -> 0", 0, 6, 0, 0, ("v3", 3, NEWER),
     [("v2", 2, OLD), ("v1", 1, OLDER)], 0, [0, 0]),
    ("proportional scaling: 0 -> 6", 6, 6, 0, 0, ("v3", 0, NEWER),
     [("v2", 0, OLD), ("v1", 0, OLDER)], 6, [0, 0]),
    ("deployment with surge pods", 20, 10, 2, 2, ("v2", 6, NEWER), [("v1", 6, OLD)], 11, [11]),
    ("change both surge and size", 50, 10, 6, 3, ("v2", 5, NEWER), [("v1", 8, OLD)], 22, [34]),
]


@pytest.mark.parametrize("case", SCALE_CASES, ids=[c[0] for c in SCALE_CASES])
async def test_scale_matches_upstream_table(case):
    _, replicas, old_replicas, surge, old_surge, new_spec, old_specs, want_new, want_olds = case
    c, fake = controller()
    d = deployment(replicas, surge, 0)
    old_d = deployment(old_replicas, old_surge, 0)
    new_rs = rs(f"foo-{new_spec[0]}", new_spec[1], new_spec[2]) if new_spec else None
    olds = [rs(f"foo-{n}", r, t) for n, r, t in old_specs]
    for x in olds + ([new_rs] if new_rs else []):
        du.set_replicas_annotations(x, old_replicas, old_replicas + du.max_surge(old_d))
    await c._scale(d, new_rs, olds)
    sizes = {x["metadata"]["name"]: du.replicas(x) for x in olds + ([new_rs] if new_rs else [])}
    for u in fake.updates:
        sizes[u["metadata"]["name"]] = du.replicas(u)
    if new_rs is not None:
        assert sizes[new_rs["metadata"]["name"]] == want_new
    assert [sizes[x["metadata"]["name"]] for x in olds] == want_olds
    # Every scaling update also records the new desired/max annotations.
    for u in fake.updates:
        assert u["metadata"]["annotations"][du.DESIRED_REPLICAS] == str(replicas)


async def test_scale_event_wording():
    c, fake = controller()
    new_rs = rs("foo-abc", 3)
    du.set_replicas_annotations(new_rs, 3, 3)
    await c._scale(deployment(5), new_rs, [])
    assert c.recorder.events == [("Normal", "ScalingReplicaSet", "Scaled up replica set foo-abc from 3 to 5")]


# ---- cleanup (TestDeploymentController_cleanupDeploymentOrder) ---------------------------------

MIN = "2024-01-01T00:0{}:00Z"


@pytest.mark.parametrize("specs,limit,want", [
    ([("foo-1", 0, "1"), ("foo-2", 0, "2")], 1, {"foo-1"}),
    ([("foo-1", 0, "2"), ("foo-2", 0, "1")], 1, {"foo-2"}),
    ([("foo-1", 0, "1"), ("foo-2", 0, "")], 1, {"foo-2"}),
    ([("foo-1", 0, ""), ("foo-2", 0, "2")], 1, {"foo-1"}),
    ([("foo-1", 1, "1"), ("foo-2", 0, "2"), ("foo-3", 0, "3")], 1, {"foo-2"}),
    ([("foo-1", 1, "1"), ("foo-2", 1, "2"), ("foo-3", 0, "3")], 1, set()),
    ([("foo-1", 0, "3"), ("foo-2", 0, "1"), ("foo-3", 0, "4"), ("foo-4", 0, "2")], 2, {"foo-2", "foo-4"}),
    ([("foo-1", 0, "1"), ("foo-2", 0, "2")], du.MAX_INT32, set()),
])
async def test_cleanup_order(specs, limit, want):
    c, fake = controller()
    olds = [rs(n, r, MIN.format(i), revision=rev or None) for i, (n, r, rev) in enumerate(specs)]
    await c._cleanup(deployment(1, revisionHistoryLimit=limit), olds)
    assert set(fake.deleted) == want


# ---- conditions and status ---------------------------------------------------------------------

def test_calculate_status_and_availability_condition():
    d = deployment(4, 1, 1)
    new, old = rs("new", 2, available=1), rs("old", 3, available=3)
    st_ = du.calculate_status([old, new], new, d)
    assert (st_["replicas"], st_["updatedReplicas"], st_["availableReplicas"], st_["unavailableReplicas"]) == (5, 2, 4, 1)
    cond = du.get_condition(st_, "Available")
    assert cond["status"] == "True" and cond["message"] == "Deployment has minimum availability."
    st2 = du.calculate_status([rs("x", 4, available=2)], None, d)
    assert du.get_condition(st2, "Available")["reason"] == "MinimumReplicasUnavailable"


def test_set_condition_keeps_transition_time_when_status_unchanged():
    status = {}
    du.set_condition(status, {"type": "Progressing", "status": "True", "reason": "A",
                              "lastTransitionTime": "t1", "lastUpdateTime": "t1"})
    du.set_condition(status, {"type": "Progressing", "status": "True", "reason": "B",
                              "lastTransitionTime": "t2", "lastUpdateTime": "t2"})
    assert status["conditions"] == [{"type": "Progressing", "status": "True", "reason": "B",
                                     "lastTransitionTime": "t1", "lastUpdateTime": "t2"}]


def test_timed_out_after_deadline():
    d = deployment(1, progressDeadlineSeconds=10)
    status = {"conditions": [{"type": "Progressing", "status": "True", "reason": du.RS_UPDATED_REASON,
                              "lastUpdateTime": "2024-01-01T00:00:00Z"}]}
    t0 = du.parse_time("2024-01-01T00:00:00Z").timestamp()
    assert not du.deployment_timed_out(d, status, now=t0 + 5)
    assert du.deployment_timed_out(d, status, now=t0 + 11)
    status["conditions"][0]["reason"] = du.NEW_RS_AVAILABLE_REASON
    assert not du.deployment_timed_out(d, status, now=t0 + 11)


def test_find_new_rs_uses_template_equality_and_oldest_first():
    d = deployment(1)
    a, b = rs("a", 1, NEWER), rs("b", 1, OLDER)
    other = rs("c", 1, OLDER)
    other["spec"]["template"]["spec"]["containers"][0]["image"] = "other"
    assert du.find_new_rs(d, [a, other, b])["metadata"]["name"] == "b"
    assert du.find_new_rs(d, [other]) is None


def test_zero_values_of_plain_fields_compare_equal_but_pointer_zeros_do_not():
    """A template decoded from protobuf carries `stdin: false`, `hostIPC: false`,
    `generation: 0`; Go's omitempty makes those equal to unset. Pointer fields keep meaning."""
    explicit = copy.deepcopy(TEMPLATE)
    explicit["metadata"]["generation"] = 0
    explicit["spec"].update(hostIPC=False, hostNetwork=False, hostPID=False)
    explicit["spec"]["containers"][0].update(stdin=False, stdinOnce=False, tty=False)
    assert du.equal_ignore_hash(explicit, TEMPLATE)
    assert du.compute_hash(explicit) == du.compute_hash(TEMPLATE)
    no_token = copy.deepcopy(TEMPLATE)
    no_token["spec"]["automountServiceAccountToken"] = False
    assert not du.equal_ignore_hash(no_token, TEMPLATE)
