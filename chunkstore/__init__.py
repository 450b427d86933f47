"""chunkstore: the RING layer of sofs.

Stores immutable, content-addressed chunks (keys = blake3-160 of the payload) on a set of
disks, protected by replication (small chunks) or Reed-Solomon erasure coding (large chunks).

Public entry points:

* :class:`chunkstore.store.ChunkStore` – the abstract interface the file layer uses;
* :class:`chunkstore.memstore.MemoryChunkStore` – in-memory implementation for unit tests;
* :class:`chunkstore.localring.LocalRing` – the embedded ring over a local cluster directory;
* :mod:`chunkstore.repair` – repair sweep and health scan.

Modules: errors, keys (ChunkRef), policy (replication / EC / Protection), container (on-disk
record format), diskindex (rocksdict schema), fdcache, roots (volume root records), diskstore
(one disk), ring (placement), cluster (DATA_DIR layout, lock, init), repairlog, localring,
repair.

Nothing is done at import time.
"""
