"""Names of the files and directories in a data directory (``SOFS_HOME``), defined once.

Every module that opens one of these names imports it from here, so the on-disk layout of a
host's data directory is read in one place::

    cluster.json      embedded local cluster: its configuration (chunkstore.ring.localcluster)
    ring.json         embedded local cluster: the placement built from cluster.json
    cluster.lock      flock held while a ring client has the data directory open
    clustermap.json   networked cluster: the client's copy of the ClusterMap (chunkstore.ring.net)
    cluster.secret    networked cluster: the shared secret of the node handshake
    repairlog/        rocksdict of chunks needing repair (chunkstore.ring.repairlog)
    disks/d0 ..       embedded local cluster: one disk store per disk (chunkstore.disk.store)
    healer.json       the healer's schedule: the epoch last swept, the last full sweep
    run/              sockets, locks and pids of running processes (healer.lock, mounts/,
                      ringhost.json and ringhost.secret: the embedded ring's host process,
                      chunkstore.ring.hosted)
    volumes/          one directory per volume (sofs.volume)
"""

CLUSTER_FILE = "cluster.json"
RING_FILE = "ring.json"
LOCK_FILE = "cluster.lock"
MAP_FILE = "clustermap.json"
SECRET_FILE = "cluster.secret"
REPAIR_LOG_DIR = "repairlog"
DISKS_DIR = "disks"
RUN_DIR = "run"
HEALER_LOCK_FILE = "healer.lock"
HEALER_STATE_FILE = "healer.json"
MAINTENANCE_FILE = "maintenance.json"
HOST_STATE_FILE = "run/ringhost.json"
HOST_SECRET_FILE = "run/ringhost.secret"
