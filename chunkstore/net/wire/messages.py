"""The values frames carry: one frozen dataclass per request and per answer, and :class:`Frame`.

Requests carry their op code as the class attribute ``op``. Answers are these dataclasses or
plain values (see :data:`Response`); the disk's own records (PieceInfo, DiskStats,
CompactReport) travel as they are. Bytes on the wire: :mod:`.frames` (layout), :mod:`.encode`
and :mod:`.decode`.
"""

from __future__ import annotations

import hmac
from dataclasses import dataclass
from typing import TypeVar, Union

from chunkstore.disk.index import PieceInfo
from chunkstore.disk.records import CompactReport, DiskStats
from chunkstore.errors import ChunkStoreError, WireError
from chunkstore.net.wire.frames import ERROR_CODES, KINDS, OPS, Kind, Op, checksum, error_code
from chunkstore.protection.policy import PolicyCode

T = TypeVar("T")

Data = Union[bytes, bytearray, memoryview]


@dataclass(frozen=True)
class Hello:
    nonce: bytes
    op = Op.HELLO


@dataclass(frozen=True)
class HelloReply:
    nonce: bytes
    proof: bytes


@dataclass(frozen=True)
class Auth:
    proof: bytes
    op = Op.AUTH


@dataclass(frozen=True)
class AuthOk:
    node_id: str


@dataclass(frozen=True)
class Ping:
    epoch: int
    op = Op.PING


@dataclass(frozen=True)
class Pong:
    epoch: int
    node_id: str


@dataclass(frozen=True)
class Fence:
    """FENCE request: this connection acts for ``volume_id`` under lease token ``token``."""

    volume_id: bytes
    token: int
    op = Op.FENCE


@dataclass(frozen=True)
class FenceHeld:
    """FENCE answer: the highest token the node holds for the volume (ours, or a newer one:
    then we are fenced)."""

    token: int


@dataclass(frozen=True)
class MapGet:
    op = Op.MAP_GET


@dataclass(frozen=True)
class MapPut:
    doc: bytes
    op = Op.MAP_PUT


@dataclass(frozen=True)
class MapDoc:
    """MAP_GET answer: the node's map (b"" when it has none)."""

    doc: bytes


@dataclass(frozen=True)
class MapEpoch:
    """MAP_PUT answer: the node's map epoch after the request."""

    epoch: int


@dataclass(frozen=True)
class Put:
    """PUT request. Build with :meth:`make` (computes the checksum)."""

    disk: str
    key: bytes
    frag_idx: int
    policy: PolicyCode
    chunk_size: int
    checksum: bytes
    data: Data
    op = Op.PUT

    @classmethod
    def make(cls, disk: str, key: bytes, frag_idx: int, policy: PolicyCode, chunk_size: int, data: Data) -> "Put":
        return cls(disk, bytes(key), frag_idx, policy, chunk_size, checksum(data), data)

    def verify(self) -> None:
        """WireError unless the data matches its checksum."""
        if not hmac.compare_digest(checksum(self.data), self.checksum):
            raise WireError(f"PUT data of piece {self.key.hex()}/{self.frag_idx} does not match its checksum")


@dataclass(frozen=True)
class Get:
    disk: str
    key: bytes
    frag_idx: int
    verify: bool = True
    op = Op.GET


@dataclass(frozen=True)
class Blob:
    """GET response: data and its checksum. The node answers with the checksum the disk
    stored for the piece; :meth:`of` computes one (for data that has none yet)."""

    checksum: bytes
    data: Data

    @classmethod
    def of(cls, data: Data) -> "Blob":
        return cls(checksum(data), data)

    def verify(self) -> None:
        if not hmac.compare_digest(checksum(self.data), self.checksum):
            raise WireError("GET data does not match its checksum")


@dataclass(frozen=True)
class Delete:
    disk: str
    key: bytes
    frag_idx: int
    decided_ago: float | None = None  # a conditional delete: seconds since it was decided
    op = Op.DELETE


@dataclass(frozen=True)
class Has:
    disk: str
    key: bytes
    frag_idx: int
    op = Op.HAS


@dataclass(frozen=True)
class Piece:
    disk: str
    key: bytes
    frag_idx: int
    op = Op.PIECE


@dataclass(frozen=True)
class Pieces:
    disk: str
    op = Op.PIECES


@dataclass(frozen=True)
class Stats:
    disk: str
    op = Op.STATS


@dataclass(frozen=True)
class Compact:
    disk: str
    min_dead_ratio: float = 0.3
    op = Op.COMPACT


@dataclass(frozen=True)
class Check:
    disk: str
    op = Op.CHECK


@dataclass(frozen=True)
class RootPut:
    disk: str
    volume_id: bytes
    seq: int
    body: bytes
    op = Op.ROOT_PUT


@dataclass(frozen=True)
class RootGet:
    disk: str
    volume_id: bytes
    op = Op.ROOT_GET


@dataclass(frozen=True)
class RootList:
    disk: str
    op = Op.ROOT_LIST


@dataclass(frozen=True)
class RootHeld:
    """ROOT_PUT answer: the seq the disk holds after the request."""

    seq: int


@dataclass(frozen=True)
class RootFound:
    """ROOT_GET answer when the disk holds a record of the volume asked for (encoded from a
    RootFound or a RootRecord; the volume id is the request's)."""

    seq: int
    body: bytes


@dataclass(frozen=True)
class RootSeqs:
    """ROOT_LIST answer: (volume_id, seq) of every root record on the disk."""

    entries: tuple[tuple[bytes, int], ...]


@dataclass(frozen=True)
class StreamEnd:
    count: int


@dataclass(frozen=True)
class ErrorReply:
    code: int
    message: str

    @classmethod
    def of(cls, exc: BaseException) -> "ErrorReply":
        return cls(error_code(exc), str(exc))

    def to_exception(self) -> ChunkStoreError:
        return ERROR_CODES[self.code](self.message)


#: any request (the body of a REQUEST frame)
Request = Union[
    Hello, Auth, Ping, Fence, MapGet, MapPut, Put, Get, Delete, Has, Piece, Pieces, Stats, Compact, Check, RootPut,
    RootGet, RootList
]
DISK_REQUESTS = (Put, Get, Delete, Has, Piece, Pieces, Stats, Compact, Check, RootPut, RootGet, RootList)

#: a disk request (every one names its disk)
DiskRequest = Union[Put, Get, Delete, Has, Piece, Pieces, Stats, Compact, Check, RootPut, RootGet, RootList]
#: the body of a RESPONSE frame, by op: HelloReply, AuthOk, Pong, FenceHeld, MapDoc (MAP_GET), MapEpoch
#: (MAP_PUT), None (PUT, DELETE, CHECK), Blob (GET), bool (HAS), PieceInfo | None (PIECE),
#: DiskStats, CompactReport, RootHeld (ROOT_PUT), RootFound | None (ROOT_GET; the encoder also
#: takes a RootRecord), RootSeqs (ROOT_LIST)
Response = Union[
    HelloReply, AuthOk, Pong, FenceHeld, MapDoc, MapEpoch, None, Blob, bool, PieceInfo, DiskStats, CompactReport,
    RootHeld, RootFound, RootSeqs,
]
#: the body of an ITEM frame (one batch of a PIECES stream)
Items = tuple[PieceInfo, ...]
#: what a decoded frame's body can be: a request (REQUEST), a Response (RESPONSE), Items
#: (ITEM), StreamEnd (END), ErrorReply (ERROR)
Body = Union[Request, Response, Items, StreamEnd, ErrorReply]


@dataclass(frozen=True)
class Frame:
    """A decoded frame; ``body`` by kind: see :data:`Body`."""

    kind: int
    op: int
    req_id: int
    body: Body

    def expect(self, cls: type[T]) -> T:
        """The body, which must be a ``cls`` (WireError otherwise: not the answer asked for)."""
        if not isinstance(self.body, cls):
            what = f"{Kind(self.kind).name} {Op(self.op).name}" if self.kind in KINDS and self.op in OPS else "frame"
            raise WireError(f"expected {cls.__name__} in a {what} frame, got {type(self.body).__name__}")
        return self.body

    def expect_optional(self, cls: type[T]) -> T | None:
        """The body, which must be a ``cls`` or None (PIECE and ROOT_GET answers)."""
        return None if self.body is None else self.expect(cls)
