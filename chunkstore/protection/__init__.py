"""How a chunk is protected: replication (CoS) for small chunks, Reed-Solomon for large ones.

``policy``: ReplicationPolicy, ECPolicy (pyeclib, one driver per thread), Protection (the pair
and the size threshold between them), PolicyCode (the 4-byte form stored with every piece).
"""
