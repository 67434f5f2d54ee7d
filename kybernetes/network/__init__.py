"""The pod network between nodes: the VXLAN overlay agent (flannel's job) and MASQUERADE for
pod traffic leaving the pod network. The per-node CNI config lives with the kubelet."""
