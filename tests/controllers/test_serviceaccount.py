"""ServiceAccount controller and root CA publisher against a real API server.

Matched to pkg/controller/serviceaccount (a `default` ServiceAccount per active namespace,
re-created when deleted) and pkg/controller/certificates/rootcacertpublisher (ConfigMap
`kube-root-ca.crt` with `ca.crt` and the upstream `kubernetes.io/description`, put back when
edited).
"""

from __future__ import annotations

import asyncio
import uuid

import pytest

from kybernetes.client import Client, resource
from kybernetes.controllers.rootca import DESCRIPTION

NS = resource("v1", "Namespace")
SA = resource("v1", "ServiceAccount")
CM = resource("v1", "ConfigMap")


@pytest.fixture
async def client(apiserver):
    c = Client.from_kubeconfig(apiserver.kubeconfig)
    yield c
    await c.close()


async def until(fn, timeout=20.0):
    async with asyncio.timeout(timeout):
        while True:
            out = await fn()
            if out:
                return out
            await asyncio.sleep(0.1)


async def get(client, r, name, ns):
    try:
        return await client.get(r, name, ns)
    except Exception as e:
        if getattr(e, "code", None) == 404:
            return None
        raise


async def test_default_service_account_and_root_ca(apiserver, components, client):
    components("controller-manager", "--kubeconfig", str(apiserver.kubeconfig),
               "--controllers", "serviceaccount,root-ca-cert-publisher", "--leader-elect=false")
    ns = f"sa-{uuid.uuid4().hex[:8]}"
    await client.create(NS, {"metadata": {"name": ns}})
    sa = await until(lambda: get(client, SA, "default", ns))
    assert sa["metadata"]["namespace"] == ns

    await client.delete(SA, "default", ns)
    again = await until(lambda: get(client, SA, "default", ns))
    assert again["metadata"]["uid"] != sa["metadata"]["uid"]

    cm = await until(lambda: get(client, CM, "kube-root-ca.crt", ns))
    assert cm["data"]["ca.crt"] == client.config.ca_pem.decode()
    assert cm["data"]["ca.crt"].startswith("-----BEGIN CERTIFICATE-----")
    assert cm["metadata"]["annotations"]["kubernetes.io/description"] == DESCRIPTION

    cm["data"]["ca.crt"] = "tampered"
    await client.update(CM, cm)

    async def restored():
        now = await get(client, CM, "kube-root-ca.crt", ns)
        return now if now and now["data"]["ca.crt"] != "tampered" else None
    assert (await until(restored))["data"]["ca.crt"] == client.config.ca_pem.decode()

    # Namespaces that existed before the controller started are covered too.
    assert await until(lambda: get(client, SA, "default", "kube-system"))
    assert await until(lambda: get(client, CM, "kube-root-ca.crt", "default"))
