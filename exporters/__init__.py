"""exporters: NFS-Ganesha and Samba re-exporting sofs FUSE mounts.

:mod:`exporters.ganesha` renders a complete NFS-Ganesha 4.3 configuration for a volume
(:class:`~exporters.ganesha.NfsExport`), :mod:`exporters.samba` a complete ``smb.conf``
(:class:`~exporters.samba.SmbShare`) and manages the Samba users
(:mod:`exporters.shareaccess` says which POSIX users an SMB export created and whether they can
write to the share root), and :mod:`exporters.service`
starts, watches and stops the daemons (:class:`~exporters.service.Service`).
:mod:`exporters.exportspec` is what an export is (the spec and its typed options, their
defaults, option parsing), :mod:`exporters.exportstate` the supervisor's record of it
(state.json), both read strictly from JSON with :mod:`exporters.jsonfields`;
:mod:`exporters.exportconfig` turns a spec into a server config and Service,
:mod:`exporters.exportmount` finds and watches the FUSE mount an export serves,
:mod:`exporters.registry` keeps the exports of a data directory and starts and stops their
supervisors (:mod:`exporters.supervisor`, one process per export, which runs the health probes
of :mod:`exporters.probe`). Every input is validated (:mod:`exporters.validate`) and every bad
one raises :class:`~exporters.errors.ExportError`.
"""

from .errors import ExportError

__all__ = ["ExportError"]
