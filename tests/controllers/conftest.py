"""Fixtures of the controller suites that run a cluster of their own."""

from __future__ import annotations

import pytest

import kybtest


@pytest.fixture
def k(cluster, tmp_path) -> kybtest.Kubectl:
    """kubectl 1.33 against the test module's `cluster` fixture (a kybtest.Server)."""
    return kybtest.kubectl_or_skip(cluster.kubeconfig, tmp_path / "cache")
