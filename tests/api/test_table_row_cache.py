"""Table rows of stored states are reused only while they would render the same."""

from __future__ import annotations

import copy
from datetime import datetime, timedelta, timezone

from kybernetes.api import tables

NOW = datetime(2025, 1, 1, 12, 0, 0, 250_000, tzinfo=timezone.utc)


def pod(rv: str, phase: str = "Running") -> dict:
    return {"apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": "web", "namespace": "default", "uid": "u1",
                         "resourceVersion": rv, "creationTimestamp": "2025-01-01T11:59:00Z"},
            "spec": {"containers": [{"name": "c", "image": "nginx"}], "nodeName": "n1"},
            "status": {"phase": phase, "conditions": [{"type": "Ready", "status": "True"}]}}


def rows(objs, now, cache):
    return tables.to_table("", "pods", objs, now=now, cache=cache)["rows"]


def test_cached_rows_equal_fresh_rows_within_the_second():
    first = rows([pod("5")], NOW, True)
    again = rows([pod("5")], NOW + timedelta(milliseconds=500), True)
    assert again == first == rows([pod("5")], NOW, False)


def test_a_new_resource_version_or_second_renders_again():
    rows([pod("7")], NOW, True)
    changed = rows([pod("8", phase="Succeeded")], NOW, True)
    assert changed == rows([pod("8", phase="Succeeded")], NOW, False)
    assert changed[0]["cells"][2] != rows([pod("7")], NOW, True)[0]["cells"][2]  # not the old row
    later = NOW + timedelta(seconds=90)
    assert rows([pod("7")], later, True) == rows([pod("7")], later, False)
    assert rows([pod("7")], later, True)[0]["cells"][4] != rows([pod("7")], NOW, False)[0]["cells"][4]


def test_objects_without_a_resource_version_are_not_cached():
    dry = pod("")
    rows([dry], NOW, True)
    other = copy.deepcopy(dry)
    other["status"]["phase"] = "Failed"
    assert rows([other], NOW, True) == rows([other], NOW, False)
