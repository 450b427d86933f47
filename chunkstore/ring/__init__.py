"""Ring clients: what the file layer talks to.

``datapath`` (RingStore: quorum puts, degraded reads, end-to-end verification, root records,
over any set of disk backends), ``local`` + ``localcluster`` (the embedded ring over local disk
directories), ``net`` (NetRing over storage nodes, with its failure detector and map epochs),
``memory`` (MemoryChunkStore for unit tests), ``repairlog`` (chunks that need repair),
``mapadmin`` (creating and changing a networked cluster's map), ``open`` (open_ring: the
right client for a data directory).
"""
