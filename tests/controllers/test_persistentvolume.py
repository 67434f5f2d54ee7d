"""PersistentVolume binder and local-path provisioner: matching as pure functions, then a real
API server with both controllers, the scheduler and simulated nodes.

Behaviour matched: upstream pkg/controller/volume/persistentvolume (findBestMatchForClaim,
syncUnboundClaim/syncBoundClaim/syncVolume, the bind-completed and bound-by-controller
annotations, Released/Failed phases, retroactive default class) and k3s' local-path
provisioner (default class, WaitForFirstConsumer, hostPath PV with node affinity, helper pod
cleanup on reclaim Delete).
"""

from __future__ import annotations

import json

import pytest

from kybernetes.controllers import localpath as lp
from kybernetes.controllers import persistentvolume as pvc_
from kybtest import create_namespace, get_json, needs_kubectl, own_cluster, wait_for


def pv(name, size, modes=("ReadWriteOnce",), cls="", phase="Available", labels=None, claim=None):
    spec = {"capacity": {"storage": size}, "accessModes": list(modes), "storageClassName": cls}
    if claim:
        spec["claimRef"] = claim
    return {"metadata": {"name": name, "labels": labels or {}}, "spec": spec, "status": {"phase": phase}}


def claim(size="1Gi", modes=("ReadWriteOnce",), cls="", selector=None):
    spec = {"resources": {"requests": {"storage": size}}, "accessModes": list(modes), "storageClassName": cls}
    if selector:
        spec["selector"] = selector
    return {"metadata": {"name": "data", "namespace": "ns", "uid": "u1"}, "spec": spec}


def test_smallest_fitting_volume_with_fewest_modes_wins():
    pvs = [pv("big", "10Gi"), pv("small", "2Gi"), pv("tiny", "512Mi"),
           pv("rwx", "1Gi", modes=("ReadWriteOnce", "ReadWriteMany"))]
    assert pvc_.find_best_match(claim(), pvs, False)["metadata"]["name"] == "small"
    assert pvc_.find_best_match(claim(modes=("ReadWriteMany",)), pvs, False)["metadata"]["name"] == "rwx"


def test_class_phase_claimref_and_selector_filter():
    c = claim(cls="fast", selector={"matchLabels": {"tier": "gold"}})
    pvs = [pv("wrong-class", "5Gi", cls="slow", labels={"tier": "gold"}),
           pv("pending", "5Gi", cls="fast", phase="Pending", labels={"tier": "gold"}),
           pv("taken", "5Gi", cls="fast", labels={"tier": "gold"},
              claim={"namespace": "ns", "name": "other", "uid": "x"}),
           pv("no-label", "5Gi", cls="fast")]
    assert pvc_.find_best_match(c, pvs, False) is None
    pvs.append(pv("gold", "5Gi", cls="fast", labels={"tier": "gold"}))
    assert pvc_.find_best_match(c, pvs, False)["metadata"]["name"] == "gold"


def test_prebound_volume_wins_and_delayed_binding_takes_only_prebound():
    pre = pv("pre", "3Gi", phase="Pending", claim={"namespace": "ns", "name": "data", "uid": ""})
    free = pv("free", "1Gi")
    assert pvc_.find_best_match(claim(), [free, pre], False)["metadata"]["name"] == "pre"
    assert pvc_.find_best_match(claim(), [free], True) is None
    assert pvc_.find_best_match(claim(), [free, pre], True)["metadata"]["name"] == "pre"
    other_uid = pv("old", "3Gi", claim={"namespace": "ns", "name": "data", "uid": "gone"})
    assert pvc_.find_best_match(claim(), [other_uid], True) is None


def test_default_class_is_the_newest_marked_one():
    def sc(name, ts, default):
        ann = {pvc_.ANN_DEFAULT_CLASS: "true"} if default else {}
        return {"metadata": {"name": name, "creationTimestamp": ts, "annotations": ann}}
    assert pvc_.default_class([sc("a", "2025-01-01T00:00:00Z", False)]) is None
    got = pvc_.default_class([sc("a", "2025-01-01T00:00:00Z", True), sc("b", "2025-02-01T00:00:00Z", True)])
    assert got["metadata"]["name"] == "b"


def test_local_path_volume_shape():
    c = dict(claim(size="2Gi", cls="local-path"))
    node = {"metadata": {"name": "n1", "labels": {"kubernetes.io/hostname": "host-1"}}}
    v = lp.new_volume(c, lp.storage_class(), node, "n1", "/srv/st")
    assert v["metadata"]["name"] == "pvc-u1"
    assert v["spec"]["hostPath"] == {"path": "/srv/st/pvc-u1_ns_data", "type": "DirectoryOrCreate"}
    assert v["spec"]["claimRef"]["uid"] == "u1" and v["spec"]["persistentVolumeReclaimPolicy"] == "Delete"
    term = v["spec"]["nodeAffinity"]["required"]["nodeSelectorTerms"][0]["matchExpressions"][0]
    assert term == {"key": "kubernetes.io/hostname", "operator": "In", "values": ["host-1"]}
    assert v["spec"]["capacity"] == {"storage": "2Gi"}


# ---- against a real cluster ---------------------------------------------------------------------

@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    with own_cluster(tmp_path_factory.mktemp("pv-cluster"),
                     "persistentvolume-binder,local-path-provisioner",
                     ["--count", "2", "--name-prefix", "pv-sim", "--ready-delay", "0.2",
                      "--stop-delay", "0.1"]) as server:
        yield server


@pytest.fixture
def ns(k):
    return create_namespace(k, "pv")


def apply(k, obj, ns=None):
    k("apply", *(["-n", ns] if ns else []), "-f", "-", input=json.dumps(obj))


def phase(k, *args):
    return (get_json(k, *args).get("status") or {}).get("phase")


@needs_kubectl
def test_static_binding_and_retain(k, ns):
    tag = ns[-8:]
    for name, size in ((f"small-{tag}", "1Gi"), (f"big-{tag}", "5Gi")):
        apply(k, {"apiVersion": "v1", "kind": "PersistentVolume", "metadata": {"name": name, "labels": {"t": tag}},
                  "spec": {"capacity": {"storage": size}, "accessModes": ["ReadWriteOnce"],
                           "storageClassName": "manual", "hostPath": {"path": f"/tmp/{name}"}}})
    wait_for(lambda: phase(k, "pv", f"small-{tag}") == "Available", what="PV Available")
    apply(k, {"apiVersion": "v1", "kind": "PersistentVolumeClaim", "metadata": {"name": "data"},
              "spec": {"storageClassName": "manual", "accessModes": ["ReadWriteOnce"],
                       "selector": {"matchLabels": {"t": tag}},
                       "resources": {"requests": {"storage": "2Gi"}}}}, ns)
    wait_for(lambda: phase(k, "pvc", "data", "-n", ns) == "Bound", what="claim Bound")
    c = get_json(k, "pvc", "data", "-n", ns)
    assert c["spec"]["volumeName"] == f"big-{tag}"
    assert c["metadata"]["annotations"][pvc_.ANN_BIND_COMPLETED] == "yes"
    assert c["status"]["capacity"] == {"storage": "5Gi"}
    v = get_json(k, "pv", f"big-{tag}")
    assert v["status"]["phase"] == "Bound" and v["spec"]["claimRef"]["uid"] == c["metadata"]["uid"]
    assert phase(k, "pv", f"small-{tag}") == "Available"

    k("delete", "pvc", "data", "-n", ns)
    wait_for(lambda: phase(k, "pv", f"big-{tag}") == "Released", what="PV Released")
    # Retain: the volume stays, Released, with its claimRef.
    assert get_json(k, "pv", f"big-{tag}")["metadata"]["name"] == f"big-{tag}"


@needs_kubectl
def test_local_path_wait_for_first_consumer_provision_and_delete(k, ns):
    sc = wait_for(lambda: get_json(k, "storageclass")["items"], what="default class")
    assert [(s["metadata"]["name"], s["provisioner"], s["volumeBindingMode"], s["reclaimPolicy"])
            for s in sc] == [("local-path", "rancher.io/local-path", "WaitForFirstConsumer", "Delete")]
    k.run("create", "namespace", "kube-system", check=False)
    # No class given: the default one is filled in; nothing is provisioned before a consumer.
    apply(k, {"apiVersion": "v1", "kind": "PersistentVolumeClaim", "metadata": {"name": "data"},
              "spec": {"accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": "1Gi"}}}}, ns)
    wait_for(lambda: get_json(k, "pvc", "data", "-n", ns)["spec"].get("storageClassName") == "local-path",
             what="default class assigned")
    wait_for(lambda: any(e["reason"] == "WaitForFirstConsumer"
                         for e in get_json(k, "events", "-n", ns)["items"]), what="WaitForFirstConsumer event")
    assert phase(k, "pvc", "data", "-n", ns) == "Pending"

    apply(k, {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "user"},
              "spec": {"containers": [{"name": "c", "image": "busybox"}],
                       "volumes": [{"name": "d", "persistentVolumeClaim": {"claimName": "data"}}]}}, ns)
    wait_for(lambda: phase(k, "pvc", "data", "-n", ns) == "Bound", what="provisioned and bound")
    c = get_json(k, "pvc", "data", "-n", ns)
    node = wait_for(lambda: get_json(k, "pod", "user", "-n", ns)["spec"].get("nodeName"), what="pod bound")
    assert c["metadata"]["annotations"]["volume.kubernetes.io/selected-node"] == node
    v = get_json(k, "pv", c["spec"]["volumeName"])
    assert v["spec"]["hostPath"]["path"].startswith(lp.BASE_DIR)
    assert v["spec"]["nodeAffinity"]["required"]["nodeSelectorTerms"][0]["matchExpressions"][0]["values"] == [node]
    assert v["metadata"]["annotations"][pvc_.ANN_PROVISIONED_BY] == lp.PROVISIONER

    # Reclaim Delete: claim gone → Released → helper pod on the node cleans up → PV deleted.
    k("delete", "pod", "user", "-n", ns, "--wait=false")
    k("delete", "pvc", "data", "-n", ns, "--wait=false")
    wait_for(lambda: v["metadata"]["name"] not in {x["metadata"]["name"] for x in get_json(k, "pv")["items"]},
             what="provisioned PV deleted")
