"""The supervisor's record of one export: ``DATA_DIR/exports/VOLUME-KIND/state.json``.

Written by the export's supervisor (:mod:`exporters.supervisor`) at every change and after every
health probe, and by ``sofsctl export stop`` (:func:`exporters.registry.stop_export`) once the
supervisor is gone; read by :func:`exporters.registry.status_of` and friends. An
:class:`ExportState` is a frozen dataclass; ``to_json``/``from_json`` give and read its JSON
form, strictly (:mod:`exporters.jsonfields`: unknown fields and wrong types are refused with an
ExportError naming the file and the field). Every field may be missing (an older file, or one
written by ``export stop`` before any supervisor ran) and then takes its default. The JSON form
is the one state.json always had::

    {"state": "running", "message": "", "pid": 24631, "pid_start": 231919, "kind": "nfs",
     "volume": "pacs", "service": "nfs-ganesha", "service_pid": 4242, "bind": "0.0.0.0",
     "port": 2049, "mountpoint": "/mnt/pacs", "mount_pid": 1, "started": 1718000002.0,
     "restarts": 0, "probe_failures": 0, "updated": 1718000003.6,
     "probe_ok": true, "probe_at": 1718000003.5, "probe_took": 0.123,
     "probe_message": "wrote, read back and removed .sofs-probe/nfs-probe over NFSv4.1"}

The four ``probe_*`` fields of the last health probe are written only once a probe ran.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from .jsonfields import JsonFields


@dataclass(frozen=True)
class ExportState:
    """What the supervisor says about its export (see the module doc for the JSON form)."""

    state: str = "stopped"            # starting, running, restarting, stopping, stopped,
    message: str = ""                 # failed, mount-gone (exporters.registry)
    pid: int | None = None            # the supervisor
    pid_start: int | None = None      # its kernel start time (a recycled pid is not it)
    kind: str | None = None
    volume: str | None = None
    service: str | None = None        # nfs-ganesha or smbd
    service_pid: int | None = None
    bind: str | None = None
    port: int | None = None
    mountpoint: str | None = None
    mount_pid: int | None = None
    started: float | None = None      # wall-clock time of the first start
    restarts: int = 0
    probe_failures: int = 0           # failed health probes in a row that count
    updated: float | None = None      # when this was written
    # the last health probe (exporters.probe); None until one ran
    probe_ok: bool | None = None
    probe_at: float | None = None
    probe_took: float | None = None
    probe_message: str = ""

    def to_json(self) -> dict[str, Any]:
        doc: dict[str, Any] = {
            "state": self.state, "message": self.message, "pid": self.pid,
            "pid_start": self.pid_start, "kind": self.kind, "volume": self.volume,
            "service": self.service, "service_pid": self.service_pid, "bind": self.bind,
            "port": self.port, "mountpoint": self.mountpoint, "mount_pid": self.mount_pid,
            "started": self.started, "restarts": self.restarts,
            "probe_failures": self.probe_failures, "updated": self.updated,
        }
        if self.probe_ok is not None:
            doc.update(probe_ok=self.probe_ok, probe_at=self.probe_at,
                       probe_took=self.probe_took, probe_message=self.probe_message)
        return doc

    @classmethod
    def from_json(cls, doc: object, where: str = "state.json") -> ExportState:
        """Read a state.json document (decoded); ExportError naming WHERE and the field for an
        unknown field or a value of the wrong type."""
        f = JsonFields(doc, where)
        d = cls()
        st = cls(
            state=f.text("state", d.state), message=f.text("message", d.message),
            pid=f.opt_integer("pid"), pid_start=f.opt_integer("pid_start"),
            kind=f.opt_text("kind"), volume=f.opt_text("volume"), service=f.opt_text("service"),
            service_pid=f.opt_integer("service_pid"), bind=f.opt_text("bind"),
            port=f.opt_integer("port"), mountpoint=f.opt_text("mountpoint"),
            mount_pid=f.opt_integer("mount_pid"), started=f.opt_number("started"),
            restarts=f.integer("restarts", d.restarts),
            probe_failures=f.integer("probe_failures", d.probe_failures),
            updated=f.opt_number("updated"),
            probe_ok=f.opt_flag("probe_ok"), probe_at=f.opt_number("probe_at"),
            probe_took=f.opt_number("probe_took"),
            probe_message=f.text("probe_message", d.probe_message),
        )
        f.done()
        return st
