"""Protobuf request bodies: real kubectl bodies, malformed input, encode/decode round trips."""

from __future__ import annotations

import asyncio
import base64
import json
import os
import subprocess
import threading
from datetime import datetime

import pytest
from aiohttp import web
from hypothesis import given, settings, strategies as st

from kybernetes.api.protobuf import (
    MAGIC, ProtobufError, decode, encode, format_duration, parse_duration,
)
from kybtest import kubectl_binary_or_skip

# --------------------------------------------------------------- a fake API server for kubectl

CORE = [  # name, kind, namespaced
    ("namespaces", "Namespace", False),
    ("pods", "Pod", True),
    ("resourcequotas", "ResourceQuota", True),
    ("configmaps", "ConfigMap", True),
    ("secrets", "Secret", True),
    ("services", "Service", True),
    ("serviceaccounts", "ServiceAccount", True),
]
GROUPS = {
    "apps/v1": [("deployments", "Deployment", True)],
    "batch/v1": [("jobs", "Job", True), ("cronjobs", "CronJob", True)],
    "networking.k8s.io/v1": [("ingresses", "Ingress", True)],
    "policy/v1": [("poddisruptionbudgets", "PodDisruptionBudget", True)],
    "scheduling.k8s.io/v1": [("priorityclasses", "PriorityClass", False)],
    "rbac.authorization.k8s.io/v1": [("roles", "Role", True), ("rolebindings", "RoleBinding", True),
                                     ("clusterroles", "ClusterRole", False)],
}
VERBS = ["create", "delete", "get", "list", "patch", "update", "watch"]


def _resource_list(group_version: str, resources: list) -> dict:
    return {
        "kind": "APIResourceList", "apiVersion": "v1", "groupVersion": group_version,
        "resources": [{"name": n, "singularName": k.lower(), "namespaced": ns, "kind": k,
                       "verbs": VERBS} for n, k, ns in resources],
    }


def _fake_apiserver(requests: list) -> web.Application:
    async def api(request: web.Request) -> web.Response:
        return web.json_response({"kind": "APIVersions", "versions": ["v1"],
                                  "serverAddressByClientCIDRs": []})

    async def apis(request: web.Request) -> web.Response:
        groups = []
        for gv in GROUPS:
            group, version = gv.split("/")
            ref = {"groupVersion": gv, "version": version}
            groups.append({"name": group, "versions": [ref], "preferredVersion": ref})
        return web.json_response({"kind": "APIGroupList", "apiVersion": "v1", "groups": groups})

    async def core(request: web.Request) -> web.Response:
        return web.json_response(_resource_list("v1", CORE))

    async def group(request: web.Request) -> web.Response:
        gv = f"{request.match_info['g']}/{request.match_info['v']}"
        if gv not in GROUPS:
            raise web.HTTPNotFound()
        return web.json_response(_resource_list(gv, GROUPS[gv]))

    async def create(request: web.Request) -> web.Response:
        body = await request.read()
        requests.append((request.content_type, body))
        # Echo the object back as it came: kubectl reads protobuf replies as well as JSON.
        return web.Response(status=201, body=body, content_type=request.content_type)

    app = web.Application()
    app.router.add_get("/api", api)
    app.router.add_get("/apis", apis)
    app.router.add_get("/api/v1", core)
    app.router.add_get("/apis/{g}/{v}", group)
    app.router.add_post("/{tail:.*}", create)
    return app


@pytest.fixture(scope="module")
def fake_apiserver():
    """(port, recorded requests) of a tiny HTTP server in its own thread and event loop."""
    requests: list = []
    loop = asyncio.new_event_loop()
    runner = web.AppRunner(_fake_apiserver(requests))
    loop.run_until_complete(runner.setup())
    site = web.TCPSite(runner, "127.0.0.1", 0)
    loop.run_until_complete(site.start())
    port = site._server.sockets[0].getsockname()[1]
    thread = threading.Thread(target=loop.run_forever, daemon=True)
    thread.start()
    yield port, requests
    loop.call_soon_threadsafe(loop.stop)
    thread.join(5)
    loop.run_until_complete(runner.cleanup())
    loop.close()


@pytest.fixture(scope="module")
def kubectl(fake_apiserver, tmp_path_factory):
    binary = kubectl_binary_or_skip("1.33")
    port, requests = fake_apiserver
    home = tmp_path_factory.mktemp("kubectl")
    config = home / "kubeconfig"
    config.write_text(json.dumps({
        "apiVersion": "v1", "kind": "Config", "current-context": "t",
        "clusters": [{"name": "t", "cluster": {"server": f"http://127.0.0.1:{port}"}}],
        "contexts": [{"name": "t", "context": {"cluster": "t", "user": "u"}}],
        "users": [{"name": "u", "user": {}}],
    }))

    def run(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run(
            [binary, "--kubeconfig", str(config), "--cache-dir", str(home / "cache"), *args],
            capture_output=True, text=True, timeout=60, env={**os.environ, "HOME": str(home)},
        )

    return run, requests


# ------------------------------------------------------------------- real kubectl bodies

ZERO = ("", 0, False, None, {}, [])


def assert_matches(decoded, expected, path="") -> None:
    """Every field of kubectl's JSON is in the decoded object with the same value; fields only
    the protobuf carries (Go's always-written non-pointer fields) hold their zero value."""
    if isinstance(expected, dict):
        assert isinstance(decoded, dict), path
        for key, value in expected.items():
            assert key in decoded, f"{path}.{key} missing"
            assert_matches(decoded[key], value, f"{path}.{key}")
        for key in decoded.keys() - expected.keys():
            assert decoded[key] in ZERO, f"{path}.{key} = {decoded[key]!r} not in kubectl's JSON"
    elif isinstance(expected, list):
        assert isinstance(decoded, list) and len(decoded) == len(expected), path
        for i, (d, e) in enumerate(zip(decoded, expected)):
            assert_matches(d, e, f"{path}[{i}]")
    else:
        assert decoded == expected and type(decoded) is type(expected), path


CREATE = {
    "namespace": ["namespace", "n1"],
    "configmap": ["configmap", "c1", "--from-literal=a=b", "--from-literal=empty="],
    "secret": ["secret", "generic", "s1", "--from-literal=k=v4lue", "--from-literal=x=\u00e9\u00e8"],
    "secret-tls-like": ["secret", "docker-registry", "r1", "--docker-server=reg.local",
                        "--docker-username=u", "--docker-password=p"],
    "deployment": ["deployment", "d1", "--image=nginx:1.25", "--replicas=3", "--port=80"],
    "deployment-zero": ["deployment", "d0", "--image=nginx", "--replicas=0"],
    "service": ["service", "clusterip", "s1", "--tcp=80:8080", "--tcp=443:https"],
    "service-nodeport": ["service", "nodeport", "np", "--tcp=80:8080", "--node-port=30080"],
    "job": ["job", "j1", "--image=busybox", "--", "echo", "hi"],
    "cronjob": ["cronjob", "cj", "--image=busybox", "--schedule=*/5 * * * *", "--", "date"],
    "serviceaccount": ["serviceaccount", "sa1"],
    "role": ["role", "r1", "--verb=get,list", "--resource=pods,deployments.apps"],
    "rolebinding": ["rolebinding", "rb", "--role=r1", "--user=alice", "--serviceaccount=default:sa1"],
    "clusterrole": ["clusterrole", "cr", "--verb=get", "--non-resource-url=/healthz"],
    "quota": ["quota", "q1", "--hard=cpu=1,memory=1Gi,pods=2"],
    "pdb": ["poddisruptionbudget", "p1", "--selector=app=x", "--min-available=50%"],
    "pdb-int": ["poddisruptionbudget", "p2", "--selector=app=x", "--max-unavailable=1"],
    "priorityclass": ["priorityclass", "high", "--value=1000", "--description=d"],
    "ingress": ["ingress", "i1", "--rule=foo.com/bar*=svc1:8080", "--class=nginx"],
}


def _create(args: list[str], *flags: str) -> list[str]:
    """`create <args>` with flags placed before a `--` that starts the container command."""
    cut = args.index("--") if "--" in args else len(args)
    return ["create", *args[:cut], *flags, *args[cut:]]


def _protobuf_body(kubectl, args: list[str]) -> bytes:
    run, requests = kubectl
    requests.clear()
    proc = run(*_create(args, "--validate=false"))
    assert proc.returncode == 0, proc.stderr
    assert len(requests) == 1
    content_type, body = requests[0]
    assert content_type == "application/vnd.kubernetes.protobuf"
    return body


@pytest.mark.parametrize("case", sorted(CREATE))
def test_kubectl_create_bodies_decode_like_json(kubectl, case):
    run, _ = kubectl
    body = _protobuf_body(kubectl, CREATE[case])
    local = run(*_create(CREATE[case], "--dry-run=client", "-o", "json"))
    assert local.returncode == 0, local.stderr
    expected = json.loads(local.stdout)
    decoded = decode(body)
    assert_matches(decoded, expected)


def test_secret_data_is_base64_as_in_json(kubectl):
    decoded = decode(_protobuf_body(kubectl, CREATE["secret"]))
    assert base64.b64decode(decoded["data"]["k"]) == b"v4lue"
    assert base64.b64decode(decoded["data"]["x"]).decode() == "\u00e9\u00e8"


def test_service_target_ports_keep_int_and_string(kubectl):
    ports = decode(_protobuf_body(kubectl, CREATE["service"]))["spec"]["ports"]
    assert [p["targetPort"] for p in ports] == [8080, "https"]


def test_auth_can_i_sends_a_self_subject_access_review(kubectl):
    run, requests = kubectl
    requests.clear()
    run("auth", "can-i", "delete", "pods", "--namespace=team")  # the echoed reply says "no"
    assert len(requests) == 1
    review = decode(requests[0][1])
    assert (review["apiVersion"], review["kind"]) == ("authorization.k8s.io/v1",
                                                      "SelfSubjectAccessReview")
    attrs = review["spec"]["resourceAttributes"]
    assert (attrs["verb"], attrs["resource"], attrs["namespace"]) == ("delete", "pods", "team")


def test_create_token_sends_a_token_request(kubectl):
    run, requests = kubectl
    requests.clear()
    run("create", "token", "sa1", "--duration=10m", "--audience=api")
    assert len(requests) == 1
    token = decode(requests[0][1])
    assert (token["apiVersion"], token["kind"]) == ("authentication.k8s.io/v1", "TokenRequest")
    assert token["spec"]["expirationSeconds"] == 600
    assert token["spec"]["audiences"] == ["api"]


# ------------------------------------------------------------------- round trips

TEXT = st.text(st.characters(blacklist_categories=("Cs",)), max_size=12)
NAMES = st.from_regex(r"[a-z][a-z0-9-]{0,10}", fullmatch=True)
INT32 = st.integers(-(2**31), 2**31 - 1)
INT64 = st.integers(-(2**63), 2**63 - 1)
SECONDS = st.datetimes(min_value=datetime(1, 1, 1), max_value=datetime(9999, 12, 31))
SECOND_TEXT = SECONDS.map(lambda d: f"{d.year:04d}{d.strftime('-%m-%dT%H:%M:%S')}")
TIMES = st.one_of(st.none(), SECOND_TEXT.map(lambda s: s + "Z"))
MICRO_TIMES = st.builds(lambda s, us: f"{s}.{us:06d}Z", SECOND_TEXT, st.integers(0, 999_999))
INT_OR_STRING = st.one_of(INT32, TEXT)
QUANTITIES = st.from_regex(r"[0-9]{1,4}(m|Ki|Mi|Gi|k|M|G)?", fullmatch=True)
JSON = st.recursive(
    st.one_of(st.none(), st.booleans(), st.integers(-(2**53), 2**53), TEXT),
    lambda inner: st.one_of(st.lists(inner, max_size=3), st.dictionaries(TEXT, inner, max_size=3)),
    max_leaves=10,
)


def _meta(namespaced: bool = True):
    return st.fixed_dictionaries(
        {"name": NAMES, "creationTimestamp": TIMES},
        optional={"namespace": NAMES, "labels": st.dictionaries(TEXT, TEXT, min_size=1, max_size=3),
                  "generation": INT64, "finalizers": st.lists(TEXT, min_size=1, max_size=2),
                  "managedFields": st.lists(st.fixed_dictionaries(
                      {"manager": TEXT, "operation": st.sampled_from(["Apply", "Update"]),
                       "time": TIMES.filter(bool), "fieldsType": st.just("FieldsV1"),
                       "fieldsV1": st.dictionaries(TEXT, st.just({}), min_size=1, max_size=3)}),
                      min_size=1, max_size=2)},
    )


def _kind(api_version: str, kind: str, **fields):
    return st.fixed_dictionaries({"apiVersion": st.just(api_version), "kind": st.just(kind),
                                  "metadata": _meta(), **fields})


SECRETS = _kind("v1", "Secret", data=st.dictionaries(
    NAMES, st.binary(max_size=20).map(lambda b: base64.b64encode(b).decode()), min_size=1, max_size=3),
    type=TEXT)
CONTAINERS = st.fixed_dictionaries(
    {"name": NAMES, "image": TEXT},
    optional={
        "resources": st.fixed_dictionaries({"limits": st.dictionaries(
            st.sampled_from(["cpu", "memory"]), QUANTITIES, min_size=1)}),
        "livenessProbe": st.fixed_dictionaries({"httpGet": st.fixed_dictionaries(
            {"path": TEXT, "port": INT_OR_STRING})}, optional={"periodSeconds": INT32}),
        "env": st.lists(st.fixed_dictionaries({"name": NAMES, "valueFrom": st.fixed_dictionaries(
            {"secretKeyRef": st.fixed_dictionaries({"name": NAMES, "key": TEXT})})}),
            min_size=1, max_size=2),
    },
)
DEPLOYMENTS = _kind("apps/v1", "Deployment", spec=st.fixed_dictionaries(
    {"replicas": INT32, "selector": st.fixed_dictionaries(
        {"matchLabels": st.dictionaries(NAMES, TEXT, min_size=1, max_size=2)}),
     "strategy": st.fixed_dictionaries({"rollingUpdate": st.fixed_dictionaries(
         {"maxSurge": INT_OR_STRING, "maxUnavailable": INT_OR_STRING})}),
     "template": st.fixed_dictionaries({"spec": st.fixed_dictionaries(
         {"containers": st.lists(CONTAINERS, min_size=1, max_size=2)},
         optional={"volumes": st.lists(st.fixed_dictionaries(
             {"name": NAMES, "configMap": st.fixed_dictionaries({"name": NAMES})}),
             min_size=1, max_size=2)})})}))
LEASES = _kind("coordination.k8s.io/v1", "Lease", spec=st.fixed_dictionaries(
    {"holderIdentity": TEXT, "acquireTime": MICRO_TIMES, "renewTime": MICRO_TIMES,
     "leaseDurationSeconds": INT32}))
REVISIONS = _kind("apps/v1", "ControllerRevision", revision=INT64,
                  data=st.dictionaries(TEXT, JSON, max_size=4))
REVIEWS = st.fixed_dictionaries({
    "apiVersion": st.just("authorization.k8s.io/v1"), "kind": st.just("SubjectAccessReview"),
    "spec": st.fixed_dictionaries({"user": TEXT, "extra": st.dictionaries(
        TEXT, st.lists(TEXT, max_size=3), min_size=1, max_size=2),
        "resourceAttributes": st.fixed_dictionaries({"verb": TEXT, "resource": TEXT})})})
OBJECTS = st.one_of(SECRETS, DEPLOYMENTS, LEASES, REVISIONS, REVIEWS)


@settings(max_examples=150, deadline=None)
@given(OBJECTS)
def test_encode_then_decode_gives_the_object_back(obj):
    body = encode(obj)
    assert body.startswith(MAGIC)
    assert decode(body) == obj


def test_decode_writes_special_types_as_json_does():
    obj = {
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": "p", "creationTimestamp": "0987-06-05T04:03:02Z"},
        "spec": {"containers": [{"name": "c", "ports": [{"containerPort": 80}],
                                 "readinessProbe": {"tcpSocket": {"port": "http"}}}],
                 "volumes": [{"name": "v", "secret": {"secretName": "s"}}],
                 "overhead": {"cpu": "250m"}},
    }
    decoded = decode(encode(obj))
    assert decoded["metadata"]["creationTimestamp"] == "0987-06-05T04:03:02Z"
    assert decoded["spec"]["containers"][0]["readinessProbe"] == {"tcpSocket": {"port": "http"}}
    assert decoded["spec"]["volumes"] == [{"name": "v", "secret": {"secretName": "s"}}]
    assert decoded["spec"]["overhead"] == {"cpu": "250m"}


@given(st.integers(-(2**63), 2**63 - 1))
def test_durations_print_and_parse_like_go(ns):
    text = format_duration(ns)
    assert parse_duration(text) == ns
    assert text == "0s" or text.rstrip("0123456789.").endswith(("h", "m", "s"))


@pytest.mark.parametrize("ns,text", [(0, "0s"), (1500, "1.5µs"), (300 * 10**9, "5m0s"),
                                     (3_723_500_000_000, "1h2m3.5s"), (-(10**6), "-1ms")])
def test_known_duration_strings(ns, text):
    assert format_duration(ns) == text
    assert parse_duration(text) == ns


# ------------------------------------------------------------------- malformed bodies


def _decodes_or_rejects(body: bytes) -> dict | None:
    try:
        return decode(body)
    except ProtobufError:
        return None


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=200))
def test_random_bytes_after_magic_raise_protobuf_error(data):
    result = _decodes_or_rejects(MAGIC + data)
    assert result is None or isinstance(result, dict)


@settings(max_examples=100, deadline=None)
@given(OBJECTS, st.data())
def test_truncated_bodies_raise_protobuf_error(obj, data):
    body = encode(obj)
    # Both bodies share magic + typeMeta; then comes the raw field (tag, length, object bytes)
    # and 4 bytes of two empty strings. The empty-object body ends: tag, 0, 4 bytes.
    raw_tag = len(encode({"apiVersion": obj["apiVersion"], "kind": obj["kind"]})) - 6
    raw_end = len(body) - 4
    cut = data.draw(st.integers(0, len(body) - 1))
    result = _decodes_or_rejects(body[:cut])
    assert result is None or isinstance(result, dict)
    if raw_tag < cut < raw_end:  # the object's bytes are cut short
        assert result is None


@settings(max_examples=200, deadline=None)
@given(st.sampled_from(["v1/Pod", "apps/v1/Deployment", "v1/Secret", "batch/v1/CronJob"]),
       st.binary(max_size=120))
def test_random_objects_in_a_valid_envelope_never_crash(gvk, raw):
    api_version, kind = gvk.rsplit("/", 1)
    body = bytearray(encode({"apiVersion": api_version, "kind": kind}))
    # Swap the (empty) raw field for random bytes.
    envelope_tail = b"\x12\x00\x1a\x00\x22\x00"
    assert body.endswith(envelope_tail)
    body = bytes(body[: -len(envelope_tail)]) + _field(2, raw) + b"\x1a\x00\x22\x00"
    result = _decodes_or_rejects(body)
    assert result is None or result["kind"] == kind


@settings(max_examples=100, deadline=None)
@given(OBJECTS, st.data())
def test_flipped_bytes_never_crash(obj, data):
    body = bytearray(encode(obj))
    for _ in range(data.draw(st.integers(1, 3))):
        i = data.draw(st.integers(len(MAGIC), len(body) - 1))
        body[i] = data.draw(st.integers(0, 255))
    result = _decodes_or_rejects(bytes(body))
    assert result is None or isinstance(result, dict)


def _field(number: int, payload: bytes) -> bytes:
    length, out = len(payload), bytearray()
    while True:
        byte, length = length & 0x7F, length >> 7
        out.append(byte | (0x80 if length else 0))
        if not length:
            break
    return bytes([number << 3 | 2]) + bytes(out) + payload


@pytest.mark.parametrize("body,message", [
    (b"", "magic"),
    (b'{"kind":"Pod"}', "magic"),
    (b"k8s", "magic"),
    (MAGIC + b"\x0a\x05\x0a\x02v1", "malformed"),
    (MAGIC + _field(1, _field(1, b"v1") + _field(2, b"Nope")), "Nope"),
    (MAGIC + _field(1, _field(1, b"v1") + _field(2, b"Pod")) + _field(3, b"gzip"), "gzip"),
])
def test_bad_bodies_are_rejected_with_a_clear_error(body, message):
    with pytest.raises(ProtobufError, match=message):
        decode(body)


def test_encode_rejects_unknown_kinds_and_wrong_shapes():
    with pytest.raises(ProtobufError):
        encode({"apiVersion": "v1", "kind": "Nope"})
    with pytest.raises(ProtobufError):
        encode({"apiVersion": "v1", "kind": "Pod", "spec": {"containers": "x"}})


@pytest.mark.parametrize("case", ["configmap", "secret", "deployment", "service", "job", "quota"])
def test_reencoding_a_kubectl_body_gives_the_same_bytes(kubectl, case):
    body = _protobuf_body(kubectl, CREATE[case])
    assert encode(decode(body)) == body
