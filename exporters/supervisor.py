"""The supervisor of one export: ``python -m exporters.supervisor --data-dir D --export-dir E``.

Started detached by ``sofsctl export nfs|smb`` (:func:`exporters.registry.start_supervisor`),
one per export. It

1. reads the export's ``spec.json``, finds the volume's FUSE mount (the live mount process in
   ``DATA_DIR/run/mounts``, and the mount point in ``/proc/self/mountinfo``) and refuses to
   start if the volume is not mounted;
2. renders the Ganesha config (``Filesystem_id`` pinned to the volume's UUID) or smb.conf,
   starts the service and waits until its port answers, then says "ready" (or the error) on
   ``--ready-fd`` so that sofsctl returns only when the export serves or has really failed;
3. every ``--interval`` seconds (2): if the FUSE mount is gone (its process died, the mount
   point was unmounted or replaced) it stops the service at once and exits 3, so that clients
   get errors rather than the empty directory under the mount point; if the service died it
   restarts it (giving up after 5 restarts within 60 s, exit 1); if the service's port stops
   answering for 3 checks in a row it restarts it too;
3b. once after every start and then every ``--probe-interval`` seconds (30; the environment
   variable ``SOFS_EXPORT_PROBE_INTERVAL`` sets the default) runs a protocol-level health probe
   (:mod:`exporters.probe`: an NFSv4.1 file round trip in ``.sofs-probe``, or, as the
   ``sofs-probe`` account, an SMB listing of the volume's share and a file round trip in the
   probe's hidden share ``VOLUME-probe$``), bounded to
   ``probe.PROBE_TIMEOUT_S`` in a worker thread; 3 failures in a row that count (no answer,
   dropped connection, wrong content; not a definite refusal such as access denied) restart
   the service like a dead port. NFS probe failures during the grace period after a (re)start
   do not count (NFSv4 opens are refused with NFS4ERR_GRACE then);
4. on SIGTERM (``sofsctl export stop``, ``sofsctl umount``) or SIGINT stops the service and
   exits 0.

Its state (pid, service pid, bind, port, started, restarts, state, message, and the last
probe: probe_ok, probe_at, probe_took, probe_message, probe_failures) is in the export
directory's ``state.json``; its log, in plain words, in ``DATA_DIR/log/export-VOLUME-KIND.log``.
Exit codes: 0 stopped on request, 1 could not start or gave up, 2 bad usage, 3 mount gone.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import signal
import sys
import time
from collections import deque
from pathlib import Path

from . import exportconfig, exportmount, exportspec, probe, registry, service
from .errors import ExportError
from .exportstate import ExportState
from .registry import stop_exports
from .service import Service, tcp_port_answers

INTERVAL_S = 2.0
MAX_RESTARTS = 5
RESTART_WINDOW_S = 60.0
UNHEALTHY_LIMIT = 3
PROBE_INTERVAL_S = 30.0
PROBE_FAILURE_LIMIT = 3
GRACE_MARGIN_S = 10.0

EXIT_STOPPED, EXIT_FAILED, EXIT_USAGE, EXIT_MOUNT_GONE = 0, 1, 2, 3

# stop_exports (for `sofsctl umount`) lives in exporters.registry; importable from here too.
__all__ = ["Supervisor", "main", "stop_exports"]


class Supervisor:
    def __init__(self, data_dir: Path, edir: Path, *, interval: float = INTERVAL_S,
                 max_restarts: int = MAX_RESTARTS, window_s: float = RESTART_WINDOW_S,
                 probe_interval: float = PROBE_INTERVAL_S) -> None:
        self.data_dir = Path(data_dir).absolute()
        self.edir = Path(edir).absolute()
        self.interval = interval
        self.max_restarts = max_restarts
        self.window_s = window_s
        self.stopping = False
        self.spec: exportspec.ExportSpec | None = None
        self.mount: exportmount.MountRef | None = None
        self.service: Service | None = None
        self.restarts = 0
        self.recent: deque[float] = deque()
        self.started: float | None = None
        self.log = logging.getLogger("exporters.supervisor")
        self._ready_fd: int | None = None
        self.probe_interval = probe_interval
        self.prober = probe.Prober()
        self.last_probe: probe.ProbeResult | None = None
        self.probe_failures = 0
        self.service_started = 0.0      # monotonic time of the last (re)start of the service
        self._ro_expected: bytes | None = None
        self._smb_account: probe.ProbeAccount | None = None
        self._smb_account_error = ""
        self._last_state = ("starting", "")

    # --- plumbing ------------------------------------------------------------------------

    def _on_signal(self, signum, _frame) -> None:
        if not self.stopping:
            self.log.info("received %s: stopping", signal.Signals(signum).name)
        self.stopping = True

    def _say(self, ok: bool, error: str = "") -> None:
        if self._ready_fd is None:
            return
        try:
            os.write(self._ready_fd, (json.dumps({"ok": ok, "error": error}) + "\n").encode())
        except OSError:
            pass
        try:
            os.close(self._ready_fd)
        except OSError:
            pass
        self._ready_fd = None

    def _state(self, state: str, message: str = "") -> None:
        spec = self.spec
        svc_pid = self.cur_service.pid if self.service is not None else None
        self._last_state = (state, message)
        last = self.last_probe
        registry.write_state(self.edir, ExportState(
            state=state,
            message=message,
            pid=os.getpid(),
            pid_start=service.process_start_time(os.getpid()),
            kind=spec.kind if spec else None,
            volume=spec.volume if spec else None,
            service=exportspec.SERVICE_NAMES.get(spec.kind) if spec else None,
            service_pid=svc_pid,
            bind=spec.options.bind if spec else None,
            port=spec.options.port if spec else None,
            mountpoint=self.mount.mountpoint if self.mount else None,
            mount_pid=self.mount.pid if self.mount else None,
            started=self.started,
            restarts=self.restarts,
            probe_failures=self.probe_failures,
            probe_ok=last.ok if last else None,
            probe_at=last.at if last else None,
            probe_took=round(last.took, 3) if last else None,
            probe_message=last.message if last else "",
        ))

    def _sleep(self, seconds: float) -> None:
        end = time.monotonic() + seconds
        while not self.stopping:
            left = end - time.monotonic()
            if left <= 0:
                return
            time.sleep(min(0.1, left))

    @property
    def cur_spec(self) -> exportspec.ExportSpec:
        """The spec of the export being served (set by the first start)."""
        if self.spec is None:
            raise ExportError(f"{self.edir}: the supervisor has not loaded its export yet")
        return self.spec

    @property
    def cur_service(self) -> Service:
        """The service being supervised (set by the first start)."""
        if self.service is None:
            raise ExportError(f"{self.edir}: the supervisor has no service yet")
        return self.service

    @property
    def cur_mount(self) -> exportmount.MountRef:
        """The FUSE mount being exported (set by the first start)."""
        if self.mount is None:
            raise ExportError(f"{self.edir}: the supervisor has not found the mount yet")
        return self.mount

    @property
    def _name(self) -> str:
        return exportspec.SERVICE_NAMES[self.cur_spec.kind]

    def _port_answers(self) -> bool:
        return tcp_port_answers(self.cur_spec.options.bind, self.cur_spec.options.port, timeout=1.0)

    # --- life ----------------------------------------------------------------------------

    def run(self, ready_fd: int | None = None) -> int:
        self._ready_fd = ready_fd
        signal.signal(signal.SIGTERM, self._on_signal)
        signal.signal(signal.SIGINT, self._on_signal)
        signal.signal(signal.SIGHUP, signal.SIG_IGN)
        try:
            return self._run()
        except Exception as exc:  # never leave a service running unsupervised
            self.log.exception("supervisor failed: %s", exc)
            self._stop_service()
            self._safe_state("failed", f"supervisor error: {exc}")
            self._say(False, f"supervisor error: {exc}")
            return EXIT_FAILED

    def _safe_state(self, state: str, message: str) -> None:
        try:
            self._state(state, message)
        except Exception:
            self.log.exception("cannot write the state file")

    def _run(self) -> int:
        try:
            self.spec = registry.load_spec(self.edir)
        except ExportError as exc:
            self.log.error("%s", exc)
            self._say(False, str(exc))
            return EXIT_FAILED
        spec = self.spec
        self.log.info("supervisor %d for the %s export of volume %s starting",
                      os.getpid(), spec.kind.upper(), spec.volume)
        self._state("starting")
        try:
            self.mount = exportmount.find_mount(self.data_dir, spec.volume)
            conf = exportconfig.write_config(self.data_dir, self.edir, spec, self.mount.mountpoint)
            self.service = exportconfig.service_of(spec, self.edir)
            if spec.kind == "smb":
                try:
                    self._smb_account = probe.ensure_probe_account(conf, self.edir)
                except ExportError as exc:  # the export serves anyway, unprobed
                    self._smb_account_error = str(exc).splitlines()[0]
                    self.log.warning("no SMB health probe account: %s", exc)
            self.log.info("volume %s is mounted at %s (mount process %d); config %s",
                          spec.volume, self.mount.mountpoint, self.mount.pid, conf)
            pid = self.cur_service.start()
        except ExportError as exc:
            self.log.error("not started: %s", exc)
            self._state("failed", str(exc).splitlines()[0])
            self._say(False, str(exc))
            return EXIT_FAILED
        self.started = time.time()
        self.service_started = time.monotonic()
        self.log.info("%s started (pid %d), serving %s on %s port %d", self._name, pid,
                      self.mount.mountpoint, spec.options.bind, spec.options.port)
        self._state("running")
        self._probe()  # once after the start: sofsctl returns with its result in the state
        self._say(True)
        code = self._loop()
        self._stop_service()
        if code == EXIT_STOPPED:
            self._state("stopped", "stopped on request")
            self.log.info("supervisor %d: export stopped", os.getpid())
        return code

    # --- health probe --------------------------------------------------------------------

    def _probe_fn(self):
        spec, mnt = self.spec, self.mount.mountpoint
        host, port = probe.probe_host(spec.options.bind), spec.options.port
        read_only = spec.options.read_only
        if spec.kind == "smb":
            account = self._smb_account

            def smb() -> str:
                if account is None:
                    raise probe.ProbeFailure(f"no probe account ({self._smb_account_error})",
                                             counts=False)
                ids = (account.uid, account.gid)
                probe.prepare_probe_dir(mnt, probe.SMB_PROBE_DIR, *ids)
                if read_only and self._ro_expected is None:
                    self._ro_expected = probe.write_ro_probe_file(mnt, probe.SMB_PROBE_DIR, *ids)
                return probe.smb_probe(host, port, spec.volume, account.password,
                                       probe_share=probe.smb_probe_share(spec.volume),
                                       expected=self._ro_expected if read_only else None)
            return smb

        def nfs() -> str:
            probe.prepare_probe_dir(mnt)
            if read_only and self._ro_expected is None:
                self._ro_expected = probe.write_ro_probe_file(mnt)
            return probe.nfs_probe(host, port, spec.volume,
                                   expected=self._ro_expected if read_only else None)
        return nfs

    def _in_grace(self) -> bool:
        if self.cur_spec.kind != "nfs":
            return False
        grace = self.cur_spec.nfs.grace
        return grace > 0 and time.monotonic() - self.service_started < grace + GRACE_MARGIN_S

    def _probe(self) -> probe.ProbeResult:
        """Run one probe, count it, record it in the state; the result."""
        res = self.prober.run(self._probe_fn(), stop=lambda: self.stopping)
        previous, self.last_probe = self.last_probe, res
        if res.ok:
            if self.probe_failures:
                self.log.info("health probe of %s passes again: %s", self._name, res.message)
            self.probe_failures = 0
        else:
            self._ro_expected = None  # a read-only export's probe file is written anew
            if self.stopping:
                pass
            elif not res.counts:
                if previous is None or previous.message != res.message:  # once, not every 30 s
                    self.log.warning("health probe of %s refused (not restarting: a restart "
                                     "would not help): %s", self._name, res.message)
            elif self._in_grace():
                self.log.info("health probe of %s failed during the grace period (not "
                              "counted): %s", self._name, res.message)
            else:
                self.probe_failures += 1
                self.log.warning("health probe of %s (pid %s) failed (%d of %d): %s",
                                 self._name, self.cur_service.pid, self.probe_failures,
                                 PROBE_FAILURE_LIMIT, res.message)
        self._safe_state(*self._last_state)
        return res

    def _stop_wedged(self) -> None:
        """Stop a service that does not answer: SIGCONT first (a stopped process would sit on
        its SIGTERM until the SIGKILL), then the usual stop."""
        pid = self.cur_service.pid
        if pid is not None:
            try:
                os.kill(pid, signal.SIGCONT)
            except ProcessLookupError:
                pass
        self.cur_service.stop()

    def _loop(self) -> int:
        unhealthy = 0
        next_probe = time.monotonic() + self.probe_interval
        while True:
            self._sleep(self.interval)
            if self.stopping:
                return EXIT_STOPPED
            why = exportmount.mount_gone(self.cur_mount)
            if why is not None:
                msg = (f"the FUSE mount of volume {self.cur_spec.volume} is gone ({why}): "
                       f"stopping {self._name} so that clients get errors instead of the "
                       "empty directory underneath; export it again once the volume is "
                       "mounted")
                self.log.error("%s", msg)
                self._stop_service()
                self._state("mount-gone", why)
                return EXIT_MOUNT_GONE
            if not self.cur_service.alive():
                self.log.warning("%s died (see %s)", self._name, self.cur_service.logfile)
                code = self._restart("it died")
                if code is not None:
                    return code
                unhealthy = 0
                next_probe = time.monotonic()  # probe after every start
                continue
            if self._port_answers():
                unhealthy = 0
                if time.monotonic() < next_probe:
                    continue
                self._probe()
                next_probe = time.monotonic() + self.probe_interval
                if self.stopping or self.probe_failures < PROBE_FAILURE_LIMIT:
                    continue
                why = (f"its health probe failed {self.probe_failures} times in a row "
                       f"({self.last_probe.message if self.last_probe else 'no answer'})")
                self._stop_wedged()
                code = self._restart(why)
                if code is not None:
                    return code
                next_probe = time.monotonic()
                continue
            unhealthy += 1
            self.log.warning("%s (pid %s) does not answer on port %d (%d of %d checks)",
                             self._name, self.cur_service.pid, self.cur_spec.options.port,
                             unhealthy, UNHEALTHY_LIMIT)
            if unhealthy >= UNHEALTHY_LIMIT:
                self._stop_wedged()
                code = self._restart("its port stopped answering")
                if code is not None:
                    return code
                unhealthy = 0
                next_probe = time.monotonic()

    def _restart(self, why: str) -> int | None:
        """Restart the service; an exit code when the supervisor should give up, else None."""
        now = time.monotonic()
        self.recent.append(now)
        while self.recent and now - self.recent[0] > self.window_s:
            self.recent.popleft()
        if len(self.recent) > self.max_restarts:
            msg = (f"{self._name} needed {len(self.recent) - 1} restarts within "
                   f"{self.window_s:.0f} s: giving up; see {self.cur_service.logfile}, then "
                   f"sofsctl export stop/start")
            self.log.error("%s", msg)
            self._stop_service()
            self._state("failed", msg)
            return EXIT_FAILED
        # Never start a service on a mount point whose FUSE mount has gone meanwhile.
        why_gone = exportmount.mount_gone(self.cur_mount)
        if why_gone is not None:
            self.log.error("not restarting %s: the FUSE mount is gone (%s)", self._name, why_gone)
            self._stop_service()
            self._state("mount-gone", why_gone)
            return EXIT_MOUNT_GONE
        self._state("restarting", why)
        self.restarts += 1
        self.probe_failures = 0
        try:
            self.cur_service.restart_if_dead()
            self.service_started = time.monotonic()
            self.log.info("%s restarted (pid %s) because %s; restart %d", self._name,
                          self.cur_service.pid, why, self.restarts)
            self._state("running", f"restarted because {why}")
        except ExportError as exc:
            self.log.error("restart of %s failed: %s", self._name, exc)
            self._state("restarting", f"restart failed: {str(exc).splitlines()[0]}")
        return None

    def _stop_service(self) -> None:
        if self.service is None:
            return
        try:
            pid = self.cur_service.pid
            if self.cur_service.stop():
                self.log.info("%s stopped%s", self._name, f" (pid {pid})" if pid else "")
        except Exception as exc:
            self.log.error("stopping %s: %s", self._name, exc)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m exporters.supervisor",
                                description="Supervise one sofs export (see the module doc).")
    p.add_argument("--data-dir", required=True, type=Path)
    p.add_argument("--export-dir", required=True, type=Path)
    p.add_argument("--ready-fd", type=int, default=None,
                   help="write one JSON line {ok, error} here once serving (or failed)")
    p.add_argument("--interval", type=float, default=INTERVAL_S)
    p.add_argument("--probe-interval", type=float, default=None,
                   help=f"seconds between health probes [default: $SOFS_EXPORT_PROBE_INTERVAL "
                        f"or {PROBE_INTERVAL_S:g}]")
    args = p.parse_args(argv)
    os.umask(0o022)
    try:
        spec = registry.load_spec(args.export_dir)
        log_file = registry.log_path(args.data_dir, spec.volume, spec.kind)
    except ExportError:
        log_file = None
    handler: logging.Handler
    if log_file is not None:
        log_file.parent.mkdir(parents=True, exist_ok=True)
        handler = logging.FileHandler(log_file)
    else:
        handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter(
        "%(asctime)s " + f"export[{os.getpid()}] " + "%(levelname)s %(message)s",
        "%Y-%m-%d %H:%M:%S"))
    log = logging.getLogger("exporters.supervisor")
    log.addHandler(handler)
    log.setLevel(logging.INFO)
    log.propagate = False
    probe_interval = args.probe_interval
    if probe_interval is None:
        try:
            probe_interval = float(os.environ.get("SOFS_EXPORT_PROBE_INTERVAL", PROBE_INTERVAL_S))
        except ValueError:
            probe_interval = PROBE_INTERVAL_S
    probe_interval = max(1.0, probe_interval)
    sup = Supervisor(args.data_dir, args.export_dir, interval=args.interval,
                     probe_interval=probe_interval)
    return sup.run(args.ready_fd)


if __name__ == "__main__":
    sys.exit(main())
