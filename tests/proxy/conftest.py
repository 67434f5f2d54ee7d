"""Fixtures for the proxy tests: the namespace topology of proxylab.py and an API server the node
namespace can reach."""

from __future__ import annotations

import random
import sys

import pytest

from kybernetes.client import Client
from proxylab import PODS, Lab, setup, start_apiserver, stop_process, teardown


@pytest.fixture(scope="module")
def lab(tmp_path_factory):
    tag = f"{random.getrandbits(24):06x}"
    x = random.randint(1, 254)
    lab = Lab(tag=tag, node=f"kyb-t-{tag}-n1", ext=f"kyb-t-{tag}-ext",
              pods={p: f"kyb-t-{tag}-{p}" for p in PODS}, host_link=f"kyb{tag}h",
              host_ip=f"169.254.{x}.{random.choice(range(1, 250, 4))}",
              dir=tmp_path_factory.mktemp("proxy-lab"))
    try:
        setup(lab)
        yield lab
    finally:
        teardown(lab)


@pytest.fixture(scope="module")
def lab_apiserver(lab):
    server = start_apiserver(lab.dir / "apiserver", lab.host_ip)
    yield server
    server.stop()


@pytest.fixture(scope="module", params=["iptables", "nftables"])
def proxy(request, lab, lab_apiserver):
    """`kyb proxy` running inside the node namespace, in each mode; its rules are removed after."""
    mode = request.param
    p = lab.spawn(lab.node, [sys.executable, "-m", "kybernetes", "proxy", "--kubeconfig",
                             str(lab_apiserver.kubeconfig), "--node-name", "n1", "--mode", mode,
                             "--min-sync-period", "0.2"], f"proxy-{mode}.log")
    yield mode
    stop_process(p)
    lab.exec(lab.node, sys.executable, "-m", "kybernetes", "proxy", "--cleanup", "--mode", mode,
             check=False)


@pytest.fixture
async def api(lab_apiserver):
    client = Client.from_kubeconfig(lab_apiserver.kubeconfig)
    yield client
    await client.close()
