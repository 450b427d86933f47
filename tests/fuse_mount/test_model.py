"""Model-based test: random operation sequences applied to a sofs mount and to a plain directory
on the local disk (the reference, ext4 here), compared after every step.

Both trees are driven through the same system calls, by root or (through ``seteuid``) by two
other users, so the kernel's permission checks and the filesystems' own behaviour are compared
alike. After every step the outcome of the operation (success and its result, or the errno) and
the whole tree must match: names, types, sizes, modes, link counts and hard-link groups,
owners, symlink targets, file contents byte for byte (read back through a fresh open after the
kernel page cache was told to drop the file, so sofs serves the bytes) and ``user.`` xattrs.
Every file is opened, used and closed within one step. Now and then the sofs side is remounted
(it alone) and must come back identical.
"""

from __future__ import annotations

import contextlib
import ctypes
import errno
import itertools
import os
import random
import shutil
import stat
import tempfile
import time
from pathlib import Path

import pytest
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, rule, run_state_machine_as_test

from .conftest import Archive, needs_fuse
from .filebytes import read_uncached

pytestmark = [pytest.mark.integration, needs_fuse]

KIB = 1024
MIB = 1024 * KIB
BLOCK = 4 * MIB  # the default sofs block size
ALICE, BOB = 1000, 1001
RENAME_NOREPLACE, RENAME_EXCHANGE = 1, 2
XATTR_CREATE, XATTR_REPLACE = 1, 2
FALLOC_FL_KEEP_SIZE, FALLOC_FL_PUNCH_HOLE = 1, 2
AT_FDCWD = -100

MAX_EXAMPLES = 45
STEPS_PER_EXAMPLE = 100
# CI replays the same examples every run (reproducible verdicts); SOFS_MODEL_RANDOM=1 explores
# new ones. A random run on 2026-12-02 found two divergences, both the set-group-ID rule of
# Linux 6.x that the FUSE client leaves to the filesystem (now in sofs.permissions.drops_setgid,
# and tested case by case in test_posix.py).
EXPLORE = os.environ.get("SOFS_MODEL_RANDOM") == "1"
# A remount costs ~2.5 s (as much as ~500 other steps), so only some examples plan one, before
# the given operation (about 1 to 15 remounts per run, as hypothesis draws them). It is scheduled
# rather than left to a rule: swarm testing disables such a rule in a random share of the
# examples, which made the number of remounts per run (and the run time) swing from 0 to 30.
REMOUNT_PLANS = st.sampled_from((None,) * 10 + (10, 40, 70))

# ----------------------------------------------------------------------------- strategies

NAMES = "abc"  # a tiny alphabet: operations collide with each other all the time
ALL_PATHS = sorted("/".join(p) for n in (1, 2, 3) for p in itertools.product(NAMES, repeat=n))
# which existing entries a rule prefers to name (see SofsVsReference.draw_path)
FILE_FIRST = ("file", "file", "file", "entry")
ANY_ENTRY = ("entry", "entry")
LINK_TARGETS = st.lists(st.sampled_from(NAMES), min_size=1, max_size=2).map("/".join)
# root mostly; other users see the permission checks (mode bits, sticky, setgid, suid-drop)
WHO = st.sampled_from((0, 0, 0, ALICE, BOB))
MODES = st.sampled_from((0o644, 0o755, 0o777, 0o600, 0o700, 0o000, 0o444, 0o1777, 0o2777,
                         0o2755, 0o2745, 0o4755, 0o6777, 0o4644))
NEAR_BLOCK = st.sampled_from((BLOCK, 2 * BLOCK)).flatmap(
    lambda b: st.integers(b - 5 * KIB, b + 5 * KIB))
OFFSETS = st.one_of(st.integers(0, 300), st.integers(0, 70 * KIB), NEAR_BLOCK)
SIZES = st.one_of(st.just(0), st.integers(0, 70 * KIB), NEAR_BLOCK)
# (seed, length, zeros): zero runs matter, sofs stores all-zero blocks as holes
PAYLOAD = st.tuples(st.integers(0, 1000),
                    st.one_of(st.integers(0, 300), st.integers(0, 9 * KIB)), st.booleans())
XATTR_NAMES = st.sampled_from(("user.a", "user.b", "user.c"))
XATTR_VALUES = st.sampled_from((b"", b"v", b"value", b"\0binary\xff", b"x" * 200))


def make_payload(spec: tuple[int, int, bool]) -> bytes:
    seed, n, zeros = spec
    return bytes(n) if zeros else random.Random(seed).randbytes(n)


# ----------------------------------------------------------------------------- helpers

_libc = ctypes.CDLL(None, use_errno=True)
_libc.renameat2.argtypes = [ctypes.c_int, ctypes.c_char_p, ctypes.c_int, ctypes.c_char_p,
                            ctypes.c_uint]


_libc.fallocate.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.c_int64, ctypes.c_int64]


def fallocate(fd: int, mode: int, offset: int, length: int) -> None:
    if _libc.fallocate(fd, mode, offset, length) != 0:
        e = ctypes.get_errno()
        raise OSError(e, os.strerror(e))


def renameat2(src: Path, dst: Path, flags: int) -> None:
    if _libc.renameat2(AT_FDCWD, os.fsencode(src), AT_FDCWD, os.fsencode(dst), flags) != 0:
        e = ctypes.get_errno()
        raise OSError(e, os.strerror(e), str(src))


@contextlib.contextmanager
def acting_as(uid: int):
    """Effective (and file-system) uid/gid of another user, without supplementary groups."""
    if uid == 0:
        yield
        return
    groups = os.getgroups()
    os.setgroups([])
    os.setegid(uid)
    os.seteuid(uid)
    try:
        yield
    finally:
        os.seteuid(0)
        os.setegid(0)
        os.setgroups(groups)


def outcome(fn, *args):
    try:
        return ("ok", fn(*args))
    except OSError as e:
        return ("err", errno.errorcode.get(e.errno, e.errno))


def with_fd(path: Path, flags: int, mode: int, use) -> object:
    fd = os.open(path, flags, mode)
    try:
        return use(fd)
    finally:
        os.close(fd)




def user_xattrs(path: Path) -> dict[str, bytes]:
    names = [n for n in os.listxattr(path, follow_symlinks=False) if n.startswith("user.")]
    return {n: os.getxattr(path, n, follow_symlinks=False) for n in sorted(names)}


def snapshot(root: Path) -> tuple[dict[str, dict], list[list[str]]]:
    """Every entry under ``root`` (``""`` is root itself) and the hard-link groups."""
    entries: dict[str, dict] = {}
    by_ino: dict[int, list[str]] = {}

    def visit(rel: str, path: Path) -> None:
        st_ = os.lstat(path)
        kind = stat.S_IFMT(st_.st_mode)
        e = {"type": stat.filemode(st_.st_mode)[0], "mode": oct(stat.S_IMODE(st_.st_mode)),
             "nlink": st_.st_nlink, "uid": st_.st_uid, "gid": st_.st_gid,
             "xattrs": user_xattrs(path)}
        if kind != stat.S_IFDIR:
            # a directory's st_size is the filesystem's own business (4096 on ext4)
            e["size"] = st_.st_size
        if kind == stat.S_IFLNK:
            e["target"] = os.readlink(path)
        elif kind == stat.S_IFREG:
            e["data"] = read_uncached(path, os.O_NOFOLLOW)
            by_ino.setdefault(st_.st_ino, []).append(rel)
        entries[rel] = e
        if kind == stat.S_IFDIR:
            for name in sorted(os.listdir(path)):
                visit(f"{rel}/{name}" if rel else name, path / name)

    visit("", root)
    groups = sorted(sorted(g) for g in by_ino.values() if len(g) > 1)
    return entries, groups


def describe_difference(ref: dict, got: dict) -> str:
    lines = []
    for name in sorted(set(ref) | set(got)):
        a, b = ref.get(name), got.get(name)
        if a == b:
            continue
        if a is None or b is None:
            lines.append(f"{name!r}: only in {'sofs' if a is None else 'reference'}")
            continue
        for key in sorted(set(a) | set(b)):
            x, y = a.get(key), b.get(key)
            if x == y:
                continue
            if key == "data" and x is not None and y is not None:
                first = next((i for i, (p, q) in enumerate(zip(x, y, strict=False)) if p != q),
                             min(len(x), len(y)))
                lines.append(f"{name!r} data: reference {len(x)} bytes, sofs {len(y)} bytes, "
                             f"first difference at {first}: "
                             f"{x[first:first + 8]!r} vs {y[first:first + 8]!r}")
            else:
                lines.append(f"{name!r} {key}: reference {x!r}, sofs {y!r}")
    return "\n".join(lines)


# ----------------------------------------------------------------------------- allow-list

def allowed_difference(op: str, ref: tuple, got: tuple) -> bool:
    """Known, deliberate outcome differences between the reference and sofs.

    None is needed: every check that could differ (permissions, sticky and setgid rules,
    rename into a subtree, links to directories, xattrs on symlinks) is made by the VFS
    before either filesystem is asked, and sofs matches ext4 on everything else exercised
    here. The only difference the comparison leaves out on purpose is a directory's st_size
    (see :func:`snapshot`): ext4 reports its allocated blocks (4096...), sofs its own value,
    and POSIX defines neither."""
    return False


# ----------------------------------------------------------------------------- the model

class Counters:
    steps = 0
    remounts = 0
    remount_s = 0.0
    examples = 0
    largest = 0
    outcomes: dict[str, dict[str, int]] = {}  # op -> outcome (ok or errno name) -> count


class SofsVsReference(RuleBasedStateMachine):
    archive: Archive
    ref_root: Path

    def __init__(self) -> None:
        super().__init__()
        Counters.examples += 1
        self.steps = 0
        self.remount_after: int | None = None
        for root in (self.ref_root, self.archive.mnt):
            for child in root.iterdir():
                if child.is_dir() and not child.is_symlink():
                    shutil.rmtree(child)
                else:
                    child.unlink()
            os.chmod(root, 0o777)  # other users may create at the top

    # ------------------------------------------------------------------ plumbing

    def draw_path(self, data, prefer: tuple[str, ...]) -> str:
        """A path: mostly an entry that exists now (of a preferred kind) or a name in an
        existing directory ("fresh"), sometimes any path of the alphabet (parents missing...)."""
        kinds: dict[str, list[str]] = {"file": [], "dir": [], "link": [], "entry": []}
        dirs = [""]

        def walk(rel: str) -> None:
            for name in sorted(os.listdir(self.ref_root / rel)):
                child = f"{rel}/{name}" if rel else name
                mode = os.lstat(self.ref_root / child).st_mode
                kind = "dir" if stat.S_ISDIR(mode) else "link" if stat.S_ISLNK(mode) else "file"
                kinds[kind].append(child)
                kinds["entry"].append(child)
                if kind == "dir":
                    dirs.append(child)
                    walk(child)

        walk("")
        kinds["fresh"] = [f"{d}/{n}" if d else n for d in dirs for n in NAMES]
        groups = [kinds[k] for k in prefer if kinds[k]] + [ALL_PATHS]
        return data.draw(st.sampled_from(groups).flatmap(st.sampled_from))

    def apply(self, op: str, who: int, fn, *args) -> None:
        """Run ``fn(root, *args)`` on the reference, then on sofs; outcomes must match."""
        if self.steps == self.remount_after:
            self.remount()
        self.steps += 1
        Counters.steps += 1
        results = []
        for root in (self.ref_root, self.archive.mnt):
            with acting_as(who):
                results.append(outcome(fn, root, *args))
        ref, got = results
        tally = Counters.outcomes.setdefault(op, {})
        key = "ok" if ref[0] == "ok" else ref[1]
        tally[key] = tally.get(key, 0) + 1
        if ref != got and not allowed_difference(op, ref, got):
            raise AssertionError(f"{op} as uid {who}: reference {short(ref)}, sofs {short(got)}")

    @invariant()
    def trees_match(self) -> None:
        ref_entries, ref_groups = snapshot(self.ref_root)
        got_entries, got_groups = snapshot(self.archive.mnt)
        Counters.largest = max([Counters.largest]
                               + [e.get("size", 0) for e in ref_entries.values()])
        assert ref_entries == got_entries, describe_difference(ref_entries, got_entries)
        assert ref_groups == got_groups, f"hard links: reference {ref_groups}, sofs {got_groups}"

    # ------------------------------------------------------------------ files

    @initialize(payloads=st.lists(PAYLOAD, min_size=3, max_size=3))
    def seed_tree(self, payloads):
        """A few entries to start from, so that rules meet existing names from step one."""
        self.apply("mkdir", 0, lambda r: os.mkdir(r / "c"))
        for path, payload in zip(("a", "c/a", "c/b"), payloads, strict=False):
            buf = make_payload(payload)
            self.apply("create", 0, lambda r, path=path, buf=buf: with_fd(
                r / path, os.O_WRONLY | os.O_CREAT, 0o644, lambda fd: os.write(fd, buf)))

    @rule(data=st.data(), excl=st.booleans(), trunc=st.booleans(), mode=MODES, payload=PAYLOAD,
          who=WHO)
    def create(self, data, excl, trunc, mode, payload, who):
        path = self.draw_path(data, ("fresh", "fresh", "file"))
        flags = (os.O_WRONLY | os.O_CREAT | (os.O_EXCL if excl else 0)
                 | (os.O_TRUNC if trunc else 0))
        buf = make_payload(payload)
        self.apply("create", who, lambda r: with_fd(r / path, flags, mode,
                                                    lambda fd: os.write(fd, buf)))

    @rule(data=st.data(), offset=OFFSETS, payload=PAYLOAD, rdwr=st.booleans(), who=WHO)
    def write(self, data, offset, payload, rdwr, who):
        path = self.draw_path(data, FILE_FIRST)
        buf = make_payload(payload)
        flags = os.O_RDWR if rdwr else os.O_WRONLY
        self.apply("write", who, lambda r: with_fd(r / path, flags, 0,
                                                   lambda fd: os.pwrite(fd, buf, offset)))

    @rule(data=st.data(), payload=PAYLOAD, who=WHO)
    def append(self, data, payload, who):
        path = self.draw_path(data, FILE_FIRST)
        buf = make_payload(payload)
        self.apply("append", who, lambda r: with_fd(r / path, os.O_WRONLY | os.O_APPEND, 0,
                                                    lambda fd: os.write(fd, buf)))

    @rule(data=st.data(), size=SIZES, who=WHO)
    def truncate(self, data, size, who):
        path = self.draw_path(data, FILE_FIRST)
        self.apply("truncate", who, lambda r: os.truncate(r / path, size))

    @rule(data=st.data(), offset=OFFSETS, length=SIZES, keep_size=st.booleans(), who=WHO)
    def allocate(self, data, offset, length, keep_size, who):
        """fallocate mode 0 (extends) or KEEP_SIZE; length 0 is EINVAL on both sides."""
        path = self.draw_path(data, FILE_FIRST)
        mode = FALLOC_FL_KEEP_SIZE if keep_size else 0
        self.apply("fallocate", who, lambda r: with_fd(
            r / path, os.O_WRONLY, 0, lambda fd: fallocate(fd, mode, offset, length)))

    @rule(data=st.data(), offset=OFFSETS, length=SIZES, who=WHO)
    def punch_hole(self, data, offset, length, who):
        path = self.draw_path(data, FILE_FIRST)
        mode = FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE
        self.apply("punch_hole", who, lambda r: with_fd(
            r / path, os.O_RDWR, 0, lambda fd: fallocate(fd, mode, offset, length)))

    @rule(data=st.data(), offset=OFFSETS, length=st.integers(0, 10 * KIB), who=WHO)
    def read(self, data, offset, length, who):
        path = self.draw_path(data, FILE_FIRST)

        def use(fd):
            os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
            return os.pread(fd, length, offset)

        self.apply("read", who, lambda r: with_fd(r / path, os.O_RDONLY, 0, use))

    @rule(data=st.data(), datasync=st.booleans(), who=WHO)
    def fsync(self, data, datasync, who):
        path = self.draw_path(data, ("file", "file", "entry"))
        sync = os.fdatasync if datasync else os.fsync
        self.apply("fsync", who, lambda r: with_fd(r / path, os.O_RDONLY, 0, sync))

    # ------------------------------------------------------------------ namespace

    @rule(data=st.data(), flags=st.sampled_from((0, 0, RENAME_NOREPLACE, RENAME_EXCHANGE)),
          who=WHO)
    def rename(self, data, flags, who):
        src = self.draw_path(data, ("entry", "entry", "dir"))
        dst = self.draw_path(data, ("fresh", "entry", "dir"))
        if flags:
            self.apply("rename", who, lambda r: renameat2(r / src, r / dst, flags))
        else:
            self.apply("rename", who, lambda r: os.rename(r / src, r / dst))

    @rule(data=st.data(), follow=st.booleans(), who=WHO)
    def link(self, data, follow, who):
        src = self.draw_path(data, ("file", "file", "link"))
        dst = self.draw_path(data, ("fresh", "entry"))
        self.apply("link", who, lambda r: os.link(r / src, r / dst, follow_symlinks=follow))

    @rule(data=st.data(), dest=LINK_TARGETS, who=WHO)
    def symlink(self, data, dest, who):
        # relative targets made of names only: they resolve inside each tree the same way
        path = self.draw_path(data, ("fresh", "entry"))
        self.apply("symlink", who, lambda r: os.symlink(dest, r / path))

    @rule(data=st.data(), who=WHO)
    def unlink(self, data, who):
        path = self.draw_path(data, ("file", "link", "entry"))
        self.apply("unlink", who, lambda r: os.unlink(r / path))

    @rule(data=st.data(), mode=MODES, who=WHO)
    def mkdir(self, data, mode, who):
        path = self.draw_path(data, ("fresh", "fresh", "entry"))
        self.apply("mkdir", who, lambda r: os.mkdir(r / path, mode))

    @rule(data=st.data(), who=WHO)
    def rmdir(self, data, who):
        path = self.draw_path(data, ("dir", "dir", "entry"))
        self.apply("rmdir", who, lambda r: os.rmdir(r / path))

    # ------------------------------------------------------------------ attributes

    @rule(data=st.data(), mode=MODES, who=WHO)
    def chmod(self, data, mode, who):
        path = self.draw_path(data, ANY_ENTRY)
        self.apply("chmod", who, lambda r: os.chmod(r / path, mode))

    @rule(data=st.data(), uid=st.sampled_from((-1, 0, ALICE, BOB)),
          gid=st.sampled_from((-1, 0, ALICE, BOB)), follow=st.booleans(), who=WHO)
    def chown(self, data, uid, gid, follow, who):
        path = self.draw_path(data, ANY_ENTRY)
        self.apply("chown", who, lambda r: os.chown(r / path, uid, gid, follow_symlinks=follow))

    @rule(data=st.data(), name=XATTR_NAMES, value=XATTR_VALUES,
          flags=st.sampled_from((0, 0, XATTR_CREATE, XATTR_REPLACE)), follow=st.booleans(),
          who=WHO)
    def setxattr(self, data, name, value, flags, follow, who):
        path = self.draw_path(data, ANY_ENTRY)
        self.apply("setxattr", who, lambda r: os.setxattr(r / path, name, value, flags,
                                                          follow_symlinks=follow))

    @rule(data=st.data(), name=XATTR_NAMES, follow=st.booleans(), who=WHO)
    def removexattr(self, data, name, follow, who):
        path = self.draw_path(data, ANY_ENTRY)
        self.apply("removexattr", who, lambda r: os.removexattr(r / path, name,
                                                                follow_symlinks=follow))

    @rule(data=st.data(), name=XATTR_NAMES, follow=st.booleans(), who=WHO)
    def getxattr(self, data, name, follow, who):
        path = self.draw_path(data, ANY_ENTRY)
        self.apply("getxattr", who, lambda r: os.getxattr(r / path, name,
                                                          follow_symlinks=follow))

    # ------------------------------------------------------------------ remount

    @initialize(after=REMOUNT_PLANS)
    def plan_remount(self, after):
        """Remount the sofs side once, before operation number ``after`` of this example."""
        self.remount_after = after

    def remount(self) -> None:
        """Only sofs changes: everything must come back exactly as it was."""
        Counters.remounts += 1
        start = time.monotonic()
        self.archive.remount()
        Counters.remount_s += time.monotonic() - start
        self.trees_match()


def short(result: tuple) -> str:
    kind, value = result
    if isinstance(value, bytes) and len(value) > 32:
        value = f"<{len(value)} bytes, {value[:16]!r}...>"
    return f"{kind} {value!r}" if kind == "ok" else str(value)


# ----------------------------------------------------------------------------- tests

@pytest.fixture
def model_env():
    """A mounted archive and a reference directory under one root other users can traverse
    (pytest's tmp is 0700)."""
    root = Path(tempfile.mkdtemp(prefix="sofs-model-", dir="/tmp"))
    os.chmod(root, 0o755)
    archive = Archive(root)
    archive.mount()
    ref = root / "ref"
    ref.mkdir()
    old_umask = os.umask(0o022)
    try:
        yield archive, ref
    finally:
        os.umask(old_umask)
        archive.cleanup()
        shutil.rmtree(root, ignore_errors=True)


def test_sofs_behaves_like_the_local_filesystem(model_env):
    archive, ref = model_env
    SofsVsReference.archive = archive
    SofsVsReference.ref_root = ref
    Counters.steps = Counters.remounts = Counters.examples = 0
    Counters.remount_s = Counters.largest = 0
    Counters.outcomes = {}
    start = time.monotonic()
    try:
        run_state_machine_as_test(
            SofsVsReference,
            settings=settings(max_examples=MAX_EXAMPLES, stateful_step_count=STEPS_PER_EXAMPLE,
                              deadline=None, derandomize=not EXPLORE,
                              suppress_health_check=[HealthCheck.too_slow,
                                                     HealthCheck.filter_too_much]))
    finally:
        print(f"\nmodel test: {Counters.steps} steps (operations) in {Counters.examples} "
              f"examples, largest file {Counters.largest} bytes, "
              f"{Counters.remounts} remounts ({Counters.remount_s:.1f} s), "
              f"{time.monotonic() - start:.1f} s in all")
        for op, tally in sorted(Counters.outcomes.items()):
            print(f"  {op:12} " + ", ".join(f"{k} {v}" for k, v in sorted(tally.items())))
