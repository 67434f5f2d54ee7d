"""The `node` fixture: one real node (API server + `kyb agent`) for the session."""

from __future__ import annotations

import asyncio
import subprocess

import pytest

from kubelet_node import BRIDGE, Node, _skip_reason


@pytest.fixture(scope="session")
def node(tmp_path_factory):
    reason = _skip_reason()
    if reason:
        pytest.skip(reason)
    n = Node(tmp_path_factory.mktemp("node"))
    try:
        n.start_agent()
        yield n
    finally:
        try:
            if n.proc:
                n.kubectl.run("delete", "pods", "--all", "--all-namespaces", "--grace-period=1",
                              "--wait=true", check=False, timeout=90)
        finally:
            try:
                n.stop_agent()
                from kybernetes.kubelet.agent import teardown
                asyncio.run(teardown(n.data_dir, BRIDGE))
            finally:  # the API server goes whatever failed above
                n.stop_controllers()
                n.api.stop()
            subprocess.run(["umount", "-R", str(n.data_dir / "containerd")],
                           stderr=subprocess.DEVNULL)
