"""sofs: the SOFS layer, POSIX files and directories on top of the chunkstore RING.

Metadata (the "MESA" role: inodes, directory entries, attributes, xattrs, file -> chunk maps) lives
in rocksdict (:mod:`sofs.metadata`, key schema in :mod:`sofs.schema`); file data is cut into fixed
blocks that become immutable, content-addressed, zstd-compressed chunks (:mod:`sofs.blocks`).
:class:`sofs.fs.Filesystem` is the plain-Python filesystem API that ``fuse_mount`` serves; it
imports nothing from FUSE so it is tested directly.
"""
