"""Protection policies: replication (CoS) and Reed-Solomon erasure coding (EC k+m).

Small validated value classes; :class:`ECPolicy` wraps pyeclib and turns its errors into
:class:`~chunkstore.errors.PolicyError`. Nothing here does I/O.

Threads: pyeclib drivers are not shared across threads. One ECPolicy object may be used by
any number of threads at once (the ``large`` policy of a :class:`Protection` is, by every
writer thread of a ring client): each thread encodes and decodes with its own driver, created
on its first use and kept by the policy object (a ``threading.local``). Building a driver
initialises the backend's tables, which costs more than decoding a 4 MiB chunk, so
:meth:`PolicyCode.policy` returns one policy object per code for the whole process.

Spec strings (``parse_policy`` / ``.spec()``):

* ``"cosN"`` – class of service N: N+1 whole copies on distinct disks (``cos2`` = 3 copies),
  1..6 copies (``cos0`` .. ``cos5``).
* ``"ecK+M"`` – K data + M parity fragments, 2 <= K, 1 <= M, K+M <= 16, with the best EC
  backend available at runtime; ``"ecK+M:BACKEND"`` pins the backend
  (``isa_l_rs_vand``, ``isa_l_rs_cauchy``, ``liberasurecode_rs_vand``). ``spec()`` names the
  backend only when it is not the preferred available one.

Policy code (:class:`PolicyCode`), 4 bytes, stored in every ChunkRef and record header::

    offset 0  kind     u8   1 = replication, 2 = erasure coding
    offset 1  a        u8   replication: copies (1..6);  EC: k
    offset 2  b        u8   replication: 0;              EC: m
    offset 3  backend  u8   replication: 0;              EC: backend id (see BACKEND_IDS)

pyeclib fragments from different backends are not interchangeable, so the backend is part of
the code.

Write quorum (pieces that must be durable before a put is acknowledged):

* EC k+m: ``min(k+m, k+1)`` – one more than needed to decode, so a single further disk loss
  before repair does not lose the chunk;
* replication with n copies: ``n // 2 + 1`` (a majority).

Fragment indexes: EC fragment i is ``i`` (0..k-1 data, k..k+m-1 parity); every whole replica
uses :data:`REPLICA_INDEX` (0xFF).
"""

from __future__ import annotations

import functools
import re
import struct
import threading
from dataclasses import dataclass
from typing import Any, Union

from chunkstore.errors import FormatError, PolicyError
from chunkstore.protection.codectimes import EC_TIMES

KIND_REPLICATION = 1
KIND_EC = 2

#: fragment index used for every whole replica
REPLICA_INDEX = 0xFF

#: EC backend name -> id stored in policy codes. Never renumber.
BACKEND_IDS: dict[str, int] = {
    "isa_l_rs_vand": 1,
    "isa_l_rs_cauchy": 2,
    "liberasurecode_rs_vand": 3,
}
BACKEND_NAMES: dict[int, str] = {v: k for k, v in BACKEND_IDS.items()}
#: runtime preference order when no backend is given
BACKEND_PREFERENCE: tuple[str, ...] = ("isa_l_rs_vand", "isa_l_rs_cauchy", "liberasurecode_rs_vand")

MAX_COPIES = 6
MAX_EC_WIDTH = 16

_CODE = struct.Struct(">BBBB")


@dataclass(frozen=True)
class PolicyCode:
    """Compact 4-byte identity of a policy: ``(kind, a, b, backend)`` (see module docstring)."""

    kind: int
    a: int
    b: int
    backend: int = 0

    SIZE = _CODE.size

    def __post_init__(self) -> None:
        _validate_code(self.kind, self.a, self.b, self.backend)

    def to_bytes(self) -> bytes:
        return _CODE.pack(self.kind, self.a, self.b, self.backend)

    @classmethod
    def from_bytes(cls, data: bytes) -> "PolicyCode":
        """Strict parser: exactly 4 bytes describing a valid policy, else FormatError."""
        if len(data) != _CODE.size:
            raise FormatError(f"policy code must be {_CODE.size} bytes, got {len(data)}")
        kind, a, b, backend = _CODE.unpack(bytes(data))
        return cls(kind, a, b, backend)

    def policy(self) -> "Policy":
        """The policy object (PolicyError if its EC backend is unavailable here); the same
        object for every call with this code (see the module docstring on threads)."""
        return _policy_of(self)

    @property
    def width(self) -> int:
        """Number of pieces a chunk of this policy has (copies, or k+m)."""
        return self.a if self.kind == KIND_REPLICATION else self.a + self.b


def _validate_code(kind: int, a: int, b: int, backend: int) -> None:
    if kind == KIND_REPLICATION:
        if not 1 <= a <= MAX_COPIES or b != 0 or backend != 0:
            raise FormatError(f"invalid replication policy code ({kind}, {a}, {b}, {backend})")
    elif kind == KIND_EC:
        if a < 2 or b < 1 or a + b > MAX_EC_WIDTH or backend not in BACKEND_NAMES:
            raise FormatError(f"invalid EC policy code ({kind}, {a}, {b}, {backend})")
    else:
        raise FormatError(f"unknown policy kind {kind}")


@functools.lru_cache(maxsize=None)
def _policy_of(code: PolicyCode) -> "Policy":
    """The policy object of a code, built once per process (a failure is not cached)."""
    if code.kind == KIND_REPLICATION:
        return ReplicationPolicy(code.a)
    return ECPolicy(code.a, code.b, backend=BACKEND_NAMES[code.backend])


@functools.lru_cache(maxsize=None)
def backend_works(name: str) -> bool:
    """True if pyeclib can encode and decode with this backend on this machine (memoised)."""
    try:
        from pyeclib.ec_iface import ECDriver

        drv = ECDriver(k=2, m=1, ec_type=name)
        frags = drv.encode(b"probe" * 10)
        return drv.decode(frags[1:]) == b"probe" * 10
    except Exception:
        return False


def available_backends() -> list[str]:
    """Backends that work here, in preference order."""
    return [b for b in BACKEND_PREFERENCE if backend_works(b)]


class ReplicationPolicy:
    """CoS n: ``copies`` = n+1 whole copies on distinct disks (1..6 copies)."""

    kind = KIND_REPLICATION

    def __init__(self, copies: int) -> None:
        if not isinstance(copies, int) or isinstance(copies, bool) or not 1 <= copies <= MAX_COPIES:
            raise PolicyError(f"replication needs 1..{MAX_COPIES} copies, got {copies!r}")
        self.copies = copies
        self.code = PolicyCode(KIND_REPLICATION, copies, 0, 0)

    @property
    def width(self) -> int:
        """Pieces per chunk."""
        return self.copies

    @property
    def min_pieces(self) -> int:
        """Pieces needed to read the chunk back."""
        return 1

    @property
    def write_quorum(self) -> int:
        """Durable pieces needed to acknowledge a put: a majority, ``copies // 2 + 1``."""
        return self.copies // 2 + 1

    @property
    def overhead(self) -> float:
        """Raw bytes stored per payload byte."""
        return float(self.copies)

    def piece_index(self, i: int) -> int:
        """Fragment index stored on the i-th owner (always REPLICA_INDEX)."""
        return REPLICA_INDEX

    def spec(self) -> str:
        return f"cos{self.copies - 1}"

    def encode(self, payload: bytes) -> list[bytes]:
        """One reference to the payload per copy (no copying)."""
        return [payload] * self.copies

    def __eq__(self, other: object) -> bool:
        return isinstance(other, ReplicationPolicy) and other.code == self.code

    def __hash__(self) -> int:
        return hash(self.code)

    def __repr__(self) -> str:
        return f"ReplicationPolicy(copies={self.copies})"


class ECPolicy:
    """Reed-Solomon k+m through pyeclib; any k of the k+m fragments rebuild the payload.

    Thread-safe: each thread uses its own pyeclib driver (:meth:`driver`)."""

    kind = KIND_EC

    def __init__(self, k: int, m: int, backend: str | None = None) -> None:
        for name, v in (("k", k), ("m", m)):
            if not isinstance(v, int) or isinstance(v, bool):
                raise PolicyError(f"EC {name} must be an int, got {v!r}")
        if k < 2 or m < 1 or k + m > MAX_EC_WIDTH:
            raise PolicyError(f"EC needs k>=2, m>=1, k+m<={MAX_EC_WIDTH}; got {k}+{m}")
        if backend is None:
            avail = available_backends()
            if not avail:
                raise PolicyError("no working pyeclib EC backend on this machine")
            backend = avail[0]
        elif backend not in BACKEND_IDS:
            raise PolicyError(f"unknown EC backend {backend!r}; known: {sorted(BACKEND_IDS)}")
        elif not backend_works(backend):
            raise PolicyError(f"EC backend {backend!r} does not work on this machine")
        self.k = k
        self.m = m
        self.backend = backend
        self.code = PolicyCode(KIND_EC, k, m, BACKEND_IDS[backend])
        self._drivers = threading.local()  # .driver: the calling thread's ECDriver

    @property
    def width(self) -> int:
        return self.k + self.m

    @property
    def min_pieces(self) -> int:
        return self.k

    @property
    def write_quorum(self) -> int:
        """``min(k+m, k+1)``: durable fragments needed to acknowledge a put."""
        return min(self.k + self.m, self.k + 1)

    @property
    def overhead(self) -> float:
        return (self.k + self.m) / self.k

    def piece_index(self, i: int) -> int:
        """Fragment index stored on the i-th owner: i."""
        return i

    def spec(self) -> str:
        base = f"ec{self.k}+{self.m}"
        avail = available_backends()
        if avail and avail[0] == self.backend:
            return base
        return f"{base}:{self.backend}"

    def driver(self) -> Any:
        """The calling thread's pyeclib ECDriver, created on its first use (building one
        allocates backend state); PolicyError if pyeclib refuses."""
        drv = getattr(self._drivers, "driver", None)
        if drv is None:
            try:
                from pyeclib.ec_iface import ECDriver

                drv = ECDriver(k=self.k, m=self.m, ec_type=self.backend)
            except Exception as e:  # pyeclib raises its own ECDriverError family
                raise PolicyError(f"cannot create EC driver {self.spec()}: {e}") from e
            self._drivers.driver = drv
        return drv

    def encode(self, payload: bytes) -> list[bytes]:
        """Encode into k+m fragments (index i = data for i<k, parity otherwise)."""
        try:
            with EC_TIMES.timed("encode", len(payload)):
                return self.driver().encode(bytes(payload) if isinstance(payload, memoryview) else payload)
        except PolicyError:
            raise
        except Exception as e:
            raise PolicyError(f"EC encode failed ({self.spec()}): {e}") from e

    def decode(self, fragments: dict[int, bytes]) -> bytes:
        """Rebuild the payload from at least k fragments (dict fragment index -> bytes).

        Raises PolicyError when pyeclib cannot decode (fewer than k, or damaged fragments).
        Callers verify the result against the chunk key.
        """
        if len(fragments) < self.k:
            raise PolicyError(f"need {self.k} fragments to decode, got {len(fragments)}")
        # Data fragments first: pyeclib takes the fast path when 0..k-1 are all present.
        order = sorted(fragments)
        try:
            with EC_TIMES.timed("decode", sum(len(f) for f in fragments.values())):
                return self.driver().decode([fragments[i] for i in order])
        except PolicyError:
            raise
        except Exception as e:
            raise PolicyError(f"EC decode failed ({self.spec()}): {e}") from e

    def reconstruct(self, fragments: dict[int, bytes], missing: list[int]) -> dict[int, bytes]:
        """Rebuild the fragments with the given indexes from at least k others."""
        frags = self.encode(self.decode(fragments))
        return {i: frags[i] for i in missing}

    def __eq__(self, other: object) -> bool:
        return isinstance(other, ECPolicy) and other.code == self.code

    def __hash__(self) -> int:
        return hash(self.code)

    def __repr__(self) -> str:
        return f"ECPolicy(k={self.k}, m={self.m}, backend={self.backend!r})"


Policy = Union[ReplicationPolicy, ECPolicy]

_SPEC_RE = re.compile(r"^(?:cos(\d+)|ec(\d+)\+(\d+)(?::([a-z_]+))?)$")


def parse_policy(spec: str) -> Policy:
    """Parse ``"cos2"`` / ``"ec4+2"`` / ``"ec4+2:isa_l_rs_cauchy"``; PolicyError if invalid."""
    if not isinstance(spec, str):
        raise PolicyError(f"policy spec must be a string, got {spec!r}")
    mo = _SPEC_RE.match(spec.strip().lower())
    if not mo:
        raise PolicyError(f"invalid policy spec {spec!r} (expected cosN or ecK+M)")
    if mo.group(1) is not None:
        return ReplicationPolicy(int(mo.group(1)) + 1)
    return ECPolicy(int(mo.group(2)), int(mo.group(3)), backend=mo.group(4))


def policy_from_code(code: PolicyCode) -> Policy:
    """Policy object for a stored code (PolicyError if its backend is unavailable)."""
    return code.policy()


DEFAULT_THRESHOLD = 60 * 1024


class Protection:
    """Size-dependent choice: chunks below ``threshold`` bytes use ``small``, others ``large``.

    Parity on tiny objects costs more than it saves, hence replication below the threshold.
    """

    def __init__(
        self,
        small: ReplicationPolicy,
        large: Policy,
        threshold: int = DEFAULT_THRESHOLD,
    ) -> None:
        if not isinstance(small, ReplicationPolicy):
            raise PolicyError("the small-object policy must be a ReplicationPolicy")
        if not isinstance(large, (ReplicationPolicy, ECPolicy)):
            raise PolicyError("the large-object policy must be an ECPolicy or ReplicationPolicy")
        if not isinstance(threshold, int) or threshold < 0:
            raise PolicyError(f"threshold must be a non-negative int, got {threshold!r}")
        self.small = small
        self.large = large
        self.threshold = threshold

    @classmethod
    def parse(cls, small: str = "cos2", large: str = "ec4+2", threshold: int = DEFAULT_THRESHOLD) -> "Protection":
        """Build from spec strings, e.g. ``Protection.parse("cos2", "ec4+2")``."""
        s = parse_policy(small)
        if not isinstance(s, ReplicationPolicy):
            raise PolicyError("the small-object policy must be a replication (cosN) policy")
        return cls(s, parse_policy(large), threshold)

    def max_width(self) -> int:
        """The most pieces a chunk of this protection puts on distinct disks."""
        return max(self.small.width, self.large.width)

    def for_size(self, n: int) -> Policy:
        """Policy for a payload of n bytes: ``small`` if n < threshold else ``large``."""
        return self.small if n < self.threshold else self.large

    def __eq__(self, other: object) -> bool:
        return (
            isinstance(other, Protection)
            and (self.small, self.large, self.threshold) == (other.small, other.large, other.threshold)
        )

    def __hash__(self) -> int:
        return hash((self.small, self.large, self.threshold))

    def __repr__(self) -> str:
        return f"Protection(small={self.small.spec()}, large={self.large.spec()}, threshold={self.threshold})"
