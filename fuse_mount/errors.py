"""Errors of the mount layer (mounting, unmounting, talking to a mount process).

Errors of the layers below (sofs.errors, chunkstore.errors) become errno values at the FUSE
boundary (fuse_mount.errno_map); these are for the mount's own callers (sofsctl, exporters).
"""


class MountError(Exception):
    """A mount or unmount did not happen; the message says why and what to do."""
