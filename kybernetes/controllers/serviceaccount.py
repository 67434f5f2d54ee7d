"""ServiceAccount controller: every active namespace has a `default` ServiceAccount.

As pkg/controller/serviceaccount: created when a namespace appears and re-created when deleted;
namespaces being terminated are left alone.
"""

from __future__ import annotations

from kybernetes.api.errors import ApiError
from kybernetes.client import Controller, resource

NAMESPACES = resource("v1", "Namespace")
SERVICE_ACCOUNTS = resource("v1", "ServiceAccount")
DEFAULT_ACCOUNTS = ("default",)


def namespace_active(ns: dict | None) -> bool:
    return ns is not None and not ns["metadata"].get("deletionTimestamp") \
        and (ns.get("status") or {}).get("phase") != "Terminating"


class ServiceAccountController(Controller):
    name = "serviceaccount-controller"
    workers = 3

    def setup(self) -> None:
        self.namespaces = self.factory.informer(NAMESPACES)
        self.accounts = self.factory.informer(SERVICE_ACCOUNTS)
        self.namespaces.add_handler(self._ns, lambda old, new: self._ns(new))
        self.accounts.add_handler(on_delete=lambda sa: self.queue.add(sa["metadata"]["namespace"]))

    def _ns(self, ns: dict) -> None:
        if namespace_active(ns):
            self.queue.add(ns["metadata"]["name"])

    async def reconcile(self, key: str) -> float | None:
        if not namespace_active(self.namespaces.get(key)):
            return None
        for name in DEFAULT_ACCOUNTS:
            if self.accounts.get(f"{key}/{name}") is not None:
                continue
            try:
                await self.client.create(SERVICE_ACCOUNTS, {"metadata": {"name": name}}, key)
            except ApiError as e:
                # 409: it exists (our cache is behind); 403/404: the namespace is going away.
                if e.code not in (409, 403, 404):
                    raise
        return None
