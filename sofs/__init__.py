"""sofs: the SOFS layer, POSIX files and directories on top of the chunkstore RING.

Metadata (the "MESA" role: inodes, directory entries, attributes, xattrs, file -> chunk maps) lives
in rocksdict (:mod:`sofs.metadata`, key schema in :mod:`sofs.schema`); file data is cut into fixed
blocks that become immutable, content-addressed, zstd-compressed chunks (:mod:`sofs.blocks`).
:class:`sofs.fs.Filesystem` is the plain-Python filesystem API that ``fuse_mount`` serves; it
imports nothing from FUSE so it is tested directly.

The parts a :class:`~sofs.fs.Filesystem` is built from: :mod:`sofs.inodes` (inodes in memory),
:mod:`sofs.handles` (open files), :mod:`sofs.dirents` (directory entries),
:mod:`sofs.xattrs` (xattrs and ACLs, with :mod:`sofs.acl`), :mod:`sofs.permissions`,
:mod:`sofs.superblock`, the data path :mod:`sofs.fileio` (with :mod:`sofs.filedata` buffers and
cache, :mod:`sofs.chunkio` blocks in the RING), and :mod:`sofs.collector` (the garbage
collector, over :mod:`sofs.chunkrefs`). Beside it: :mod:`sofs.volume` (volume configs),
:mod:`sofs.fsck` (the checker) and :mod:`sofs.online_check`, :mod:`sofs.metacheckpoint`
(metadata checkpoints into the RING, records in :mod:`sofs.checkpoint_records`),
:mod:`sofs.errors`. Timers and stored timestamps read a :class:`chunkstore.clock.Clock`
(:mod:`sofs.timestamps`).
"""
