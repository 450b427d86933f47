"""Errors of the SOFS layer.

Each class names one filesystem condition. They carry no errno: ``fuse_mount.errno_map`` is the one
place that turns them into POSIX error numbers, at the FUSE boundary. A retry never helps unless the
docstring says so.
"""


class FsError(Exception):
    """Root of all SOFS-layer errors."""


class NoSuchEntry(FsError):
    """A name or inode does not exist (ENOENT)."""


class EntryExists(FsError):
    """The target name already exists (EEXIST)."""


class NotADirectory(FsError):
    """A directory operation was applied to a non-directory (ENOTDIR)."""


class IsADirectory(FsError):
    """A file operation was applied to a directory (EISDIR)."""


class DirectoryNotEmpty(FsError):
    """rmdir or rename over a directory that still has entries (ENOTEMPTY)."""


class NameTooLong(FsError):
    """A name component is longer than 255 bytes (ENAMETOOLONG)."""


class InvalidArgument(FsError):
    """The request makes no sense for this object (EINVAL), e.g. a directory into its own subtree."""


class NotPermitted(FsError):
    """The operation is forbidden for this caller or object (EPERM)."""


class WormRefused(NotPermitted):
    """A WORM rule forbids the change, for every caller including root (EPERM): the message
    names the rule and, for a committed file, until when it is retained."""


class CrossDevice(FsError):
    """The rename cannot be done in place; the caller copies instead (EXDEV)."""


class AccessDenied(FsError):
    """Permission bits deny the access (EACCES)."""


class NoSuchAttribute(FsError):
    """The extended attribute does not exist (ENODATA)."""


class AttributeTooLarge(FsError):
    """An extended attribute value is over its limit, 64 KiB (E2BIG)."""


class AttributeNameInvalid(FsError):
    """An extended attribute name is empty or longer than 255 bytes (ERANGE)."""


class TooManyLinks(FsError):
    """The inode's link count would exceed its limit (EMLINK)."""


class BadFileHandle(FsError):
    """A file handle that is not open, or not open for what is asked of it (EBADF)."""


class NotSupported(FsError):
    """The file layer does not implement this variant of an operation (EOPNOTSUPP), e.g. a
    fallocate(2) mode other than those :mod:`sofs.fallocate` lists."""


class NoSpace(FsError):
    """The chunk store has no room for the data (ENOSPC). Retrying after freeing space helps."""


class DataUnavailable(FsError):
    """File data cannot be read or stored: too many pieces of a chunk are lost or the RING cannot
    reach its write quorum (EIO). A retry helps only if disks come back."""


class VolumeError(FsError):
    """A volume cannot be created, found or opened (bad name, exists, missing, in use)."""


class MetadataDamaged(VolumeError):
    """The volume's metadata database reports corruption or an I/O error on read or write:
    the volume cannot be trusted until it is restored from a checkpoint."""


class VolumeFenced(FsError):
    """This copy of the volume's metadata may not change any more: another host took the
    volume over (sofs.metacheckpoint). Mapped to EROFS."""


class CheckpointError(FsError):
    """A metadata checkpoint (sofs.metacheckpoint) could not be written or read back."""


class CheckpointConflict(CheckpointError):
    """Another host advanced this volume's root record: it is mounted (or was restored)
    elsewhere. The checkpoint was not recorded."""


class NoCheckpoint(CheckpointError):
    """The RING holds no checkpoint of this volume."""


class JournalError(FsError):
    """The volume's metadata journal in the RING (:mod:`sofs.journal`) could not be appended
    or read (EIO): a commit that could not be journaled is not acknowledged. A retry helps
    once the RING's disks answer again."""


class JournalFull(JournalError):
    """The journal holds as many entries after the newest checkpoint as it has slots: a
    checkpoint must be written before anything more is acknowledged (EIO until then)."""


class SnapshotUnreadable(MetadataDamaged):
    """A snapshot's catalog or metadata (:mod:`sofs.snapshot`) cannot be read: the garbage
    collector stops, deleting nothing, rather than delete chunks the snapshot may reference."""


class ReferencesUnknown(FsError):
    """What a volume references, or which chunks the RING holds, could not be listed in full
    (an unreadable snapshot, a disk whose pieces do not list, checkpoints that do not read):
    no chunk may then be called unreferenced, so nothing is handed to the collector."""
