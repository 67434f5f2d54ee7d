"""ServiceAccount controller and root CA publisher against a real API server.

Matched to pkg/controller/serviceaccount (a `default` ServiceAccount per active namespace,
re-created when deleted) and pkg/controller/certificates/rootcacertpublisher (ConfigMap
`kube-root-ca.crt` with `ca.crt` and the upstream `kubernetes.io/description`, put back when
edited).
"""

from __future__ import annotations

from kybernetes.client import resource
from kybernetes.controllers.rootca import DESCRIPTION
from kybtest import get_or_none, new_namespace, until

SA = resource("v1", "ServiceAccount")
CM = resource("v1", "ConfigMap")


async def test_default_service_account_and_root_ca(apiserver, controller_manager, client):
    controller_manager(apiserver.kubeconfig, "serviceaccount,root-ca-cert-publisher")
    ns = await new_namespace(client, "sa")
    sa = await until(lambda: get_or_none(client, SA, "default", ns))
    assert sa["metadata"]["namespace"] == ns

    await client.delete(SA, "default", ns)
    again = await until(lambda: get_or_none(client, SA, "default", ns))
    assert again["metadata"]["uid"] != sa["metadata"]["uid"]

    cm = await until(lambda: get_or_none(client, CM, "kube-root-ca.crt", ns))
    assert cm["data"]["ca.crt"] == client.config.ca_pem.decode()
    assert cm["data"]["ca.crt"].startswith("-----BEGIN CERTIFICATE-----")
    assert cm["metadata"]["annotations"]["kubernetes.io/description"] == DESCRIPTION

    cm["data"]["ca.crt"] = "tampered"
    await client.update(CM, cm)

    async def restored():
        now = await get_or_none(client, CM, "kube-root-ca.crt", ns)
        return now if now and now["data"]["ca.crt"] != "tampered" else None
    assert (await until(restored))["data"]["ca.crt"] == client.config.ca_pem.decode()

    # Namespaces that existed before the controller started are covered too.
    assert await until(lambda: get_or_none(client, SA, "default", "kube-system"))
    assert await until(lambda: get_or_none(client, CM, "kube-root-ca.crt", "default"))
