"""A minimal NFSv4.2 (or 4.1) client: just enough COMPOUNDs to send ALLOCATE and DEALLOCATE, and
to read the change attribute around WRITEs and SETATTRs.

No client on these machines sends them: there is no kernel NFS client (no modules), nfs-rs
speaks NFSv3, 4.0 and 4.1 only, and libnfs 4.0 (libnfs-utils) has NFSv4.0 without sessions
and no ALLOCATE. So this speaks the protocol itself, over one TCP connection (ONC RPC record
marking, AUTH_SYS): EXCHANGE_ID, CREATE_SESSION, RECLAIM_COMPLETE, then each request as
SEQUENCE + PUTROOTFH + LOOKUP of every path component + the operation (RFC 8881, RFC 7862).
I/O uses the anonymous stateid (all zeros): no OPEN state to keep. Only what a test needs is
decoded; an operation that fails raises :class:`NfsStatus` with its NFS4ERR code.
``minor=1`` speaks NFSv4.1 instead (what ``sofsctl export nfs`` serves): the same session
operations, without ALLOCATE and DEALLOCATE.
"""

from __future__ import annotations

import itertools
import os
import socket
import struct

PROGRAM, VERSION, PROC_COMPOUND = 100003, 4, 1
AUTH_NONE, AUTH_SYS = 0, 1
OP_GETATTR, OP_LOOKUP, OP_PUTROOTFH, OP_READ, OP_SETATTR, OP_WRITE = 9, 15, 24, 25, 34, 38
OP_EXCHANGE_ID, OP_CREATE_SESSION, OP_SEQUENCE, OP_RECLAIM_COMPLETE = 42, 43, 53, 58
OP_ALLOCATE, OP_DEALLOCATE = 59, 62
EXCHGID4_FLAG_USE_NON_PNFS = 0x00010000
UNSTABLE4, FILE_SYNC4 = 0, 2
# attribute numbers (RFC 8881 5.8): bit N of word N // 32 of a bitmap4
FATTR4_CHANGE, FATTR4_SIZE, FATTR4_MODE = 3, 4, 33
ANONYMOUS_STATEID = bytes(16)
NFS4ERR_NAMES = {10001: "BADHANDLE", 10021: "MINOR_VERS_MISMATCH", 10004: "NOTSUPP",
                 28: "NOSPC", 13: "ACCESS", 21: "ISDIR", 10008: "DELAY", 22: "INVAL",
                 10025: "BAD_STATEID", 10038: "OPENMODE", 10044: "OP_ILLEGAL"}


class NfsStatus(Exception):
    """An operation of a COMPOUND failed: ``op`` and its NFS4ERR ``status``."""

    def __init__(self, op: int, status: int) -> None:
        super().__init__(f"operation {op} failed: NFS4ERR_{NFS4ERR_NAMES.get(status, status)}")
        self.op = op
        self.status = status


class Xdr:
    """XDR encoding into a buffer."""

    def __init__(self) -> None:
        self.buf = bytearray()

    def u32(self, v: int) -> "Xdr":
        self.buf += struct.pack(">I", v)
        return self

    def u64(self, v: int) -> "Xdr":
        self.buf += struct.pack(">Q", v)
        return self

    def fixed(self, data: bytes) -> "Xdr":
        self.buf += data + bytes(-len(data) % 4)
        return self

    def opaque(self, data: bytes) -> "Xdr":
        return self.u32(len(data)).fixed(data)


class Reader:
    """XDR decoding from bytes."""

    def __init__(self, data: bytes) -> None:
        self.data = data
        self.pos = 0

    def u32(self) -> int:
        (v,) = struct.unpack_from(">I", self.data, self.pos)
        self.pos += 4
        return v

    def u64(self) -> int:
        (v,) = struct.unpack_from(">Q", self.data, self.pos)
        self.pos += 8
        return v

    def fixed(self, n: int) -> bytes:
        v = self.data[self.pos:self.pos + n]
        self.pos += n + (-n % 4)
        return v

    def opaque(self) -> bytes:
        return self.fixed(self.u32())


def _channel_attrs(x: Xdr) -> None:
    # headerpadsize, maxrequestsize, maxresponsesize, maxresponsesize_cached, maxoperations,
    # maxrequests, no rdma_ird
    for v in (0, 1 << 20, 1 << 20, 8192, 16, 1):
        x.u32(v)
    x.u32(0)


class Nfs42Client:
    """One NFSv4.2 session with a server on 127.0.0.1 (``uid``/``gid`` as AUTH_SYS)."""

    def __init__(self, port: int, *, uid: int = 1000, gid: int = 1000,
                 timeout: float = 60, minor: int = 2) -> None:
        self.uid, self.gid = uid, gid
        self.minor = minor
        self._xid = itertools.count(int.from_bytes(os.urandom(3), "big"))
        self._sock = socket.create_connection(("127.0.0.1", port), timeout=timeout)
        self._seq = 0
        self.session = b""
        try:
            self._open_session()
        except BaseException:
            self._sock.close()
            raise

    def close(self) -> None:
        self._sock.close()

    def __enter__(self) -> "Nfs42Client":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # ------------------------------------------------------------------ RPC

    def _call(self, ops: list[tuple[int, bytes]]) -> list[tuple[int, Reader]]:
        """Send one COMPOUND (of the client's minor version); (op, reader at its result) for
        each result. The first failed operation raises NfsStatus."""
        xid = next(self._xid) & 0xFFFFFFFF
        cred = (Xdr().u32(0).opaque(b"sofs-test").u32(self.uid).u32(self.gid).u32(1)
                .u32(self.gid).buf)
        x = Xdr().u32(xid).u32(0).u32(2).u32(PROGRAM).u32(VERSION).u32(PROC_COMPOUND)
        x.u32(AUTH_SYS).opaque(bytes(cred)).u32(AUTH_NONE).u32(0)
        x.opaque(b"").u32(self.minor).u32(len(ops))  # tag, minorversion, argarray
        for op, args in ops:
            x.u32(op).buf += args
        self._sock.sendall(struct.pack(">I", 0x80000000 | len(x.buf)) + x.buf)
        r = Reader(self._record())
        if r.u32() != xid or r.u32() != 1 or r.u32() != 0:
            raise ConnectionError("not an accepted RPC reply to our call")
        r.u32()
        r.opaque()  # verifier
        if (accept := r.u32()) != 0:
            raise ConnectionError(f"RPC call not executed (accept_stat {accept})")
        r.u32()  # the COMPOUND's status: that of its last operation, checked below
        r.opaque()  # tag
        results = []
        for _ in range(r.u32()):
            op, status = r.u32(), r.u32()
            if status != 0:
                raise NfsStatus(op, status)
            results.append((op, r))
            if op == OP_SEQUENCE:
                r.fixed(16)
                for _ in range(5):
                    r.u32()
            elif op not in (OP_PUTROOTFH, OP_LOOKUP, OP_RECLAIM_COMPLETE, OP_ALLOCATE,
                            OP_DEALLOCATE):
                break  # decoded by the caller; it is always last
        return results

    def _record(self) -> bytes:
        out = bytearray()
        while True:
            (mark,) = struct.unpack(">I", self._recv(4))
            out += self._recv(mark & 0x7FFFFFFF)
            if mark & 0x80000000:
                return bytes(out)

    def _recv(self, n: int) -> bytes:
        buf = bytearray()
        while len(buf) < n:
            chunk = self._sock.recv(n - len(buf))
            if not chunk:
                raise ConnectionError("server closed the connection")
            buf += chunk
        return bytes(buf)

    # ------------------------------------------------------------------ session

    def _open_session(self) -> None:
        owner = Xdr().fixed(os.urandom(8)).opaque(b"sofs-test-" + os.urandom(8).hex().encode())
        args = owner.u32(EXCHGID4_FLAG_USE_NON_PNFS).u32(0).u32(0)  # SP4_NONE, no impl id
        (_, r), = self._call([(OP_EXCHANGE_ID, bytes(args.buf))])
        clientid, sequence = r.u64(), r.u32()
        x = Xdr().u64(clientid).u32(sequence).u32(0)
        _channel_attrs(x)
        _channel_attrs(x)
        x.u32(0x40000000).u32(1).u32(AUTH_NONE)  # cb_program, one callback flavour: none
        (_, r), = self._call([(OP_CREATE_SESSION, bytes(x.buf))])
        self.session = r.fixed(16)
        self._compound([(OP_RECLAIM_COMPLETE, bytes(Xdr().u32(0).buf))])

    def _compound(self, ops: list[tuple[int, bytes]]) -> Reader:
        """SEQUENCE + ``ops``; the reader at the last operation's result."""
        self._seq += 1
        seq = Xdr().fixed(self.session).u32(self._seq).u32(0).u32(0).u32(0)
        return self._call([(OP_SEQUENCE, bytes(seq.buf)), *ops])[-1][1]

    def _at(self, path: str) -> list[tuple[int, bytes]]:
        ops = [(OP_PUTROOTFH, b"")]
        for part in path.strip("/").split("/"):
            ops.append((OP_LOOKUP, bytes(Xdr().opaque(part.encode()).buf)))
        return ops

    # ------------------------------------------------------------------ operations

    def allocate(self, path: str, offset: int, length: int) -> None:
        """ALLOCATE [offset, offset + length) of the file at ``path`` (from the pseudo root)."""
        args = Xdr().fixed(ANONYMOUS_STATEID).u64(offset).u64(length)
        self._compound([*self._at(path), (OP_ALLOCATE, bytes(args.buf))])

    def deallocate(self, path: str, offset: int, length: int) -> None:
        """DEALLOCATE (punch a hole in) [offset, offset + length) of the file at ``path``."""
        args = Xdr().fixed(ANONYMOUS_STATEID).u64(offset).u64(length)
        self._compound([*self._at(path), (OP_DEALLOCATE, bytes(args.buf))])

    def _getattr_u64(self, path: str, attr: int, what: str) -> int:
        """One 64-bit attribute of word 0 (GETATTR asking for it alone)."""
        bitmap = Xdr().u32(1).u32(1 << attr)
        r = self._compound([*self._at(path), (OP_GETATTR, bytes(bitmap.buf))])
        words = [r.u32() for _ in range(r.u32())]
        if not words or not words[0] & (1 << attr):
            raise ConnectionError(f"the server returned no {what} attribute")
        r.u32()  # attrlist length
        return r.u64()

    def size(self, path: str) -> int:
        """The file's size attribute (GETATTR)."""
        return self._getattr_u64(path, FATTR4_SIZE, "size")

    def change(self, path: str) -> int:
        """The file's change attribute (GETATTR FATTR4_CHANGE): what clients compare to decide
        whether their cached data and attributes are still valid."""
        return self._getattr_u64(path, FATTR4_CHANGE, "change")

    def chmod(self, path: str, mode: int) -> None:
        """SETATTR of the mode alone (anonymous stateid)."""
        attrs = Xdr().u32(mode).buf
        args = (Xdr().fixed(ANONYMOUS_STATEID).u32(2).u32(0).u32(1 << (FATTR4_MODE - 32))
                .opaque(bytes(attrs)))
        self._compound([*self._at(path), (OP_SETATTR, bytes(args.buf))])

    def write(self, path: str, offset: int, data: bytes, stable: int = FILE_SYNC4) -> None:
        """WRITE all of ``data`` at ``offset`` (FILE_SYNC by default; UNSTABLE4 as clients
        write before a COMMIT)."""
        pos = 0
        while pos < len(data) or not data:
            part = data[pos:pos + (512 << 10)]
            args = Xdr().fixed(ANONYMOUS_STATEID).u64(offset + pos).u32(stable).opaque(part)
            r = self._compound([*self._at(path), (OP_WRITE, bytes(args.buf))])
            pos += r.u32()
            if not data:
                return

    def read(self, path: str, offset: int, count: int) -> bytes:
        """Up to ``count`` bytes at ``offset`` (READ until EOF or ``count``)."""
        out = bytearray()
        while len(out) < count:
            args = Xdr().fixed(ANONYMOUS_STATEID).u64(offset + len(out)).u32(
                min(count - len(out), 512 << 10))
            r = self._compound([*self._at(path), (OP_READ, bytes(args.buf))])
            eof = r.u32()
            out += r.opaque()
            if eof:
                break
        return bytes(out)
