"""The ring's arcs for the supervisor page: which part of the consistent-hash keyspace each
disk owns (:func:`ring_arcs`, pure, from a :class:`~chunkstore.placement.ring.RingData`) and
where a data directory keeps its ring (:func:`load_ring_arcs`: ``ring.json`` of an embedded
ring, the ring of ``clustermap.json`` for a networked one).

A vnode of token ``t`` owns the arc from the token before it (exclusive) up to ``t``
(inclusive): a key whose point is ``p`` starts its owner walk at the first token ``>= p``
(``Ring._walk``, ``bisect_left``). The arcs are given as fractions of the 160-bit keyspace,
clockwise from 0, so the document is small and needs no big integers::

    {"epoch": E, "vnodes_per_disk": V, "networked": false,
     "disks": [{"id": "d0", "host": "local", "site": "site0", "weight": 1.0,
                "standby": false, "share": 0.1712,
                "arcs": [[start, length], ...]}, ...]}     # start in [0, 1), length in (0, 1]

``share`` is the disk's part of the keyspace (the sum of its arc lengths): the share of first
pieces it receives; ``standby`` marks the disks of a networked node that is down (they keep
their tokens but place nothing). A disk without tokens (weight 0) has no arcs.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from chunkstore.placement.ring import KEYSPACE_BITS, RingData
from chunkstore.ring import mapadmin
from chunkstore.ring.localcluster import load_ring
from chunkstore.ring.open import is_networked

_SPACE = 1 << KEYSPACE_BITS
DIGITS = 6  # fractions are rounded to this many decimals (a millionth of the ring)


def ring_arcs(data: RingData, standby: frozenset[str] = frozenset(),
              networked: bool = False) -> dict[str, Any]:
    """The arcs of every device of DATA (see the module docstring), devices in ring order."""
    per_disk: dict[int, list[list[float]]] = {i: [] for i in range(len(data.devices))}
    vnodes = data.vnode2dev
    for k, (token, dev) in enumerate(vnodes):
        prev = vnodes[k - 1][0]  # k = 0: the last token, across the wrap
        length = (token - prev) % _SPACE or _SPACE  # one vnode alone owns the whole ring
        per_disk[dev].append([round(prev / _SPACE, DIGITS), round(length / _SPACE, DIGITS)])
    disks = []
    for i, d in enumerate(data.devices):
        arcs = per_disk[i]
        disks.append({"id": d.id, "host": d.host, "site": d.site, "weight": d.weight,
                      "standby": d.id in standby,
                      "share": round(sum(a[1] for a in arcs), DIGITS), "arcs": arcs})
    return {"epoch": data.epoch, "vnodes_per_disk": data.vnodes_per_disk,
            "networked": networked, "disks": disks}


def load_ring_arcs(home: Path) -> dict[str, Any]:
    """The arcs of the ring of data directory HOME, as the client's files say (the same files
    ``sofsctl status`` reads). ChunkStoreError (ClusterNotFound, FormatError) when there is no
    readable ring."""
    if is_networked(home):
        cmap = mapadmin.load_map(home)
        placing = set(cmap.placing_disks())
        holding = {cmap.ring.devices[i].id for _, i in cmap.ring.vnode2dev}
        return ring_arcs(cmap.ring, frozenset(holding - placing), networked=True)
    return ring_arcs(load_ring(home))
