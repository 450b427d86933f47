"""The FUSE boundary: domain errors of the layers below turned into POSIX errno values.

Nothing below ``fuse_mount`` knows errno numbers; nothing above it sees domain errors from a
mount. An unexpected exception becomes EIO and is logged with its traceback: a bug must never
kill the mount (pyfuse3 would end the session and leave the mount point dead).
"""

import errno
import functools
import logging
from collections.abc import Awaitable, Callable
from typing import TypeVar

import pyfuse3

from chunkstore import errors as cerr
from sofs import errors as ferr

log = logging.getLogger("sofs.fuse")

ERRNO: dict[type[BaseException], int] = {
    ferr.NoSuchEntry: errno.ENOENT,
    ferr.EntryExists: errno.EEXIST,
    ferr.NotADirectory: errno.ENOTDIR,
    ferr.IsADirectory: errno.EISDIR,
    ferr.DirectoryNotEmpty: errno.ENOTEMPTY,
    ferr.NameTooLong: errno.ENAMETOOLONG,
    ferr.InvalidArgument: errno.EINVAL,
    ferr.NotPermitted: errno.EPERM,
    ferr.AccessDenied: errno.EACCES,
    ferr.CrossDevice: errno.EXDEV,
    ferr.NoSuchAttribute: errno.ENODATA,
    ferr.AttributeTooLarge: errno.E2BIG,
    ferr.AttributeNameInvalid: errno.ERANGE,
    ferr.TooManyLinks: errno.EMLINK,
    ferr.BadFileHandle: errno.EBADF,
    ferr.NotSupported: errno.EOPNOTSUPP,
    ferr.NoSpace: errno.ENOSPC,
    ferr.DataUnavailable: errno.EIO,
    ferr.VolumeFenced: errno.EROFS,
    cerr.DiskFull: errno.ENOSPC,
    cerr.ChunkStoreError: errno.EIO,
    ferr.FsError: errno.EIO,
}


def errno_for(exc: BaseException) -> int:
    for cls in type(exc).__mro__:
        if cls in ERRNO:
            return ERRNO[cls]
    if isinstance(exc, OSError) and exc.errno:
        return exc.errno
    return errno.EIO


T = TypeVar("T")


def fuse_errors(fn: Callable[..., Awaitable[T]]) -> Callable[..., Awaitable[T]]:
    """Decorate an async FUSE handler: every exception leaves as ``pyfuse3.FUSEError``."""

    @functools.wraps(fn)
    async def handler(*args, **kwargs):
        try:
            return await fn(*args, **kwargs)
        except pyfuse3.FUSEError:
            raise
        except (ferr.FsError, cerr.ChunkStoreError) as e:
            code = errno_for(e)
            if code == errno.EIO:
                log.error("%s: %s", fn.__name__, e)
            raise pyfuse3.FUSEError(code) from None
        except OSError as e:
            log.error("%s: %s", fn.__name__, e)
            raise pyfuse3.FUSEError(errno_for(e)) from None
        except Exception:
            log.exception("%s failed unexpectedly", fn.__name__)
            raise pyfuse3.FUSEError(errno.EIO) from None

    return handler
