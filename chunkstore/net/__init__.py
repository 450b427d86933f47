"""The network: the wire protocol between clients and storage nodes, and both ends of it.

``wire`` (frames, messages, codec, handshake, transports), ``node`` (the ``sofs-node``
daemon serving its disks), ``client`` (RemoteDisk: a disk on a node, with DiskStore's
methods). The codec imports nothing of the disk engine's storage (no rocksdict).
"""
