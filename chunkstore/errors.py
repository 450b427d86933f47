"""Error hierarchy of the chunkstore layer.

Every error raised on purpose by ``chunkstore`` derives from :class:`ChunkStoreError`, so callers
(the sofs file layer) can catch the whole layer in one clause and translate at their edge.
Each docstring says when the error is raised and whether retrying the same call can help.
"""

from __future__ import annotations


class ChunkStoreError(Exception):
    """Root of all chunkstore errors. Never raised directly."""


class ChunkNotFound(ChunkStoreError):
    """No piece (copy or fragment) of the chunk exists on any reachable disk.

    Raised by ``get`` / ``DiskStore.get``. A retry does not help unless a disk that was
    unavailable comes back (or the chunk was never written / was deleted).
    """


class ChunkCorrupt(ChunkStoreError):
    """Pieces of the chunk exist but too few of them verify to rebuild the payload.

    Raised by ``get`` (and ``DiskStore.get`` for a single piece whose checksum fails).
    A retry does not help; a repair from other pieces may, if enough survive elsewhere.
    """


class KeyConflict(ChunkStoreError):
    """A put of an already stored piece/key carried different bytes.

    Stored bytes are never overwritten. Keys are content hashes, so this means a bug or
    tampering on the caller side. A retry does not help.
    """


class NotEnoughDisks(ChunkStoreError):
    """Fewer writable disks (or fewer successful piece writes) than the write quorum.

    Raised by ``put`` and by ``Ring.owners`` when the ring has fewer disks than asked for.
    A retry helps once disks come back or are added.
    """


class DiskFull(ChunkStoreError):
    """A disk returned ENOSPC; any partial record was truncated away.

    On the ring level it is raised instead of :class:`NotEnoughDisks` when lack of space is
    the reason the write quorum was not reached. A retry helps only after space is freed
    (delete + compact) or disks are added.
    """


class DiskUnavailable(ChunkStoreError):
    """A disk directory is missing, not initialised, or belongs to another cluster/disk.

    A retry helps only once the disk is mounted / restored; repair can re-initialise a
    missing directory whose parent exists.
    """


class RingHostDown(ChunkStoreError):
    """The embedded ring's host process (which serves its disks to several mounts) is not
    running or does not answer; the message says what to do."""


class ClusterInUse(ChunkStoreError):
    """Another process holds the cluster lock (``cluster.lock``); the message names its pid.

    A retry helps once that process has exited.
    """

    def __init__(self, message: str, pid: int | None = None) -> None:
        super().__init__(message)
        self.pid = pid


class FormatError(ChunkStoreError):
    """Bytes that should follow a documented format (container, record, ChunkRef, policy
    code, ring file, cluster file) do not: bad magic, version, length or header checksum.

    A retry does not help.
    """


class ChecksumMismatch(FormatError):
    """A record's data does not match the blake3-128 checksum stored in its header (bit rot).

    A retry does not help; read another piece instead.
    """


class PolicyError(ChunkStoreError):
    """An invalid protection policy (spec string, k/m/copies out of range, unknown or
    unavailable EC backend, pyeclib rejecting its input).

    A retry does not help.
    """


class ClusterMismatch(ChunkStoreError):
    """``init_local_cluster`` found a different cluster (or unreadable cluster files) in the
    data directory and refuses to overwrite it. A retry does not help.
    """


class ClusterNotFound(ChunkStoreError):
    """The data directory holds no cluster (no ``cluster.json``): run ``init_local_cluster`` /
    ``sofsctl cluster init`` first. A retry does not help.
    """


class StaleMap(ChunkStoreError):
    """A storage node has seen a newer cluster map than the one the request was made with: the
    client must fetch the newer map (MAP_GET), recompute placement and retry."""


class StaleEpoch(ChunkStoreError):
    """A storage node has seen a newer fencing token for this volume than the one this
    connection declared (FENCE): the sender lost the volume's lease to another connector, so
    its writes and deletes are refused and nothing was changed. It must stop writing."""


class VolumeLeased(ChunkStoreError):
    """Another connector holds the volume's write lease in etcd (it is mounted read-write
    elsewhere): chunkstore.authority.volumelease."""


class StaleRoot(ChunkStoreError):
    """A disk already holds a newer root record of this volume (another writer advanced it).

    Raised by ``put_root`` (chunkstore.roots) once every write of the record has finished.
    A retry with the same sequence number does not help: read the newer record (``get_root``)
    and decide from there.
    """


class WireError(FormatError):
    """A frame broke the protocol: bad version, kind, op, flags or length, a field out of
    range, a body that does not parse to exactly its length, or data whose end-to-end
    checksum does not match. Raised by the decoder (for nothing else), and by RemoteDisk
    when the node answers with ERROR WireError. A retry of the same bytes does not help.
    """


class AuthError(DiskUnavailable):
    """The handshake failed: the peer does not know the cluster secret (or we do not), or it
    sent something other than the handshake first. The node closes the connection. Treated as
    the disk being unavailable; a retry helps only once the secrets agree.
    """


class MapError(ChunkStoreError):
    """A cluster-map change was refused (unknown or duplicate id, a state that does not allow
    it, a bad address or weight, a map that would outgrow 1 MiB). The message says why; the
    map is unchanged. A retry of the same change does not help.
    """


class ConfigError(ChunkStoreError):
    """A storage node's config file is missing, unreadable or invalid. A retry does not help."""


class NodeFailure(ChunkStoreError):
    """A storage node answered a request with an error it does not classify (wire code 255:
    an unexpected failure on the node, logged there); the message is the node's. A retry may
    help, on another owner or later.
    """


class EtcdUnavailable(ChunkStoreError):
    """No member of the cluster's etcd answered in time (all down, partitioned, or refusing
    our certificate at the TLS layer). Whatever needs agreement (map changes, down-marking,
    rebuild, GC, taking a volume lease) waits until one does; data reads and writes go on with
    the last known map. A retry helps once etcd is reachable.
    """


class EtcdError(ChunkStoreError):
    """etcd answered but refused the request (bad request, permission, lease not found, a
    compacted revision). The message is etcd's. A retry of the same request does not help.
    """


class MapConflict(MapError):
    """The cluster map changed (in etcd) between reading it and storing a change made from it:
    another admin or the healer got there first. Nothing was changed; the same change retried
    on the new map may well succeed.
    """
