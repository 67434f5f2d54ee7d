"""Watch frames are built from the object's JSON, shared with the write's answer: the bytes must
be exactly those of encoding the whole event."""

from __future__ import annotations

import orjson
from hypothesis import given, strategies as st

from kybernetes.apiserver import rest
from kybernetes.apiserver.watchcache import CachedEvent

json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-2**53, 2**53) | st.text(max_size=8),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=5), inner,
                                                                max_size=3), max_leaves=10)


class _Stream(rest._WatchStream):
    def __init__(self):     # only encode() is used: JSON, no table, no partial metadata
        self.accept = type("A", (), {"table": False, "partial_metadata": False})()


@given(st.dictionaries(st.text(max_size=5), json_values, max_size=4),
       st.sampled_from(["ADDED", "MODIFIED", "DELETED"]))
def test_a_frame_is_the_encoded_event_and_shares_the_objects_json(obj, kind):
    ev = CachedEvent(kind, "/k", 1, obj, None)
    frame = _Stream().encode(kind, ev)
    assert frame == orjson.dumps({"type": kind, "object": obj}) + b"\n"
    assert rest.object_json(obj) is rest.object_json(obj)           # encoded once
    assert rest.object_json(dict(obj)) == rest.object_json(obj)     # another object: its own
