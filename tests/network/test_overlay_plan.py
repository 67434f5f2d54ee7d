"""Pure parts of the overlay: which entries a node wants from the Node objects, the MASQUERADE
chain. Annotations are flannel's (kube subnet manager): backend-data {"VNI","VtepMAC"}, public-ip."""

from __future__ import annotations

import ipaddress
import json

from hypothesis import given, strategies as st

from kybernetes.network import masq, overlay


def node(name: str, cidr: str | None, ip: str | None, mac: str | None,
         public_ip: str | None = None) -> dict:
    ann = {}
    if mac:
        ann = overlay.backend_annotations(mac, public_ip or ip or "")
        if not public_ip:
            del ann[overlay.PUBLIC_IP]
    return {"metadata": {"name": name, "annotations": ann},
            "spec": {"podCIDR": cidr} if cidr else {},
            "status": {"addresses": [{"type": "InternalIP", "address": ip}] if ip else []}}


def test_backend_annotations_are_flannels_format():
    ann = overlay.backend_annotations("AA:bb:cc:dd:ee:ff", "172.31.250.12")
    assert json.loads(ann["flannel.alpha.coreos.com/backend-data"]) == \
        {"VNI": 1, "VtepMAC": "AA:bb:cc:dd:ee:ff"}
    assert ann["flannel.alpha.coreos.com/backend-type"] == "vxlan"
    assert ann["flannel.alpha.coreos.com/public-ip"] == "172.31.250.12"


def test_wanted_skips_self_and_incomplete_nodes():
    nodes = [node("a", "10.42.0.0/24", "172.31.250.11", "aa:aa:aa:aa:aa:01"),
             node("b", "10.42.1.0/24", "172.31.250.12", "aa:aa:aa:aa:aa:02"),
             node("c", None, "172.31.250.13", "aa:aa:aa:aa:aa:03"),       # no podCIDR yet
             node("d", "10.42.3.0/24", "172.31.250.14", None),            # no VTEP yet
             node("e", "10.99.0.0/24", "172.31.250.15", "aa:aa:aa:aa:aa:05")]  # outside cluster
    w = overlay.wanted(nodes, "a")
    assert w.routes == {("10.42.1.0/24", "10.42.1.0")}
    assert w.neighs == {("10.42.1.0", "aa:aa:aa:aa:aa:02")}
    assert w.fdbs == {("aa:aa:aa:aa:aa:02", "172.31.250.12")}


def test_public_ip_annotation_wins_over_internal_ip():
    n = node("b", "10.42.1.0/24", "172.31.250.12", "aa:aa:aa:aa:aa:02", public_ip="192.0.2.9")
    assert overlay.wanted([n], "a").fdbs == {("aa:aa:aa:aa:aa:02", "192.0.2.9")}


def test_malformed_backend_data_is_ignored():
    n = node("b", "10.42.1.0/24", "172.31.250.12", "aa:aa:aa:aa:aa:02")
    n["metadata"]["annotations"][overlay.BACKEND_DATA] = "{not json"
    assert overlay.peer_of(n) is None


@given(st.lists(st.tuples(st.integers(0, 255), st.integers(1, 250)), max_size=30),
       st.integers(0, 30))
def test_wanted_is_one_entry_set_per_distinct_remote_subnet(specs, me_index):
    nodes = [node(f"n{i}", f"10.42.{third}.0/24", f"172.31.250.{host}",
                  f"aa:aa:aa:aa:{i // 256:02x}:{i % 256:02x}")
             for i, (third, host) in enumerate(specs)]
    me = f"n{me_index}"
    w = overlay.wanted(nodes, me)
    remote = {n["spec"]["podCIDR"] for n in nodes if n["metadata"]["name"] != me}
    assert {c for c, _ in w.routes} == remote
    for cidr, gw in w.routes:
        assert gw == str(ipaddress.ip_network(cidr).network_address)
    # Every route's gateway has a neighbour entry whose MAC has an fdb entry.
    macs = dict(w.neighs)
    assert {gw for _, gw in w.routes} == set(macs)
    assert set(macs.values()) <= {m for m, _ in w.fdbs}


def test_masquerade_chain_leaves_pod_and_service_traffic_alone():
    rules = masq.chain_rules("10.42.0.0/16", "10.43.0.0/16")
    assert rules[0] == f"-A {masq.CHAIN} -s 10.42.0.0/16 -d 10.42.0.0/16 -j RETURN"
    assert rules[1] == f"-A {masq.CHAIN} -s 10.42.0.0/16 -d 10.43.0.0/16 -j RETURN"
    assert rules[-1].endswith("-j MASQUERADE --random-fully")
    text = masq.restore_input("10.42.0.0/16", "10.43.0.0/16")
    assert text.startswith("*nat\n:KYB-POSTROUTING - [0:0]\n") and text.rstrip().endswith("COMMIT")
