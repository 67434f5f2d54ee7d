"""NodePorts: a pod's hostPorts must be free on the node (same protocol and port, and the
same IP or either side on 0.0.0.0)."""

from ..framework import SKIPPED, Plugin, unschedulable

ERR_REASON = "node(s) didn't have free ports for the requested pod ports"


def conflicts(wanted, used) -> bool:
    for ip, proto, port in wanted:
        for uip, uproto, uport in used:
            if port == uport and proto == uproto and (
                    ip == uip or ip == "0.0.0.0" or uip == "0.0.0.0"):
                return True
    return False


class NodePorts(Plugin):
    name = "NodePorts"
    events = ("Pod/Delete", "Node/Add")

    def pre_filter(self, state, pi, nodes):
        return None if pi.ports else SKIPPED

    def filter(self, state, pi, ni):
        if ni.ports and conflicts(pi.ports, ni.ports):
            return unschedulable(ERR_REASON)
        return None
