"""Block codec: turns a file block into the payload of an immutable chunk and back.

Payload layout: codec u8, volume id (16 bytes, the volume's UUID), then the body. Codec 0 = raw
(the block's bytes as they are), codec 1 = a zstd frame (with its content size). A block is
stored raw when compression does not save at least 3% (JPEG-2000 DICOM, encrypted or random
data), so reading it back costs nothing. The payload is what the RING stores and what the chunk
key (its hash) names; checksums and protection are the chunkstore's job.

The volume id makes every volume's chunks distinct even for identical blocks: dedup and
reference counting stay inside one volume, so one volume's garbage collector can never delete a
chunk that another volume still uses, and volumes with different protection policies never
store the same key.

zstandard releases the GIL, so encode/decode run in worker threads in parallel; compressor objects
are not thread-safe, hence one per thread.
"""

import threading

import zstandard

from .errors import FsError

CODEC_RAW = 0
CODEC_ZSTD = 1

_MIN_SAVING = 0.97


_HEADER = 17


class BlockCodec:
    """Encodes blocks for one volume: ``level`` 0 means no compression, else the zstd level."""

    def __init__(self, level: int, volume_id: bytes) -> None:
        if not 0 <= level <= 22:
            raise ValueError(f"zstd level must be 0..22, not {level}")
        if len(volume_id) != 16:
            raise ValueError("the volume id is 16 bytes")
        self.level = level
        self.volume_id = volume_id
        self._raw = bytes((CODEC_RAW,)) + volume_id
        self._zstd = bytes((CODEC_ZSTD,)) + volume_id
        self._local = threading.local()

    def _compressor(self) -> zstandard.ZstdCompressor:
        c = getattr(self._local, "c", None)
        if c is None:
            c = self._local.c = zstandard.ZstdCompressor(level=self.level, write_content_size=True)
        return c

    def _decompressor(self) -> zstandard.ZstdDecompressor:
        d = getattr(self._local, "d", None)
        if d is None:
            d = self._local.d = zstandard.ZstdDecompressor()
        return d

    def encode(self, block: bytes | bytearray) -> bytes:
        if self.level and len(block) >= 64:
            body = self._compressor().compress(block)
            if len(body) < len(block) * _MIN_SAVING:
                return self._zstd + body
        return self._raw + block

    def decode(self, payload: bytes, raw_length: int) -> bytes:
        """The block's bytes; ``raw_length`` (from the file map) is checked against the result."""
        if len(payload) < _HEADER:
            raise FsError("chunk payload too short")
        if payload[1:_HEADER] != self.volume_id:
            raise FsError("chunk belongs to another volume")
        codec = payload[0]
        if codec == CODEC_RAW:
            block = payload[_HEADER:]
        elif codec == CODEC_ZSTD:
            try:
                block = self._decompressor().decompress(memoryview(payload)[_HEADER:],
                                                        max_output_size=raw_length)
            except zstandard.ZstdError as e:
                raise FsError(f"chunk does not decompress: {e}") from e
        else:
            raise FsError(f"unknown block codec {codec}")
        if len(block) != raw_length:
            raise FsError(f"block decodes to {len(block)} bytes, file map says {raw_length}")
        return block
