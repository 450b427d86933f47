"""The exports of a networked cluster's volumes, recorded in etcd, so that they follow a volume
that another host takes over.

An export's settings live in the data directory of the host that serves it
(``exports/VOLUME-KIND/spec.json``, :mod:`exporters.registry`). On a cluster made with
``sofsctl cluster create --etcd`` each export created is also recorded in etcd under
``/sofs/CLUSTER_ID/exports/VOLUME_UUID/KIND`` (:class:`Recorded`: the spec's settings and,
for SMB, its users' entries of Samba's password database, smbpasswd lines with their NT
hashes), and removing it forgets it. The hashes are password-equivalent for NTLM; etcd serves
only holders of a cluster certificate, over TLS, who can read every volume's data anyway.
``sofsctl volume takeover`` (and ``sofsctl export adopt`` after a standby took a volume over)
starts the recorded exports of the volume on the new host (:func:`exporters.adopt.adopt`).
Recording is best effort: an etcd that does not answer leaves the export running here and a
warning in the log and on the command line.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from pathlib import Path

from chunkstore import errors as cerr
from chunkstore.authority import binding
from chunkstore.authority.etcd import EtcdClient
from chunkstore.ring.mapadmin import load_map
from chunkstore.ring.open import is_networked
from sofs import errors as ferr
from sofs.volume import load_volume

from .errors import ExportError
from .exportspec import ExportSpec

log = logging.getLogger("sofs.exports.book")


@dataclass(frozen=True)
class Recorded:
    """One export as etcd records it."""

    spec: ExportSpec
    smb_passwords: str = ""   # smbpasswd lines of the SMB users ("": none recorded)

    def encode(self) -> bytes:
        return json.dumps({"spec": self.spec.to_json(),
                           "smb_passwords": self.smb_passwords}).encode()

    @classmethod
    def decode(cls, raw: bytes, where: str) -> Recorded:
        try:
            doc = json.loads(raw)
        except ValueError as e:
            raise ExportError(f"{where}: not JSON: {e}") from None
        if not isinstance(doc, dict) or not isinstance(doc.get("smb_passwords", ""), str):
            raise ExportError(f"{where}: not an export record")
        return cls(ExportSpec.from_json(doc.get("spec"), where), doc.get("smb_passwords", ""))


def _prefix(cluster_id: str, volume_uuid: str) -> bytes:
    return f"/sofs/{cluster_id}/exports/{volume_uuid}/".encode()


def _etcd(data_dir: Path) -> tuple[EtcdClient, str] | None:
    """(a client of the cluster's etcd, the cluster id), or None without etcd."""
    if not is_networked(data_dir):
        return None
    try:
        client = binding.client(data_dir)
    except cerr.ChunkStoreError:
        return None
    return None if client is None else (client, load_map(data_dir).cluster_id)


def has_etcd(data_dir: Path) -> bool:
    """Whether exports of this data directory are recorded (a networked RING with etcd)."""
    try:
        return is_networked(data_dir) and binding.load(data_dir) is not None
    except cerr.ChunkStoreError:
        return False


def record(data_dir: Path, spec: ExportSpec, smb_passwords: str = "") -> str | None:
    """Record SPEC (and its SMB users' password entries) in etcd (nothing without etcd); a
    warning when etcd did not take it."""
    found = _etcd(data_dir)
    if found is None:
        return None
    client, cluster_id = found
    try:
        volume_uuid = load_volume(data_dir, spec.volume).uuid
        client.put(_prefix(cluster_id, volume_uuid) + spec.kind.encode(),
                   Recorded(spec, smb_passwords).encode())
    except (cerr.ChunkStoreError, ferr.FsError) as e:
        why = (f"the {spec.kind} export of {spec.volume} is not recorded in etcd ({e}): a "
               "host that takes the volume over will not start it by itself")
        log.warning("%s", why)
        return why
    finally:
        client.close()
    return None


def forget(data_dir: Path, volume: str, kind: str) -> str | None:
    """Forget the export in etcd (nothing without etcd); a warning when etcd did not."""
    found = _etcd(data_dir)
    if found is None:
        return None
    client, cluster_id = found
    try:
        volume_uuid = load_volume(data_dir, volume).uuid
        client.delete(_prefix(cluster_id, volume_uuid) + kind.encode())
    except (cerr.ChunkStoreError, ferr.FsError) as e:
        why = f"the {kind} export of {volume} could not be forgotten in etcd: {e}"
        log.warning("%s", why)
        return why
    finally:
        client.close()
    return None


def recorded(data_dir: Path, volume_uuid: str) -> list[Recorded]:
    """The exports etcd records for the volume (none without etcd). ExportError when etcd
    does not answer or holds a record that is not a spec."""
    found = _etcd(data_dir)
    if found is None:
        return []
    client, cluster_id = found
    prefix = _prefix(cluster_id, volume_uuid)
    try:
        kvs = client.get_prefix(prefix)
    except cerr.ChunkStoreError as e:
        raise ExportError(f"the exports recorded in etcd cannot be read: {e}") from None
    finally:
        client.close()
    out = [Recorded.decode(kv.value, f"etcd {kv.key.decode(errors='replace')}") for kv in kvs]
    return sorted(out, key=lambda r: r.spec.kind)
