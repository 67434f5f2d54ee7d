"""NodeUnschedulable: cordoned nodes (spec.unschedulable) take only pods tolerating the
node.kubernetes.io/unschedulable:NoSchedule taint."""

from ..framework import Plugin, unresolvable
from .tainttoleration import tolerates

ERR_REASON = "node(s) were unschedulable"
_TAINT = {"key": "node.kubernetes.io/unschedulable", "effect": "NoSchedule"}


class NodeUnschedulable(Plugin):
    name = "NodeUnschedulable"
    node_state_only = True
    events = ("Node/Add", "Node/Update")

    def filter(self, state, pi, ni):
        if ni.unschedulable:
            tols = pi.spec.get("tolerations") or ()
            if not any(tolerates(t, _TAINT) for t in tols):
                return unresolvable(ERR_REASON)
        return None
