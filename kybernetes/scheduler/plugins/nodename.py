"""NodeName: a pod with spec.nodeName fits only that node."""

from ..framework import SKIPPED as _SKIPPED, Plugin, unresolvable

ERR_REASON = "node(s) didn't match the requested node name"


class NodeName(Plugin):
    name = "NodeName"
    events = ("Node/Add",)

    def pre_filter(self, state, pi, nodes):
        if not pi.spec.get("nodeName"):
            return _SKIPPED
        return None

    def filter(self, state, pi, ni):
        # Upstream Fits: a pod without spec.nodeName fits every node.
        name = pi.spec.get("nodeName")
        if name and name != ni.name:
            return unresolvable(ERR_REASON)
        return None


