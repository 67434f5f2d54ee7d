"""Shortcuts in admission and the field manager answer as the long way does: the token volume's
suffix is drawn as random.choices draws it, the field manager remembered per User-Agent is
the one derived from it."""

from __future__ import annotations

import random

from aiohttp.test_utils import make_mocked_request
from hypothesis import given, settings
from hypothesis import strategies as st

from kybernetes.api.apply import manager_from_user_agent
from kybernetes.apiserver import admission_plugins, patching


def test_volume_suffix_draws_as_random_choices():
    for seed in range(200):
        random.seed(seed)
        new = admission_plugins._suffix()
        after_new = random.random()
        random.seed(seed)
        old = "".join(random.choices(admission_plugins._ALPHABET, k=5))
        assert new == old and random.random() == after_new  # same letters, same state after


@settings(max_examples=200, deadline=None)
@given(st.text(max_size=40) | st.sampled_from(["kubectl/v1.33.0 (linux/amd64) kubernetes/abc",
                                               "Go-http-client/1.1", "x" * 300, "a\tb/1"]))
def test_manager_from_the_agent_as_before(agent):
    try:
        request = make_mocked_request("POST", "/api/v1/pods", headers={"User-Agent": agent})
    except ValueError:
        return  # not a header value aiohttp takes
    for _ in range(2):  # the second from the cache
        assert patching.manager_name(request) == manager_from_user_agent(agent)


def test_manager_from_field_manager_wins():
    request = make_mocked_request("POST", "/api/v1/pods?fieldManager=me",
                                  headers={"User-Agent": "kubectl/v1"})
    assert patching.manager_name(request) == "me"
