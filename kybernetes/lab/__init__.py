"""`kyb lab`: a multi-node cluster of network namespaces on one machine."""
