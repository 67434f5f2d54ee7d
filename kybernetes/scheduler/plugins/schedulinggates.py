"""SchedulingGates: a pod with spec.schedulingGates waits outside the active queue."""

from ..framework import UNRESOLVABLE, Plugin, Status


class SchedulingGates(Plugin):
    name = "SchedulingGates"

    def pre_enqueue(self, pi):
        gates = pi.spec.get("schedulingGates")
        if gates:
            names = [g.get("name", "") for g in gates]
            return Status(UNRESOLVABLE, f"waiting for scheduling gates: [{' '.join(names)}]")
        return None
