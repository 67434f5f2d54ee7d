"""The eviction manager's pure rules: --eviction-hard parsing, pod ranking, admission, messages."""

from __future__ import annotations

import pytest

from kybernetes.kubelet import eviction as ev
from kybernetes.kubelet.static import mirror_pod, pod_from_manifest, read_manifests

GI = 2 ** 30


def pod(name: str, *, request: str | None = None, limit: str | None = None, prio: int = 0,
        **meta) -> dict:
    res: dict = {}
    if request:
        res.setdefault("requests", {})["memory"] = request
    if limit:
        res["limits"] = {"memory": limit, "cpu": "1"}
        res.setdefault("requests", {}).setdefault("memory", limit)
        res["requests"]["cpu"] = "1"
    return {"metadata": {"name": name, "namespace": "ns", "uid": name, **meta},
            "spec": {"priority": prio, "containers": [{"name": "c", "resources": res}]}}


def test_parse_quantities_and_percentages():
    ts = ev.parse_thresholds("memory.available<100Mi, nodefs.available<10%")
    by = {t.signal: t for t in ts}
    assert by["memory.available"].amount(8 * GI).value() == 100 * 2 ** 20
    assert by["nodefs.available"].amount(1000).value() == 100
    assert by["nodefs.available"].met(available=99, capacity=1000)
    assert not by["nodefs.available"].met(available=100, capacity=1000)


def test_default_thresholds_are_the_kubelets():
    signals = {t.signal for t in ev.parse_thresholds(ev.DEFAULT_HARD)}
    assert signals == {"memory.available", "nodefs.available", "nodefs.inodesFree",
                       "imagefs.available", "imagefs.inodesFree"}


@pytest.mark.parametrize("text", ["", "memory.available<0%", "memory.available<100%"])
def test_empty_and_ignored_statements(text):
    assert ev.parse_thresholds(text) == []


@pytest.mark.parametrize("text, message", [
    ("memory.available=100Mi", "malformed pair, expect string<string"),
    ("cpu.available<1", "unsupported eviction signal cpu.available"),
    ("memory.available<101%", "must be <= 100%"),
    ("memory.available<-1%", "must be >= 0%"),
    ("memory.available<0", "must be positive"),
    ("memory.available<lots", "quantities must match"),
])
def test_bad_statements(text, message):
    with pytest.raises(ev.ThresholdError, match=message):
        ev.parse_thresholds(text)


def test_ranking_follows_rank_memory_pressure():
    usage = {"guaranteed-under": GI // 2, "burstable-over": 5 * GI // 2, "besteffort": GI,
             "besteffort-big": 3 * GI, "high-prio-over": 5 * GI}
    pods = [pod("guaranteed-under", limit="1Gi"), pod("burstable-over", request="1Gi"),
            pod("besteffort"), pod("besteffort-big"), pod("high-prio-over", prio=1000),
            pod("no-stats", limit="1Gi")]
    order = [p["metadata"]["name"] for p in
             ev.rank_memory_pressure(pods, lambda p: usage.get(p["metadata"]["uid"]))]
    # no stats first; then over-request pods by priority, then by usage above request;
    # the pod within its request last.
    assert order == ["no-stats", "besteffort-big", "burstable-over", "besteffort",
                     "high-prio-over", "guaranteed-under"]


def test_memory_request_counts_init_and_overhead():
    p = {"spec": {"containers": [{"name": "a", "resources": {"requests": {"memory": "100Mi"}}},
                                 {"name": "b", "resources": {"requests": {"memory": "100Mi"}}}],
                  "initContainers": [{"name": "i", "resources": {"requests": {"memory": "1Gi"}}}],
                  "overhead": {"memory": "10Mi"}}}
    assert ev.memory_request(p) == GI + 10 * 2 ** 20


def test_critical_pods_are_not_candidates():
    assert ev.is_critical(pod("s", annotations={"kubernetes.io/config.source": "file"}))
    assert ev.is_critical(pod("m", annotations={"kubernetes.io/config.mirror": "abc"}))
    assert ev.is_critical(pod("p", prio=2_000_000_000))
    assert not ev.is_critical(pod("api", annotations={"kubernetes.io/config.source": "api"}))


def test_admission_under_memory_pressure():
    be, burstable = pod("be"), pod("b", request="10Mi")
    tolerant = pod("t")
    tolerant["spec"]["tolerations"] = [{"key": ev.MEMORY_PRESSURE_TAINT, "operator": "Exists",
                                        "effect": "NoSchedule"}]
    assert ev.admit_message(be, []) is None
    assert ev.admit_message(be, ["MemoryPressure"]) == "The node had condition: [MemoryPressure]. "
    assert ev.admit_message(burstable, ["MemoryPressure"]) is None
    assert ev.admit_message(tolerant, ["MemoryPressure"]) is None
    # Any other condition refuses every pod that is not critical.
    assert ev.admit_message(burstable, ["MemoryPressure", "DiskPressure"]) == \
        "The node had condition: [MemoryPressure DiskPressure]. "


def test_eviction_message_names_containers_over_request():
    p = pod("x", request="64Mi")
    stats = {"containers": [{"name": "c", "memory": {"workingSetBytes": 128 * 2 ** 20}}]}
    msg = ev.eviction_message("memory", p, stats, ev.parse_thresholds(
        "memory.available<100Mi")[0].amount(0), 50 * 2 ** 20)
    assert msg == ("The node was low on resource: memory. Threshold quantity: 100Mi, "
                   "available: 50Mi. Container c was using 128Mi, request is 64Mi, has larger "
                   "consumption of memory. ")


# ---- static pod manifests ----

def test_static_pod_identity(tmp_path):
    raw = {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "web"},
           "spec": {"containers": [{"name": "c", "image": "busybox"}]}}
    a = pod_from_manifest(raw, str(tmp_path / "web.yaml"), "node1")
    assert a["metadata"]["name"] == "web-node1" and a["metadata"]["namespace"] == "default"
    assert a["metadata"]["annotations"]["kubernetes.io/config.hash"] == a["metadata"]["uid"]
    assert a["metadata"]["annotations"]["kubernetes.io/config.source"] == "file"
    assert a["spec"]["nodeName"] == "node1"
    # Same content, same identity; another file or another content is another pod.
    assert pod_from_manifest(raw, str(tmp_path / "web.yaml"), "node1")["metadata"]["uid"] == \
        a["metadata"]["uid"]
    assert pod_from_manifest(raw, str(tmp_path / "w2.yaml"), "node1")["metadata"]["uid"] != \
        a["metadata"]["uid"]
    edited = {**raw, "metadata": {"name": "web", "labels": {"v": "2"}}}
    assert pod_from_manifest(edited, str(tmp_path / "web.yaml"), "node1")["metadata"]["uid"] != \
        a["metadata"]["uid"]
    m = mirror_pod(a, "node1", "node-uid")
    assert m["metadata"]["annotations"]["kubernetes.io/config.mirror"] == a["metadata"]["uid"]
    assert m["metadata"]["ownerReferences"] == [
        {"apiVersion": "v1", "kind": "Node", "name": "node1", "uid": "node-uid",
         "controller": True}]
    assert "uid" not in m["metadata"]


def test_manifest_folder_rules(tmp_path):
    (tmp_path / "a.yaml").write_text(
        "apiVersion: v1\nkind: Pod\nmetadata: {name: a, namespace: kube-system}\n"
        "spec: {containers: [{name: c, image: busybox}]}\n")
    (tmp_path / "b.json").write_text(
        '{"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "b"},'
        ' "spec": {"containers": [{"name": "c", "image": "busybox"}]}}')
    (tmp_path / ".hidden.yaml").write_text((tmp_path / "a.yaml").read_text())
    (tmp_path / "bad.yaml").write_text("apiVersion: v1\nkind: Pod\nmetadata: {name: bad}\n"
                                       "spec: {containers: [{name: c}]}\n")
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "c.yaml").write_text((tmp_path / "a.yaml").read_text())
    pods, errors = read_manifests(tmp_path, "n1")
    assert sorted(pods) == ["default/b-n1", "kube-system/a-n1"]
    assert len(errors) == 1 and "bad.yaml" in errors[0] and "image" in errors[0]
