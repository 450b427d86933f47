"""The disk engine: one disk directory, append-only containers plus a rocksdict index.

``container`` (the record format, byte by byte), ``index`` (the rocksdict key schema),
``records`` (DiskStats, CompactReport: what a disk reports), ``fdcache`` (bounded open
container files), ``store`` (DiskStore: put, get, delete, group commit, recovery, compaction,
root record files). Nothing here knows about the network, placement or other disks.
"""
