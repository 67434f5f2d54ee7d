"""The watch cache's key index: whatever mix of creates, deletes, re-creates and lists came
before, a list under a prefix is exactly the live keys with that prefix, in order (what etcd's
range answers). Writes only note keys that came and went, by resource; a list whose range has
notes merges them."""

from __future__ import annotations

from types import SimpleNamespace

from hypothesis import given, settings
from hypothesis import strategies as st

from kybernetes.apiserver.watchcache import WatchCache

KEYS = st.sampled_from([f"/registry/{kind}/ns{n}/o{i}" for kind in
                        ("core/events", "core/pods", "core/podsx", "apps/deployments")
                        for n in (1, 2) for i in range(4)] + ["/registry/odd"])
PREFIXES = st.sampled_from(["", "/registry/", "/registry/core/", "/registry/core/pods/",
                            "/registry/core/pods/ns1/", "/registry/core/events/ns2/",
                            "/registry/core/podsx/", "/registry/apps/deployments/ns1/o2",
                            "/registry/odd"])
STEPS = st.lists(st.one_of(st.tuples(st.just("put"), KEYS), st.tuples(st.just("delete"), KEYS),
                           st.tuples(st.just("list"), PREFIXES)), max_size=60)


def _event(type_: str, key: str, rev: int):
    return SimpleNamespace(type=type_, kv=SimpleNamespace(key=key, mod_revision=rev,
                                                          value=b'{"metadata":{}}'))


@settings(max_examples=300, deadline=None)
@given(initial=st.sets(KEYS, max_size=8), steps=STEPS)
def test_lists_see_exactly_the_live_keys_in_order(initial, steps):
    cache = WatchCache(store=None)
    cache.objects = {k: {"metadata": {"resourceVersion": "1"}} for k in initial}
    cache._keys = sorted(initial)
    live = set(initial)
    rev = 1
    for op, arg in steps:
        rev += 1
        if op == "put":
            cache._apply(_event("PUT", arg, rev))
            live.add(arg)
        elif op == "delete":
            cache._apply(_event("DELETE", arg, rev))
            live.discard(arg)
        else:
            assert cache.keys(arg) == sorted(k for k in live if k.startswith(arg))
            items, at = cache.list(arg)
            assert [k for k, _ in items] == cache.keys(arg) and at == cache.revision
    assert cache.keys("") == sorted(live)


def test_a_list_of_an_untouched_resource_leaves_the_notes_alone():
    """Every pod create asks for the PriorityClasses: that list must not merge the pods."""
    cache = WatchCache(store=None)
    cache._apply(_event("PUT", "/registry/scheduling.k8s.io/priorityclasses/high", 2))
    assert cache.keys("/registry/scheduling.k8s.io/priorityclasses/") == \
        ["/registry/scheduling.k8s.io/priorityclasses/high"]
    for i in range(3):
        cache._apply(_event("PUT", f"/registry/core/pods/ns/p{i}", 3 + i))
    assert cache.keys("/registry/scheduling.k8s.io/priorityclasses/") == \
        ["/registry/scheduling.k8s.io/priorityclasses/high"]
    assert list(cache._changed) == ["/registry/core/pods/"]  # still only noted
    assert cache.keys("/registry/core/pods/ns/") == [f"/registry/core/pods/ns/p{i}" for i in range(3)]
    assert not cache._changed
