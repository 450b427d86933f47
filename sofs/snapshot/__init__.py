"""Snapshots of a volume: read-only, point-in-time copies of its metadata.

A snapshot is a RocksDB checkpoint of the volume's metadata (hard links to its SST files), so it
costs next to nothing when taken; chunks are immutable and shared, so it references the same
chunks the volume did then, and the garbage collector keeps every chunk a snapshot references.

Modules: :mod:`.catalog` (names, the catalog file, the layout under the volume directory),
:mod:`.frozenmeta` (a snapshot's metadata opened read-only), :mod:`.pins` (what the collector
asks: is this chunk referenced by a snapshot?), :mod:`.view` (a snapshot as a read-only
:class:`~sofs.fs.Filesystem`), :mod:`.manager` (create, list, delete).

This package's ``__init__`` imports nothing: :mod:`sofs.collector` imports :mod:`.pins`, and
:mod:`.manager` imports :mod:`sofs.fs`, which imports the collector.
"""
