"""CSR approving controller: auto-approves the certificate requests nodes make when they join.

As pkg/controller/certificates/approver (sarapprove.go): a pending kubelet client request
(signer kubernetes.io/kube-apiserver-client-kubelet, CN system:node:NAME, O system:nodes, client
usages, no SANs) is approved when a node renews its own ("selfnodeclient": the requester is the
CN) or a bootstrapper asks ("nodeclient"). Upstream asks the authorizer through a
SubjectAccessReview for those two subresource permissions; until RBAC exists here, the default
bindings stand in: nodeclient for system:bootstrappers, selfnodeclient for system:nodes.

Upstream never approves kubelet serving requests; like k3s (which signs them itself) we approve
one when the node asks for its own name and every SAN is one of that Node's addresses. Anything
else is left pending for an administrator (`kubectl certificate approve`).
"""

from __future__ import annotations

import copy
import logging

from kybernetes.api import certificates as certs
from kybernetes.api.errors import ApiError
from kybernetes.client import Controller, resource
from kybernetes.api.clock import now_rfc3339

log = logging.getLogger(__name__)

CSRS = resource("certificates.k8s.io/v1", "CertificateSigningRequest")
NODES = resource("v1", "Node")

REASON = "AutoApproved"
SELF_CLIENT_MESSAGE = "Auto approving self kubelet client certificate after SubjectAccessReview."
CLIENT_MESSAGE = "Auto approving kubelet client certificate after SubjectAccessReview."
SERVING_MESSAGE = "Auto approving kubelet serving certificate: the node asked for its own addresses."


def decide(csr: dict, node: dict | None) -> tuple[str | None, float | None]:
    """(approval message or None, retry-after seconds or None) for a pending request."""
    try:
        req = certs.parse_request(csr)
    except certs.CSRError:
        return None, None
    spec = csr.get("spec") or {}
    username, groups = spec.get("username", ""), set(spec.get("groups") or ())
    cn, _ = certs.subject(req)
    signer = spec.get("signerName")
    if signer == certs.KUBE_APISERVER_CLIENT_KUBELET:
        if certs.kubelet_client_problem(csr, req):
            return None, None
        if username == cn and certs.NODES_GROUP in groups:
            return SELF_CLIENT_MESSAGE, None
        if certs.BOOTSTRAPPERS_GROUP in groups:
            return CLIENT_MESSAGE, None
        return None, None
    if signer == certs.KUBELET_SERVING:
        if certs.kubelet_serving_problem(csr, req) or username != cn \
                or certs.NODES_GROUP not in groups:
            return None, None
        if node is None:
            return None, 5.0  # the node registers before asking; its object may still be on the way
        dns, ips, _, _ = certs.sans(req)
        if set(dns) | set(ips) <= certs.node_addresses(node):
            return SERVING_MESSAGE, None
    return None, None


def _requester(csr: dict) -> list[str]:
    return [(csr.get("spec") or {}).get("username", "")]


class CSRApprovingController(Controller):
    name = "csrapproving"
    workers = 2

    def setup(self) -> None:
        self.csrs = self.factory.informer(CSRS)
        self.nodes = self.factory.informer(NODES)
        self.csrs.add_index("requester", _requester)
        self.csrs.add_handler(self.enqueue, lambda old, new: self.enqueue(new))
        self.nodes.add_handler(self._node, lambda old, new: self._node(new))

    def _node(self, node: dict) -> None:
        for csr in self.csrs.by_index("requester", certs.NODE_PREFIX + node["metadata"]["name"]):
            self.enqueue(csr)

    async def reconcile(self, key: str) -> float | None:
        csr = self.csrs.get(key)
        if csr is None or certs.is_approved(csr) or certs.is_denied(csr) \
                or certs.has_certificate(csr):
            return None
        node = None
        try:
            cn, _ = certs.subject(certs.parse_request(csr))
            node = self.nodes.get(cn.removeprefix(certs.NODE_PREFIX))
        except certs.CSRError:
            pass
        message, retry = decide(csr, node)
        if message is None:
            return retry
        new = copy.deepcopy(csr)
        conds = new.setdefault("status", {}).setdefault("conditions", [])
        conds.append(certs.new_condition("Approved", REASON, message, now_rfc3339()))
        try:
            await self.client.update(CSRS, new, subresource="approval")
        except ApiError as e:
            if e.code == 404:
                return None
            raise
        log.info("approved %s: %s", key, message)
        return None
