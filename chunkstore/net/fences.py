"""The storage node's fencing book: the highest lease token it has seen for each volume.

A connector holding a volume's lease declares its token on each connection (wire op FENCE,
:mod:`chunkstore.net.wire.frames`). The node keeps the highest token per volume here, in
``fences.json`` beside its cluster map, replaced atomically and synced before the FENCE is
answered: a node restarted after a power cut still refuses the old holder. Afterwards every
mutating request of a connection whose declared token is lower than the book's is refused
(StaleEpoch): a paused or partitioned old connector can change nothing even if it does not
know it lost the lease. The file::

    {"fences": {"<volume id, 32 hex digits>": <token>, ...}}
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import threading
from collections.abc import Callable, Iterator

from chunkstore.atomicfile import atomic_write
from chunkstore.errors import ConfigError

log = logging.getLogger("sofs.node.fences")

FENCES_FILE = "fences.json"


class FenceBook:
    """Thread-safe; :meth:`raise_to` writes through to stable storage."""

    def __init__(self, path: str) -> None:
        self.path = path
        self._lock = threading.Lock()
        self._volume_locks: dict[bytes, threading.Lock] = {}
        self._tokens: dict[bytes, int] = {}
        try:
            with open(path) as f:
                doc = json.load(f)
            self._tokens = {bytes.fromhex(v): int(t) for v, t in doc["fences"].items()}
        except FileNotFoundError:
            pass
        except (OSError, ValueError, KeyError, TypeError, AttributeError) as e:
            # refusing to start is the only safe answer: forgetting tokens would let an
            # overtaken connector write again
            raise ConfigError(f"{path} is unreadable or damaged ({e}): the node cannot know "
                              "which connectors are fenced; restore it or remove it knowingly"
                              ) from None

    def held(self, volume_id: bytes) -> int:
        """The highest token seen for the volume (0: none)."""
        with self._lock:
            return self._tokens.get(volume_id, 0)

    def _volume_lock(self, volume_id: bytes) -> threading.Lock:
        with self._lock:
            return self._volume_locks.setdefault(volume_id, threading.Lock())

    def raise_to(self, volume_id: bytes, token: int) -> int:
        """Record ``token`` if it is the highest yet for the volume (synced before return);
        the highest token afterwards. Waits for the volume's writes under :meth:`holding`
        in flight: once it returns, none of an earlier token can land any more."""
        with self._volume_lock(volume_id), self._lock:
            held = self._tokens.get(volume_id, 0)
            if token <= held:
                return held
            tokens = {**self._tokens, volume_id: token}
            doc = {"fences": {v.hex(): t for v, t in sorted(tokens.items())}}
            atomic_write(self.path, json.dumps(doc, indent=1) + "\n")
            self._tokens = tokens
            log.info("volume %s: fencing token %d (was %d)", volume_id.hex(), token, held)
            return token

    @contextlib.contextmanager
    def holding(self, volume_id: bytes, token: int, refuse: Callable[[int], Exception]
                ) -> Iterator[None]:
        """Run a write of the volume under TOKEN with no token raised meanwhile (REFUSE(newest)
        is raised when a newer one is held): a record checked against the book cannot land
        after a newer holder's FENCE was answered."""
        with self._volume_lock(volume_id):
            newest = self.held(volume_id)
            if newest > token:
                raise refuse(newest)
            yield


def fences_path(map_file: str) -> str:
    """Where a node with this map file keeps its fencing book (beside it)."""
    return os.path.join(os.path.dirname(os.path.abspath(map_file)), FENCES_FILE)
