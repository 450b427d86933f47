"""The network: the wire protocol between clients and storage nodes, and both ends of it.

``wire`` (the protocol, a package: frames, messages, encode/decode, handshake, transports),
``client`` (RemoteDisk: a disk on a node, with DiskStore's methods), ``node`` (the
``sofs-node`` daemon serving its disks), ``nodeconfig`` (the node's config file), ``budget``
(the node's bound on bytes held in memory). The wire and the client import nothing of the
disk engine's storage (no rocksdict).
"""
