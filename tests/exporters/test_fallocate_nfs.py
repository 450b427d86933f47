"""NFSv4.2 ALLOCATE and DEALLOCATE through a real NFS-Ganesha export of a sofs mount.

Ganesha's FSAL VFS turns them into fallocate(2) on the FUSE mount (mode 0, and
PUNCH_HOLE|KEEP_SIZE), which pyfuse3 alone would refuse (EOPNOTSUPP, so NFS4ERR_NOTSUPP: see
fuse_mount/fallocate_hook.py). The client is tests/exporters/nfs42.py (no other client here
sends these operations); files are written and read back with nfs-rs (NFSv4.1) and through the
FUSE mount.

``sofsctl export nfs`` serves NFSv4.2 only with ``--v42`` (exporters/ganesha.py, ``v42``):
this module renders that configuration with exporters.ganesha and runs its own ganesha.nfsd on
127.0.0.1 and a free port, stopped by pid whatever happens.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import nfs_rs
import pytest

from exporters.ganesha import ClientRule, NfsExport, ganesha_service, write_ganesha_config
from sofs.volume import load_volume
from tests.fuse_mount.conftest import Archive, needs_fuse
from tests.fuse_mount.filebytes import pattern
from tests.fuse_mount.filebytes import read_uncached as read_mount

from .helpers import free_port, need_root_and, running
from .nfs42 import Nfs42Client, NfsStatus

pytestmark = [pytest.mark.integration, needs_fuse]

MIB = 1 << 20
BLOCK = 4 * MIB  # the volume's block size
NFS4ERR_NOSPC, NFS4ERR_ISDIR = 28, 21
WITH_V42 = "Minor_Versions = 0, 1, 2;"


@dataclass
class Nfs42Export:
    archive: Archive
    port: int

    def client(self) -> Nfs42Client:
        return Nfs42Client(self.port)

    def nfs41(self):
        return nfs_rs.Client.connect(f"nfs://127.0.0.1:{self.port}/vol?version=4.1", uid=1000,
                                     gid=1000, connect_timeout=10, operation_timeout=60)


@pytest.fixture(scope="module")
def export() -> Iterator[Nfs42Export]:
    need_root_and("ganesha.nfsd", "fusermount3")
    root = Path(tempfile.mkdtemp(prefix="sofs-nfs42-", dir="/tmp"))
    root.chmod(0o755)
    archive = Archive(root)
    try:
        archive.mnt.chmod(0o755)
        archive.mount()
        (archive.mnt / "d").mkdir(mode=0o777)
        (archive.mnt / "d").chmod(0o777)
        port = free_port()
        spec = NfsExport(volume="vol", volume_uuid=load_volume(archive.data, "vol").uuid,
                         mountpoint=archive.mnt, clients=[ClientRule("127.0.0.1/32")],
                         nfs_port=port, bind="127.0.0.1", graceless=True, v42=True)
        run = root / "run"
        conf = write_ganesha_config(spec, run)
        assert WITH_V42 in conf.read_text()
        with running(ganesha_service(conf, run)):
            yield Nfs42Export(archive, port)
    finally:
        archive.cleanup()
        shutil.rmtree(root, ignore_errors=True)






def write_nfs41(export: Nfs42Export, name: str, data: bytes) -> None:
    with export.nfs41() as c, c.open(f"d/{name}", "wb") as f:
        f.write(data)


def read_nfs41(export: Nfs42Export, name: str) -> bytes:
    with export.nfs41() as c, c.open(f"d/{name}", "rb") as f:
        return f.read()


def test_allocate_extends_the_file_with_zeros(export):
    data = pattern(BLOCK + 10)
    write_nfs41(export, "a", data)
    with export.client() as c:
        c.allocate("vol/d/a", BLOCK, 2 * BLOCK)  # past the end: the size grows
        assert c.size("vol/d/a") == 3 * BLOCK
        c.allocate("vol/d/a", 0, 100)  # inside: nothing changes
        assert c.size("vol/d/a") == 3 * BLOCK
    expected = data + bytes(3 * BLOCK - len(data))
    assert read_nfs41(export, "a") == expected
    assert read_mount(export.archive.mnt / "d" / "a") == expected


def test_deallocate_punches_whole_and_partial_blocks(export):
    data = pattern(3 * BLOCK + 500)
    write_nfs41(export, "p", data)
    with export.client() as c:
        c.deallocate("vol/d/p", BLOCK // 2, 2 * BLOCK)     # the edges and one whole block
        c.deallocate("vol/d/p", 3 * BLOCK + 100, 10 * BLOCK)  # to the end and past it
        assert c.size("vol/d/p") == len(data)
        got = c.read("vol/d/p", 0, 4 * BLOCK)
    expected = bytearray(data)
    expected[BLOCK // 2:BLOCK // 2 + 2 * BLOCK] = bytes(2 * BLOCK)
    expected[3 * BLOCK + 100:] = bytes(400)
    assert got == bytes(expected)
    assert read_nfs41(export, "p") == bytes(expected)
    assert read_mount(export.archive.mnt / "d" / "p") == bytes(expected)


def test_allocate_beyond_the_free_space_and_of_a_directory_are_refused(export):
    write_nfs41(export, "n", b"small")
    st = os.statvfs(export.archive.mnt)
    too_much = 2 * st.f_bavail * st.f_frsize + BLOCK
    with export.client() as c:
        with pytest.raises(NfsStatus) as e:
            c.allocate("vol/d/n", 0, too_much)
        assert e.value.status == NFS4ERR_NOSPC
        assert c.size("vol/d/n") == 5
        c.deallocate("vol/d/n", 0, too_much)  # a hole needs no space
        with pytest.raises(NfsStatus) as e:
            c.allocate("vol/d", 0, 10)
        assert e.value.status == NFS4ERR_ISDIR
    assert read_mount(export.archive.mnt / "d" / "n") == bytes(5)
