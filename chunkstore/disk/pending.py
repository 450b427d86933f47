"""Index changes waiting for a group commit: a record is in a container, not yet in the index.

Every write of :class:`~chunkstore.disk.store.DiskStore` (a put, a delete's tombstone, a
compaction move) and every index drop queues one :class:`PendingOp` under the append lock of
the disk's :class:`~chunkstore.disk.log.ContainerLog` (``Appender.enqueue``); the log's group
commit then makes a whole batch durable and indexed at once and marks each op done (or
failed). Until then the op is also the disk's answer for its piece id (``Appender.pending``),
so a second put or a delete of the same piece sees it.
"""

from __future__ import annotations

from chunkstore.disk.index import PieceInfo

PUT = 1  # a put record: index ``info``
MOVE = 2  # compaction copied ``old``'s record to ``info``: re-point the index
DEL = 3  # a tombstone: unindex ``old``
DROP = 4  # no record: unindex ``old``, whose record failed verification during compaction


class PendingOp:
    """A record appended but not yet committed to the index."""

    __slots__ = ("kind", "pid", "info", "old", "done", "error")

    def __init__(self, kind: int, pid: bytes, info: PieceInfo | None, old: PieceInfo | None) -> None:
        self.kind = kind
        self.pid = pid
        self.info = info  # the new index entry (PUT, MOVE), else None
        self.old = old  # the entry it replaces or removes, if any
        self.done = False
        self.error: BaseException | None = None
