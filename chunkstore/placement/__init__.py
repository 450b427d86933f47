"""Where chunks live, computed without I/O on the network or the disks.

``keys`` (ChunkRef, chunk naming), ``ring`` (the consistent-hash ring with vnodes and failure
domains: builder, data, runtime view), ``clustermap`` (the networked cluster's map: nodes,
disks, states, epoch), ``layout`` (the names of files and directories in a data directory).
"""
