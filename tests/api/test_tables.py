"""Server-side Table printing: expectations follow upstream's printers (pkg/printers/internalversion
printers.go), apimachinery util/duration, the default and CRD table convertors."""

from __future__ import annotations

import re
from datetime import datetime, timedelta, timezone

import pytest
from hypothesis import given, strategies as st

from kybernetes.api.duration import human_duration, short_human_duration
from kybernetes.api.tables import _printers, column_definitions, row_cells, to_table

NOW = datetime(2024, 6, 1, 12, 0, 0, tzinfo=timezone.utc)


def ts(delta: timedelta) -> str:
    return (NOW - delta).strftime("%Y-%m-%dT%H:%M:%SZ")


def cells_by_name(group: str, resource: str, obj: dict, printer_columns=None) -> dict:
    names = [c["name"] for c in column_definitions(group, resource, printer_columns)]
    return dict(zip(names, row_cells(group, resource, obj, NOW, printer_columns)))


# --- duration ----------------------------------------------------------------------------------

S, M, H, D = 1, 60, 3600, 86400


@pytest.mark.parametrize("seconds,expected", [
    (-3, "<invalid>"), (-2, "<invalid>"), (-1.5, "0s"), (-1, "0s"), (0, "0s"), (5, "5s"),
    (119, "119s"), (120, "2m"), (3 * M + 2, "3m2s"), (9 * M + 59, "9m59s"), (10 * M, "10m"),
    (10 * M + 30, "10m"), (3 * H - 1, "179m"), (3 * H, "3h"), (5 * H + 3 * M, "5h3m"),
    (8 * H - 1, "7h59m"), (8 * H, "8h"), (48 * H - 1, "47h"), (48 * H, "2d"), (2 * D + 3 * H, "2d3h"),
    (8 * D - 1, "7d23h"), (8 * D, "8d"), (730 * D - 1, "729d"), (730 * D, "2y"),
    (3 * 365 * D + 45 * D, "3y45d"), (8 * 365 * D, "8y"), (9 * 365 * D + 100 * D, "9y"),
])
def test_human_duration_buckets(seconds, expected):
    """util/duration HumanDuration: -1s tolerance, then s < 2m, m(s) < 10m, m < 3h, h(m) < 8h,
    h < 48h, d(h) < 8d, d < 2y, y(d) < 8y, then whole years."""
    assert human_duration(timedelta(seconds=seconds)) == expected


@pytest.mark.parametrize("seconds,expected", [
    (-2, "<invalid>"), (-1, "0s"), (59, "59s"), (60, "1m"), (H - 1, "59m"), (H, "1h"), (D - 1, "23h"),
    (D, "1d"), (365 * D - 1, "364d"), (365 * D, "1y"), (5 * 365 * D + 7, "5y"),
])
def test_short_human_duration(seconds, expected):
    """util/duration ShortHumanDuration: one unit, truncated."""
    assert short_human_duration(timedelta(seconds=seconds)) == expected


_UNITS = {"s": 1, "m": M, "h": H, "d": D, "y": 365 * D}


@given(st.integers(min_value=0, max_value=40 * 365 * D))
def test_human_duration_truncates(seconds):
    """Whatever the bucket, the text reads back as d rounded down to its smallest shown unit."""
    text = human_duration(timedelta(seconds=seconds))
    parts = re.fullmatch(r"(?:(\d+)([ydhms]))(?:(\d+)([ydhms]))?", text)
    assert parts, text
    groups = [g for g in parts.groups() if g is not None]
    pairs = list(zip(groups[::2], groups[1::2]))
    shown = sum(int(n) * _UNITS[u] for n, u in pairs)
    assert shown <= seconds < shown + _UNITS[pairs[-1][1]]


# --- pods ----------------------------------------------------------------------------------------


def pod(status: dict, spec: dict | None = None, **meta) -> dict:
    return {
        "metadata": {"name": "p", "namespace": "default", "creationTimestamp": ts(timedelta(hours=1)), **meta},
        "spec": spec or {"containers": [{"name": "app", "image": "nginx"}]},
        "status": status,
    }


RUNNING = {"running": {"startedAt": ts(timedelta(minutes=50))}}


def test_pod_running_ready_and_wide_columns():
    """printPod: READY counts ready+running containers; wide cells use podIP (authoritative over podIPs),
    "<none>" for unset node/nominated node, readiness gates as true/total."""
    obj = pod({"phase": "Running", "podIP": "10.0.0.5", "podIPs": [{"ip": "10.0.0.5"}],
               "conditions": [{"type": "Ready", "status": "True"}, {"type": "example.com/gate", "status": "True"}],
               "containerStatuses": [{"name": "app", "ready": True, "restartCount": 0, "state": RUNNING}]},
              spec={"containers": [{"name": "app"}], "nodeName": "n1",
                    "readinessGates": [{"conditionType": "example.com/gate"}, {"conditionType": "example.com/other"}]})
    c = cells_by_name("", "pods", obj)
    assert c == {"Name": "p", "Ready": "1/1", "Status": "Running", "Restarts": "0", "Age": "60m",
                 "IP": "10.0.0.5", "Node": "n1", "Nominated Node": "<none>", "Readiness Gates": "1/2"}
    bare = cells_by_name("", "pods", pod({"phase": "Pending"}))
    assert (bare["IP"], bare["Node"], bare["Readiness Gates"]) == ("<none>", "<none>", "<none>")


def test_pod_crashloop_shows_restarts_with_last_termination_age():
    """printPod: a waiting reason wins; restarts print as "N (age ago)" from lastState.terminated.finishedAt."""
    obj = pod({"phase": "Running", "containerStatuses": [{
        "name": "app", "ready": False, "restartCount": 3,
        "state": {"waiting": {"reason": "CrashLoopBackOff", "message": "back-off"}},
        "lastState": {"terminated": {"exitCode": 1, "reason": "Error", "finishedAt": ts(timedelta(minutes=5))}}}]})
    c = cells_by_name("", "pods", obj)
    assert (c["Ready"], c["Status"], c["Restarts"]) == ("0/1", "CrashLoopBackOff", "3 (5m ago)")


def test_pod_restarts_without_termination_time_is_plain_count():
    obj = pod({"phase": "Running", "containerStatuses": [
        {"name": "app", "ready": True, "restartCount": 2, "state": RUNNING}]})
    assert cells_by_name("", "pods", obj)["Restarts"] == "2"


INIT_SPEC = {"initContainers": [{"name": "a"}, {"name": "b"}], "containers": [{"name": "app"}]}


@pytest.mark.parametrize("second_init_state,expected", [
    ({"running": {}}, "Init:1/2"),
    ({"waiting": {"reason": "PodInitializing"}}, "Init:1/2"),
    ({"waiting": {"reason": "ImagePullBackOff"}}, "Init:ImagePullBackOff"),
    ({"terminated": {"exitCode": 1}}, "Init:ExitCode:1"),
    ({"terminated": {"exitCode": 137, "signal": 9}}, "Init:Signal:9"),
    ({"terminated": {"exitCode": 1, "reason": "Error"}}, "Init:Error"),
])
def test_pod_init_container_status(second_init_state, expected):
    """printPod: the first unfinished init container (index i of N) decides "Init:..."."""
    obj = pod({"phase": "Pending", "initContainerStatuses": [
        {"name": "a", "restartCount": 0, "state": {"terminated": {"exitCode": 0, "reason": "Completed"}}},
        {"name": "b", "restartCount": 0, "state": second_init_state}],
        "containerStatuses": [{"name": "app", "restartCount": 0, "state": {"waiting": {"reason": "PodInitializing"}}}]},
        spec=INIT_SPEC)
    c = cells_by_name("", "pods", obj)
    assert c["Status"] == expected
    assert c["Ready"] == "0/1"


def test_pod_init_restarts_count_only_while_initializing():
    """printPod: init restarts count while initializing; afterwards only sidecar + app restarts."""
    init_failing = pod({"phase": "Pending", "initContainerStatuses": [
        {"name": "a", "restartCount": 4, "state": {"waiting": {"reason": "CrashLoopBackOff"}}}]},
        spec={"initContainers": [{"name": "a"}], "containers": [{"name": "app"}]})
    assert cells_by_name("", "pods", init_failing)["Restarts"] == "4"
    assert cells_by_name("", "pods", init_failing)["Status"] == "Init:CrashLoopBackOff"
    done = pod({"phase": "Running", "initContainerStatuses": [
        {"name": "a", "restartCount": 4, "state": {"terminated": {"exitCode": 0, "reason": "Completed"}}}],
        "containerStatuses": [{"name": "app", "ready": True, "restartCount": 1, "state": RUNNING}]},
        spec={"initContainers": [{"name": "a"}], "containers": [{"name": "app"}]})
    assert cells_by_name("", "pods", done)["Restarts"] == "1"


def test_pod_sidecar_counts_towards_ready_and_total():
    """printPod: restartable init containers (restartPolicy Always) add to the total and, once
    started and ready, to READY."""
    obj = pod({"phase": "Running", "conditions": [{"type": "Initialized", "status": "True"}],
               "initContainerStatuses": [{"name": "proxy", "started": True, "ready": True, "restartCount": 2,
                                          "state": RUNNING}],
               "containerStatuses": [{"name": "app", "ready": True, "restartCount": 1, "state": RUNNING}]},
              spec={"initContainers": [{"name": "proxy", "restartPolicy": "Always"}], "containers": [{"name": "app"}]})
    c = cells_by_name("", "pods", obj)
    assert (c["Ready"], c["Status"], c["Restarts"]) == ("2/2", "Running", "3")


@pytest.mark.parametrize("phase,reason,expected", [
    ("Running", None, "Terminating"),
    ("Pending", None, "Terminating"),
    ("Running", "NodeLost", "Unknown"),
    ("Succeeded", None, "Succeeded"),
    ("Failed", None, "Failed"),
])
def test_pod_terminating(phase, reason, expected):
    """printPod: a deleted pod shows Terminating unless its phase is terminal; NodeLost → Unknown."""
    status = {"phase": phase, **({"reason": reason} if reason else {})}
    obj = pod(status, deletionTimestamp=ts(timedelta(seconds=10)))
    assert cells_by_name("", "pods", obj)["Status"] == expected


def test_pod_completed_and_row_condition():
    """printPod: terminated reason shows; succeeded pods carry a Completed row condition."""
    obj = pod({"phase": "Succeeded", "containerStatuses": [{
        "name": "app", "ready": False, "restartCount": 0,
        "state": {"terminated": {"exitCode": 0, "reason": "Completed"}}}]})
    table = to_table("", "pods", [obj], list_resource_version="9", continue_token=None, now=NOW)
    row = table["rows"][0]
    assert row["cells"][1:3] == ["0/1", "Completed"]
    assert row["conditions"] == [{"type": "Completed", "status": "True", "reason": "Succeeded",
                                  "message": "The pod has completed successfully."}]
    running = to_table("", "pods", [pod({"phase": "Running"})], list_resource_version="9", continue_token=None, now=NOW)
    assert "conditions" not in running["rows"][0]


@pytest.mark.parametrize("ready_condition,expected", [("True", "Running"), ("False", "NotReady")])
def test_pod_completed_container_with_running_sibling(ready_condition, expected):
    """printPod: "Completed" flips back to Running/NotReady while another container still runs."""
    obj = pod({"phase": "Running", "conditions": [{"type": "Ready", "status": ready_condition}],
               "containerStatuses": [
                   {"name": "app", "ready": True, "restartCount": 0, "state": RUNNING},
                   {"name": "job", "ready": False, "restartCount": 0,
                    "state": {"terminated": {"exitCode": 0, "reason": "Completed"}}}]},
              spec={"containers": [{"name": "app"}, {"name": "job"}]})
    c = cells_by_name("", "pods", obj)
    assert (c["Ready"], c["Status"]) == ("1/2", expected)


def test_pod_container_creating_and_scheduling_gated():
    creating = pod({"phase": "Pending", "containerStatuses": [
        {"name": "app", "ready": False, "restartCount": 0, "state": {"waiting": {"reason": "ContainerCreating"}}}]})
    assert cells_by_name("", "pods", creating)["Status"] == "ContainerCreating"
    gated = pod({"phase": "Pending", "conditions": [{"type": "PodScheduled", "status": "False", "reason": "SchedulingGated"}]})
    assert cells_by_name("", "pods", gated)["Status"] == "SchedulingGated"


# --- services, nodes ---------------------------------------------------------------------------


def service(spec: dict, status: dict | None = None) -> dict:
    return {"metadata": {"name": "web", "creationTimestamp": ts(timedelta(days=2, hours=3))},
            "spec": spec, "status": status or {}}


def test_service_cluster_ip():
    """printService: ports as port/proto joined by commas, selector via FormatLabels (sorted)."""
    c = cells_by_name("", "services", service({
        "type": "ClusterIP", "clusterIP": "10.96.0.10", "clusterIPs": ["10.96.0.10"],
        "ports": [{"port": 80, "protocol": "TCP"}, {"port": 53, "protocol": "UDP"}],
        "selector": {"tier": "front", "app": "web"}}))
    assert c == {"Name": "web", "Type": "ClusterIP", "Cluster-IP": "10.96.0.10", "External-IP": "<none>",
                 "Port(s)": "80/TCP,53/UDP", "Age": "2d3h", "Selector": "app=web,tier=front"}


def test_service_node_port_and_external_ips():
    c = cells_by_name("", "services", service({
        "type": "NodePort", "clusterIP": "10.96.1.1", "externalIPs": ["1.2.3.4", "5.6.7.8"],
        "ports": [{"port": 80, "nodePort": 30080, "protocol": "TCP"}, {"port": 443, "nodePort": 30443, "protocol": "TCP"}]}))
    assert (c["External-IP"], c["Port(s)"], c["Selector"]) == ("1.2.3.4,5.6.7.8", "80:30080/TCP,443:30443/TCP", "<none>")


def test_service_load_balancer():
    """getServiceExternalIP: "<pending>" until ingress is set; ingress IPs/hostnames de-duplicated and
    sorted, then spec.externalIPs; never clipped because the server prints wide."""
    spec = {"type": "LoadBalancer", "clusterIP": "10.96.2.2", "ports": [{"port": 443, "nodePort": 31000, "protocol": "TCP"}]}
    assert cells_by_name("", "services", service(spec))["External-IP"] == "<pending>"
    status = {"loadBalancer": {"ingress": [{"ip": "203.0.113.9"}, {"hostname": "a-long-hostname.example.com"},
                                           {"ip": "203.0.113.9"}]}}
    assert cells_by_name("", "services", service(spec, status))["External-IP"] == "203.0.113.9,a-long-hostname.example.com"
    with_external = dict(spec, externalIPs=["9.9.9.9"])
    assert cells_by_name("", "services", service(with_external, status))["External-IP"] == \
        "203.0.113.9,a-long-hostname.example.com,9.9.9.9"


def test_service_external_name_and_headless():
    c = cells_by_name("", "services", service({"type": "ExternalName", "externalName": "db.example.com"}))
    assert (c["Cluster-IP"], c["External-IP"], c["Port(s)"]) == ("<none>", "db.example.com", "<none>")
    headless = cells_by_name("", "services", service({"type": "ClusterIP", "clusterIP": "None", "ports": [{"port": 80}]}))
    assert (headless["Cluster-IP"], headless["Port(s)"]) == ("None", "80/TCP")


def node(conditions, labels=None, unschedulable=False, addresses=None, info=None):
    return {"metadata": {"name": "n1", "creationTimestamp": ts(timedelta(days=10)), "labels": labels or {}},
            "spec": {"unschedulable": unschedulable} if unschedulable else {},
            "status": {"conditions": conditions, "addresses": addresses or [], "nodeInfo": info or {}}}


def test_node_status_roles_and_wide():
    """printNode: only Ready counts; SchedulingDisabled appended; roles from node-role.kubernetes.io/*
    keys and kubernetes.io/role values, sorted; missing node info prints "<unknown>"."""
    obj = node([{"type": "MemoryPressure", "status": "False"}, {"type": "Ready", "status": "True"}],
               labels={"node-role.kubernetes.io/control-plane": "", "kubernetes.io/role": "etcd",
                       "node-role.kubernetes.io/": "x"},
               unschedulable=True,
               addresses=[{"type": "Hostname", "address": "n1"}, {"type": "InternalIP", "address": "192.168.1.10"}],
               info={"kubeletVersion": "v1.33.0", "osImage": "Debian GNU/Linux 13", "kernelVersion": "6.1.0"})
    c = cells_by_name("", "nodes", obj)
    assert c == {"Name": "n1", "Status": "Ready,SchedulingDisabled", "Roles": "control-plane,etcd", "Age": "10d",
                 "Version": "v1.33.0", "Internal-IP": "192.168.1.10", "External-IP": "<none>",
                 "OS-Image": "Debian GNU/Linux 13", "Kernel-Version": "6.1.0", "Container-Runtime": "<unknown>"}
    assert cells_by_name("", "nodes", node([{"type": "Ready", "status": "Unknown"}]))["Status"] == "NotReady"
    assert cells_by_name("", "nodes", node([]))["Status"] == "Unknown"
    assert cells_by_name("", "nodes", node([]))["Roles"] == "<none>"


# --- workloads -----------------------------------------------------------------------------------


def test_deployment_cells():
    """printDeployment: READY ready/desired, ints for up-to-date/available, selector.String()."""
    obj = {"metadata": {"name": "web", "creationTimestamp": ts(timedelta(minutes=3, seconds=2))},
           "spec": {"replicas": 3, "selector": {"matchLabels": {"app": "web"},
                                                "matchExpressions": [{"key": "tier", "operator": "In", "values": ["front", "back"]},
                                                                     {"key": "canary", "operator": "DoesNotExist"}]},
                    "template": {"spec": {"containers": [{"name": "nginx", "image": "nginx:1.27"},
                                                         {"name": "log", "image": "busybox"}]}}},
           "status": {"replicas": 3, "readyReplicas": 2, "updatedReplicas": 3, "availableReplicas": 2}}
    c = cells_by_name("apps", "deployments", obj)
    assert c == {"Name": "web", "Ready": "2/3", "Up-to-date": 3, "Available": 2, "Age": "3m2s",
                 "Containers": "nginx,log", "Images": "nginx:1.27,busybox",
                 "Selector": "app=web,!canary,tier in (back,front)"}


def test_replicaset_statefulset_daemonset():
    template = {"spec": {"containers": [{"name": "c", "image": "i"}], "nodeSelector": {"disk": "ssd"}}}
    meta = {"name": "x", "creationTimestamp": ts(timedelta(hours=5))}
    rs = row_cells("apps", "replicasets", {"metadata": meta, "spec": {"replicas": 2, "selector": {}, "template": template},
                                           "status": {"replicas": 2}}, NOW)
    assert rs == ["x", 2, 2, 0, "5h", "c", "i", "<none>"]
    sts = row_cells("apps", "statefulsets", {"metadata": meta, "spec": {"template": template}, "status": {"readyReplicas": 1}}, NOW)
    assert sts == ["x", "1/1", "5h", "c", "i"]
    ds = row_cells("apps", "daemonsets", {"metadata": meta, "spec": {"template": template, "selector": {"matchLabels": {"a": "b"}}},
                                          "status": {"desiredNumberScheduled": 3, "currentNumberScheduled": 3,
                                                     "numberReady": 2, "updatedNumberScheduled": 3, "numberAvailable": 2}}, NOW)
    assert ds == ["x", 3, 3, 2, 3, 2, "disk=ssd", "5h", "c", "i", "a=b"]


def job(spec: dict, status: dict, **meta) -> dict:
    return {"metadata": {"name": "j", "creationTimestamp": ts(timedelta(minutes=30)), **meta},
            "spec": {"template": {"spec": {"containers": [{"name": "c", "image": "busybox"}]}},
                     "selector": {"matchLabels": {"batch.kubernetes.io/controller-uid": "u1"}}, **spec},
            "status": status}


def test_job_cells():
    """printJob: completions "succeeded/completions", "n/1 of p" for parallel jobs without completions;
    duration from start to completion (or now); status from conditions."""
    done = job({"completions": 3, "parallelism": 3},
               {"succeeded": 3, "startTime": ts(timedelta(minutes=20)), "completionTime": ts(timedelta(minutes=18, seconds=30)),
                "conditions": [{"type": "Complete", "status": "True"}]})
    c = cells_by_name("batch", "jobs", done)
    assert (c["Status"], c["Completions"], c["Duration"], c["Age"]) == ("Complete", "3/3", "90s", "30m")
    assert c["Selector"] == "batch.kubernetes.io/controller-uid=u1"
    running = job({"parallelism": 2}, {"startTime": ts(timedelta(minutes=5))})
    c = cells_by_name("batch", "jobs", running)
    assert (c["Status"], c["Completions"], c["Duration"]) == ("Running", "0/1 of 2", "5m")
    pending = cells_by_name("batch", "jobs", job({}, {}))
    assert (pending["Completions"], pending["Duration"]) == ("0/1", "")
    failed = job({}, {"conditions": [{"type": "FailureTarget", "status": "True"}, {"type": "Failed", "status": "True"}]})
    assert cells_by_name("batch", "jobs", failed)["Status"] == "Failed"
    suspended = job({}, {"conditions": [{"type": "Suspended", "status": "True"}]})
    assert cells_by_name("batch", "jobs", suspended)["Status"] == "Suspended"
    deleting = job({}, {"conditions": [{"type": "Suspended", "status": "True"}]}, deletionTimestamp=ts(timedelta(0)))
    assert cells_by_name("batch", "jobs", deleting)["Status"] == "Terminating"


def test_cronjob_cells():
    obj = {"metadata": {"name": "cj", "creationTimestamp": ts(timedelta(days=3))},
           "spec": {"schedule": "*/5 * * * *", "suspend": False,
                    "jobTemplate": {"spec": {"template": {"spec": {"containers": [{"name": "c", "image": "i"}]}}}}},
           "status": {"active": [{"name": "cj-1"}], "lastScheduleTime": ts(timedelta(minutes=4))}}
    assert row_cells("batch", "cronjobs", obj, NOW) == ["cj", "*/5 * * * *", "<none>", "False", 1, "4m", "3d", "c", "i", "<none>"]
    obj["spec"].pop("suspend")
    obj["status"] = {}
    obj["spec"]["timeZone"] = "Etc/UTC"
    c = cells_by_name("batch", "cronjobs", obj)
    assert (c["Timezone"], c["Suspend"], c["Active"], c["Last Schedule"]) == ("Etc/UTC", "<unset>", 0, "<none>")


# --- events, misc kinds --------------------------------------------------------------------------


def test_event_core_and_events_api():
    """printEvent: object as lower(kind)/name, count defaults to 1, series overrides last seen/count,
    message trimmed, source "component, host"."""
    core = {"metadata": {"name": "p.17a"}, "type": "Warning", "reason": "BackOff", "message": " Back-off restarting \n",
            "involvedObject": {"kind": "Pod", "name": "p", "fieldPath": "spec.containers{app}"},
            "source": {"component": "kubelet", "host": "n1"},
            "firstTimestamp": ts(timedelta(minutes=10)), "lastTimestamp": ts(timedelta(seconds=30)), "count": 7}
    c = cells_by_name("", "events", core)
    assert c == {"Last Seen": "30s", "Type": "Warning", "Reason": "BackOff", "Object": "pod/p",
                 "Subobject": "spec.containers{app}", "Source": "kubelet, n1", "Message": "Back-off restarting",
                 "First Seen": "10m", "Count": 7, "Name": "p.17a"}
    new_api = {"metadata": {"name": "e"}, "type": "Normal", "reason": "Scheduled", "note": "assigned",
               "regarding": {"kind": "Pod", "name": "p"}, "reportingController": "default-scheduler",
               "eventTime": (NOW - timedelta(seconds=45)).strftime("%Y-%m-%dT%H:%M:%S.%fZ")}
    c = cells_by_name("events.k8s.io", "events", new_api)
    assert (c["Last Seen"], c["First Seen"], c["Count"], c["Source"], c["Message"]) == \
        ("45s", "45s", 1, "default-scheduler", "assigned")
    series = dict(new_api, series={"count": 4, "lastObservedTime": ts(timedelta(seconds=5))})
    c = cells_by_name("events.k8s.io", "events", series)
    assert (c["Last Seen"], c["Count"]) == ("5s", 4)


def test_small_kinds():
    meta = {"name": "x", "creationTimestamp": ts(timedelta(seconds=42))}
    assert row_cells("", "configmaps", {"metadata": meta, "data": {"a": "1"}, "binaryData": {"b": "AA=="}}, NOW) == ["x", 2, "42s"]
    assert row_cells("", "secrets", {"metadata": meta, "type": "Opaque", "data": {"k": "dg=="}}, NOW) == ["x", "Opaque", 1, "42s"]
    assert row_cells("", "serviceaccounts", {"metadata": meta}, NOW) == ["x", 0, "42s"]
    assert row_cells("", "namespaces", {"metadata": meta, "status": {"phase": "Active"}}, NOW) == ["x", "Active", "42s"]
    assert row_cells("", "endpoints", {"metadata": meta, "subsets": [
        {"addresses": [{"ip": "10.0.0.1"}, {"ip": "10.0.0.2"}, {"ip": "fd00::1"}], "ports": [{"port": 80}, {"port": 443}]}]},
        NOW) == ["x", "10.0.0.1:80,10.0.0.2:80,[fd00::1]:80 + 3 more...", "42s"]
    assert row_cells("", "endpoints", {"metadata": meta}, NOW)[1] == "<none>"
    sc = {"metadata": dict(meta, annotations={"storageclass.kubernetes.io/is-default-class": "true"}), "provisioner": "local"}
    assert row_cells("storage.k8s.io", "storageclasses", sc, NOW) == ["x (default)", "local", "Delete", "Immediate", False, "42s"]
    rb = {"metadata": meta, "roleRef": {"kind": "ClusterRole", "name": "view"},
          "subjects": [{"kind": "User", "name": "alice"}, {"kind": "ServiceAccount", "name": "sa", "namespace": "ns"},
                       {"kind": "User", "name": "bob"}]}
    assert row_cells("rbac.authorization.k8s.io", "rolebindings", rb, NOW) == ["x", "ClusterRole/view", "42s", "alice, bob", "", "ns/sa"]
    quota = {"metadata": meta, "status": {"hard": {"pods": "10", "limits.cpu": "2", "requests.cpu": "1"},
                                          "used": {"pods": "3", "requests.cpu": "500m"}}}
    assert row_cells("", "resourcequotas", quota, NOW) == ["x", "pods: 3/10, requests.cpu: 500m/1", "limits.cpu: 0/2", "42s"]
    api = {"metadata": meta, "spec": {"service": {"namespace": "kube-system", "name": "metrics"}},
           "status": {"conditions": [{"type": "Available", "status": "False", "reason": "MissingEndpoints"}]}}
    assert row_cells("apiregistration.k8s.io", "apiservices", api, NOW) == ["x", "kube-system/metrics", "False (MissingEndpoints)", "42s"]
    assert row_cells("apiregistration.k8s.io", "apiservices", {"metadata": meta, "spec": {}}, NOW)[1:3] == ["Local", "Unknown"]
    ing = {"metadata": meta, "spec": {"rules": [{"host": f"h{i}.example"} for i in range(5)], "tls": [{}]},
           "status": {"loadBalancer": {"ingress": [{"ip": "1.1.1.1"}]}}}
    assert row_cells("networking.k8s.io", "ingresses", ing, NOW) == \
        ["x", "<none>", "h0.example,h1.example,h2.example + 2 more...", "1.1.1.1", "80, 443", "42s"]
    hpa = {"metadata": meta, "spec": {"scaleTargetRef": {"kind": "Deployment", "name": "web"}, "minReplicas": 1, "maxReplicas": 5,
                                      "metrics": [{"type": "Resource", "resource": {"name": "cpu", "target": {"type": "Utilization", "averageUtilization": 80}}}]},
           "status": {"currentReplicas": 2, "currentMetrics": [{"type": "Resource", "resource": {"name": "cpu", "current": {"averageUtilization": 35}}}]}}
    assert row_cells("autoscaling", "horizontalpodautoscalers", hpa, NOW) == ["x", "Deployment/web", "cpu: 35%/80%", "1", 5, 2, "42s"]


def test_every_printer_has_one_cell_per_column():
    """All registered printers emit wide rows matching their columns (upstream's ipaddresses printer
    emits an extra AGE cell beyond its two columns; kept as upstream does)."""
    obj = {"metadata": {"name": "x", "creationTimestamp": ts(timedelta(seconds=1))}}
    for (group, resource), (columns, _) in _printers().items():
        cells = row_cells(group, resource, obj, NOW)
        extra = 1 if resource == "ipaddresses" else 0
        assert len(cells) == len(columns) + extra, (group, resource)
        assert column_definitions(group, resource)[0]["name"] in ("Name", "Last Seen")


# --- default and custom-resource convertors, table envelope ----------------------------------------


def test_default_convertor_for_kinds_without_printers():
    """rest.DefaultTableConvertor: Name + "Created At" (type date) with the RFC3339 UTC timestamp."""
    cols = column_definitions("rbac.authorization.k8s.io", "roles")
    assert [(c["name"], c["type"], c["format"]) for c in cols] == [("Name", "string", "name"), ("Created At", "date", "")]
    role = {"metadata": {"name": "r", "creationTimestamp": "2024-05-01T10:00:00+02:00"}}
    assert row_cells("rbac.authorization.k8s.io", "roles", role, NOW) == ["r", "2024-05-01T08:00:00Z"]
    assert row_cells("", "limitranges", {"metadata": {"name": "l"}}, NOW) == ["l", "0001-01-01T00:00:00Z"]
    empty = to_table("apiextensions.k8s.io", "customresourcedefinitions", [], list_resource_version="3", continue_token=None)
    assert empty["rows"] is None
    assert to_table("", "pods", [], list_resource_version="3", continue_token=None)["rows"] == []


def test_custom_resource_columns():
    """CRD tableconvertor: Name + additionalPrinterColumns; JSONPath results typed per column
    (string prints maps as JSON, integer truncates numbers, date becomes an age); misses are null."""
    columns = [
        {"name": "Ready", "type": "string", "jsonPath": '.status.conditions[?(@.type=="Ready")].status'},
        {"name": "Replicas", "type": "integer", "jsonPath": ".spec.replicas"},
        {"name": "Ratio", "type": "number", "jsonPath": ".spec.ratio", "priority": 1},
        {"name": "Paused", "type": "boolean", "jsonPath": ".spec.paused"},
        {"name": "Labels", "type": "string", "jsonPath": ".metadata.labels"},
        {"name": "Missing", "type": "string", "jsonPath": ".status.nothing"},
        {"name": "Started", "type": "date", "jsonPath": ".status.startedAt", "description": "when"},
    ]
    cols = column_definitions("example.com", "widgets", columns)
    assert [c["name"] for c in cols] == ["Name", "Ready", "Replicas", "Ratio", "Paused", "Labels", "Missing", "Started"]
    assert cols[1]["description"] == \
        'Custom resource definition column (in JSONPath format): .status.conditions[?(@.type=="Ready")].status'
    assert (cols[3]["priority"], cols[7]["description"]) == (1, "when")
    cr = {"metadata": {"name": "w", "labels": {"b": "<2>", "a": "1"}},
          "spec": {"replicas": 2.9, "ratio": 1, "paused": False},
          "status": {"conditions": [{"type": "Synced", "status": "False"}, {"type": "Ready", "status": "True"}],
                     "startedAt": ts(timedelta(hours=4))}}
    assert row_cells("example.com", "widgets", cr, NOW, columns) == \
        ["w", "True", 2, 1.0, False, '{"a":"1","b":"\\u003c2\\u003e"}', None, "4h"]
    # no declared columns: the CRD handler serves Name + Age (date)
    assert [c["name"] for c in column_definitions("example.com", "widgets", [])] == ["Name", "Age"]
    assert row_cells("example.com", "widgets", {"metadata": {"name": "w", "creationTimestamp": ts(timedelta(seconds=9))}},
                     NOW, []) == ["w", "9s"]


def test_table_envelope_and_include_object():
    """The Table: list metadata (resourceVersion, continue), PartialObjectMetadata rows by default,
    the full object for includeObject=Object, null for None; no column definitions when asked."""
    items = [{"metadata": {"name": "a", "namespace": "default", "labels": {"app": "x"}, "resourceVersion": "7"},
              "spec": {"data": 1}}]
    table = to_table("", "configmaps", items, list_resource_version="12", continue_token="tok", now=NOW)
    assert (table["kind"], table["apiVersion"]) == ("Table", "meta.k8s.io/v1")
    assert table["metadata"] == {"resourceVersion": "12", "continue": "tok"}
    assert [c["name"] for c in table["columnDefinitions"]] == ["Name", "Data", "Age"]
    assert table["rows"][0]["object"] == {"kind": "PartialObjectMetadata", "apiVersion": "meta.k8s.io/v1",
                                          "metadata": items[0]["metadata"]}
    full = to_table("", "configmaps", items, list_resource_version="12", continue_token=None, include_object="Object",
                    with_column_definitions=False, kind="ConfigMap", api_version="v1")
    assert full["metadata"] == {"resourceVersion": "12"}
    assert full["columnDefinitions"] is None
    assert full["rows"][0]["object"] == {"kind": "ConfigMap", "apiVersion": "v1", **items[0]}
    none = to_table("", "configmaps", items, list_resource_version="12", continue_token=None, include_object="None")
    assert none["rows"][0]["object"] is None
    with pytest.raises(ValueError):
        to_table("", "configmaps", items, list_resource_version="1", continue_token=None, include_object="Everything")
