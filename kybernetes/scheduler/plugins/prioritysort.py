"""PrioritySort: higher priority first, then the pod that entered the queue earlier."""

from ..framework import Plugin


class PrioritySort(Plugin):
    name = "PrioritySort"

    def sort_key(self, qp) -> tuple:
        return (-qp.info.priority, qp.timestamp)
