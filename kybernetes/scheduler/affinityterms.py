"""Pod (anti-)affinity terms, parsed once per pod."""

from __future__ import annotations

from typing import Any

from kybernetes.api.selectors import LabelSelector, SelectorError, label_selector_from_object


def _selector(obj: dict | None) -> LabelSelector:
    try:
        return label_selector_from_object(obj)
    except SelectorError:
        return LabelSelector(nothing=True)


class AffinityTerm:
    __slots__ = ("namespaces", "ns_selector", "selector", "topology_key", "weight", "sig")

    def __init__(self, term: dict, owner_namespace: str, weight: int = 0):
        self.topology_key = term.get("topologyKey", "")
        self.selector = _selector(term.get("labelSelector"))
        self.namespaces = set(term.get("namespaces") or ())
        nss = term.get("namespaceSelector")
        self.ns_selector = _selector(nss) if nss is not None else None
        if not self.namespaces and self.ns_selector is None:
            self.namespaces = {owner_namespace}
        self.weight = weight
        # Equal sigs select the same pods: lets a cycle match a term once per distinct pod.
        self.sig = (str(self.selector), tuple(sorted(self.namespaces)), str(self.ns_selector),
                    self.selector.nothing)

    def matches(self, pi: Any, ns_labels: dict[str, dict] | None = None) -> bool:
        """Does pod `pi` (a PodInfo) fall under this term (namespace and labels)?"""
        if pi.namespace not in self.namespaces:
            if self.ns_selector is None:
                return False
            labels = (ns_labels or {}).get(pi.namespace)
            if labels is None or not self.ns_selector.matches(labels):
                return False
        return self.selector.matches(pi.labels)


def parse_terms(terms: list | None, pi: Any) -> list[AffinityTerm]:
    return [AffinityTerm(t, pi.namespace) for t in terms or ()]


def parse_weighted(terms: list | None, pi: Any) -> list[AffinityTerm]:
    return [AffinityTerm(t.get("podAffinityTerm") or {}, pi.namespace, t.get("weight", 0))
            for t in terms or ()]
