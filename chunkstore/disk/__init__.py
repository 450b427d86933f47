"""The disk engine: one disk directory, append-only containers plus a rocksdict index.

``store`` (DiskStore: the one class callers use – put, get, delete, stats, compact, roots,
close), ``log`` (ContainerLog, owned by the store: the active container, append, group commit,
container accounting), ``container`` (the record format, byte by byte), ``index`` (the
rocksdict key schema), ``marker`` (the DISK file that makes a directory a disk), ``pending``
(index changes waiting for a group commit), ``recovery`` (re-indexing on open), ``compact``
(compaction, on the log, the index and the fd cache), ``rootfiles`` (volume root record
files), ``records`` (DiskStats, CompactReport: what a disk reports), ``fdcache`` (bounded open
container files). Nothing here knows about the network, placement or other disks.
"""
