"""Root CA publisher: a `kube-root-ca.crt` ConfigMap with the cluster CA in every namespace.

As pkg/controller/certificates/rootcacertpublisher: pods mount it (through their projected
service-account volume) to verify the API server. The CA comes from the controller manager's
own kubeconfig (certificate-authority-data). Edits to the ConfigMap are put back.
"""

from __future__ import annotations

import copy
import logging

from kybernetes.api.errors import ApiError
from kybernetes.client import Controller, resource

from .serviceaccount import NAMESPACES, namespace_active

log = logging.getLogger(__name__)

CONFIGMAPS = resource("v1", "ConfigMap")
NAME = "kube-root-ca.crt"
DESCRIPTION_ANNOTATION = "kubernetes.io/description"
DESCRIPTION = ("Contains a CA bundle that can be used to verify the kube-apiserver when using "
               "internal endpoints such as the internal service IP or kubernetes.default.svc. "
               "No other usage is guaranteed across distributions of Kubernetes clusters.")


class RootCAPublisher(Controller):
    name = "root-ca-cert-publisher"
    workers = 3

    def setup(self) -> None:
        ca = self.client.config.ca_pem
        self.ca = ca.decode() if ca else ""
        if not self.ca:
            log.warning("no certificate-authority-data in the kubeconfig: %s stays empty", NAME)
        self.namespaces = self.factory.informer(NAMESPACES)
        self.configmaps = self.factory.informer(CONFIGMAPS, field_selector=f"metadata.name={NAME}")
        self.namespaces.add_handler(self._ns, lambda old, new: self._ns(new))
        self.configmaps.add_handler(None, lambda old, new: self._cm(new), self._cm)

    def _ns(self, ns: dict) -> None:
        if namespace_active(ns):
            self.queue.add(ns["metadata"]["name"])

    def _cm(self, cm: dict) -> None:
        if cm["metadata"]["name"] == NAME:
            self.queue.add(cm["metadata"]["namespace"])

    async def reconcile(self, key: str) -> float | None:
        if not self.ca or not namespace_active(self.namespaces.get(key)):
            return None
        data = {"ca.crt": self.ca}
        current = self.configmaps.get(f"{key}/{NAME}")
        try:
            if current is None:
                await self.client.create(CONFIGMAPS, {
                    "metadata": {"name": NAME,
                                 "annotations": {DESCRIPTION_ANNOTATION: DESCRIPTION}},
                    "data": data}, key)
                return None
            annotations = current["metadata"].get("annotations") or {}
            if current.get("data") == data and annotations.get(DESCRIPTION_ANNOTATION) == DESCRIPTION:
                return None
            cm = copy.deepcopy(current)
            cm["data"] = data
            cm.pop("binaryData", None)
            cm["metadata"]["annotations"] = dict(annotations, **{DESCRIPTION_ANNOTATION: DESCRIPTION})
            await self.client.update(CONFIGMAPS, cm)
        except ApiError as e:
            if e.code in (403, 404) or (e.code == 409 and current is None):
                return None if e.code != 409 else 0.1
            raise
        return None
