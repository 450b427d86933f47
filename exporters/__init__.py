"""exporters: NFS-Ganesha and Samba re-exporting sofs FUSE mounts.

:mod:`exporters.ganesha` renders a complete NFS-Ganesha 4.3 configuration for a volume
(:class:`~exporters.ganesha.NfsExport`), :mod:`exporters.samba` a complete ``smb.conf``
(:class:`~exporters.samba.SmbShare`) and manages the Samba users, and :mod:`exporters.service`
starts, watches and stops the daemons (:class:`~exporters.service.Service`). Every input is
validated and every bad one raises :class:`~exporters.errors.ExportError`.
"""

from .errors import ExportError

__all__ = ["ExportError"]
