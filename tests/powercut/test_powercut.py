"""Power cuts of a real sofs mount: nothing that close() or fsync() acknowledged is lost.

The disk stores (``data/disks``) and the volumes' metadata (``data/volumes``) of an embedded
local ring live on a :mod:`tests.powercut.cutfs` mount, which keeps everything in memory until
it is fsynced (file data) or its directory is fsynced (names), and drops the rest when the
power is cut. Two writer processes work in the sofs mount, each in a directory of its own:
they create files of random sizes (small, and 512 KiB and more), some fsynced before the close
and most only closed, some written under a temporary name and renamed, make directories,
rename and unlink earlier files; after each operation returned, a writer appends it to its
journal (on the local disk, outside the cut). At a random moment the test kills -9 the mount,
the ring host and the writers, and cuts the power; then it starts everything again on what
survived and checks, for every writer:

* every file the journal says was closed (or fsynced) reads byte-identical, under the name the
  later acknowledged renames gave it; every acknowledged unlink, rename and mkdir holds;
* no other name exists, except those the one operation in flight at the cut touches;
* ``sofsctl fsck`` of the volume (unmounted, every cut) reports it clean.

This runs over ``SOFS_POWERCUT_CUTS`` cuts on the same volume (4 by default, to fit CI's time;
the full run is ``SOFS_POWERCUT_CUTS=30 scripts/test tests/powercut``), so damage would
accumulate; ``SOFS_POWERCUT_SEED`` replays the same delays and operations.
"""

from __future__ import annotations

import hashlib
import json
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.fuse_mount.conftest import needs_fuse, sofsctl, stop_pid, wait_dead
from tests.fuse_mount.test_crash import adopting_mount_processes, reap_when_dead

from .cutmount import CutMount, mounted

pytestmark = [pytest.mark.integration, needs_fuse]

CUTS = int(os.environ.get("SOFS_POWERCUT_CUTS") or 4)
WRITERS = 2
VOLUME = "vol"

# The writer: ``python writer.py DIR JOURNAL SEED``. DIR is the writer's own directory in the
# mount; it starts from the names the journal holds (the test passed on what survived).
WRITER = r'''
import json, os, random, sys

top, journal_path, seed = sys.argv[1], sys.argv[2], int(sys.argv[3])
rng = random.Random(seed)
names = {}   # name -> [seed, size] | "dir"
with open(journal_path) as f:
    for line in f:
        try:
            rec = json.loads(line)
        except ValueError:
            continue  # torn by the kill that ended the last writer
        if rec.get("state") is not None:
            names = rec["state"]
journal = open(journal_path, "a")


def log(rec):
    journal.write(json.dumps(rec) + "\n")
    journal.flush()


def path(name):
    return os.path.join(top, name)


def content(fseed, size):
    return random.Random(fseed).randbytes(size)


for n in range(10**6):
    fseed = seed * 10**6 + n
    files = sorted(k for k, v in names.items() if v != "dir")
    dirs = sorted(k for k, v in names.items() if v == "dir")
    r = rng.random()
    if r < 0.06 and len(dirs) < 4:
        name = f"d{fseed}"
        log({"begin": "mkdir", "name": name})
        os.mkdir(path(name))
        names[name] = "dir"
        log({"done": "mkdir", "name": name})
    elif r < 0.14 and files:
        name = rng.choice(files)
        log({"begin": "unlink", "name": name})
        os.unlink(path(name))
        del names[name]
        log({"done": "unlink", "name": name})
    elif r < 0.22 and files:
        src = rng.choice(files)
        into = [f"{rng.choice(dirs)}/m{fseed}"] if dirs else []
        dst = rng.choice([f"m{fseed}", *into, *files[:3]])
        if dst == src:
            continue
        log({"begin": "rename", "src": src, "dst": dst})
        os.rename(path(src), path(dst))
        names[dst] = names.pop(src)
        log({"done": "rename", "src": src, "dst": dst})
    else:
        size = rng.randint(1, 64 * 1024) if rng.random() < 0.5 \
            else 512 * 1024 + rng.randint(0, 1024 * 1024)
        where = f"{rng.choice(dirs)}/" if dirs and rng.random() < 0.3 else ""
        final = f"{where}f{fseed}"
        via_tmp = rng.random() < 0.3
        name = f"{where}tmp{fseed}" if via_tmp else final
        sync = rng.random() < 0.3
        log({"begin": "create", "name": name})
        data = content(fseed, size)
        with open(path(name), "wb") as f:
            pos = 0
            while pos < size:
                step = rng.choice([4096, 65536, 131072, 1 << 20])
                f.write(data[pos:pos + step])
                pos += step
            if sync:
                f.flush()
                os.fsync(f.fileno())
        names[name] = [fseed, size]
        log({"done": "create", "name": name, "version": [fseed, size]})
        if via_tmp:
            log({"begin": "rename", "src": name, "dst": final})
            os.rename(path(name), path(final))
            names[final] = names.pop(name)
            log({"done": "rename", "src": name, "dst": final})
'''


class PowerCutFailure(Exception):
    pass


def content(version: list[int]) -> bytes:
    return random.Random(version[0]).randbytes(version[1])


def digest(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def replay(journal: Path) -> tuple[dict, dict | None]:
    """The names the journal acknowledges (name -> version | "dir") and the operation in
    flight at the cut (its ``begin`` record; None when there was none)."""
    names: dict = {}
    pending = None
    for line in journal.read_text().splitlines():
        try:
            rec = json.loads(line)
        except ValueError:
            continue  # the line a writer was killed inside (the test ends it with a newline)
        if "state" in rec:
            names, pending = rec["state"], None
        elif "begin" in rec:
            pending = rec
        else:
            pending = None
            if rec["done"] == "create":
                names[rec["name"]] = rec["version"]
            elif rec["done"] == "mkdir":
                names[rec["name"]] = "dir"
            elif rec["done"] == "unlink":
                del names[rec["name"]]
            else:
                names[rec["dst"]] = names.pop(rec["src"])
    return names, pending


def scan(top: Path) -> dict[str, object]:
    """What a writer's directory holds: name -> "dir" or (size, sha256)."""
    out: dict[str, object] = {}
    for dirpath, dirnames, filenames in os.walk(top):
        rel = os.path.relpath(dirpath, top)
        for d in dirnames:
            out[os.path.normpath(os.path.join(rel, d))] = "dir"
        for f in filenames:
            data = Path(dirpath, f).read_bytes()
            out[os.path.normpath(os.path.join(rel, f))] = (len(data), digest(data))
    return out


def check(top: Path, journal: Path) -> tuple[dict, list[str], int]:
    """Compare a writer's directory with its journal. Returns what it holds now (name ->
    version | "dir"), the names to remove before the next writer starts (a file whose create
    was in flight: absent, partial or complete, none of it acknowledged) and how many
    acknowledged files were checked. The operation in flight may have happened or not; every
    other name must be exactly as acknowledged."""
    expected, pending = replay(journal)
    actual = scan(top)
    unknown: list[str] = []
    if pending is not None:
        op = pending["begin"]
        if op == "create" and pending["name"] in actual:
            unknown.append(pending["name"])
        elif op == "mkdir" and actual.get(pending["name"]) == "dir":
            expected[pending["name"]] = "dir"
        elif op == "unlink" and pending["name"] not in actual:
            del expected[pending["name"]]
        elif op == "rename" and pending["src"] not in actual:
            expected[pending["dst"]] = expected.pop(pending["src"])
    problems = []
    files = 0
    for name, version in sorted(expected.items()):
        have = actual.get(name)
        if version == "dir":
            if have != "dir":
                problems.append(f"{name}: an acknowledged directory is {have or 'missing'}")
            continue
        files += 1
        want = content(version)
        if have != (len(want), digest(want)):
            what = "missing" if have is None else f"{have} (size, sha256)"
            problems.append(f"{name}: acknowledged {len(want)} B (step {version[0]}), is {what}")
    for name in sorted(set(actual) - set(expected) - set(unknown)):
        problems.append(f"{name}: exists ({actual[name]}) but nothing acknowledged made it")
    if problems:
        raise PowerCutFailure(f"{top.name} (in flight at the cut: {pending}):\n  "
                              + "\n  ".join(problems))
    return expected, unknown, files


def durable_tree(root: Path) -> None:
    """fsync every file and directory under ``root`` (the setup, before the first cut)."""
    for dirpath, _, filenames in os.walk(root):
        for f in filenames:
            fd = os.open(os.path.join(dirpath, f), os.O_RDONLY)
            os.fsync(fd)
            os.close(fd)
        fd = os.open(dirpath, os.O_RDONLY | os.O_DIRECTORY)
        os.fsync(fd)
        os.close(fd)


def test_power_cuts_lose_nothing_acknowledged(tmp_path):
    seed = int(os.environ.get("SOFS_POWERCUT_SEED") or time.time_ns() % 10**9)
    rng = random.Random(seed)
    cut = CutMount(tmp_path / "backing", tmp_path / "cut", tmp_path / "cutfs.log")
    data = tmp_path / "data"
    mnt = tmp_path / "mnt"
    mnt.mkdir()
    writer_py = tmp_path / "writer.py"
    writer_py.write_text(WRITER)
    journals = [tmp_path / f"journal-{w}.jsonl" for w in range(WRITERS)]
    pids: set[int] = set()
    writers: list[subprocess.Popen] = []
    stats = {"cuts": 0, "files": 0, "in_flight": 0}
    started = time.monotonic()
    where = "setup"
    timing: dict[str, float] = {}
    lap = [time.monotonic()]

    def took(what: str) -> None:
        now = time.monotonic()
        timing[what] = timing.get(what, 0.0) + now - lap[0]
        lap[0] = now

    def mount() -> None:
        sofsctl(data, "mount", VOLUME, str(mnt), timeout=120)
        state = json.loads((data / "run" / "mounts" / f"{VOLUME}.json").read_text())
        pids.add(state["pid"])
        reap_when_dead(state["pid"])

    def host_pid() -> int | None:
        try:
            pid = json.loads((data / "run" / "ringhost.json").read_text())["pid"]
        except (OSError, ValueError, KeyError):
            return None
        return pid or None

    def start_writers(cycle: int) -> None:
        for w, journal in enumerate(journals):
            err = open(tmp_path / f"writer-{w}.err", "ab")
            writers.append(subprocess.Popen(
                [sys.executable, str(writer_py), str(mnt / f"w{w}"), str(journal),
                 str(rng.randrange(10**6) * 100 + cycle)],
                stdin=subprocess.DEVNULL, stdout=err, stderr=err))
            err.close()

    def context() -> str:
        log = data / "log" / f"mount-{VOLUME}.log"
        tail = log.read_text().splitlines()[-60:] if log.exists() else []
        errs = "".join((tmp_path / f"writer-{w}.err").read_text(errors="replace")[-1500:]
                       for w in range(WRITERS) if (tmp_path / f"writer-{w}.err").exists())
        return (f"\n--- where: {where} (SOFS_POWERCUT_SEED={seed}, {stats['cuts']} cuts "
                f"survived, {time.monotonic() - started:.0f} s in)\n--- writers' stderr:\n"
                f"{errs}\n--- mount log tail:\n" + "\n".join(tail))

    with adopting_mount_processes():
        try:
            cut.start()
            for sub in ("disks", "volumes"):
                (cut.mnt / sub).mkdir()
                data.mkdir(exist_ok=True)
                (data / sub).symlink_to(cut.mnt / sub)
            sofsctl(data, "cluster", "init", "--disks", "3")
            sofsctl(data, "volume", "create", VOLUME, "--cos", "1")
            durable_tree(cut.mnt)  # what sofsctl set up is not what this test is about
            mount()
            for w in range(WRITERS):
                (mnt / f"w{w}").mkdir()
                journals[w].write_text(json.dumps({"state": {}}) + "\n")
            for cycle in range(CUTS):
                delay = rng.uniform(0.2, 2.0)
                where = f"cut {cycle}, {delay:.2f} s after the writers started"
                took("between")
                start_writers(cycle)
                time.sleep(delay)
                took("writing")
                for p in writers:
                    if p.poll() is not None:
                        raise PowerCutFailure(f"a writer failed on a healthy mount (exit "
                                              f"{p.returncode})")
                victims = [*pids, *(p.pid for p in writers), host_pid()]
                for pid in victims:  # kill -9 of every process, then the power
                    if pid:
                        os.kill(pid, signal.SIGKILL)
                cut.cut()
                for p in writers:
                    p.wait(timeout=60)
                writers.clear()
                for pid in victims:
                    if pid and not wait_dead(pid):
                        raise PowerCutFailure(f"process {pid} still there 30 s after SIGKILL")
                pids.clear()
                stats["cuts"] += 1
                took("cut")

                where += ": restart"
                cut.start()
                took("cutfs start")
                sofsctl(data, "umount", str(mnt), timeout=120)  # the dead mount
                took("umount")
                where = where.rsplit(":", 1)[0] + ": fsck after the cut"
                res = sofsctl(data, "fsck", VOLUME, check=False, timeout=300)
                if res.returncode != 0:
                    raise PowerCutFailure(f"fsck after the cut is not clean (exit "
                                          f"{res.returncode}):\n{res.stdout}\n{res.stderr}")
                took("fsck")
                where = where.rsplit(":", 1)[0] + ": mount after the cut"
                mount()
                took("mount")
                where = where.rsplit(":", 1)[0] + ": checking the writers' journals"
                for w, journal in enumerate(journals):
                    state, unknown, files = check(mnt / f"w{w}", journal)
                    stats["files"] += files
                    for name in unknown:
                        os.unlink(mnt / f"w{w}" / name)
                    with open(journal, "a") as f:
                        f.write("\n" + json.dumps({"state": state}) + "\n")
                took("check")
        except Exception as e:
            raise AssertionError(f"{e}{context()}") from e
        finally:
            for p in writers:
                p.kill()
                p.wait()
            if mounted(mnt):
                subprocess.run(["fusermount3", "-u", "-z", str(mnt)], capture_output=True)
            for pid in [*pids, host_pid()]:
                if pid:
                    stop_pid(pid, sig=signal.SIGKILL)
            cut.close()
    print(f"\nsurvived {stats['cuts']} power cuts in {time.monotonic() - started:.0f} s: "
          f"{stats['files']} acknowledged files checked; SOFS_POWERCUT_SEED={seed}; "
          + ", ".join(f"{k} {v:.1f} s" for k, v in timing.items()))
