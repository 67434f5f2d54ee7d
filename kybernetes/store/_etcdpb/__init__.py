"""Generated etcd v3 wire messages (see etcd.proto)."""
