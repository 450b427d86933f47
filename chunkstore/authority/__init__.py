"""The networked cluster's authority: what must be agreed, decided by etcd.

``pki`` (the cluster CA and the certificates it issues), ``etcd`` (a thin client of etcd's v3
JSON gateway), ``etcdmember`` (the settings and command line of one etcd member). The embedded
local ring needs none of it.
"""
