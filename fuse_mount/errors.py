"""Errors of the mount layer (mounting, unmounting, talking to a mount process).

Errors of the layers below (sofs.errors, chunkstore.errors) become errno values at the FUSE
boundary (fuse_mount.errno_map); these are for the mount's own callers (sofsctl, exporters).
"""


class MountError(Exception):
    """A mount or unmount did not happen; the message says why and what to do."""


class UnmountIncomplete(MountError):
    """The mount is gone, but data buffered at the unmount could not be stored; the files
    concerned are as their last close or fsync left them (the message names them)."""
