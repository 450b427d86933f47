"""FUSE_FALLOCATE for a pyfuse3 mount, which pyfuse3 (3.5, the newest) cannot serve by itself.

pyfuse3 gives libfuse no fallocate handler, so libfuse answers every FUSE_FALLOCATE with ENOSYS
and the kernel turns that into EOPNOTSUPP for every later fallocate(2) on the mount (and NFS
ALLOCATE/DEALLOCATE through Ganesha fail the same way). :func:`install` adds the handler to the
live libfuse session, from :meth:`SofsOperations.init`, before the first request after INIT:

* pyfuse3 keeps the session pointer and the operations table it gave ``fuse_session_new`` in two
  statics of its extension module (Cython's ``__pyx_v_7pyfuse3_session`` and
  ``__pyx_v_7pyfuse3_fuse_ops``), found in the module's ELF symbol table (pip builds it here,
  unstripped) and relocated by the address of its exported ``PyInit_pyfuse3``;
* libfuse copied that table into its session: the copy is found byte for byte at a
  pointer-aligned offset near the start of ``struct fuse_session``, and two of its slots are set,
  by the public layout of ``struct fuse_lowlevel_ops`` (``fuse_lowlevel.h``; libfuse 3 only
  appends members): ``fallocate`` (slot 40) and ``destroy`` (slot 1).

Anything unexpected (no symbol table, a table of another size, no single copy, a slot that is
already set) leaves the session untouched and logs why: fallocate then stays EOPNOTSUPP, as
before.

The handler is called by libfuse on the trio thread, inside pyfuse3's request loop
(``fuse_session_process_buf``): it reads the file handle, starts a trio system task that awaits
the operations' ``fallocate(fh, mode, offset, length)`` (which raises ``pyfuse3.FUSEError``
only, see :mod:`fuse_mount.errno_map`) and answers with ``fuse_reply_err``. ``destroy``, called
by ``fuse_session_destroy`` before it frees the session, stops any later answer.
"""

from __future__ import annotations

import ctypes
import errno
import logging
import struct
from collections.abc import Awaitable, Callable
from pathlib import Path

import pyfuse3
import trio

log = logging.getLogger("sofs.fuse")

OPS_SLOTS = 44          # function pointers in struct fuse_lowlevel_ops (libfuse 3.14)
SLOT_DESTROY = 1
SLOT_LOOKUP = 2
SLOT_FALLOCATE = 40
FI_FH_OFFSET = 16       # struct fuse_file_info: int flags, 64 bits of flags, uint64_t fh
SESSION_SEARCH = 128    # bytes of struct fuse_session before its op table, at most
SESSION_SYMBOL = b"__pyx_v_7pyfuse3_session"
OPS_SYMBOL = b"__pyx_v_7pyfuse3_fuse_ops"
INIT_SYMBOL = b"PyInit_pyfuse3"
_SHT_SYMTAB = 2

_FALLOCATE = ctypes.CFUNCTYPE(None, ctypes.c_void_p, ctypes.c_uint64, ctypes.c_int,
                              ctypes.c_int64, ctypes.c_int64, ctypes.c_void_p)
_DESTROY = ctypes.CFUNCTYPE(None, ctypes.c_void_p)

Handler = Callable[[int, int, int, int], Awaitable[None]]


class HookUnavailable(Exception):
    """The handler cannot be installed into this pyfuse3/libfuse (the message says why)."""


class FallocateHook:
    """The installed handler: keeps the C callbacks alive and answers requests."""

    def __init__(self, handler: Handler, libfuse: ctypes.CDLL) -> None:
        self._handler = handler
        self._reply_err = libfuse.fuse_reply_err
        self._reply_err.argtypes = [ctypes.c_void_p, ctypes.c_int]
        self._reply_err.restype = ctypes.c_int
        self.closed = False
        self.c_fallocate = _FALLOCATE(self._on_fallocate)
        self.c_destroy = _DESTROY(self._on_destroy)

    def _on_fallocate(self, req: int, ino: int, mode: int, offset: int, length: int,
                      fi: int) -> None:
        try:
            fh = ctypes.c_uint64.from_address(fi + FI_FH_OFFSET).value
            trio.lowlevel.spawn_system_task(self._serve, req, fh, mode, offset, length,
                                            name="fuse-fallocate")
        except BaseException:  # a C callback: nothing may escape
            log.exception("fallocate request could not be started")
            self._reply(req, errno.EIO)

    async def _serve(self, req: int, fh: int, mode: int, offset: int, length: int) -> None:
        err = errno.EINTR  # cancelled: the mount is ending
        try:
            await self._handler(fh, mode, offset, length)
            err = 0
        except pyfuse3.FUSEError as e:
            err = e.errno
        except Exception:  # never lets one escape (fuse_errors), but a system task must not raise
            log.exception("fallocate failed unexpectedly")
            err = errno.EIO
        finally:
            self._reply(req, err)

    def _reply(self, req: int, err: int) -> None:
        if not self.closed:
            self._reply_err(req, err)

    def _on_destroy(self, userdata: int | None) -> None:
        self.closed = True


def install(handler: Handler) -> FallocateHook | None:
    """Serve FUSE_FALLOCATE with ``handler`` in pyfuse3's current session (call from
    ``Operations.init``); None, logged, when it cannot be done here."""
    try:
        hook = FallocateHook(handler, ctypes.CDLL("libfuse3.so.3"))
        _patch_session(Path(pyfuse3.__file__), hook)
    except Exception as e:  # called from pyfuse3's INIT handler: nothing may escape
        log.warning("fallocate stays unsupported on this mount (EOPNOTSUPP): %s", e)
        return None
    log.debug("fallocate handler installed into the libfuse session")
    return hook


def _patch_session(module: Path, hook: FallocateHook) -> None:
    symbols = _elf_symbols(module, {SESSION_SYMBOL, OPS_SYMBOL, INIT_SYMBOL})
    missing = {SESSION_SYMBOL, OPS_SYMBOL, INIT_SYMBOL} - set(symbols)
    if missing:
        raise HookUnavailable(f"{module.name} has no symbol table entry for "
                              f"{', '.join(sorted(m.decode() for m in missing))}")
    init = ctypes.cast(ctypes.CDLL(str(module)).PyInit_pyfuse3, ctypes.c_void_p).value
    if not init:
        raise HookUnavailable(f"{module.name} exports no PyInit_pyfuse3")
    base = init - symbols[INIT_SYMBOL][0]
    session = ctypes.c_void_p.from_address(base + symbols[SESSION_SYMBOL][0]).value
    if not session:
        raise HookUnavailable("pyfuse3 has no session (init() not called)")
    table_addr, table_size = base + symbols[OPS_SYMBOL][0], symbols[OPS_SYMBOL][1]
    if table_size != OPS_SLOTS * ctypes.sizeof(ctypes.c_void_p):
        raise HookUnavailable(f"pyfuse3's operations table is {table_size} bytes, "
                              f"not {OPS_SLOTS} pointers")
    table = ctypes.string_at(table_addr, table_size)
    ours = (ctypes.c_void_p * OPS_SLOTS).from_buffer_copy(table)
    if not ours[SLOT_LOOKUP] or ours[SLOT_FALLOCATE] or ours[SLOT_DESTROY]:
        raise HookUnavailable("pyfuse3's operations table is not laid out as expected")
    step = ctypes.sizeof(ctypes.c_void_p)
    found = [off for off in range(0, SESSION_SEARCH + step, step)
             if ctypes.string_at(session + off, table_size) == table]
    if len(found) != 1:
        raise HookUnavailable(f"libfuse's copy of the operations table found {len(found)} "
                              "times in its session")
    slots = (ctypes.c_void_p * OPS_SLOTS).from_address(session + found[0])
    slots[SLOT_DESTROY] = ctypes.cast(hook.c_destroy, ctypes.c_void_p).value
    slots[SLOT_FALLOCATE] = ctypes.cast(hook.c_fallocate, ctypes.c_void_p).value


def _elf_symbols(path: Path, wanted: set[bytes]) -> dict[bytes, tuple[int, int]]:
    """name -> (value, size) of the ``wanted`` entries of a 64-bit little-endian ELF file's
    symbol table (``.symtab``, which a stripped file lacks)."""
    data = path.read_bytes()
    if data[:6] != b"\x7fELF\x02\x01":
        raise HookUnavailable(f"{path.name} is not a 64-bit little-endian ELF file")
    (shoff,) = struct.unpack_from("<Q", data, 0x28)
    shentsize, shnum = struct.unpack_from("<HH", data, 0x3A)
    sections = [struct.unpack_from("<IIQQQQIIQQ", data, shoff + i * shentsize)
                for i in range(shnum)]
    found: dict[bytes, tuple[int, int]] = {}
    for _, kind, _, _, offset, size, link, _, _, entsize in sections:
        if kind != _SHT_SYMTAB or entsize != 24:
            continue
        strings = sections[link][4]
        for pos in range(offset, offset + size, entsize):
            name_at, _, _, _, value, sym_size = struct.unpack_from("<IBBHQQ", data, pos)
            start = strings + name_at
            name = data[start:data.index(b"\0", start)]
            if name in wanted:
                found[name] = (value, sym_size)
    return found
