"""A network-namespace lab for multi-host tests (root only, Linux, iproute2 + util-linux).

One :class:`NetLab` is one Linux bridge ``sbr<labid>`` (``labid``: 6 random hex digits) and one
network namespace per host, each joined to the bridge by a veth pair. The ROOT namespace (the
test process) holds ``.1`` of the lab's /24 on the bridge, so a test reaches every host directly
over TCP; the hosts get ``.2``, ``.3``, ... on their ``eth0`` and reach each other and ``.1``::

    with NetLab() as lab:
        a = lab.add_host("a")                 # namespace s<labid>-a, eth0 = 10.77.X.2/24
        b = lab.add_host("b")                 # 10.77.X.3
        srv = a.popen([sys.executable, "-m", "chunkstore.net.node", ...])   # a Popen, tracked
        a.wait_port(7700)                      # from the test process
        b.run([sys.executable, "-c", "..."])   # CompletedProcess
        a.link_down(); a.link_up()             # cut a off the network / plug it back
        a.kill()                               # SIGKILL everything in a's namespace

Commands run in the host's NETWORK namespace only (``nsenter --net=/run/netns/<ns>``), not
``ip netns exec``: the latter also makes a private mount namespace, so a FUSE mount made by a
host would be invisible to the test process. Everything else (files, mounts, pids, users) is
shared with the test process.

Cleanup (``__exit__``, also on an exception or KeyboardInterrupt, and an atexit handler; it is
idempotent): kill every process in every namespace of the lab and wait for them, delete the
veths, the namespaces, the bridge and the state file.

Crashed runs: a lab records itself (creator pid + start time, bridge, namespaces, veths) in
``/run/sofs-netlab/<prefix>.json`` before it creates anything. Entering any NetLab first removes
every recorded lab whose creator is dead (kill the processes left in its namespaces, delete
its namespaces, veths and bridge, then its state file).

Pytest: the :func:`netlab` fixture (re-exported by ``tests/conftest.py``) yields an entered
NetLab and skips the test when not root or when ``ip netns add`` does not work.
"""

from __future__ import annotations

import atexit
import contextlib
import fcntl
import ipaddress
import json
import os
import random
import re
import secrets
import shutil
import signal
import socket
import subprocess
import time
from pathlib import Path

STATE_DIR = Path("/run/sofs-netlab")
_NAME_RE = re.compile(r"^[a-z0-9][a-z0-9_]{0,15}$")
_PREFIX_RE = re.compile(r"^[a-zA-Z0-9][a-zA-Z0-9_.]{0,31}$")


class NetLabError(Exception):
    """A lab operation failed (an ``ip`` command, a name, no free address...)."""


class NetLabUnavailable(NetLabError):
    """Network namespaces cannot be used here (not root, no iproute2/nsenter, no permission)."""


# -- small helpers ------------------------------------------------------------------------


def _ip(*args: str, check: bool = True, timeout: float = 30) -> subprocess.CompletedProcess:
    p = subprocess.run(["ip", *args], stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=timeout)
    if check and p.returncode != 0:
        raise NetLabError(f"ip {' '.join(args)}: exit {p.returncode}: {p.stderr.strip()}")
    return p


def _proc_start_time(pid: int) -> int | None:
    """The start time (clock ticks since boot) of a live pid, None when dead or a zombie."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            stat = f.read()
    except OSError:
        return None
    rest = stat[stat.rfind(")") + 2 :].split()
    if rest[0] in ("Z", "X"):
        return None
    return int(rest[19])


def _alive(pid: int) -> bool:
    return _proc_start_time(pid) is not None


def _netns_pids(ns: str) -> list[int]:
    p = _ip("netns", "pids", ns, check=False)
    if p.returncode != 0:
        return []
    return [int(x) for x in p.stdout.split() if x.isdigit()]


def _netns_exists(ns: str) -> bool:
    return os.path.exists(f"/run/netns/{ns}")


def _link_exists(name: str) -> bool:
    return os.path.exists(f"/sys/class/net/{name}")


def _kill_pids(pids: list[int], sig: int = signal.SIGKILL, wait: float = 10.0) -> list[int]:
    """Send ``sig`` to each pid (not ourselves); for SIGKILL wait until they are gone.
    Returns the pids still alive after ``wait`` (empty normally)."""
    me = os.getpid()
    pids = [p for p in pids if p != me]
    for pid in pids:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.kill(pid, sig)
    if sig != signal.SIGKILL:
        return []
    deadline = time.monotonic() + wait
    left = [p for p in pids if _alive(p)]
    while left and time.monotonic() < deadline:
        time.sleep(0.02)
        left = [p for p in left if _alive(p)]
    return left


def _kill_namespace(ns: str, sig: int = signal.SIGKILL) -> None:
    """Kill every process in netns ``ns`` (repeated: a dying process may have forked)."""
    if not _netns_exists(ns):
        return
    for _ in range(5):
        pids = _netns_pids(ns)
        if not pids:
            return
        _kill_pids(pids, sig)
        if sig != signal.SIGKILL:
            return


def _destroy(namespaces: list[str], veths: list[str], bridge: str | None) -> None:
    """Kill the processes of the namespaces, delete veths, namespaces and bridge (best effort,
    idempotent). Raises NetLabError listing what could not be removed."""
    for ns in namespaces:
        _kill_namespace(ns)
    for v in veths:  # deleting one end of a veth deletes the pair (the eth0 in the namespace)
        if _link_exists(v):
            _ip("link", "del", v, check=False)
    for ns in namespaces:
        if _netns_exists(ns):
            _ip("netns", "del", ns, check=False)
    if bridge and _link_exists(bridge):
        _ip("link", "del", bridge, check=False)
    left = [ns for ns in namespaces if _netns_exists(ns)] + [v for v in veths if _link_exists(v)]
    if bridge and _link_exists(bridge):
        left.append(bridge)
    if left:
        raise NetLabError(f"could not remove {', '.join(left)}")


@contextlib.contextmanager
def _state_lock():
    STATE_DIR.mkdir(parents=True, exist_ok=True)
    with open(STATE_DIR / ".lock", "a+") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


def cleanup_stale_labs() -> list[str]:
    """Remove every recorded lab whose creating process is dead; returns their prefixes."""
    cleaned = []
    if not STATE_DIR.is_dir():
        return cleaned
    for path in sorted(STATE_DIR.glob("*.json")):
        try:
            st = json.loads(path.read_text())
            pid, start = int(st["pid"]), st.get("start_time")
        except (OSError, ValueError, KeyError, TypeError):
            st, pid, start = None, None, None
        if st is not None and _proc_start_time(pid) is not None and _proc_start_time(pid) == start:
            continue  # its creator still runs: a live lab
        if st is not None:
            _destroy(list(st.get("namespaces", [])), list(st.get("veths", [])), st.get("bridge"))
        with contextlib.suppress(FileNotFoundError):
            path.unlink()
        cleaned.append(path.stem)
    return cleaned


_AVAILABLE: str | None | bool = False  # False: not probed yet; None: available; str: why not


def unavailable_reason() -> str | None:
    """None when a NetLab can be used here, else why not (cached)."""
    global _AVAILABLE
    if _AVAILABLE is not False:
        return _AVAILABLE
    reason = None
    if os.geteuid() != 0:
        reason = "network namespaces need root"
    elif not shutil.which("ip") or not shutil.which("nsenter"):
        reason = "needs iproute2 (ip) and util-linux (nsenter)"
    else:
        probe = f"sofs-probe-{os.getpid()}"
        try:
            p = _ip("netns", "add", probe, check=False)
            if p.returncode != 0:
                reason = f"ip netns add failed: {p.stderr.strip()}"
        except (OSError, subprocess.SubprocessError) as e:
            reason = f"ip netns add failed: {e}"
        finally:
            if _netns_exists(probe):
                _ip("netns", "del", probe, check=False)
    _AVAILABLE = reason
    return reason


# -- the lab ------------------------------------------------------------------------------


class Host:
    """One network namespace of a lab. ``name``, ``ns`` (namespace name), ``ip`` (str)."""

    def __init__(self, lab: "NetLab", name: str, ns: str, ip: str, veth: str, index: int) -> None:
        self.lab = lab
        self.name = name
        self.ns = ns
        self.ip = ip
        self.veth = veth  # the bridge-side end, in the root namespace
        self.index = index
        self.procs: list[subprocess.Popen] = []

    def __repr__(self) -> str:
        return f"Host({self.name!r}, ns={self.ns!r}, ip={self.ip!r})"

    def _argv(self, cmd: list[str]) -> list[str]:
        if isinstance(cmd, (str, bytes)):
            raise TypeError("cmd must be a list of arguments")
        return ["nsenter", f"--net=/run/netns/{self.ns}", "--", *map(os.fspath, cmd)]

    def popen(self, cmd: list[str], **kw) -> subprocess.Popen:
        """Start ``cmd`` in this host's network namespace (only); keyword arguments go to
        Popen (stdin defaults to DEVNULL). nsenter execs ``cmd``: ``.pid`` is its pid."""
        kw.setdefault("stdin", subprocess.DEVNULL)
        p = subprocess.Popen(self._argv(cmd), **kw)
        self.procs.append(p)
        return p

    def run(self, cmd: list[str], **kw) -> subprocess.CompletedProcess:
        """``subprocess.run`` of ``cmd`` in this host's network namespace (stdin DEVNULL unless
        ``input`` is given; other keywords go to subprocess.run, e.g. capture_output, check,
        timeout)."""
        if "input" not in kw:
            kw.setdefault("stdin", subprocess.DEVNULL)
        return subprocess.run(self._argv(cmd), **kw)

    def pids(self) -> list[int]:
        """Every process in the namespace (``ip netns pids``)."""
        return _netns_pids(self.ns)

    def link_down(self) -> None:
        """Cut the host off the network (bridge-side veth down); its processes keep running."""
        _ip("link", "set", self.veth, "down")

    def link_up(self) -> None:
        _ip("link", "set", self.veth, "up")

    def kill(self, sig: int = signal.SIGKILL) -> None:
        """Send ``sig`` to every process in the namespace and to every tracked Popen; for
        SIGKILL also wait for them (tracked Popens are reaped)."""
        # Each process gets the signal once (a second SIGTERM may mean "stop now" to it).
        pids = set(_netns_pids(self.ns)) | {p.pid for p in self.procs if p.poll() is None}
        _kill_pids(sorted(pids), sig)
        if sig == signal.SIGKILL:
            _kill_namespace(self.ns, sig)  # and whatever forked meanwhile
            for p in self.procs:
                with contextlib.suppress(subprocess.TimeoutExpired):
                    p.wait(10)

    def wait_port(self, port: int, timeout: float = 30.0, proc: subprocess.Popen | None = None) -> None:
        """Wait until ``ip:port`` accepts a TCP connection from the test process. Fails early
        (NetLabError) when ``proc`` exits first."""
        deadline = time.monotonic() + timeout
        last: Exception | None = None
        while time.monotonic() < deadline:
            if proc is not None and proc.poll() is not None:
                raise NetLabError(f"{self.name}: process exited with {proc.returncode} before {self.ip}:{port} opened")
            try:
                with socket.create_connection((self.ip, port), timeout=1):
                    return
            except OSError as e:
                last = e
                time.sleep(0.05)
        raise NetLabError(f"{self.name}: {self.ip}:{port} not reachable after {timeout}s: {last}")


class NetLab:
    """A bridge plus one network namespace per host (see the module docstring)."""

    def __init__(self, prefix: str | None = None, subnet: str | None = None) -> None:
        self.labid = secrets.token_hex(3)
        self.prefix = prefix or f"s{self.labid}"
        if not _PREFIX_RE.match(self.prefix):
            raise NetLabError(f"bad lab prefix {self.prefix!r}")
        self._subnet_arg = subnet
        self.subnet: ipaddress.IPv4Network | None = None
        self.bridge = f"sbr{self.labid}"
        self.hosts: dict[str, Host] = {}
        self.state_file = STATE_DIR / f"{self.prefix}.json"
        self._namespaces: list[str] = []
        self._veths: list[str] = []
        self._entered = False
        self._closed = False
        self._owns_state = False

    # -- lifecycle ----------------------------------------------------------------------

    def __enter__(self) -> "NetLab":
        reason = unavailable_reason()
        if reason:
            raise NetLabUnavailable(reason)
        if self._entered:
            raise NetLabError("a NetLab is entered once")
        self._entered = True
        atexit.register(self.close)
        try:
            with _state_lock():
                cleanup_stale_labs()
                if self.state_file.exists():
                    raise NetLabError(f"a live lab already uses prefix {self.prefix!r} ({self.state_file})")
                self.subnet = self._pick_subnet()
                self._save()
                self._owns_state = True
            _ip("link", "add", self.bridge, "type", "bridge", "forward_delay", "0", "stp_state", "0")
            _ip("addr", "add", f"{self._addr(1)}/{self.subnet.prefixlen}", "dev", self.bridge)
            _ip("link", "set", self.bridge, "up")
        except BaseException:
            self.close()
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        """Kill everything in the lab's namespaces and remove the lab. Idempotent."""
        if self._closed or not self._entered:
            return
        self._closed = True
        with contextlib.suppress(Exception):
            atexit.unregister(self.close)
        try:
            for h in self.hosts.values():
                for p in h.procs:
                    if p.poll() is None:
                        with contextlib.suppress(ProcessLookupError):
                            p.kill()
            _destroy(self._namespaces, self._veths, self.bridge)
            for h in self.hosts.values():
                for p in h.procs:
                    with contextlib.suppress(subprocess.TimeoutExpired):
                        p.wait(10)
        finally:
            # Remove the state file only when everything is gone; otherwise the next lab's
            # enter retries (our pid will then be dead).
            gone = not any(_netns_exists(ns) for ns in self._namespaces) and not _link_exists(self.bridge)
            if self._owns_state and gone:
                with contextlib.suppress(FileNotFoundError):
                    self.state_file.unlink()

    # -- hosts --------------------------------------------------------------------------

    def add_host(self, name: str) -> Host:
        """A new namespace ``<prefix>-<name>`` with ``lo`` up and ``eth0`` = the next address
        of the subnet, its veth peer on the bridge."""
        if not self._entered or self._closed:
            raise NetLabError("add_host on a lab that is not entered")
        if not _NAME_RE.match(name):
            raise NetLabError(f"bad host name {name!r} (use [a-z0-9_], at most 16)")
        if name in self.hosts:
            raise NetLabError(f"host {name!r} exists")
        n = len(self.hosts) + 1
        ip = self._addr(n + 1)
        ns = f"{self.prefix}-{name}"
        veth, peer = f"v{self.labid}{n}", f"p{self.labid}{n}"
        # Record before creating, so a crash in between is still cleaned by the next lab.
        self._namespaces.append(ns)
        self._veths.append(veth)
        self._save()
        _ip("netns", "add", ns)
        _ip("link", "add", veth, "type", "veth", "peer", "name", peer)
        _ip("link", "set", peer, "netns", ns)
        _ip("-n", ns, "link", "set", peer, "name", "eth0")
        _ip("-n", ns, "addr", "add", f"{ip}/{self.subnet.prefixlen}", "dev", "eth0")
        _ip("-n", ns, "link", "set", "lo", "up")
        _ip("-n", ns, "link", "set", "eth0", "up")
        _ip("-n", ns, "route", "add", "default", "via", self._addr(1), check=False)
        _ip("link", "set", veth, "master", self.bridge)
        _ip("link", "set", veth, "up")
        host = Host(self, name, ns, ip, veth, n)
        self.hosts[name] = host
        return host

    def __getitem__(self, name: str) -> Host:
        return self.hosts[name]

    @property
    def gateway(self) -> str:
        """The root namespace's address on the bridge (``.1``)."""
        return self._addr(1)

    def namespaces(self) -> list[str]:
        return list(self._namespaces)

    def links(self) -> list[str]:
        """The root-namespace interfaces of the lab (bridge and bridge-side veths)."""
        return [self.bridge, *self._veths]

    # -- internals ----------------------------------------------------------------------

    def _addr(self, i: int) -> str:
        if i >= self.subnet.num_addresses - 1:
            raise NetLabError(f"subnet {self.subnet} is full")
        return str(self.subnet.network_address + i)

    def _pick_subnet(self) -> ipaddress.IPv4Network:
        used = set()
        for line in _ip("-4", "route", "show", "table", "all", check=False).stdout.splitlines():
            with contextlib.suppress(ValueError):
                used.add(ipaddress.ip_network(line.split()[0], strict=False))
        for path in STATE_DIR.glob("*.json"):
            with contextlib.suppress(Exception):
                used.add(ipaddress.ip_network(json.loads(path.read_text())["subnet"]))
        if self._subnet_arg:
            net = ipaddress.ip_network(self._subnet_arg)
            if any(net.overlaps(u) for u in used if u.prefixlen > 0):
                raise NetLabError(f"subnet {net} is in use")
            return net
        choices = list(range(256))
        random.shuffle(choices)
        for x in choices:
            net = ipaddress.ip_network(f"10.77.{x}.0/24")
            if not any(net.overlaps(u) for u in used if u.prefixlen > 0):
                return net
        raise NetLabError("no free 10.77.X.0/24 subnet")

    def _save(self) -> None:
        STATE_DIR.mkdir(parents=True, exist_ok=True)
        doc = {
            "pid": os.getpid(),
            "start_time": _proc_start_time(os.getpid()),
            "prefix": self.prefix,
            "labid": self.labid,
            "subnet": str(self.subnet),
            "bridge": self.bridge,
            "namespaces": self._namespaces,
            "veths": self._veths,
        }
        tmp = self.state_file.with_suffix(f".tmp{os.getpid()}")
        tmp.write_text(json.dumps(doc))
        os.replace(tmp, self.state_file)


# -- pytest -------------------------------------------------------------------------------

try:
    import pytest
except ImportError:  # pragma: no cover - the harness is usable without pytest
    pytest = None

if pytest is not None:

    @pytest.fixture
    def netlab():
        """An entered :class:`NetLab` (torn down after the test, also when it fails); skips
        when not root or when network namespaces cannot be created."""
        reason = unavailable_reason()
        if reason:
            pytest.skip(f"netlab: {reason}")
        with NetLab() as lab:
            yield lab
