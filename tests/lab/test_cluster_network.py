"""The cluster network end to end, in a three-host lab, once per kube-proxy mode.

Real pods (busybox, python) on real agents; the overlay joins the hosts; kube-proxy programs
iptables or nftables; the node-local cluster DNS answers on 10.43.0.10. Checked from inside pods
(`kubectl exec`) and from lab hosts (`kyb lab exec`):

- pod → pod on other nodes (ping and HTTP);
- pod → ClusterIP service, balanced over backends on every node; a backend → its own service
  (hairpin); NodePort reached from a host that runs no backend, through a host that runs none;
- DNS: service short name, `svc.ns`, FQDN, headless → pod IPs, SRV for named ports, StatefulSet
  pod names, search paths (busybox `nslookup web`, glibc's resolver in python);
- scaling a Deployment 1 → 2 → 1: the new endpoint gets traffic, the removed one (still running,
  terminating) gets none once the proxy has synced;
- a host cut off from the lab bridge: its pod is evicted (short unreachable toleration, lab
  controller-manager with a 15 s node monitor grace) and the service reaches the replacement.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest

from kybernetes.lab import hosts as labhosts
from kybernetes.lab.lab import BRIDGE, SUBNET, Lab
from kybtest import kyb, wait_for

pytestmark = pytest.mark.skipif(
    os.geteuid() != 0 or not shutil.which("kubectl") or not shutil.which("containerd"),
    reason="needs root, kubectl and containerd")

HOSTS = ("kyb-lab-1", "kyb-lab-2", "kyb-lab-3")
IPS = ("172.31.250.11", "172.31.250.12", "172.31.250.13")
NS = "net"
BUSYBOX = "docker.io/library/busybox:latest"
PYTHON = "docker.io/library/python:3.11"
# busybox httpd answering its pod name; PID 1 ignores SIGTERM, so a deleted pod keeps serving
# through its grace period (what makes "no traffic to a removed endpoint" a real check).
SERVE = ("mkdir -p /www && hostname > /www/index.html && exec httpd -f -p 8080 -h /www")


class Cluster:
    def __init__(self, data_dir: Path, mode: str):
        self.dir, self.mode = data_dir, mode

    def kubectl(self, *args: str, input: str | None = None, check: bool = True,
                timeout: float = 60) -> str:
        p = subprocess.run(["kubectl", "--kubeconfig", str(self.dir / "kubeconfig.yaml"),
                            "-n", NS, *args], input=input, capture_output=True, text=True,
                           timeout=timeout)
        if check:
            assert p.returncode == 0, f"kubectl {' '.join(args)}: {p.stdout}{p.stderr}"
        return p.stdout

    def apply(self, *objs: dict) -> None:
        self.kubectl("apply", "-f", "-", input=json.dumps({"apiVersion": "v1", "kind": "List",
                                                           "items": list(objs)}))

    def get(self, *args: str) -> dict:
        out = self.kubectl("get", *args, "-o", "json", check=False)
        return json.loads(out) if out else {}

    def pods(self, selector: str) -> list[dict]:
        return self.get("pods", "-l", selector).get("items", [])

    def running(self, selector: str, count: int, timeout: float = 90) -> list[dict]:
        """Exactly `count` live, ready pods for the selector (deleting ones are ignored)."""
        def ready() -> list[dict] | None:
            pods = [p for p in self.pods(selector) if not p["metadata"].get("deletionTimestamp")]
            ok = [p for p in pods if p.get("status", {}).get("podIP") and any(
                c["type"] == "Ready" and c["status"] == "True"
                for c in p["status"].get("conditions") or [])]
            return ok if len(pods) == count and len(ok) == count else None
        return wait_for(ready, timeout, f"{count} ready pods {selector}")

    def exec(self, pod: str, *cmd: str, check: bool = True, timeout: float = 60) -> str:
        return self.kubectl("exec", pod, "--", *cmd, check=check, timeout=timeout)

    def fetch(self, pod: str, target: str, port: int, n: int = 1) -> list[str]:
        """n HTTP GETs from inside `pod` (busybox nc); the bodies (pod names) in order."""
        script = (f"for i in $(seq {n}); do printf 'GET / HTTP/1.0\\r\\n\\r\\n' | "
                  f"nc -w 2 {target} {port} | tail -n 1; done")
        out = self.exec(pod, "sh", "-c", script, check=False)
        return [line.strip() for line in out.splitlines() if line.strip()]


def deployment(name: str, replicas: int, **pod_spec) -> dict:
    return {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": name},
            "spec": {"replicas": replicas, "selector": {"matchLabels": {"app": name}},
                     "template": {"metadata": {"labels": {"app": name}}, "spec": {
                         "containers": [{"name": "c", "image": BUSYBOX,
                                         "command": ["sh", "-c", SERVE],
                                         "ports": [{"containerPort": 8080, "name": "http"}]}],
                         **pod_spec}}}}


def service(name: str, selector: str, **spec) -> dict:
    return {"apiVersion": "v1", "kind": "Service", "metadata": {"name": name},
            "spec": {"selector": {"app": selector},
                     "ports": [{"name": "http", "port": 80, "targetPort": "http"}], **spec}}


def pod(name: str, node: str, image: str = BUSYBOX) -> dict:
    return {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name},
            "spec": {"nodeName": node, "terminationGracePeriodSeconds": 1, "containers": [
                {"name": "c", "image": image, "command": ["sleep", "3600"]}]}}


SPREAD = {"topologySpreadConstraints": [{
    "maxSkew": 1, "topologyKey": "kubernetes.io/hostname",
    "whenUnsatisfiable": "DoNotSchedule", "labelSelector": {"matchLabels": {"app": "echo"}}}]}


@pytest.fixture(scope="module", params=["iptables", "nftables"])
def cluster(request, tmp_path_factory):
    if labhosts.subnet_in_use(SUBNET) or labhosts.link_exists(BRIDGE) or \
            any(labhosts.netns_exists(h) for h in HOSTS):
        pytest.skip(f"a lab (or something on {SUBNET}) already exists on this machine")
    d = tmp_path_factory.mktemp(f"net-{request.param}")
    try:
        kyb("lab", "up", "--nodes", "3", "--data-dir", str(d), "--proxy-mode", request.param,
            "--node-monitor-grace", "15")
        c = Cluster(d, request.param)
        wait_for(lambda: len([n for n in c.get("nodes").get("items", []) if any(
            x["type"] == "Ready" and x["status"] == "True"
            for x in n.get("status", {}).get("conditions") or [])]) == 3, 180, "3 Ready nodes")
        c.kubectl("create", "namespace", NS)
        wait_for(lambda: c.get("serviceaccount", "default"), 60, "the default service account")
        # Everything the tests share, started at once: pods come up in parallel.
        c.apply(deployment("echo", 3, **SPREAD), service("echo", "echo"),
                pod("client", HOSTS[0]), pod("py", HOSTS[1], PYTHON),
                {"apiVersion": "v1", "kind": "Service", "metadata": {"name": "web"},
                 "spec": {"clusterIP": "None", "selector": {"app": "web"},
                          "ports": [{"name": "http", "port": 80, "targetPort": 8080}]}},
                {"apiVersion": "apps/v1", "kind": "StatefulSet", "metadata": {"name": "web"},
                 "spec": {"serviceName": "web", "replicas": 2,
                          "selector": {"matchLabels": {"app": "web"}},
                          "template": deployment("web", 1)["spec"]["template"]}})
        for name in ("client", "py"):
            wait_for(lambda: c.get("pod", name).get("status", {}).get("phase") == "Running",
                     120, f"pod {name}")
        yield c
    finally:
        pids = [p["pid"] for p in Lab(d).state["procs"]]
        kyb("lab", "down", "--data-dir", str(d), check=False)
        names = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True).stdout
        assert not any(h in names.split() for h in HOSTS), names
        assert not any(Lab._alive(p) for p in pids)


def test_pod_to_pod_across_nodes_ping_and_http(cluster):
    echo = cluster.running("app=echo", 3)
    assert {p["spec"]["nodeName"] for p in echo} == set(HOSTS)
    for p in echo:
        if p["spec"]["nodeName"] == HOSTS[0]:
            continue        # the client's own node: not across
        ip = p["status"]["podIP"]
        out = cluster.exec("client", "ping", "-c", "1", "-W", "3", ip)
        assert "1 packets received" in out, out
        assert cluster.fetch("client", ip, 8080) == [p["metadata"]["name"]]


def test_cluster_ip_balances_over_pods_on_every_node(cluster):
    echo = {p["metadata"]["name"] for p in cluster.running("app=echo", 3)}
    got = cluster.fetch("client", "echo", 80, n=30)     # by name: DNS + proxy
    assert len(got) == 30 and set(got) <= echo, got
    # random choice over 3 backends: missing one in 30 tries has odds of about 1 in 65000
    assert set(got) == echo, got


def test_hairpin_pod_reaches_itself_through_its_service(cluster):
    me = cluster.running("app=echo", 3)[0]["metadata"]["name"]
    got = cluster.fetch(me, "echo", 80, n=30)
    assert len(got) == 30, got
    assert me in got, got


def test_node_port_from_a_host_without_the_pod(cluster):
    cluster.apply(deployment("np", 1, nodeName=HOSTS[0]), service("np", "np", type="NodePort"))
    backend = cluster.running("app=np", 1)[0]["metadata"]["name"]
    port = cluster.get("service", "np")["spec"]["ports"][0]["nodePort"]
    assert 30000 <= port <= 32767
    # from kyb-lab-3 to kyb-lab-2's node port; the pod runs on kyb-lab-1
    req = (f"printf 'GET / HTTP/1.0\\r\\n\\r\\n' | busybox nc -w 2 {IPS[1]} {port} | tail -n 1")

    def answered() -> str | None:
        p = kyb("lab", "exec", "--data-dir", str(cluster.dir), HOSTS[2], "--", "sh", "-c", req,
                check=False)
        return p.stdout.strip() or None
    assert wait_for(answered, 60, "the node port") == backend


def lookup(cluster: Cluster, *names: str) -> dict[str, list[str] | str]:
    """Addresses per name through glibc's resolver in the python pod (search list, ndots:5);
    an error message for a name that does not resolve."""
    code = ("import json, socket, sys\n"
            "out = {}\n"
            "for n in sys.argv[1:]:\n"
            "    try: out[n] = sorted({a[4][0] for a in "
            "socket.getaddrinfo(n, 80, socket.AF_INET)})\n"
            "    except OSError as e: out[n] = str(e)\n"
            "print(json.dumps(out))")
    return json.loads(cluster.exec("py", "python3", "-c", code, *names))


def test_dns_service_names_from_inside_pods(cluster):
    ip = cluster.get("service", "echo")["spec"]["clusterIP"]
    api = cluster.kubectl("get", "svc", "kubernetes", "-n", "default", "-o",
                          "jsonpath={.spec.clusterIP}")
    names = ("echo", f"echo.{NS}", f"echo.{NS}.svc", f"echo.{NS}.svc.cluster.local",
             f"echo.{NS}.svc.cluster.local.")
    got = lookup(cluster, *names, "kubernetes.default", "no-such-service")
    for name in names:
        assert got[name] == [ip], (name, got)
    assert got["kubernetes.default"] == [api], got
    assert isinstance(got["no-such-service"], str), got
    # SRV for the named port of a ClusterIP service: port 80, target the service name
    out = cluster.exec("client", "nslookup", "-type=srv",
                       f"_http._tcp.echo.{NS}.svc.cluster.local", check=False)
    assert re.search(rf"service = 0 \d+ 80 echo\.{NS}\.svc\.cluster\.local", out), out


def test_dns_headless_and_statefulset_names(cluster):
    web = {p["metadata"]["name"]: p["status"]["podIP"] for p in cluster.running("app=web", 2)}
    assert set(web) == {"web-0", "web-1"}
    got = lookup(cluster, "web", f"web.{NS}", *(f"{n}.web.{NS}.svc.cluster.local" for n in web),
                 *(f"{n}.web" for n in web))
    assert got["web"] == got[f"web.{NS}"] == sorted(web.values()), got    # headless → pods
    for name, ip in web.items():
        assert got[f"{name}.web.{NS}.svc.cluster.local"] == [ip], got
        assert got[f"{name}.web"] == [ip], got                          # via the search path
    out = cluster.exec("client", "nslookup", "-type=srv",
                       f"_http._tcp.web.{NS}.svc.cluster.local", check=False)
    for name in web:
        assert re.search(rf"service = 0 \d+ 8080 {name}\.web\.{NS}\.svc\.cluster\.local", out), out
    # busybox nslookup of a bare name walks the pod's search list (net.svc.cluster.local first)
    out = cluster.exec("client", "nslookup", "web", check=False)
    assert f"Name:\tweb.{NS}.svc.cluster.local" in out, out
    for ip in web.values():
        assert f"Address: {ip}" in out, out


def test_new_endpoint_gets_traffic_and_removed_one_none(cluster):
    cluster.apply(deployment("scale", 1, terminationGracePeriodSeconds=60),
                  service("scale", "scale"))
    first = cluster.running("app=scale", 1)[0]["metadata"]["name"]
    wait_for(lambda: cluster.fetch("client", "scale", 80) == [first], 60, "the first backend")
    cluster.kubectl("scale", "deployment", "scale", "--replicas", "2")
    both = {p["metadata"]["name"] for p in cluster.running("app=scale", 2)}
    second = (both - {first}).pop()
    wait_for(lambda: second in cluster.fetch("client", "scale", 80, n=10), 60,
             f"traffic to the new endpoint {second}")
    cluster.kubectl("scale", "deployment", "scale", "--replicas", "1")
    kept = cluster.running("app=scale", 1)[0]["metadata"]["name"]
    removed = (both - {kept}).pop()
    removed_ip = next(p["status"]["podIP"] for p in cluster.pods("app=scale")
                      if p["metadata"]["name"] == removed)
    # once the proxy has synced, the service sends the removed endpoint nothing ...
    wait_for(lambda: set(cluster.fetch("client", "scale", 80, n=15)) == {kept}, 60,
             f"no more traffic to the removed endpoint {removed}")
    # ... though it is still running (terminating, 60 s grace) and answers on its own IP
    assert cluster.fetch("client", removed_ip, 8080) == [removed]


def test_cut_host_pods_replaced_and_traffic_follows(cluster):
    tolerate = [{"key": k, "operator": "Exists", "effect": "NoExecute", "tolerationSeconds": 2}
                for k in ("node.kubernetes.io/unreachable", "node.kubernetes.io/not-ready")]
    away_from_server = {"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": {
        "nodeSelectorTerms": [{"matchExpressions": [{
            "key": "kubernetes.io/hostname", "operator": "NotIn", "values": [HOSTS[0]]}]}]}}}
    cluster.apply(deployment("mover", 1, tolerations=tolerate, affinity=away_from_server,
                             terminationGracePeriodSeconds=1),
                  service("mover", "mover"))
    old = cluster.running("app=mover", 1)[0]
    lost = old["spec"]["nodeName"]
    wait_for(lambda: cluster.fetch("client", "mover", 80) == [old["metadata"]["name"]], 60,
             "the first mover")
    kyb("lab", "cut", "--data-dir", str(cluster.dir), lost)
    try:
        wait_for(lambda: all(p["metadata"]["name"] != old["metadata"]["name"]
                             or p["metadata"].get("deletionTimestamp")
                             for p in cluster.pods("app=mover")), 90, "the eviction", every=1)
        new = cluster.running("app=mover", 1)[0]
        assert new["spec"]["nodeName"] not in (lost, HOSTS[0])
        wait_for(lambda: set(cluster.fetch("client", "mover", 80, n=5)) ==
                 {new["metadata"]["name"]}, 60, "traffic to the replacement")
        node = cluster.get("node", lost)
        ready = [c for c in node["status"]["conditions"] if c["type"] == "Ready"][0]
        assert ready["status"] == "Unknown"
    finally:
        kyb("lab", "heal", "--data-dir", str(cluster.dir), lost)
