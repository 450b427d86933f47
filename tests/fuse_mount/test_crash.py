"""Crash safety of a real mount: kill -9 the mount process at random moments, over and over.

A writer subprocess runs a stream of steps in the mount (create + write + fsync/close + rename,
append, unlink, rename over another file, mkdir, rmdir). Before each step it journals (on local
disk, fsynced) what the step will change ("intent": the names it touches, before and after),
and after the step returned it journals ``done``. The test kills the mount process with SIGKILL
at a random moment, kills the writer, clears the dead mount with ``sofsctl umount``, mounts
again and checks the whole volume against the journal:

* every name holds exactly the version the journal says is durable: its bytes are regenerated
  from the (seed, size) segments that were written under it and compared byte for byte;
* the one step in flight at the kill (intent, no ``done``) left all its names either entirely
  as before or entirely as after: a rename never leaves both names or neither, an unfinished
  append never shows a partial tail, zeros or another file's bytes;
* a temporary file of an unfinished create is absent, empty, or (once its close returned)
  complete; nothing else exists.

All of this is repeated on the same volume (so damage would accumulate), with the garbage
collector running on a short period in every other mount, then a last writer runs to completion
on a healthy mount, the volume is unmounted cleanly, (when it exists) fsck'd, mounted and
checked once more.

``SOFS_CRASH_SEED=<n>`` replays the same kill delays and GC settings (the steps themselves are
always the same, they depend only on the step number); ``SOFS_CRASH_KILLS=<n>`` sets how many
kills (10 by default, to keep CI within its budget; tests/powercut kills -9 every process
at 4 more random moments, and cuts the power too).
"""

from __future__ import annotations

import concurrent.futures
import contextlib
import ctypes
import hashlib
import json
import os
import random
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from fuse_mount import ringhost

from .conftest import needs_fuse, sofsctl, wait_dead

pytestmark = [pytest.mark.integration, pytest.mark.slow, needs_fuse]

# kills per run: 10 in CI (about 50 s here); SOFS_CRASH_KILLS=200 for a longer hunt
KILLS = int(os.environ.get("SOFS_CRASH_KILLS") or 10)
MIB = 1 << 20
BLOCK = 4 * MIB
GC_FAST = ("--gc-grace", "2", "--gc-interval", "0.5")
SCAN_TIMEOUT_S = 120  # a verification pass that takes longer than this is a hung mount
WRITER_STEPS_PER_CYCLE = 400  # far more than fit before the kill
FINAL_STEPS = 25

# The writer: ``python writer.py MOUNT JOURNAL STATE FIRST_STEP MAX_STEPS``. STATE is the
# volume's current content ({path: [[seed, size], ...] | "dir"}); content of a file is the
# concatenation of random.Random(seed).randbytes(size) over its segments.
WRITER = r'''
import json, os, random, sys

MIB = 1 << 20
BLOCK = 4 * MIB
WRITE_SIZES = [1000, 4096, 65536, 131089, MIB + 3, 3 * MIB, BLOCK, BLOCK + 1, 5 * MIB]

mnt, journal_path, state_path = sys.argv[1], sys.argv[2], sys.argv[3]
first, max_steps = int(sys.argv[4]), int(sys.argv[5])
with open(state_path) as f:
    entries = json.load(f)
journal = open(journal_path, "a")


def log(rec):
    journal.write(json.dumps(rec, sort_keys=True) + "\n")
    journal.flush()
    os.fsync(journal.fileno())


def path(name):
    return os.path.join(mnt, name)


def content(seed, size):
    return random.Random(seed).randbytes(size)


def pick_size(rng):
    r = rng.random()
    if r < 0.1:
        return 0
    if r < 0.3:
        return rng.randint(1, 64 * 1024)
    if r < 0.5:
        return BLOCK + rng.randint(-3, 3)
    if r < 0.6:
        return 2 * BLOCK + rng.randint(-2, 2)
    return rng.randint(0, 9 * MIB)


def write_all(fd, data, rng):
    view = memoryview(data)
    pos = 0
    while pos < len(data):
        pos += os.write(fd, view[pos:pos + rng.choice(WRITE_SIZES)])


def step(n):
    rng = random.Random(f"op-{n}")
    files = sorted(k for k, v in entries.items() if v != "dir")
    dirs = sorted(k for k, v in entries.items() if v == "dir")
    empty_dirs = [d for d in dirs if not any(k.startswith(d + "/") for k in entries)]
    weights = {
        "create": 40,
        "append": 15 if files else 0,
        "unlink": (30 if len(files) > 12 else 8) if files else 0,
        "move": 10 if files else 0,
        "mkdir": 4 if len(dirs) < 3 else 0,
        "rmdir": 4 if empty_dirs else 0,
    }
    op = rng.choices(list(weights), weights=list(weights.values()))[0]
    sync = rng.random() < 0.7  # else close() alone acknowledges the data

    if op == "create":
        r = rng.random()
        if r < 0.5 or (r >= 0.8 and not dirs):
            target = f"f-{n}"
        elif r < 0.8:
            target = f"f-{n % 7}"  # replaces an earlier file of that name when there is one
        else:
            target = f"{rng.choice(dirs)}/f-{n}"
        tmp = f"tmp-{n}"
        size = pick_size(rng)
        new = [[n, size]]
        log({"step": n, "op": "create", "tmp": tmp, "sync": sync,
             "pre": {target: entries.get(target)}, "post": {target: new}})
        fd = os.open(path(tmp), os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
        write_all(fd, content(n, size), rng)
        if sync:
            os.fsync(fd)
        os.close(fd)
        log({"step": n, "acked": tmp})
        os.rename(path(tmp), path(target))
        entries[target] = new
    elif op == "append":
        name = rng.choice(files)
        old = entries[name]
        have = sum(size for _, size in old)
        size = rng.randint(1, 64 * 1024) if have > 9 * MIB or rng.random() < 0.3 \
            else pick_size(rng)
        new = old + [[n, size]]
        log({"step": n, "op": "append", "sync": sync, "pre": {name: old}, "post": {name: new}})
        fd = os.open(path(name), os.O_WRONLY | os.O_APPEND)
        write_all(fd, content(n, size), rng)
        if sync:
            os.fsync(fd)
        os.close(fd)
        entries[name] = new
    elif op == "unlink":
        name = rng.choice(files)
        log({"step": n, "op": "unlink", "pre": {name: entries[name]}, "post": {name: None}})
        os.unlink(path(name))
        del entries[name]
    elif op == "move":
        src = rng.choice(files)
        others = [f for f in files if f != src]
        r = rng.random()
        if others and r < 0.4:
            dst = rng.choice(others)  # atomic replace of an existing file
        elif dirs and r < 0.7:
            dst = f"{rng.choice(dirs)}/f-{n}"
        else:
            dst = f"f-{n}"
        log({"step": n, "op": "move", "pre": {src: entries[src], dst: entries.get(dst)},
             "post": {src: None, dst: entries[src]}})
        os.rename(path(src), path(dst))
        entries[dst] = entries.pop(src)
    elif op == "mkdir":
        name = f"d-{n}"
        log({"step": n, "op": "mkdir", "pre": {name: None}, "post": {name: "dir"}})
        os.mkdir(path(name))
        entries[name] = "dir"
    else:
        name = rng.choice(empty_dirs)
        log({"step": n, "op": "rmdir", "pre": {name: "dir"}, "post": {name: None}})
        os.rmdir(path(name))
        del entries[name]
    log({"done": n})


for n in range(first, first + max_steps):
    step(n)
'''


class CrashFailure(Exception):
    """What the check found wrong; the test adds the context (journal, logs)."""


# ------------------------------------------------------------------------------ versions

def content(segments) -> bytes:
    return b"".join(random.Random(seed).randbytes(size) for seed, size in segments)


def label(version) -> str:
    if version is None:
        return "absent"
    if version == "dir":
        return "a directory"
    if not version:
        return "empty"
    return "[" + ", ".join(f"step {seed}: {size} B" for seed, size in version) + "]"


class Versions:
    """Fingerprints (size, sha256) of file versions, and every version the journal named."""

    def __init__(self) -> None:
        self._fp: dict[str, tuple[int, str]] = {}
        self.known: dict[tuple[int, str], tuple[str, list]] = {}

    def fingerprint(self, segments) -> tuple[int, str]:
        key = json.dumps(segments)
        fp = self._fp.get(key)
        if fp is None:
            data = content(segments)
            fp = self._fp[key] = (len(data), hashlib.sha256(data).hexdigest())
        return fp

    def remember(self, name: str, version) -> None:
        if isinstance(version, list):
            self.known.setdefault(self.fingerprint(version), (name, version))

    def matches(self, actual, version) -> bool:
        if version is None or version == "dir":
            return actual == version
        return isinstance(actual, tuple) and actual == self.fingerprint(version)


# ------------------------------------------------------------------------------ the mount

def _raise(e: OSError) -> None:
    raise e


def scan(mnt: Path) -> dict[str, object]:
    """Everything in the volume: path -> "dir" or (size, sha256)."""
    out: dict[str, object] = {}
    for dirpath, dirnames, filenames in os.walk(mnt, onerror=_raise):
        rel = os.path.relpath(dirpath, mnt)
        for d in dirnames:
            out[os.path.normpath(os.path.join(rel, d))] = "dir"
        for f in filenames:
            h = hashlib.sha256()
            size = 0
            with open(os.path.join(dirpath, f), "rb") as fh:
                while chunk := fh.read(BLOCK):
                    h.update(chunk)
                    size += len(chunk)
            out[os.path.normpath(os.path.join(rel, f))] = (size, h.hexdigest())
    return out


def scan_with_timeout(mnt: Path) -> dict[str, object]:
    pool = concurrent.futures.ThreadPoolExecutor(1)
    try:
        return pool.submit(scan, mnt).result(timeout=SCAN_TIMEOUT_S)
    except concurrent.futures.TimeoutError:
        raise CrashFailure(f"reading the volume back hung for more than {SCAN_TIMEOUT_S} s "
                           "(mount not answering)") from None
    except OSError as e:
        raise CrashFailure(f"reading the volume back failed: {e!r}") from e
    finally:
        pool.shutdown(wait=False)




PR_SET_CHILD_SUBREAPER = 36


@contextlib.contextmanager
def adopting_mount_processes():
    """Make this process the subreaper of the mount processes started meanwhile.

    A background mount outlives the ``sofsctl mount`` that started it and is re-parented to
    PID 1, which (in some containers) reaps it only seconds after it died; ``sofsctl umount``
    waits for that, a few seconds per kill. Adopted, it is reaped here the moment it dies
    (see :func:`reap_when_dead`)."""
    libc = ctypes.CDLL(None, use_errno=True)
    adopted = libc.prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) == 0
    try:
        yield
    finally:
        if adopted:
            libc.prctl(PR_SET_CHILD_SUBREAPER, 0, 0, 0, 0)


def reap_when_dead(pid: int) -> None:
    """If the mount process ``pid`` is our child (adopted), reap it as soon as it exits."""
    try:
        with open(f"/proc/{pid}/status") as f:
            ppid = next(int(line.split()[1]) for line in f if line.startswith("PPid:"))
    except (OSError, StopIteration):
        return
    if ppid != os.getpid():
        return

    def wait() -> None:
        with contextlib.suppress(ChildProcessError):
            os.waitpid(pid, 0)

    threading.Thread(target=wait, name=f"reap-{pid}", daemon=True).start()




# ------------------------------------------------------------------------------ the journal

def read_journal(journal: Path, offset: int) -> list[dict]:
    """Records the writer appended after ``offset``; a torn last line (the writer was killed
    inside a journal write, before the step it announced began) is dropped."""
    with open(journal, "rb") as f:
        f.seek(offset)
        lines = f.read().decode().splitlines()
    recs = []
    for i, line in enumerate(lines):
        try:
            rec = json.loads(line)
        except ValueError:
            if i != len(lines) - 1:
                raise CrashFailure(f"journal line {line!r} is garbled") from None
            continue
        if "cycle" not in rec:  # the test's own notes
            recs.append(rec)
    return recs


def replay(entries: dict, recs: list[dict], versions: Versions) -> tuple[dict, dict | None]:
    """Apply finished steps to ``entries``; return (entries, the step left in flight)."""
    entries = dict(entries)
    pending = None
    for rec in recs:
        if "done" in rec:
            if pending is None or pending["step"] != rec["done"]:
                raise CrashFailure(f"journal: done {rec['done']} without its intent")
            entries.update(pending["post"])
            pending = None
        elif "acked" in rec:
            pending["acked"] = True
        else:
            if pending is not None:
                raise CrashFailure(f"journal: step {rec['step']} began before "
                                   f"{pending['step']} was done")
            pending = rec
            for name, v in rec["pre"].items():
                if entries.get(name) != v:  # the writer and the test disagree: a test bug
                    raise CrashFailure(f"journal: step {rec['step']} expected {name} to be "
                                       f"{label(v)}, the test has {label(entries.get(name))}")
            for name, v in [*rec["pre"].items(), *rec["post"].items()]:
                versions.remember(name, v)
            if rec["op"] == "create":
                versions.remember(rec["tmp"], rec["post"][next(iter(rec["post"]))])
    return {k: v for k, v in entries.items() if v is not None}, pending


def alternatives(entries: dict, pending: dict | None) -> list[dict[str, list]]:
    """The states the names touched by the step in flight may be in: all before, or all after.

    A name maps to the versions it may hold (None = absent)."""
    if pending is None:
        return [{}]
    before = {name: [entries.get(name)] for name in pending["pre"]}
    after = {name: [v] for name, v in pending["post"].items()}
    if pending["op"] == "create":
        new = pending["post"][next(iter(pending["post"]))]
        tmp = pending["tmp"]
        # not yet closed: absent, or created and still empty (writes not acknowledged are
        # lost), or already complete if the close did finish before the kill
        before[tmp] = [new] if pending.get("acked") else [None, [], new]
        after[tmp] = [None]
    return [before, after]


def explain(mnt: Path, name: str, actual, allowed: list, versions: Versions) -> str:
    """A readable account of one wrong name: sizes, first differing byte, where each 4 MiB
    block of what is there came from (another version, zeros, or nowhere)."""
    what = f"{actual[0]} B" if isinstance(actual, tuple) else label(actual)
    lines = [f"  {name}: is {what}; allowed: {' or '.join(label(v) for v in allowed)}"]
    if not isinstance(actual, tuple):
        return "\n".join(lines)
    data = (mnt / name).read_bytes()
    for v in allowed:
        if isinstance(v, list):
            want = content(v)
            same = next((i for i, (a, b) in enumerate(zip(data, want, strict=False)) if a != b),
                        min(len(data), len(want)))
            lines.append(f"    vs {label(v)} ({len(want)} B): identical for the first {same} B")
    exact = versions.known.get(actual)
    if exact is not None:
        lines.append(f"    it is exactly the version {label(exact[1])} once written as {exact[0]}")
    for off in range(0, len(data), BLOCK):
        blk = data[off:off + BLOCK]
        src = "zeros" if not blk.strip(b"\0") else None
        for other, v in list(versions.known.values())[:400]:
            if src is not None:
                break
            if content(v)[off:off + BLOCK] == blk:
                src = f"same offset of {label(v)} (written as {other})"
        lines.append(f"    block at {off}: {src or 'bytes never written at this offset'}")
    return "\n".join(lines)


def check(mnt: Path, entries: dict, pending: dict | None, versions: Versions
          ) -> tuple[dict, dict[str, object]]:
    """Compare the volume with the journal; returns (the entries now, what the scan saw)."""
    actual = scan_with_timeout(mnt)
    alts = alternatives(entries, pending)
    touched = set().union(*alts)
    problems = []
    for name in sorted((set(entries) | set(actual)) - touched):
        if not versions.matches(actual.get(name), entries.get(name)):
            problems.append(explain(mnt, name, actual.get(name), [entries.get(name)], versions))
    chosen = None
    for i, alt in enumerate(alts):
        if all(any(versions.matches(actual.get(n), v) for v in allowed)
               for n, allowed in alt.items()):
            chosen = i
            break
    if chosen is None:
        problems.append(f"  step {pending['step']} ({pending['op']}) in flight at the kill "
                        "left its names neither all as before nor all as after:")
        for name in sorted(touched):
            allowed = [v for alt in alts for v in alt.get(name, [])]
            problems.append(explain(mnt, name, actual.get(name), allowed, versions))
    if problems:
        raise CrashFailure("the volume does not match the journal:\n" + "\n".join(problems))
    if pending is not None and chosen == 1:
        entries = {k: v for k, v in {**entries, **pending["post"]}.items() if v is not None}
    return entries, actual


# ------------------------------------------------------------------------------ the test

def test_kill_9_of_the_mount_at_random_moments_loses_nothing_acknowledged(archive, tmp_path):
    # the ring host runs throughout, as under systemd (--idle-exit 0): the kills hit the
    # mount process only (a host that dies, and one that ends after the last mount, are
    # tests/fuse_mount/test_ringhost.py's); it also spares 50 host restarts
    archive.umount()
    ringhost.ensure_host(archive.data, daemon_args=["--idle-exit", "0"])
    archive.mount()
    seed = int(os.environ.get("SOFS_CRASH_SEED") or time.time_ns() % 10**9)
    rng = random.Random(seed)
    writer_py = tmp_path / "writer.py"
    writer_py.write_text(WRITER)
    journal = tmp_path / "journal.jsonl"
    journal.touch()
    state_file = tmp_path / "state.json"
    writer_err = tmp_path / "writer.err"
    versions = Versions()
    entries: dict = {}
    next_step = 0
    stats = {"kills": 0, "in_flight": 0, "came_back_after": 0, "steps": 0}
    where = "setup"
    timing = {"remount": 0.0, "check": 0.0}
    started = time.monotonic()

    def note(rec: dict) -> None:
        with open(journal, "a") as f:
            f.write(json.dumps(rec, sort_keys=True) + "\n")
            f.flush()
            os.fsync(f.fileno())

    def start_writer(steps: int) -> tuple[subprocess.Popen, int]:
        state_file.write_text(json.dumps(entries))
        offset = journal.stat().st_size
        with open(writer_err, "wb") as err:
            proc = subprocess.Popen(
                [sys.executable, str(writer_py), str(archive.mnt), str(journal),
                 str(state_file), str(next_step), str(steps)],
                stdin=subprocess.DEVNULL, stdout=err, stderr=err)
        return proc, offset

    def context() -> str:
        log = archive.log().splitlines()
        tail = journal.read_text().splitlines()[-40:]
        err = writer_err.read_text(errors="replace")[-3000:] if writer_err.exists() else ""
        return (f"\n--- where: {where} (SOFS_CRASH_SEED={seed}, {stats['kills']} kills survived "
                f"before this, {time.monotonic() - started:.0f} s in)"
                f"\n--- journal tail ({journal}):\n" + "\n".join(tail) +
                f"\n--- writer stderr tail:\n{err}"
                f"\n--- mount log ({len(log)} lines, last 300; "
                f"{archive.data / 'log' / f'mount-{archive.volume}.log'}):\n" +
                "\n".join(log[-300:]))

    def advance(recs: list[dict]) -> None:
        nonlocal next_step
        steps = [r["step"] for r in recs if "step" in r]
        if steps:
            next_step = max(steps) + 1

    with adopting_mount_processes():
        try:
            for cycle in range(KILLS):
                gc = GC_FAST if cycle % 2 else ()
                delay = rng.uniform(0.05, 1.5)
                where = f"cycle {cycle}: kill after {delay:.2f} s, gc {' '.join(gc) or 'default'}"
                note({"cycle": cycle, "kill_after_s": round(delay, 3), "gc": " ".join(gc),
                      "first_step": next_step})
                pid = max(archive.pids)
                writer, offset = start_writer(WRITER_STEPS_PER_CYCLE)
                time.sleep(delay)
                early = writer.poll()
                os.kill(pid, signal.SIGKILL)
                if not wait_dead(pid):
                    raise CrashFailure(f"mount process {pid} still there 30 s after SIGKILL")
                archive.pids.discard(pid)  # gone: never signal this pid number again
                writer.kill()
                try:
                    writer.wait(timeout=60)
                except subprocess.TimeoutExpired:
                    raise CrashFailure("the writer did not die within 60 s of SIGKILL "
                                       "(stuck in the dead mount)") from None
                if early not in (None, 0):
                    raise CrashFailure(f"the writer failed (exit {early}) before the mount was "
                                       "killed: an operation failed on a healthy mount")
                stats["kills"] += 1
                note({"cycle": cycle, "killed": pid})
                t_kill = time.monotonic()

                where += ": umount of the dead mount"
                sofsctl(archive.data, "umount", str(archive.mnt), timeout=120)
                if cycle % 5 == 0:  # the metadata the crash left, before a mount recovers it
                    where = where.rsplit(":", 1)[0] + ": fsck after the kill"
                    res = sofsctl(archive.data, "fsck", archive.volume, check=False,
                                  timeout=600)
                    if res.returncode != 0:
                        raise CrashFailure(f"fsck after a kill is not clean (exit "
                                           f"{res.returncode}):\n{res.stdout}\n{res.stderr}")
                where = where.rsplit(":", 1)[0] + ": mount after the kill"
                reap_when_dead(archive.mount(*gc))
                t_mount = time.monotonic()

                where = where.rsplit(":", 1)[0] + ": checking the volume against the journal"
                recs = read_journal(journal, offset)
                advance(recs)
                stats["steps"] += sum(1 for r in recs if "done" in r)
                committed, pending = replay(entries, recs, versions)
                entries, actual = check(archive.mnt, committed, pending, versions)
                if pending is not None:
                    stats["in_flight"] += 1
                    stats["came_back_after"] += entries != committed
                # leftovers of an unfinished create: the next writer starts from a clean volume
                for name in actual:
                    if name.startswith("tmp-"):
                        os.unlink(archive.mnt / name)
                        note({"cycle": cycle, "removed": name})
                timing["remount"] += t_mount - t_kill
                timing["check"] += time.monotonic() - t_mount

            where = f"final writer ({FINAL_STEPS} steps on a healthy mount)"
            writer, offset = start_writer(FINAL_STEPS)
            try:
                rc = writer.wait(timeout=120)
            except subprocess.TimeoutExpired:
                writer.kill()
                writer.wait(timeout=60)
                raise CrashFailure(f"{FINAL_STEPS} steps did not finish in 120 s (hang?)") from None
            if rc != 0:
                raise CrashFailure(f"the final writer failed (exit {rc})")
            recs = read_journal(journal, offset)
            advance(recs)
            entries, pending = replay(entries, recs, versions)
            assert pending is None

            where = "clean umount at the end"
            archive.umount()
            where = "mount after the clean umount"
            reap_when_dead(archive.mount())
            where = "final check of the volume"
            entries, _ = check(archive.mnt, entries, None, versions)
            where = "final clean umount"
            archive.umount()

            where = "fsck of the unmounted volume"
            res = sofsctl(archive.data, "fsck", archive.volume, check=False, timeout=600)
            if res.returncode != 0:
                raise CrashFailure(f"fsck does not report the volume clean (exit "
                                   f"{res.returncode}):\n{res.stdout}\n{res.stderr}")
        except Exception as e:  # add what was going on, the journal and the mount log
            raise AssertionError(f"{e}{context()}") from e

    print(f"\nsurvived {stats['kills']} kills of the mount in "
          f"{time.monotonic() - started:.0f} s: {stats['steps']} steps journaled, "
          f"{stats['in_flight']} kills with a step in flight ({stats['came_back_after']} of "
          f"those came back completed); {len(entries)} names at the end; "
          f"SOFS_CRASH_SEED={seed}; umount+mount {timing['remount']:.0f} s, "
          f"checks {timing['check']:.0f} s")
