"""Node IPAM: pure CIDR arithmetic and the controller against a real API server.

Matched to pkg/controller/nodeipam/ipam (range allocator + cidrset): /mask subnets of the
cluster CIDR handed out round-robin, never twice, released when a Node is deleted, and the
ranges already on Nodes taken over after a restart.
"""

from __future__ import annotations

import asyncio
import ipaddress
import os
import uuid

from hypothesis import given, settings, strategies as st

import kybtest as conftest
from kybernetes.client import Client, resource
from kybernetes.controllers.nodeipam import CIDRSet

NODE = resource("v1", "Node")


@settings(max_examples=60, deadline=None)
@given(st.sampled_from(["10.42.0.0/16", "10.0.0.0/20", "192.168.0.0/22", "fd00::/112"]),
       st.integers(0, 6), st.lists(st.booleans(), max_size=80))
def test_cidrset_never_hands_out_a_range_twice(cluster, extra_bits, ops):
    net = ipaddress.ip_network(cluster)
    mask = min(net.prefixlen + extra_bits, net.max_prefixlen)
    cs = CIDRSet(cluster, mask)
    held: dict[int, str] = {}
    for allocate in ops:
        if allocate or not held:
            i = cs.allocate()
            if i is None:
                assert len(held) == cs.size
                continue
            assert i not in held
            cidr = cs.cidr(i)
            sub = ipaddress.ip_network(cidr)  # strict: a real network address
            assert sub.subnet_of(net) and sub.prefixlen == mask
            assert cs.index(cidr) == i
            held[i] = cidr
        else:
            i = next(iter(held))
            cs.release(i)
            del held[i]
    assert cs.index("172.16.0.0/24") is None


async def until(fn, timeout=20.0):
    async with asyncio.timeout(timeout):
        while True:
            out = await fn()
            if out:
                return out
            await asyncio.sleep(0.1)


def start_ipam(apiserver, tmp_path, cluster_cidr):
    env = dict(os.environ, KYB_CLUSTER_CIDR=cluster_cidr, KYB_NODE_CIDR_MASK_SIZE="24")
    import subprocess
    import sys
    log = open(tmp_path / f"ipam-{uuid.uuid4().hex[:4]}.log", "ab")
    return subprocess.Popen([sys.executable, "-m", "kybernetes", "controller-manager",
                             "--kubeconfig", str(apiserver.kubeconfig), "--controllers", "nodeipam",
                             "--leader-elect=false"], stdout=log, stderr=subprocess.STDOUT, env=env)


async def cidrs(client, prefix):
    out = await client.list(NODE)
    return {n["metadata"]["name"]: (n.get("spec") or {}).get("podCIDR") for n in out["items"]
            if n["metadata"]["name"].startswith(prefix)}


async def test_unique_cidrs_released_and_reused(tmp_path):
    # A server of its own: the node set (and so the pool) must be this test's alone.
    server = conftest.start_apiserver(tmp_path / "api")
    procs = []
    c = Client.from_kubeconfig(server.kubeconfig)
    try:
        procs.append(start_ipam(server, tmp_path, "10.200.0.0/19"))  # 32 ranges
        names = [f"n{i:02d}" for i in range(20)]
        await asyncio.gather(*(c.create(NODE, {"metadata": {"name": n}}) for n in names))

        async def all_assigned():
            got = await cidrs(c, "n")
            return got if len(got) == 20 and all(got.values()) else None
        got = await until(all_assigned)
        assert len(set(got.values())) == 20
        for n in names:
            node = await c.get(NODE, n)
            assert node["spec"]["podCIDRs"] == [node["spec"]["podCIDR"]]
            assert ipaddress.ip_network(node["spec"]["podCIDR"]).subnet_of(
                ipaddress.ip_network("10.200.0.0/19"))

        # Restart: assignments survive and new nodes avoid them.
        conftest.stop_process(procs.pop())
        procs.append(start_ipam(server, tmp_path, "10.200.0.0/19"))
        more = [f"n{i:02d}" for i in range(20, 32)]
        await asyncio.gather(*(c.create(NODE, {"metadata": {"name": n}}) for n in more))

        async def full():
            got = await cidrs(c, "n")
            return got if len(got) == 32 and all(got.values()) else None
        full_set = await until(full)
        assert len(set(full_set.values())) == 32
        assert all(full_set[n] == got[n] for n in names)

        # The pool is exhausted; a released range goes to the next node.
        freed = full_set["n05"]
        await c.delete(NODE, "n05")
        await c.create(NODE, {"metadata": {"name": "late"}})

        async def late():
            node = await c.get(NODE, "late")
            return (node.get("spec") or {}).get("podCIDR")
        assert await until(late) == freed
    finally:
        await c.close()
        for p in procs:
            conftest.stop_process(p)
        server.stop()
