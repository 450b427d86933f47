"""chunkstore: the RING layer of sofs.

Stores immutable, content-addressed chunks (keys = blake3-160 of the payload) on a set of
disks, protected by replication (small chunks) or Reed-Solomon erasure coding (large chunks).
The file layer (``sofs``) sees only :class:`chunkstore.api.ChunkStore`, opened with
:func:`chunkstore.ring.open.open_ring`.

Sub-packages, each with one job (imports point down this list, checked by import-linter)::

    healing/     repair sweep (rebuild, rebalance, drain, scrub) and the healer that runs it
    ring/        ring clients: the data path (quorum puts, degraded reads), the embedded
                 local ring, the networked ring, the in-memory store, the repair log, map admin
    net/         the wire protocol, the storage-node daemon and the client of a remote disk
    disk/        the disk engine: container format, piece index, disk store, fd cache
    placement/   where chunks live: keys, the consistent-hash ring, the cluster map, the data
                 directory's file names (layout)
    protection/  protection policies: replication, Reed-Solomon (pyeclib) and the pair of both

Modules shared by all of them: ``errors`` (every chunkstore exception), ``api`` (the
ChunkStore interface and the DiskBackend protocol), ``roots`` (volume root record format),
``clock`` (the injectable clock), ``atomicfile`` (durable state-file replacement).

Nothing is done at import time.
"""
