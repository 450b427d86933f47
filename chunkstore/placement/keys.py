"""Chunk identity: the 160-bit content key and the :class:`ChunkRef` value object.

A chunk's key is ``blake3(payload).digest(20)``: its position on the ring and its integrity
check at once. sofs stores ChunkRefs in its metadata, so the encoding is small and stable.

ChunkRef encoding, version 1, 29 bytes, big-endian::

    offset  0  version   u8      1
    offset  1  key       20 B    blake3-160 of the payload
    offset 21  policy    4 B     PolicyCode (kind, a, b, backend) – see chunkstore.protection.policy
    offset 25  size      u32     payload length in bytes (chunks are at most 4 GiB - 1)
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

import blake3

from chunkstore.errors import FormatError
from chunkstore.protection.policy import PolicyCode

KEY_SIZE = 20
REF_VERSION = 1
MAX_CHUNK_SIZE = 2**32 - 1
_REF = struct.Struct(">B20s4sI")
REF_SIZE = _REF.size  # 29


def chunk_key(payload: bytes | memoryview) -> bytes:
    """The 20-byte content key of a payload: ``blake3(payload).digest(20)``."""
    return blake3.blake3(payload).digest(KEY_SIZE)


# ChunkKey is simply the 20 raw bytes; the alias documents intent in signatures.
ChunkKey = bytes


@dataclass(frozen=True)
class ChunkRef:
    """Reference to a stored chunk: its key, payload size and protection policy code."""

    key: bytes
    size: int
    policy: PolicyCode

    def __post_init__(self) -> None:
        if not isinstance(self.key, bytes) or len(self.key) != KEY_SIZE:
            raise FormatError(f"chunk key must be {KEY_SIZE} bytes")
        if not isinstance(self.size, int) or not 0 <= self.size <= MAX_CHUNK_SIZE:
            raise FormatError(f"chunk size out of range: {self.size!r}")
        if not isinstance(self.policy, PolicyCode):
            raise FormatError("policy must be a PolicyCode")

    @property
    def hex(self) -> str:
        """The key in hex (40 characters)."""
        return self.key.hex()

    def to_bytes(self) -> bytes:
        return _REF.pack(REF_VERSION, self.key, self.policy.to_bytes(), self.size)

    @classmethod
    def from_bytes(cls, data: bytes) -> "ChunkRef":
        """Strict parser: exactly REF_SIZE bytes of a known version, else FormatError."""
        if not isinstance(data, (bytes, bytearray, memoryview)):
            raise FormatError("ChunkRef.from_bytes needs bytes")
        if len(data) != REF_SIZE:
            raise FormatError(f"ChunkRef must be {REF_SIZE} bytes, got {len(data)}")
        version, key, code, size = _REF.unpack(bytes(data))
        if version != REF_VERSION:
            raise FormatError(f"unknown ChunkRef version {version}")
        return cls(key, size, PolicyCode.from_bytes(code))

    def verify(self, payload: bytes | memoryview) -> bool:
        """True if ``payload`` is this chunk (length and key match)."""
        return len(payload) == self.size and chunk_key(payload) == self.key

    def __repr__(self) -> str:
        return f"ChunkRef({self.hex[:16]}…, size={self.size}, policy={tuple(self.policy.to_bytes())})"
