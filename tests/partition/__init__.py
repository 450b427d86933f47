"""Partition tests of a cluster with etcd: real processes in network namespaces."""
