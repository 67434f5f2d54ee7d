"""kube-proxy: Services + EndpointSlices → iptables or nftables rules (IPVS is not in this kernel).

`model` turns API objects into plain service ports and endpoints, `iptables` and `nftables` render
them into rule sets (pure functions), `apply` hands the difference to the kernel, `proxier` is the
sync loop fed by informers, `servicelb` is the k3s-style built-in LoadBalancer.
"""
