"""The ReplicationController controller: the ReplicaSet controller with a map selector.

Upstream runs the ReplicaSet controller over RCs converted to ReplicaSets; here the same class
is told the core/v1 kind and how to read an equality-only selector.
"""

from __future__ import annotations

from kybernetes.api.selectors import LabelSelector, selector_from_set

from .replicaset import ReplicaSetController


class ReplicationControllerController(ReplicaSetController):
    name = "replicationcontroller"
    api_version = "v1"
    kind = "ReplicationController"
    component = "replication-controller"

    def selector(self, obj: dict) -> LabelSelector:
        selector = (obj.get("spec") or {}).get("selector")
        if not selector:  # an RC without a selector selects nothing (validation defaults it)
            return LabelSelector(nothing=True)
        return selector_from_set(selector)
