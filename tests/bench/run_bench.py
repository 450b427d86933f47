"""sofs against a trivial pyfuse3 passthrough mount, measured in one run on one machine.

Three mounts are started before the first test and stay up until the end of the run:

  sofs               a fresh local ring (``sofsctl cluster init --disks 6``) with a volume
                     ``bench`` (EC 4+2, default compression); every file is durable when its
                     ``close()`` returns (sofs fsyncs its chunk copies before answering)
  passthrough        ``tests/bench/passthrough.py`` over a plain directory on the same
                     filesystem, with the same kernel caching settings as sofs's mount; it never
                     fsyncs unless the application asks
  passthrough+fsync  the same program with ``--fsync-on-close``: every ``close()`` (FUSE
                     ``flush``) fsyncs the file first, the durability-matched baseline

The rows, each test in a fresh subdirectory of each mount:

  write      one large file (default 1 GiB) in 1 MiB writes of incompressible data that never
             repeats a block (no dedup, no compression win), fsync + close included   [MiB/s]
  read       the same file after ``sync; echo 3 > /proc/sys/vm/drop_caches``          [MiB/s]
  create-4k  create + write + close of N small files (default 10,000 x 4 KiB)       [files/s]
  stat-4k    stat of those files right after (warm: dentries cached; the kernel still asks
             the filesystem once for the attributes of a file just written)       [files/s]
  unlink-4k  unlink of those files                                                   [files/s]
  create-ct, stat-ct, unlink-ct: the same with CT-slice-sized files (2,000 x 512 KiB)

The WORM rows (issue 12: the WORM checks must not slow ordinary writes; off with ``--no-worm``):
each sofs mount of the run also gets a WORM domain, ``/worm`` of its volume (``sofsctl worm
domain create bench /worm --mode compliance --default-retention 10y --autocommit 15m``, made
while mounted), and the large and ct groups (write, read, create-ct, stat-ct, unlink-ct) run a
second time in a fresh subdirectory of it, as one more column ``sofs-worm`` measured right next
to ``sofs`` (plain subdirectories of the same volume). Its files are ordinary, uncommitted
files (the run is far shorter than the autocommit period), so the rows price the checks every
write, open, create and unlink of a domain file pays (``sofs/worm/rules.py``) and the
autocommit scanner's pass over the domain's pending files. They get a table of their own,
after the main one: plain, WORM, WORM/plain (the ratio of the medians, 1.00 = free; the issue
wants at least 0.90 on write and create-ct) and, with ``--repeat``, the ratio of each run's
pair (measured back to back) and their median, the steadier reading on a noisy machine.

Interleaved: each row is measured on every mount back to back before the next row starts
(write on sofs, on passthrough, on passthrough+fsync; then read on each; ...), so noise from
the shared machine lands on all sides alike instead of on whichever mount ran during it. Every
timed step starts after an untimed ``sync``, so no mount pays for another's write-back.
``--repeat N`` runs each group of rows (large, small, ct) N times in a row, in reverse mount
order every other time (so a WORM row runs after its plain twin, then before it); the table
then shows each mount's median of its N values and the ratios of those medians, and the single
values follow the table. Data read back is compared with what was written (outside the timed
part).

How to read the columns (rates: higher is better):

  sofs, passthrough, passthrough+fsync   median rate of each mount
  sofs/pt       sofs / passthrough, the main ratio. The passthrough is the floor of a Python
                FUSE filesystem doing nothing, so ~1.0 means sofs's own work (hashing,
                compression, erasure coding, metadata, durability) is nearly free and small
                ratios show where it costs.
  sofs/(pt+fsync)  sofs / passthrough+fsync: the same against a baseline that also waits for
                the disk at every close. On the create rows it takes the price of durability
                (which any filesystem that promises it pays) out of the comparison. Rows
                without a close that writes (read, stat, unlink; write fsyncs explicitly on
                every mount) do the same work on both passthroughs, so there the two
                passthrough columns differ only by noise: a direct reading of how noisy the
                run was.

The machines here are noisy (2 cores, shared): compare ratios from one run, never absolute
numbers from different runs; use ``--repeat 3`` when a ratio matters. ``--rss-gib N``
additionally writes an N GiB file to sofs after the rows and reports the mount process's peak
resident memory (VmHWM) during it.

    scripts/bench                       # the default run (~2 minutes here, 3 mounts)
    scripts/bench --size-gib 0.1 --small-count 500 --ct-count 100   # a quick check
    scripts/bench --only write read --rss-gib 4 --keep
    scripts/bench --only create-4k --repeat 5 --mounts sofs passthrough+fsync
    scripts/bench --mounts sofs --only write create-ct --repeat 3   # WORM vs plain only
    scripts/bench --mounts sofs sofs-unsynced --only create-4k create-ct --no-worm --repeat 3
                                        # the synced close's cost (synced/unsynced)
"""

from __future__ import annotations

import argparse
import json
import os
import re
import select
import shutil
import signal
import statistics
import struct
import subprocess
import sys
import tempfile
import time
import traceback
from pathlib import Path

from chunkstore.ring.hosted import running_host

REPO = Path(__file__).resolve().parents[2]
MiB = 1 << 20
GiB = 1 << 30
PATTERN = 64 * MiB   # random bytes generated once, reused with stamps
STAMP_EVERY = 64 * 1024
VOLUME = "bench"
CACHE_TIMEOUT = 300.0  # entry/attribute timeouts of both sofs's and the passthrough's mounts

# mounts, in the order they are measured; sofs-exclusive (the embedded ring held by the mount
# process itself, ``mount --exclusive-ring``) only when asked for, to price the ring host;
# sofs-unsynced (``SOFS_BENCH_UNSYNCED_CLOSE=1``: a close's metadata commit left in the page
# cache, the behaviour before issue 13) only when asked for, to price the synced close
KINDS = ["sofs", "sofs-exclusive", "sofs-unsynced", "passthrough", "passthrough+fsync"]
DEFAULT_KINDS = ["sofs", "passthrough", "passthrough+fsync"]

ROWS = [  # key, label, unit
    ("write", "seq write {size} (1 MiB writes + fsync)", "MiB/s"),
    ("read", "seq read {size}, cold cache", "MiB/s"),
    ("create-4k", "create+write+close {small} x 4 KiB", "files/s"),
    ("stat-4k", "stat {small} x 4 KiB (warm)", "files/s"),
    ("unlink-4k", "unlink {small} x 4 KiB", "files/s"),
    ("create-ct", "create+write+close {ct} x 512 KiB", "files/s"),
    ("stat-ct", "stat {ct} x 512 KiB (warm)", "files/s"),
    ("unlink-ct", "unlink {ct} x 512 KiB", "files/s"),
]
ROW_KEYS = [r[0] for r in ROWS]
GROUPS = {"large": ("write", "read"),
          "small": ("create-4k", "stat-4k", "unlink-4k"),
          "ct": ("create-ct", "stat-ct", "unlink-ct")}

# The WORM domain of each sofs mount (module docstring): the groups measured in it, its path in
# the volume and its policy (compliance, the strictest: every check applies)
WORM_GROUPS = ("large", "ct")
WORM_ROWS = [k for g in WORM_GROUPS for k in GROUPS[g]]
WORM_DIR = "worm"
WORM_POLICY = ["--mode", "compliance", "--default-retention", "10y", "--autocommit", "15m"]
# every column a test can run in, for the data streams (no two tests write the same blocks)
COLUMNS = KINDS + [f"{k}-worm" for k in KINDS if k.startswith("sofs")]


class BenchError(Exception):
    pass


# ------------------------------------------------------------------------------- data

class Data:
    """64 MiB of random bytes; every 64 KiB gets a stamp (run nonce, stream, position) so no
    block of any size repeats, within a file or across files."""

    def __init__(self) -> None:
        self.buf = bytearray(os.urandom(PATTERN))
        self.view = memoryview(self.buf)
        self.nonce = int.from_bytes(os.urandom(8), "little")

    def block(self, stream: int, index: int, length: int) -> memoryview:
        """The bytes of block ``index`` of ``stream``: the same answer every time it is asked."""
        # Blocks start on the 64 KiB stamp grid, so stamps only ever touch grid positions and
        # a block's other bytes never change.
        slots = (PATTERN - length) // STAMP_EVERY + 1
        off = (index * max(1, length // STAMP_EVERY) % slots) * STAMP_EVERY
        for k, pos in enumerate(range(off, off + length, STAMP_EVERY)):
            struct.pack_into("<QQQ", self.buf, pos, self.nonce, stream << 32 | k, index)
        return self.view[off:off + length]


# ------------------------------------------------------------------------------- helpers

def log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def drop_caches() -> None:
    os.sync()
    with open("/proc/sys/vm/drop_caches", "w") as f:
        f.write("3\n")


def mounted(path: Path) -> bool:
    real = os.path.realpath(path)
    with open("/proc/self/mountinfo") as f:
        for line in f:
            if line.split()[4].encode().decode("unicode_escape") == real:
                return True
    return False


def alive(pid: int | None) -> bool:
    if not pid:
        return False
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("State:"):
                    return "zombie" not in line
    except (FileNotFoundError, ProcessLookupError):
        return False
    return True


def proc_status(pid: int, field: str) -> int | None:
    """A ``/proc/PID/status`` memory field in bytes."""
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith(field + ":"):
                    return int(line.split()[1]) * 1024
    except OSError:
        return None
    return None


def kill(pid: int | None, grace: float = 30.0) -> None:
    if not alive(pid):
        return
    with_sig = [(signal.SIGTERM, grace), (signal.SIGKILL, 10.0)]
    for sig, wait in with_sig:
        try:
            os.kill(pid, sig)
        except ProcessLookupError:
            return
        deadline = time.monotonic() + wait
        while time.monotonic() < deadline:
            try:
                os.waitpid(pid, os.WNOHANG)
            except ChildProcessError:
                pass
            if not alive(pid):
                return
            time.sleep(0.1)


def run(cmd: list[str], timeout: float = 300.0, env: dict[str, str] | None = None) -> str:
    log("$ " + " ".join(cmd))
    res = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout,
                         env=None if env is None else {**os.environ, **env})
    out = (res.stdout + res.stderr).strip()
    if res.returncode != 0:
        raise BenchError(f"command failed (exit {res.returncode}): {' '.join(cmd)}\n{out}")
    if out:
        log("  " + out.replace("\n", "\n  "))
    return out


def tail(path: Path, lines: int = 25) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError as e:
        return f"(no log: {e})"


def human_size(n: float) -> str:
    return f"{n / GiB:g} GiB" if n >= GiB else f"{n / MiB:g} MiB"


# ------------------------------------------------------------------------------- the tests
#
# A group's rows depend on each other (read needs the written file, stat and unlink the created
# files), so each group is an object whose rows run one at a time: ``step(i)`` runs row i of
# the group and returns its rate. Between two steps of one mount the other mounts run theirs.

def fresh_dir(mnt: Path, name: str) -> Path:
    d = mnt / name
    os.mkdir(d)
    return d


class LargeTest:
    def __init__(self, root: Path, data: Data, size: int, stream: int) -> None:
        self.root, self.data, self.stream = root, data, stream
        self.path = root / "large.bin"
        self.n = size // MiB
        self.steps = [self.write, self.read]

    def step(self, i: int) -> float:
        return self.steps[i]()

    def write(self) -> float:
        n, data, stream = self.n, self.data, self.stream
        os.sync()
        t0 = time.perf_counter()
        fd = os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o644)
        try:
            for i in range(n):
                block = data.block(stream, i, MiB)
                done = os.write(fd, block)
                while done < MiB:
                    done += os.write(fd, block[done:])
            os.fsync(fd)
        finally:
            os.close(fd)
        return n / (time.perf_counter() - t0)

    def read(self) -> float:
        n, path = self.n, self.path
        drop_caches()
        rbuf = bytearray(MiB)
        total = 0
        t0 = time.perf_counter()
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
        try:
            while True:
                got = os.readv(fd, [rbuf])
                if not got:
                    break
                total += got
        finally:
            os.close(fd)
        t_read = time.perf_counter() - t0
        if total != n * MiB:
            raise BenchError(f"read back {total} bytes of {n * MiB}")

        # Untimed: the file holds what was written (served from the page cache now); then it
        # goes, so that --repeat does not pile up large files.
        with open(path, "rb", buffering=0) as f:
            for i in range(n):
                got = f.read(MiB)
                if got != self.data.block(self.stream, i, MiB):
                    raise BenchError(f"{path}: MiB block {i} differs from what was written")
        os.unlink(path)
        os.rmdir(self.root)
        return n / t_read


class FilesTest:
    def __init__(self, root: Path, data: Data, count: int, size: int, stream: int,
                 late: list[str], what: str) -> None:
        self.root, self.data, self.count, self.size, self.stream = root, data, count, size, stream
        self.names = [os.fsencode(root / f"f{i:06d}") for i in range(count)]
        self.late, self.what = late, what
        self.t_created = 0.0
        self.steps = [self.create, self.stat, self.unlink]

    def step(self, i: int) -> float:
        return self.steps[i]()

    def create(self) -> float:
        flags = os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC
        data, stream, size = self.data, self.stream, self.size
        os.sync()
        t0 = self.t_created = time.perf_counter()
        for i, name in enumerate(self.names):
            fd = os.open(name, flags, 0o644)
            try:
                os.write(fd, data.block(stream, i, size))
            finally:
                os.close(fd)
        return self.count / (time.perf_counter() - t0)

    def stat(self) -> float:
        os.sync()
        t0 = time.perf_counter()
        for name in self.names:
            st = os.stat(name)
        t1 = time.perf_counter()
        if st.st_size != self.size:
            raise BenchError(f"{os.fsdecode(self.names[-1])}: size {st.st_size}, "
                             f"expected {self.size}")
        if t1 - self.t_created > CACHE_TIMEOUT:
            # The first files' kernel cache entries had expired: this stat also did lookups.
            self.late.append(f"{self.what}: stat ended {t1 - self.t_created:.0f} s after the "
                             f"first create, beyond the {CACHE_TIMEOUT:.0f} s entry/attribute "
                             f"timeouts (includes lookups)")

        # Untimed: a sample of the files holds what was written.
        for i in range(0, self.count, max(1, self.count // 50)):
            with open(self.names[i], "rb", buffering=0) as f:
                if f.read() != self.data.block(self.stream, i, self.size):
                    raise BenchError(f"{os.fsdecode(self.names[i])} differs from what was "
                                     f"written")
        return self.count / (t1 - t0)

    def unlink(self) -> float:
        os.sync()
        t0 = time.perf_counter()
        for name in self.names:
            os.unlink(name)
        t = time.perf_counter() - t0
        os.rmdir(self.root)
        return self.count / t


def new_test(group: str, mnt: Path, data: Data, args, stream: int, late: list[str],
             what: str) -> LargeTest | FilesTest:
    root = fresh_dir(mnt, what.split()[-1])
    if group == "large":
        return LargeTest(root, data, int(args.size_gib * GiB), stream)
    if group == "small":
        return FilesTest(root, data, args.small_count, 4096, stream, late, what)
    return FilesTest(root, data, args.ct_count, 512 * 1024, stream, late, what)


def measure(mounts: list, data: Data, args, groups: list[str],
            results: dict[str, dict[str, list[float]]], errors: list[str],
            late: list[str]) -> None:
    """All selected rows, each on every mount back to back; failures are recorded, not raised.

    Fills ``results`` as it goes (so an interrupted run still shows what it measured):
    {mount name: {row: [value per repeat]}}. A mount whose step fails skips the rest of
    that group's run (the later rows need the earlier ones); a mount whose process is gone is
    not used again."""
    dead: set[str] = set()

    def failed(m, what: str) -> None:
        e = sys.exc_info()[1]
        msg = f"{m.name} {what}: {type(e).__name__}: {e}"
        errors.append(msg)
        log("  FAILED: " + msg)
        log(traceback.format_exc())
        problem = m.problem()
        if problem:
            errors.append(problem)
            log("  " + problem)
            dead.add(m.name)

    for gi, group in enumerate(groups):
        for rep in range(args.repeat):
            order = mounts if rep % 2 == 0 else mounts[::-1]
            runs = f" (run {rep + 1}/{args.repeat})" if args.repeat > 1 else ""
            tests = {}
            for m in order:
                if m.name in dead or group not in getattr(m, "groups", GROUPS):
                    continue
                stream = (rep * len(COLUMNS) + COLUMNS.index(m.name)) * 16 + gi
                what = f"{m.name} {group}-{rep + 1}"
                try:
                    tests[m.name] = new_test(group, m.mnt, data, args, stream, late, what)
                except Exception:  # noqa: BLE001 - reported in the output, the run goes on
                    failed(m, what)
            for i, key in enumerate(GROUPS[group]):
                for m in order:
                    test = tests.get(m.name)
                    if test is None:
                        continue
                    log(f"[{m.name}] {key}{runs} ...")
                    t0 = time.monotonic()
                    try:
                        value = test.step(i)
                    except Exception:  # noqa: BLE001
                        failed(m, f"{key}{runs}")
                        del tests[m.name]
                        continue
                    results.setdefault(m.name, {}).setdefault(key, []).append(value)
                    log(f"  {key} {value:,.1f}  ({time.monotonic() - t0:.1f} s)")


# ------------------------------------------------------------------------------- mounts

class SofsMount:
    """sofs on a fresh embedded ring: served by its ring host (the default), or with
    ``exclusive`` held by the mount process itself (``mount --exclusive-ring``); ``unsynced``:
    closes do not sync the metadata log (``SOFS_BENCH_UNSYNCED_CLOSE=1``, benchmarks only)."""

    def __init__(self, work: Path, exclusive: bool = False, unsynced: bool = False) -> None:
        self.name = ("sofs-exclusive" if exclusive else "sofs-unsynced" if unsynced
                     else "sofs")
        self.exclusive = exclusive
        self.env = {"SOFS_BENCH_UNSYNCED_CLOSE": "1"} if unsynced else None
        self.data_dir = work / f"{self.name}-data"
        self.mnt = work / f"mnt-{self.name}"
        self.pid: int | None = None
        sofsctl = REPO / ".venv" / "bin" / "sofsctl"
        self.cmd = [str(sofsctl)] if sofsctl.exists() else [sys.executable, "-m", "sofsctl"]
        self.cmd += ["--data-dir", str(self.data_dir)]
        self.log = self.data_dir / "log" / f"mount-{VOLUME}.log"

    def start(self) -> None:
        self.mnt.mkdir()
        run(self.cmd + ["cluster", "init", "--disks", "6"])
        run(self.cmd + ["volume", "create", VOLUME, "--ec", "4+2"])
        try:
            out = run(self.cmd + ["mount", VOLUME, str(self.mnt)]
                      + (["--exclusive-ring"] if self.exclusive else []), timeout=120,
                      env=self.env)
        except BenchError as e:
            raise BenchError(f"{e}\n--- {self.log} (tail) ---\n{tail(self.log)}") from None
        m = re.search(r"\(pid (\d+)\)", out)
        if m:
            self.pid = int(m.group(1))
        else:
            state = self.data_dir / "run" / "mounts" / f"{VOLUME}.json"
            self.pid = json.loads(state.read_text())["pid"]
        if not mounted(self.mnt):
            raise BenchError(f"sofsctl mount returned but {self.mnt} is not mounted")

    def problem(self) -> str | None:
        if self.pid and not alive(self.pid):
            return (f"sofs mount process {self.pid} is gone; {self.log} (tail):\n"
                    f"{tail(self.log)}")
        return None

    def stop(self) -> None:
        if mounted(self.mnt) or alive(self.pid):
            try:
                run(self.cmd + ["umount", str(self.mnt)], timeout=400)
            except (BenchError, subprocess.TimeoutExpired) as e:
                log(f"sofs umount failed: {e}\n--- {self.log} (tail) ---\n{tail(self.log)}")
        kill(self.pid)
        if mounted(self.mnt):
            subprocess.run(["umount", "-l", str(self.mnt)], capture_output=True)


class WormDomain:
    """The WORM domain ``/worm`` of a sofs mount's volume, measured as one more column next to
    the mount itself (only the WORM_GROUPS); made once, after the mount is up, and never
    removed (a domain's top directory cannot be: it goes with the work directory)."""

    groups = WORM_GROUPS

    def __init__(self, sofs: SofsMount) -> None:
        self.sofs = sofs
        self.name = f"{sofs.name}-worm"
        self.mnt = sofs.mnt / WORM_DIR

    @property
    def pid(self) -> int | None:
        return self.sofs.pid

    def start(self) -> None:
        os.mkdir(self.mnt)  # through the mount, so the kernel knows it; the domain is made of it
        run(self.sofs.cmd + ["worm", "domain", "create", VOLUME, "/" + WORM_DIR] + WORM_POLICY)

    def problem(self) -> str | None:
        return self.sofs.problem()


class PassthroughMount:
    """``tests/bench/passthrough.py``; with ``fsync_on_close`` every close() fsyncs the file."""

    def __init__(self, work: Path, fsync_on_close: bool = False) -> None:
        self.fsync_on_close = fsync_on_close
        self.name = "passthrough+fsync" if fsync_on_close else "passthrough"
        slug = "passthrough-fsync" if fsync_on_close else "passthrough"
        self.src = work / f"{slug}-src"
        self.mnt = work / f"mnt-{slug}"
        self.log = work / f"{slug}.log"
        self.proc: subprocess.Popen | None = None

    @property
    def pid(self) -> int | None:
        return self.proc.pid if self.proc else None

    def start(self) -> None:
        self.src.mkdir()
        self.mnt.mkdir()
        cmd = [sys.executable, "-m", "tests.bench.passthrough", str(self.src), str(self.mnt)]
        if self.fsync_on_close:
            cmd.insert(3, "--fsync-on-close")
        log("$ " + " ".join(cmd))
        with open(self.log, "ab") as logf:
            self.proc = subprocess.Popen(cmd, cwd=REPO, stdin=subprocess.DEVNULL,
                                         stdout=subprocess.PIPE, stderr=logf,
                                         start_new_session=True)
        deadline = time.monotonic() + 30
        line = b""
        while b"\n" not in line and time.monotonic() < deadline:
            ready, _, _ = select.select([self.proc.stdout], [], [], 1.0)
            if ready:
                chunk = os.read(self.proc.stdout.fileno(), 100)
                if not chunk:
                    break
                line += chunk
        if line.strip() != b"ready":
            raise BenchError(f"{self.name} mount did not start; {self.log}:\n{tail(self.log)}")

    def problem(self) -> str | None:
        if self.proc and self.proc.poll() is not None:
            return (f"{self.name} exited ({self.proc.returncode}); {self.log}:\n"
                    f"{tail(self.log)}")
        return None

    def stop(self) -> None:
        if mounted(self.mnt):
            res = subprocess.run(["fusermount3", "-u", str(self.mnt)], capture_output=True,
                                 text=True)
            if res.returncode != 0:
                log(f"fusermount3 -u {self.mnt}: {res.stderr.strip()}")
        if self.proc:
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                kill(self.proc.pid, grace=5)
                self.proc.wait(timeout=10)
            if self.proc.stdout:
                self.proc.stdout.close()
        if mounted(self.mnt):
            subprocess.run(["umount", "-l", str(self.mnt)], capture_output=True)


# ------------------------------------------------------------------------------- output

def fmt(value: float | None, unit: str) -> str:
    if value is None:
        return "-"
    return f"{value:,.1f} MiB/s" if unit == "MiB/s" else f"{value:,.0f}/s"


RATIOS = [("sofs/pt", "sofs", "passthrough"),
          ("sofs/(pt+fsync)", "sofs", "passthrough+fsync"),
          ("sofs/excl", "sofs", "sofs-exclusive"),
          ("synced/unsynced", "sofs", "sofs-unsynced")]


def medians(results: dict[str, dict[str, list[float]]]) -> dict[str, dict[str, float]]:
    return {name: {k: statistics.median(v) for k, v in rows.items() if v}
            for name, rows in results.items()}


def row_labels(args) -> dict[str, str]:
    return {k: lab.format(size=human_size(args.size_gib * GiB), small=f"{args.small_count:,}",
                          ct=f"{args.ct_count:,}")
            for k, lab, _ in ROWS}


def table(rows: list[str], kinds: list[str], med: dict[str, dict[str, float]], args) -> str:
    labels = row_labels(args)
    units = {k: u for k, _, u in ROWS}
    ratios = [r for r in RATIOS if r[1] in kinds and r[2] in kinds]
    lines = [tuple(["test"] + kinds + [r[0] for r in ratios])]
    for k in rows:
        line = [labels[k]] + [fmt(med.get(name, {}).get(k), units[k]) for name in kinds]
        for _, a_name, b_name in ratios:
            a, b = med.get(a_name, {}).get(k), med.get(b_name, {}).get(k)
            line.append(f"{a / b:.2f}" if a is not None and b else "-")
        lines.append(tuple(line))
    return columns(lines)


def worm_table(rows: list[str], pairs: list[tuple[str, str]],
               results: dict[str, dict[str, list[float]]], args) -> str:
    """The WORM rows: for each (plain, WORM) pair of columns their medians, WORM/plain (the
    ratio of the medians) and, with --repeat, the ratio of each run's pair (measured back to
    back, so noise lasting longer than a row moves both: their spread says how much of a
    difference is noise) and the median of those."""
    labels = row_labels(args)
    units = {k: u for k, _, u in ROWS}
    med = medians(results)
    head = ["test"]
    for plain, worm in pairs:
        head += [plain, worm, "WORM/plain" if len(pairs) == 1 else f"{worm}/{plain}"]
        if args.repeat > 1:
            head.append("per run (median)")
    lines = [tuple(head)]
    for k in rows:
        line = [labels[k]]
        for plain, worm in pairs:
            a, b = med.get(worm, {}).get(k), med.get(plain, {}).get(k)
            line += [fmt(b, units[k]), fmt(a, units[k]),
                     f"{a / b:.2f}" if a is not None and b else "-"]
            if args.repeat > 1:
                each = [x / y for x, y in zip(results.get(worm, {}).get(k, []),
                                              results.get(plain, {}).get(k, []), strict=False)
                        if y]
                line.append(" ".join(f"{r:.2f}" for r in each)
                            + f" ({statistics.median(each):.2f})" if each else "-")
        lines.append(tuple(line))
    return columns(lines)


def columns(lines: list[tuple[str, ...]]) -> str:
    """A table: the first column left-aligned, the others right-aligned, a rule under the
    header."""
    w = [max(len(r[i]) for r in lines) for i in range(len(lines[0]))]
    out = []
    for j, r in enumerate(lines):
        out.append("  ".join([f"{r[0]:<{w[0]}}"] + [f"{c:>{w[i + 1]}}"
                                                    for i, c in enumerate(r[1:])]))
        if j == 0:
            out.append("  ".join("-" * x for x in w))
    return "\n".join(out)


def single_values(rows: list[str], kinds: list[str],
                  results: dict[str, dict[str, list[float]]],
                  worm_kinds: list[str] | tuple[()] = ()) -> str:
    """Every repeat's value, in the order they were measured (``worm_kinds``: on the WORM
    rows only)."""
    units = {k: u for k, _, u in ROWS}
    wn = max(len(n) for n in [*kinds, *worm_kinds])
    wk = max(len(k) for k in rows)
    out = []
    for k in rows:
        for name in kinds + (list(worm_kinds) if k in WORM_ROWS else []):
            vals = results.get(name, {}).get(k, [])
            text = "  ".join(f'{fmt(v, units[k]).removesuffix(" MiB/s").removesuffix("/s"):>9}'
                             for v in vals) or f"{'-':>9}"
            out.append(f"  {k:<{wk}}  {name:<{wn}}  {text}")
    return "\n".join(out)


# ------------------------------------------------------------------------------- main

def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        prog="scripts/bench", description="Benchmark sofs against a pyfuse3 passthrough mount "
        "(plain and fsync-on-close) in one run, each row on every mount back to back; read "
        "the ratio columns (machines here are noisy).")
    p.add_argument("--size-gib", type=float, default=1.0,
                   help="size of the large sequential file (default 1)")
    p.add_argument("--small-count", type=int, default=10_000,
                   help="number of 4 KiB files (default 10000)")
    p.add_argument("--ct-count", type=int, default=2_000,
                   help="number of 512 KiB (CT slice) files (default 2000)")
    p.add_argument("--only", nargs="+", choices=ROW_KEYS, metavar="ROW",
                   help=f"rows to show: {' '.join(ROW_KEYS)} (a row's prerequisites run too)")
    p.add_argument("--mounts", nargs="+", choices=KINDS, default=list(DEFAULT_KINDS),
                   metavar="KIND",
                   help=f"mounts to measure: {' '.join(KINDS)} (default: "
                        f"{' '.join(DEFAULT_KINDS)}; sofs-exclusive prices the ring host, "
                        "sofs-unsynced the synced close)")
    p.add_argument("--repeat", type=int, default=1, metavar="N",
                   help="measure each row N times per mount, alternating the mount order; "
                        "report medians and the ratios of medians (default 1)")
    p.add_argument("--no-worm", dest="worm", action="store_false",
                   help="leave out the WORM rows: by default each sofs mount's volume also gets "
                        "a WORM domain /worm (compliance) and write, read and the ct rows run in "
                        "it too, next to the same rows in plain directories, in a table of "
                        "their own (WORM/plain: the cost of the WORM checks)")
    p.add_argument("--rss-gib", type=float, default=0.0,
                   help="also write a file of this many GiB to sofs and report the mount "
                        "process's peak RSS (VmHWM) during it (e.g. 4)")
    p.add_argument("--workdir", type=Path, default=None,
                   help="create the work directory inside this one (default /tmp)")
    p.add_argument("--keep", action="store_true", help="keep the work directory")
    args = p.parse_args(argv)
    if args.size_gib * GiB < MiB or args.small_count < 1 or args.ct_count < 1:
        p.error("sizes and counts must be positive (--size-gib at least 1 MiB)")
    if args.repeat < 1:
        p.error("--repeat must be at least 1")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if os.geteuid() != 0:
        log("run as root: mounting FUSE and dropping caches need it")
        return 2
    rows = [k for k in ROW_KEYS if not args.only or k in args.only]
    groups = [g for g, ks in GROUPS.items() if any(k in rows for k in ks)]
    kinds = [k for k in KINDS if k in args.mounts]

    def on_term(signum, frame):
        raise KeyboardInterrupt(f"signal {signum}")
    signal.signal(signal.SIGTERM, on_term)

    base = args.workdir or Path("/tmp")
    base.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix="sofs-bench-", dir=base))
    log(f"work directory: {work}")
    mounts: list[SofsMount | PassthroughMount] = []
    for kind in kinds:
        mounts.append(SofsMount(work, exclusive=kind == "sofs-exclusive",
                                unsynced=kind == "sofs-unsynced")
                      if kind.startswith("sofs")
                      else PassthroughMount(work, fsync_on_close=kind == "passthrough+fsync"))
    sofs = next((m for m in mounts if m.name == "sofs"), None)
    results: dict[str, dict[str, list[float]]] = {}
    errors: list[str] = []
    notes: list[str] = []
    late: list[str] = []
    worm_pairs: list[tuple[str, str]] = []  # (sofs mount, its WORM domain) column names
    status = 0
    t_start = time.monotonic()
    try:
        data = Data()
        live = []
        for m in mounts:  # all up before the first row; all stay up until the finally below
            try:
                m.start()
            except (BenchError, subprocess.TimeoutExpired, OSError) as e:
                errors.append(f"{m.name} setup failed: {e}")
                log(errors[-1])
                m.stop()
            else:
                live.append(m)
        # the live mounts, each sofs one followed by its WORM domain (the columns measured)
        measured: list[SofsMount | PassthroughMount | WormDomain] = []
        for m in live:
            measured.append(m)
            if isinstance(m, SofsMount) and args.worm and set(groups) & set(WORM_GROUPS):
                domain = WormDomain(m)
                try:
                    domain.start()
                except (BenchError, subprocess.TimeoutExpired, OSError) as e:
                    errors.append(f"{domain.name} setup failed: {e}")
                    log(errors[-1])
                else:
                    measured.append(domain)
                    worm_pairs.append((m.name, domain.name))
        measure(measured, data, args, groups, results, errors, late)
        if sofs in live and alive(sofs.pid):
            hwm = proc_status(sofs.pid, "VmHWM")
            if hwm:
                notes.append(f"sofs mount (pid {sofs.pid}) peak RSS over the tests: "
                             f"{hwm / MiB:,.0f} MiB")
            if args.rss_gib > 0:
                notes.append(rss_test(sofs, data, args.rss_gib, errors))
        host = running_host(sofs.data_dir) if sofs is not None else None
        if host is not None:
            hwm = proc_status(host.pid, "VmHWM")
            if hwm:
                notes.append(f"sofs ring host (pid {host.pid}) peak RSS: {hwm / MiB:,.0f} MiB")
        for m in live:
            if m is sofs:
                continue
            hwm = proc_status(m.pid, "VmHWM") if m.pid else None
            if hwm:
                notes.append(f"{m.name} (pid {m.pid}) peak RSS: {hwm / MiB:,.0f} MiB")
    except KeyboardInterrupt:
        log("interrupted; cleaning up")
        status = 130
    except Exception as e:  # noqa: BLE001
        errors.append(f"{type(e).__name__}: {e}")
        log(traceback.format_exc())
    finally:
        signal.signal(signal.SIGTERM, signal.SIG_IGN)  # let the cleanup finish
        still = []
        for m in mounts:
            try:
                m.stop()
            except Exception as e:  # noqa: BLE001
                log(f"stopping {m.mnt}: {e}")
            if mounted(m.mnt):
                still.append(str(m.mnt))
        if args.keep or still:
            log(f"work directory kept: {work}"
                + (f" (still mounted: {', '.join(still)})" if still else ""))
        else:
            shutil.rmtree(work, ignore_errors=True)

    print()
    runs = (f"median of {args.repeat} runs per row" if args.repeat > 1 else "1 run per row")
    print(f"sofs vs pyfuse3 passthrough, {os.uname().release}, {os.cpu_count()} cores, "
          f"{time.strftime('%Y-%m-%d %H:%M')}, mounts interleaved, {runs}, "
          f"run took {time.monotonic() - t_start:.0f} s")
    print(table(rows, kinds, medians(results), args))
    worm_rows = [k for k in rows if k in WORM_ROWS]
    if worm_pairs and worm_rows:
        print(f"\nWORM domain /{WORM_DIR} ({' '.join(WORM_POLICY).replace('--', '')}) vs plain "
              f"directories of the same volume, side by side, ordinary (uncommitted) files; "
              f"WORM/plain 1.00 = the checks are free (issue 12 asks >= 0.90 on write and "
              f"create-ct):")
        print(worm_table(worm_rows, worm_pairs, results, args))
    worm_kinds = [w for _, w in worm_pairs]
    if args.repeat > 1:
        print("\nsingle values (files/s or MiB/s), run 1 to run N:")
        print(single_values(rows, kinds, results, worm_kinds))
    for n in notes + late:
        print(n)
    if errors:
        print("\nERRORS:")
        for e in errors:
            print("  " + e.replace("\n", "\n  "))
        status = status or 1
    return status


def rss_test(sofs: SofsMount, data: Data, gib: float, errors: list[str]) -> str:
    """Write a ``gib`` GiB file to sofs; the mount's VmHWM during it (reset just before)."""
    try:
        with open(f"/proc/{sofs.pid}/clear_refs", "w") as f:
            f.write("5")  # resets the peak RSS (VmHWM) to the current RSS
        before = proc_status(sofs.pid, "VmRSS") or 0
        root = fresh_dir(sofs.mnt, "rss")
        n = int(gib * GiB) // MiB
        log(f"[sofs] rss: writing {n:,} MiB ...")
        t0 = time.perf_counter()
        fd = os.open(root / "big.bin", os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC,
                     0o644)
        try:
            for i in range(n):
                os.write(fd, data.block(99, i, MiB))
            os.fsync(fd)
        finally:
            os.close(fd)
        dt = time.perf_counter() - t0
        hwm = proc_status(sofs.pid, "VmHWM") or 0
        os.unlink(root / "big.bin")
        return (f"sofs mount peak RSS while writing {gib:g} GiB: {hwm / MiB:,.0f} MiB "
                f"(RSS before: {before / MiB:,.0f} MiB; write {n / dt:,.1f} MiB/s)")
    except Exception as e:  # noqa: BLE001
        msg = f"sofs rss test: {type(e).__name__}: {e}"
        problem = sofs.problem()
        errors.append(msg + (f"\n{problem}" if problem else ""))
        return msg


if __name__ == "__main__":
    sys.exit(main())
