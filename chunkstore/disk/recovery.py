"""Recovery of one disk when it is opened: make the index match what the containers hold.

The index commit of a group commit is not synced on its own (chunkstore.disk.log), so after
a crash the index may lack records that are durable in the containers, and the active
container may end in a torn record that was never acknowledged. On open:

1. read the high-water mark (chunkstore.disk.index): every record before it is indexed;
2. scan the containers from there (in practice the tail of the active container) and
   re-apply put and tombstone records in order – idempotent, since records carry their
   checksum; a scan resynchronises after a damaged record (chunkstore.disk.container);
3. truncate a torn tail of the last container (records past the last valid one were never
   acknowledged); if acknowledged bytes were cut off behind our back, rescan that file whole
   so appends resume after its last intact record;
4. commit all changes plus the new high-water mark in one synced WriteBatch.

A container shorter than its file header (a crash while it was being created) gets its header
rewritten; a file header that does not parse is tolerated (records verify on their own), one
naming another container id makes the disk unavailable.
"""

from __future__ import annotations

import os

from rocksdict import Rdict, WriteBatch, WriteOptions

from chunkstore.disk import container as ctr
from chunkstore.disk.fdcache import FdCache
from chunkstore.disk.index import HWM_KEY, PieceInfo, decode_hwm, encode_hwm, encode_put_time, put_time_key
from chunkstore.errors import DiskUnavailable, FormatError


def recover(db: Rdict, cache: FdCache, cdir: str, sync_wopts: WriteOptions,
            now: float | None = None) -> tuple[list[int], int]:
    """Recover the disk whose index is ``db`` and whose containers are in ``cdir`` (opened
    through ``cache``), following the steps above; a new disk gets container 1. Returns the
    container ids, oldest first, and the offset in the last (active) one where appends resume.
    ``now``: the time noted as the last put of every piece re-indexed (its own put time may
    have been lost with the index write: a later time only makes conditional deletes of it
    more careful)."""
    raw = db.get(HWM_KEY)
    hwm = decode_hwm(raw) if isinstance(raw, bytes) else None
    cids = ctr.container_ids(cdir)
    if not cids:
        ctr.create_container(cdir, 1)
        cids = [1]
    last = cids[-1]
    changes: dict[bytes, PieceInfo | None] = {}
    end = max(ctr.FILE_HEADER_SIZE, os.stat(ctr.container_path(cdir, last)).st_size)  # if not scanned below
    for cid in cids:
        if hwm is not None and cid < hwm[0]:
            continue
        with cache.open(cid) as fd:
            size = os.fstat(fd).st_size
            if size < ctr.FILE_HEADER_SIZE and cid == last:
                # crash while creating the container: rewrite its header
                os.ftruncate(fd, 0)
                ctr.pwritev_all(fd, [ctr.encode_file_header(cid)], 0)
                os.fdatasync(fd)
            try:
                header_cid = ctr.parse_file_header(os.pread(fd, ctr.FILE_HEADER_SIZE, 0))
            except FormatError:
                header_cid = cid  # a damaged file header: records verify on their own
            if header_cid != cid:
                raise DiskUnavailable(f"{ctr.container_path(cdir, cid)}: container id does not match its name")
            start = hwm[1] if hwm is not None and cid == hwm[0] else ctr.FILE_HEADER_SIZE
            if start > size:
                # acknowledged bytes were cut off behind our back: rescan the whole file
                # so appends resume after the last intact record
                start = ctr.FILE_HEADER_SIZE
            sc = ctr.scan(fd, max(start, ctr.FILE_HEADER_SIZE))
            for rec in sc:
                h = rec.header
                pid = h.key + bytes((h.frag_idx,))
                if h.rtype == ctr.TYPE_PUT:
                    changes[pid] = PieceInfo(
                        h.key, h.frag_idx, cid, rec.offset, h.data_len, h.checksum, h.policy_code, h.chunk_size
                    )
                else:
                    changes[pid] = None
            if cid == last:
                end = min(sc.valid_end, sc.file_end)
                if sc.file_end > end:
                    os.ftruncate(fd, end)  # torn tail: never acknowledged
                    os.fdatasync(fd)
    wb = WriteBatch(raw_mode=True)
    for pid, info in changes.items():
        if info is None:
            wb.delete(pid)
        else:
            wb.put(pid, info.encode_value())
            if now is not None:
                wb.put(put_time_key(pid), encode_put_time(now))
    wb.put(HWM_KEY, encode_hwm(last, end))
    db.write(wb, sync_wopts)
    return cids, end
