"""Root-record refresh, the last step of a repair sweep (chunkstore.healing.sweep): every
volume's newest root record written again to its current owners."""

from __future__ import annotations

from chunkstore.errors import ChunkStoreError
from chunkstore.ring.datapath import RingStore


def refresh_roots(ring: RingStore, errors: list[str]) -> int:
    """Write every volume's newest root record (chunkstore.roots) again, so that its current
    owners hold it: a record is otherwise rewritten only by its volume's next checkpoint, and
    a volume that is not mounted (the very case its record is kept for) would lose it to
    drains, removals and replaced disks. Idempotent where a disk already holds it; returns
    how many records were written; failures go to ERRORS."""
    try:
        seqs = ring.list_roots()
    except ChunkStoreError as e:
        errors.append(f"root records: {type(e).__name__}: {e}")
        return 0
    done = 0
    for volume_id in sorted(seqs):
        try:
            rec = ring.get_root(volume_id)
            if rec is not None:
                ring.put_root(volume_id, rec.seq, rec.body)
                done += 1
        except ChunkStoreError as e:
            errors.append(f"root record of volume {volume_id.hex()}: {type(e).__name__}: {e}")
    return done
