"""fuse_mount: serves one sofs volume as a real FUSE filesystem (pyfuse3 + trio).

:mod:`fuse_mount.operations` translates FUSE requests into :class:`sofs.fs.Filesystem` calls,
:mod:`fuse_mount.errno_map` is the one place where SOFS and chunkstore errors become POSIX error
numbers, and :mod:`fuse_mount.daemon` runs a mount process (foreground or detached) and stops it
cleanly. NFS-Ganesha and Samba (``exporters``) re-export these mounts.
"""
