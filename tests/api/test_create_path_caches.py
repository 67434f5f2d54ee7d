"""The pod create path's shortcuts answer as the long way does: cached quantity parses and
valid names give what a fresh parse or check gives, the caches stay bounded, and
schemas.clean's inlined scalar checks agree with walk()."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from kybernetes.api import names, schemas
from kybernetes.api import validation_kinds as kinds


@settings(max_examples=300, deadline=None)
@given(st.one_of(st.text(max_size=8), st.sampled_from(["100m", "1Gi", "-1", "1e3", "5Ei", "NaN",
                                                       "1_0", "+2k", "0.1u", "1.5"]),
                 st.integers(-10, 10**20), st.floats(allow_nan=False), st.booleans(), st.none()))
def test_a_cached_quantity_parse_is_a_fresh_one(q):
    for _ in range(2):  # the second parse comes from the cache
        assert repr(kinds.parse_quantity(q)) == repr(kinds._parse_quantity(q))  # NaN too


@settings(max_examples=500, deadline=None)
@given(st.text(alphabet="aZ09-_./ %é", max_size=70))
def test_remembered_valid_names_answer_as_a_fresh_check(value):
    fresh_key = names._qualified_name_errors(value)
    names._valid_label_values.discard(value)
    fresh_value = names.is_label_value(value)       # checked, not remembered
    for _ in range(2):  # the second answer may come from the set of valid ones
        assert names.is_qualified_name(value) == fresh_key
        assert names.is_label_value(value) == fresh_value


def test_name_caches_stay_bounded():
    for i in range(names._VALID_MAX + 10):
        names.is_label_value(f"v{i}")
        names.is_qualified_name(f"k{i}")
    assert len(names._valid_label_values) <= names._VALID_MAX
    assert len(names._valid_qualified) <= names._VALID_MAX
    assert names.is_label_value("v1") == [] and names.is_qualified_name("-") != []


# --- schemas.clean's inlined scalar checks agree with walk() --------------------------------------

SCALARS = [None, True, False, 0, 1, -1, 2**31, 2**63, 1.0, 1.5, -0.0, "", "x", "100m",
           "2026-01-01T00:00:00Z", "yesterday", "aGVsbG8=", "!!", [], {}, ["x"], {"a": "b"}]


def test_clean_scalars_agree_with_walk():
    nodes = [schemas.Node(kind=k, go_type="t", fmt=fmt)
             for k in (schemas.STRING, schemas.INTEGER, schemas.NUMBER, schemas.BOOLEAN,
                       schemas.INT_OR_STRING, schemas.QUANTITY)
             for fmt in ("", "byte", "date-time", "int32", "int64", "other")]
    for node in nodes:
        # alone, as a property, and as the items of a map and a list
        holders = [(node, lambda v: v),
                   (schemas.Node(kind=schemas.OBJECT, props={"f": node}), lambda v: {"f": v}),
                   (schemas.Node(kind=schemas.MAP, item=node), lambda v: {"k": v, "j": "x"}),
                   (schemas.Node(kind=schemas.ARRAY, item=node), lambda v: [v, v])]
        for holder, wrap in holders:
            for value in SCALARS:
                result = schemas.WalkResult()
                schemas.walk(wrap(value), holder, result)
                found = bool(result.decode_errors or result.unknown_fields or result.required)
                assert schemas.clean(wrap(value), holder) == (not found), (node, value)
