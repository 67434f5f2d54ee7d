"""Node IPAM: pure CIDR arithmetic and the controller against a real API server.

Matched to pkg/controller/nodeipam/ipam (range allocator + cidrset): /mask subnets of the
cluster CIDR handed out round-robin, never twice, released when a Node is deleted, and the
ranges already on Nodes taken over after a restart.
"""

from __future__ import annotations

import asyncio
import ipaddress
import uuid

from hypothesis import given, settings, strategies as st

from kybernetes.client import Client, resource
from kybernetes.controllers.nodeipam import CIDRSet
from kybtest import start_apiserver, start_controller_manager, stop_process, until

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


def start_ipam(apiserver, tmp_path, cluster_cidr):
    return start_controller_manager(apiserver.kubeconfig, "nodeipam",
                                    tmp_path / f"ipam-{uuid.uuid4().hex[:4]}.log",
                                    flags=("--cluster-cidr", cluster_cidr, "--node-cidr-mask-size", "24"))


async def cidrs(client, prefix):
    out = await client.list(NODE)
    return {n["metadata"]["name"]: (n.get("spec") or {}).get("podCIDR") for n in out["items"]
            if n["metadata"]["name"].startswith(prefix)}


async def assigned(client, prefix, count):
    """Node → podCIDR, once the `count` nodes named `prefix`* all have one."""
    got = await cidrs(client, prefix)
    return got if len(got) == count and all(got.values()) else None


async def test_unique_cidrs_released_and_reused(tmp_path):
    # A server of its own: the node set (and so the pool) must be this test's alone.
    server = start_apiserver(tmp_path / "api")
    procs = []
    c = Client.from_kubeconfig(server.kubeconfig)
    try:
        procs.append(start_ipam(server, tmp_path, "10.200.0.0/19"))  # 32 ranges
        names = [f"n{i:02d}" for i in range(20)]
        await asyncio.gather(*(c.create(NODE, {"metadata": {"name": n}}) for n in names))

        got = await until(lambda: assigned(c, "n", 20))
        assert len(set(got.values())) == 20
        for n in names:
            node = await c.get(NODE, n)
            assert node["spec"]["podCIDRs"] == [node["spec"]["podCIDR"]]
            assert ipaddress.ip_network(node["spec"]["podCIDR"]).subnet_of(
                ipaddress.ip_network("10.200.0.0/19"))

        # Restart: assignments survive and new nodes avoid them.
        stop_process(procs.pop())
        procs.append(start_ipam(server, tmp_path, "10.200.0.0/19"))
        more = [f"n{i:02d}" for i in range(20, 32)]
        await asyncio.gather(*(c.create(NODE, {"metadata": {"name": n}}) for n in more))

        full_set = await until(lambda: assigned(c, "n", 32))
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
            stop_process(p)
        server.stop()
