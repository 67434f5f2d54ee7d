"""Deployment controller against a real API server, with the ReplicaSet controller, the
scheduler and simulated nodes running, driven and read back with real kubectl.

Behaviour matched: upstream pkg/controller/deployment (rolling.go, recreate.go, sync.go,
progress.go) and kubectl's rollout status/history/undo/pause/resume, which read the
revision annotations, pod-template-hash labels and conditions written here.
"""

from __future__ import annotations

import json
import time

import pytest

from kybernetes.controllers import deployment_util as du
from kybtest import (control_plane, create_namespace, get_json, kubectl_or_skip, needs_kubectl,
                     wait_for)

pytestmark = needs_kubectl


@pytest.fixture(scope="module")
def cluster(apiserver, tmp_path_factory):
    """controller-manager (deployment, replicaset) + scheduler + 3 simulated nodes."""
    with control_plane(apiserver.kubeconfig, tmp_path_factory.mktemp("deploy-cluster"),
                       "deployment,replicaset", ["--count", "3", "--name-prefix", "dep-sim",
                                                 "--ready-delay", "0.3", "--stop-delay", "0.2"]):
        yield apiserver


@pytest.fixture(params=["1.33", "1.27"])
def kubectl(request, cluster, tmp_path):
    return kubectl_or_skip(cluster.kubeconfig, tmp_path / "cache", request.param)


@pytest.fixture
def ns(k):
    name = create_namespace(k, "dep")
    yield name
    k.run("delete", "namespace", name, "--wait=false", check=False)


def replicasets(k, ns, name="web"):
    items = get_json(k, "replicasets", "-n", ns)["items"]
    return [rs for rs in items if any(r.get("name") == name for r in rs["metadata"].get("ownerReferences") or [])]


def pods(k, ns):
    return get_json(k, "pods", "-n", ns)["items"]


def is_ready(pod):
    return any(c["type"] == "Ready" and c["status"] == "True" for c in pod.get("status", {}).get("conditions") or [])


def rolled_out(k, ns, name="web"):
    d = get_json(k, "deployment", name, "-n", ns)
    s, n = d.get("status", {}), d["spec"]["replicas"]
    return (s.get("observedGeneration", 0) >= d["metadata"]["generation"] and s.get("updatedReplicas", 0) == n
            and s.get("replicas", 0) == n and s.get("availableReplicas", 0) == n) and d


def events(k, ns, reason):
    items = get_json(k, "events", "-n", ns)["items"]
    return [e["message"] for e in items if e["reason"] == reason]


def create_web(k, ns, replicas=4, image="nginx:1.25", strategy=None, **spec):
    k("create", "deployment", "web", "-n", ns, f"--image={image}", f"--replicas={replicas}")
    patch = {"spec": dict(spec)}
    if strategy:
        patch["spec"]["strategy"] = strategy
    if patch["spec"]:
        k("patch", "deployment", "web", "-n", ns, "--type=merge", "-p", json.dumps(patch))
    return wait_for(lambda: rolled_out(k, ns), what="first rollout")


def test_create_scale_and_pod_template_hash(k, ns):
    """A new Deployment gets one ReplicaSet `web-<hash>` labelled pod-template-hash like its pods,
    revision 1, conditions NewReplicaSetAvailable/MinimumReplicasAvailable and upstream's
    ScalingReplicaSet events; scaling resizes that ReplicaSet."""
    d = create_web(k, ns, replicas=3)
    [rs] = replicasets(k, ns)
    h = rs["metadata"]["labels"][du.HASH_LABEL]
    assert rs["metadata"]["name"] == f"web-{h}"
    assert rs["spec"]["selector"]["matchLabels"][du.HASH_LABEL] == h
    assert rs["spec"]["template"]["metadata"]["labels"][du.HASH_LABEL] == h
    assert h == du.compute_hash(d["spec"]["template"])
    assert rs["metadata"]["annotations"][du.REVISION] == "1"
    assert d["metadata"]["annotations"][du.REVISION] == "1"
    assert all(p["metadata"]["labels"][du.HASH_LABEL] == h for p in pods(k, ns))
    conds = {c["type"]: c for c in d["status"]["conditions"]}
    assert conds["Available"]["reason"] == "MinimumReplicasAvailable"
    assert conds["Available"]["message"] == "Deployment has minimum availability."
    assert conds["Progressing"]["reason"] == "NewReplicaSetAvailable"
    assert conds["Progressing"]["message"] == f'ReplicaSet "web-{h}" has successfully progressed.'
    assert f"Scaled up replica set web-{h} from 0 to 3" in events(k, ns, "ScalingReplicaSet")

    k("scale", "deployment", "web", "-n", ns, "--replicas=5")
    wait_for(lambda: rolled_out(k, ns) and rolled_out(k, ns)["status"]["replicas"] == 5, what="scale up")
    k("scale", "deployment", "web", "-n", ns, "--replicas=2")
    wait_for(lambda: len([p for p in pods(k, ns) if not p["metadata"].get("deletionTimestamp")]) == 2
             and rolled_out(k, ns), what="scale down")
    [rs] = replicasets(k, ns)
    assert rs["spec"]["replicas"] == 2 and rs["metadata"]["annotations"][du.DESIRED_REPLICAS] == "2"
    msgs = events(k, ns, "ScalingReplicaSet")
    assert f"Scaled up replica set web-{h} from 3 to 5" in msgs
    assert f"Scaled down replica set web-{h} from 5 to 2" in msgs


def test_rolling_update_stays_within_surge_and_unavailable(k, ns):
    """`kubectl set image` rolls pod by pod: at every observed moment live pods ≤ replicas +
    maxSurge and ready live pods ≥ replicas - maxUnavailable (rolling.go's guarantees)."""
    replicas, surge, unavailable = 4, 1, 1
    create_web(k, ns, replicas=replicas,
               strategy={"type": "RollingUpdate", "rollingUpdate": {"maxSurge": surge, "maxUnavailable": unavailable}})
    k("set", "image", "deployment/web", "-n", ns, "nginx=nginx:1.26")
    seen_states = set()
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        live = [p for p in pods(k, ns) if not p["metadata"].get("deletionTimestamp")]
        ready = [p for p in live if is_ready(p)]
        images = tuple(sorted(p["spec"]["containers"][0]["image"] for p in live))
        seen_states.add(images)
        assert len(live) <= replicas + surge, images
        assert len(ready) >= replicas - unavailable, images
        if rolled_out(k, ns) and all(i == "nginx:1.26" for i in images) and len(live) == replicas:
            break
        time.sleep(0.05)
    else:
        raise AssertionError("rolling update did not finish")
    assert any("nginx:1.25" in s and "nginx:1.26" in s for s in seen_states), "no intermediate state seen"
    out = k("rollout", "status", "deployment/web", "-n", ns, "--timeout=90s", timeout=120)
    assert 'deployment "web" successfully rolled out' in out
    rss = replicasets(k, ns)
    assert len(rss) == 2
    by_rev = {rs["metadata"]["annotations"][du.REVISION]: rs for rs in rss}
    assert by_rev["1"]["spec"]["replicas"] == 0 and by_rev["2"]["spec"]["replicas"] == replicas


def test_history_undo_and_undo_to_revision(kubectl, ns):
    """rollout history lists revisions with CHANGE-CAUSE; undo and undo --to-revision bring the old
    ReplicaSet back (same name, new revision, revision-history kept), never a duplicate."""
    k = kubectl
    create_web(k, ns, replicas=2)
    k("annotate", "deployment/web", "-n", ns, "kubernetes.io/change-cause=first")
    wait_for(lambda: any(rs["metadata"]["annotations"].get("kubernetes.io/change-cause") == "first"
                         for rs in replicasets(k, ns)), what="change-cause copied")
    k("set", "image", "deployment/web", "-n", ns, "nginx=nginx:1.26")
    k("annotate", "deployment/web", "-n", ns, "--overwrite", "kubernetes.io/change-cause=second")
    wait_for(lambda: rolled_out(k, ns) and len(replicasets(k, ns)) == 2
             and {rs["metadata"]["annotations"].get("kubernetes.io/change-cause") for rs in replicasets(k, ns)}
             == {"first", "second"}, what="second revision")
    hist = k("rollout", "history", "deployment/web", "-n", ns)
    lines = [line.split(None, 1) for line in hist.splitlines()]
    assert ["REVISION", "CHANGE-CAUSE"] in lines and ["1", "first"] in lines and ["2", "second"] in lines
    names = {rs["metadata"]["name"] for rs in replicasets(k, ns)}

    out = k("rollout", "undo", "deployment/web", "-n", ns)
    assert "rolled back" in out
    d = wait_for(lambda: (d := rolled_out(k, ns)) and d["spec"]["template"]["spec"]["containers"][0]["image"] == "nginx:1.25"
                 and d["metadata"]["annotations"].get(du.REVISION) == "3" and d, what="undo")
    rss = replicasets(k, ns)
    assert {rs["metadata"]["name"] for rs in rss} == names  # no duplicate ReplicaSet
    back = next(rs for rs in rss if rs["spec"]["template"]["spec"]["containers"][0]["image"] == "nginx:1.25")
    assert back["metadata"]["annotations"][du.REVISION] == "3"
    assert back["metadata"]["annotations"][du.REVISION_HISTORY] == "1"
    assert back["spec"]["replicas"] == 2

    k("rollout", "undo", "deployment/web", "-n", ns, "--to-revision=2")
    wait_for(lambda: (d := rolled_out(k, ns)) and d["metadata"]["annotations"].get(du.REVISION) == "4"
             and d["spec"]["template"]["spec"]["containers"][0]["image"] == "nginx:1.26", what="undo to 2")
    assert {rs["metadata"]["name"] for rs in replicasets(k, ns)} == names
    hist = [line.split(None, 1)[0] for line in k("rollout", "history", "deployment/web", "-n", ns).splitlines()[2:] if line.strip()]
    assert hist == ["3", "4"]


def test_pause_and_resume(k, ns):
    """Paused: template changes create no ReplicaSet, the Progressing condition says
    DeploymentPaused, scaling still applies; resume rolls out."""
    create_web(k, ns, replicas=2)
    k("rollout", "pause", "deployment/web", "-n", ns)
    k("set", "image", "deployment/web", "-n", ns, "nginx=nginx:1.27")
    k("scale", "deployment/web", "-n", ns, "--replicas=3")

    def paused():
        d = get_json(k, "deployment", "web", "-n", ns)
        cond = {c["type"]: c for c in d["status"].get("conditions", [])}.get("Progressing", {})
        return (d["status"].get("observedGeneration") == d["metadata"]["generation"]
                and cond.get("reason") == "DeploymentPaused" and d["status"].get("replicas") == 3 and d)
    d = wait_for(paused, what="paused condition")
    assert {c["type"]: c for c in d["status"]["conditions"]}["Progressing"]["status"] == "Unknown"
    assert len(replicasets(k, ns)) == 1
    k("rollout", "resume", "deployment/web", "-n", ns)
    wait_for(lambda: (d := rolled_out(k, ns)) and len(replicasets(k, ns)) == 2
             and d["spec"]["template"]["spec"]["containers"][0]["image"] == "nginx:1.27", what="resumed rollout")


def test_recreate_scales_old_to_zero_before_new(k, ns):
    """Recreate: the new ReplicaSet appears only once the old one is at 0 and its pods are gone."""
    create_web(k, ns, replicas=3, strategy={"type": "Recreate", "rollingUpdate": None})
    k("set", "image", "deployment/web", "-n", ns, "nginx=nginx:1.26")
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        ps = pods(k, ns)
        images = {p["spec"]["containers"][0]["image"] for p in ps}
        assert images != {"nginx:1.25", "nginx:1.26"}, "old and new pods at the same time"
        if rolled_out(k, ns) and images == {"nginx:1.26"}:
            break
        time.sleep(0.05)
    else:
        raise AssertionError("recreate did not finish")
    assert len(replicasets(k, ns)) == 2


def test_progress_deadline_exceeded(k, ns):
    """Pods that never become ready: Progressing turns False/ProgressDeadlineExceeded and
    `kubectl rollout status` fails with kubectl's deadline message."""
    k("create", "deployment", "web", "-n", ns, "--image=nginx:1.25", "--replicas=1")
    k("patch", "deployment", "web", "-n", ns, "--type=merge", "-p", json.dumps(
        {"spec": {"progressDeadlineSeconds": 2,
                  "template": {"spec": {"nodeSelector": {"nowhere": "true"}}}}}))

    def timed_out():
        d = get_json(k, "deployment", "web", "-n", ns)
        cond = {c["type"]: c for c in d["status"].get("conditions", [])}.get("Progressing", {})
        return cond.get("reason") == "ProgressDeadlineExceeded" and cond
    cond = wait_for(timed_out, what="deadline")
    assert cond["status"] == "False" and cond["message"].endswith("has timed out progressing.")
    p = k.run("rollout", "status", "deployment/web", "-n", ns, "--timeout=10s", check=False)
    assert p.returncode != 0 and 'deployment "web" exceeded its progress deadline' in p.stderr


def test_revision_history_limit_removes_old_empty_replicasets(k, ns):
    create_web(k, ns, replicas=1, revisionHistoryLimit=1)
    for tag in ("1.26", "1.27", "1.28"):
        k("set", "image", "deployment/web", "-n", ns, f"nginx=nginx:{tag}")
        wait_for(lambda: (d := rolled_out(k, ns)) and d["spec"]["template"]["spec"]["containers"][0]["image"].endswith(tag),
                 what=f"rollout {tag}")
    rss = wait_for(lambda: (r := replicasets(k, ns)) and len(r) == 2 and r, what="cleanup")
    assert sorted(rs["metadata"]["annotations"][du.REVISION] for rs in rss) == ["3", "4"]
