"""Rolling-update steps of the Deployment controller on plain dicts (no API server).

Behaviour matched: upstream pkg/controller/deployment/rolling.go cleanupUnhealthyReplicas,
which refuses a "scale down" that would raise an old ReplicaSet's size (its status still counts
pods of a larger size) and lets the sync be retried.
"""

from __future__ import annotations

import pytest

from kybernetes.api.errors import ApiError
from kybernetes.controllers.deployment import DeploymentController


def _rs(name: str, replicas: int, available: int) -> dict:
    return {"metadata": {"name": name, "namespace": "ns", "creationTimestamp": "2024-01-01T00:00:00Z"},
            "spec": {"replicas": replicas}, "status": {"availableReplicas": available}}


def _controller() -> tuple[DeploymentController, list[tuple[str, int]]]:
    ctl = DeploymentController.__new__(DeploymentController)  # no informers needed here
    scaled: list[tuple[str, int]] = []

    async def scale(d, rs, n):
        scaled.append((rs["metadata"]["name"], n))
        return True, dict(rs, spec={"replicas": n})
    ctl._scale_and_record = scale
    return ctl, scaled


async def test_unhealthy_replicas_of_old_sets_are_scaled_away():
    ctl, scaled = _controller()
    _, total = await ctl._cleanup_unhealthy({}, [_rs("a", 50, 40), _rs("b", 10, 10)], 75)
    assert scaled == [("a", 40)] and total == 10


async def test_cleanup_is_bounded_by_the_budget():
    ctl, scaled = _controller()
    _, total = await ctl._cleanup_unhealthy({}, [_rs("a", 50, 0)], 20)
    assert scaled == [("a", 30)] and total == 20


async def test_status_counting_more_than_spec_never_scales_up():
    ctl, scaled = _controller()
    with pytest.raises(ApiError) as e:
        await ctl._cleanup_unhealthy({}, [_rs("a", 50, 60)], 75)
    assert e.value.code == 409 and "50 -> 60" in e.value.message
    assert scaled == []
