"""Names the mount gives a meaning to at a volume's root: the exports' health-probe
directories, which the mount leaves out of every directory listing (on the mount, and so
through NFS and SMB) while they stay reachable by name for the probes (:mod:`exporters.probe`).
"""

NFS_PROBE_DIR = ".sofs-probe"
SMB_PROBE_DIR = ".sofs-probe-smb"
HIDDEN_ROOT_NAMES = frozenset({NFS_PROBE_DIR.encode(), SMB_PROBE_DIR.encode()})
