"""CSR signing controller: issues certificates for approved requests with the cluster CA.

As pkg/controller/certificates/signer: one signer per built-in signerName
(kube-apiserver-client, kube-apiserver-client-kubelet, kubelet-serving) holding the CA given by
the controller manager's --cluster-signing-cert-file/--cluster-signing-key-file. An approved
request without a certificate is checked against its signer's rules; a valid one gets
status.certificate, an invalid one a Failed condition (reason SignerValidationFailure). Other
signers (legacy-unknown, custom ones) are left to whoever owns them.
"""

from __future__ import annotations

import base64
import copy
import datetime as dt
import logging
import os
from dataclasses import dataclass

from cryptography import x509
from cryptography.hazmat.primitives import serialization

from kybernetes.api import certificates as certs
from kybernetes.api.errors import ApiError
from kybernetes.client import Controller, resource
from kybernetes.api.clock import now_rfc3339

log = logging.getLogger(__name__)

CSRS = resource("certificates.k8s.io/v1", "CertificateSigningRequest")


@dataclass
class SigningConfig:
    cert_file: str | None = None
    key_file: str | None = None
    duration: dt.timedelta = certs.DEFAULT_DURATION


# Set by the controller manager's command line (kyb controller-manager --cluster-signing-*);
# the environment is the fallback for managers started some other way.
CONFIG = SigningConfig(os.environ.get("KYB_CLUSTER_SIGNING_CERT_FILE"),
                       os.environ.get("KYB_CLUSTER_SIGNING_KEY_FILE"))


def configure(cert_file: str | None, key_file: str | None,
              duration: dt.timedelta | None = None) -> None:
    CONFIG.cert_file, CONFIG.key_file = cert_file, key_file
    if duration:
        CONFIG.duration = duration


_now = now_rfc3339


class CSRSigningController(Controller):
    name = "csrsigning"
    workers = 2

    def setup(self) -> None:
        self.ca_cert = self.ca_key = None
        if CONFIG.cert_file and CONFIG.key_file:
            with open(CONFIG.cert_file, "rb") as f:
                self.ca_cert = x509.load_pem_x509_certificate(f.read())
            with open(CONFIG.key_file, "rb") as f:
                self.ca_key = serialization.load_pem_private_key(f.read(), None)
        else:
            log.warning("csrsigning: no --cluster-signing-cert-file/--cluster-signing-key-file; "
                        "approved requests stay unsigned")
        self.csrs = self.factory.informer(CSRS)
        self.csrs.add_handler(self.enqueue, lambda old, new: self.enqueue(new))

    async def reconcile(self, key: str) -> float | None:
        csr = self.csrs.get(key)
        if csr is None or self.ca_key is None:
            return None
        if not certs.is_approved(csr) or certs.is_failed(csr) or certs.has_certificate(csr):
            return None
        if (csr.get("spec") or {}).get("signerName") not in certs.SIGNER_USAGES:
            return None
        new = copy.deepcopy(csr)
        status = new.setdefault("status", {})
        try:
            req = certs.parse_request(csr)
            problem = certs.signer_problem(csr, req)
        except certs.CSRError as e:
            problem = str(e)
        if problem:
            status.setdefault("conditions", []).append(
                certs.new_condition("Failed", "SignerValidationFailure", problem, _now()))
        else:
            pem = certs.sign(csr, req, self.ca_cert, self.ca_key, default=CONFIG.duration)
            status["certificate"] = base64.b64encode(pem).decode()
        try:
            await self.client.update_status(CSRS, new)
        except ApiError as e:
            if e.code == 404:
                return None
            raise
        log.info("%s %s", "failed" if problem else "signed", key)
        return None
