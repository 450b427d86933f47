"""A thin client of etcd's v3 API through its JSON gateway (``POST /v3/...`` over HTTPS).

What the cluster authority (:mod:`chunkstore.authority`) needs from etcd and nothing more:
get/put/delete, compare-and-swap transactions, leases (grant, keep-alive, revoke), a watch
on one key, and the members' status. Why not a client library: python-etcd3 (gRPC) has had no
release since 2020 and breaks with current protobuf; etcd3gw talks to one endpoint only and
turns every failure into generic exceptions. This client tries every endpoint in turn (the
last one that answered first), bounds every call by a deadline, verifies the members with
the cluster CA and presents a client certificate (etcd runs with ``--client-cert-auth``), and
raises :class:`~chunkstore.errors.EtcdUnavailable` (no member answered: callers stop what
needs agreement) or :class:`~chunkstore.errors.EtcdError` (etcd refused the request). HTTP
is ``httpx`` (maintained, thread-safe connection pool, streaming for the watch).

The gateway encodes keys and values in base64 and 64-bit integers as strings; this module
hides both: keys and values are bytes, revisions and lease ids ints. Blocking, for threads;
the trio side calls it through ``trio.to_thread``.
"""

from __future__ import annotations

import base64
import json
import logging
import ssl
import threading
from dataclasses import dataclass
from typing import Any, Iterator

import httpx

from chunkstore.authority.pki import TlsFiles
from chunkstore.errors import EtcdError, EtcdUnavailable

log = logging.getLogger("sofs.etcd")

DEFAULT_TIMEOUT_S = 3.0
WATCH_IDLE_S = 15.0  # a watch with no event for this long reconnects (a half-open TCP link)


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def _unb64(text: str | None) -> bytes:
    return base64.b64decode(text) if text else b""


@dataclass(frozen=True)
class KeyValue:
    """One key as etcd holds it."""

    key: bytes
    value: bytes
    mod_revision: int
    create_revision: int
    version: int
    lease: int

    @classmethod
    def from_doc(cls, d: dict[str, Any]) -> "KeyValue":
        return cls(_unb64(d.get("key")), _unb64(d.get("value")), int(d.get("mod_revision", 0)),
                   int(d.get("create_revision", 0)), int(d.get("version", 0)),
                   int(d.get("lease", 0)))


@dataclass(frozen=True)
class MemberStatus:
    """What one endpoint says of itself (``sofsctl etcd status``)."""

    endpoint: str
    ok: bool
    version: str = ""
    member_id: int = 0
    leader: int = 0
    raft_term: int = 0
    db_size: int = 0
    error: str = ""

    @property
    def is_leader(self) -> bool:
        return self.ok and self.member_id == self.leader


def normalise_endpoints(text: str | list[str], tls: bool = True) -> list[str]:
    """``host:port`` or URLs, comma-separated or a list -> URLs without a trailing slash."""
    items = text.split(",") if isinstance(text, str) else list(text)
    out = []
    for item in (i.strip() for i in items):
        if not item:
            continue
        if "://" not in item:
            item = ("https://" if tls else "http://") + item
        if not item.startswith(("http://", "https://")):
            raise EtcdError(f"etcd endpoint {item!r}: must be http:// or https://")
        out.append(item.rstrip("/"))
    if not out:
        raise EtcdError("no etcd endpoint given")
    return out


class EtcdClient:
    """A client of an etcd cluster (see the module docstring). Thread-safe."""

    def __init__(self, endpoints: str | list[str], tls: TlsFiles | None = None,
                 timeout: float = DEFAULT_TIMEOUT_S) -> None:
        self.endpoints = normalise_endpoints(endpoints, tls is not None)
        self.timeout = timeout
        self._tls = tls
        verify: ssl.SSLContext | bool = True
        if tls is not None:
            tls.check()
            ctx = ssl.create_default_context(cafile=tls.ca)
            ctx.load_cert_chain(tls.cert, tls.key)
            verify = ctx
        self._http = httpx.Client(verify=verify, timeout=timeout)
        self._good = 0  # index of the endpoint that answered last
        self._lock = threading.Lock()

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> "EtcdClient":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- transport ------------------------------------------------------------------------

    def _order(self) -> list[str]:
        with self._lock:
            start = self._good
        return self.endpoints[start:] + self.endpoints[:start]

    def _post(self, path: str, body: dict[str, Any], timeout: float | None = None
              ) -> dict[str, Any]:
        errors = []
        for url in self._order():
            try:
                r = self._http.post(f"{url}/v3/{path}", json=body,
                                    timeout=timeout if timeout is not None else self.timeout)
            except (httpx.TransportError, ssl.SSLError, OSError) as e:
                errors.append(f"{url}: {e or type(e).__name__}")
                continue
            doc = self._decode(url, r)
            if r.status_code == 503 or _unavailable(doc):
                errors.append(f"{url}: {doc.get('message') or doc.get('error') or r.status_code}")
                continue
            with self._lock:
                self._good = self.endpoints.index(url)
            if r.status_code != 200:
                raise EtcdError(f"etcd refused {path}: "
                                f"{doc.get('message') or doc.get('error') or r.status_code}")
            return doc
        raise EtcdUnavailable("no etcd member answered: " + "; ".join(errors))

    @staticmethod
    def _decode(url: str, r: httpx.Response) -> dict[str, Any]:
        try:
            doc = r.json()
        except (ValueError, json.JSONDecodeError):
            raise EtcdError(f"{url}: not an etcd answer (HTTP {r.status_code}): "
                            f"{r.text[:120]!r}") from None
        if not isinstance(doc, dict):
            raise EtcdError(f"{url}: not an etcd answer: {doc!r:.120}")
        return doc

    # -- keys -----------------------------------------------------------------------------

    def get(self, key: bytes) -> tuple[KeyValue | None, int]:
        """(the key or None, the store's revision when read)."""
        doc = self._post("kv/range", {"key": _b64(key)})
        kvs = doc.get("kvs") or []
        return (KeyValue.from_doc(kvs[0]) if kvs else None), _revision(doc)

    def get_prefix(self, prefix: bytes) -> list[KeyValue]:
        """Every key starting with ``prefix``, in key order."""
        doc = self._post("kv/range", {"key": _b64(prefix), "range_end": _b64(_prefix_end(prefix))})
        return [KeyValue.from_doc(d) for d in doc.get("kvs") or []]

    def put(self, key: bytes, value: bytes, lease: int = 0) -> int:
        """Set ``key`` unconditionally; the new revision."""
        body: dict[str, Any] = {"key": _b64(key), "value": _b64(value)}
        if lease:
            body["lease"] = str(lease)
        return _revision(self._post("kv/put", body))

    def delete(self, key: bytes) -> int:
        """Delete ``key``; how many keys went (0 or 1)."""
        return int(self._post("kv/deleterange", {"key": _b64(key)}).get("deleted", 0))

    def txn(self, compare: list[dict[str, Any]], success: list[dict[str, Any]],
            failure: list[dict[str, Any]] | None = None) -> tuple[bool, int, list[dict[str, Any]]]:
        """A raw transaction (gateway JSON): (succeeded, revision, responses)."""
        doc = self._post("kv/txn", {"compare": compare, "success": success,
                                    "failure": failure or []})
        return bool(doc.get("succeeded", False)), _revision(doc), doc.get("responses") or []

    def put_if(self, key: bytes, value: bytes, mod_revision: int, lease: int = 0
               ) -> tuple[bool, int]:
        """Compare-and-swap: set ``key`` only if its last change was at ``mod_revision`` (0:
        only if it does not exist); (done, revision after)."""
        put: dict[str, Any] = {"key": _b64(key), "value": _b64(value)}
        if lease:
            put["lease"] = str(lease)
        cmp = {"key": _b64(key), "target": "MOD", "result": "EQUAL",
               "mod_revision": str(mod_revision)}
        ok, rev, _ = self.txn([cmp], [{"request_put": put}])
        return ok, rev

    def create(self, key: bytes, value: bytes, lease: int = 0) -> tuple[bool, KeyValue | None]:
        """Set ``key`` only if it does not exist: (created, the key that was there if not)."""
        put: dict[str, Any] = {"key": _b64(key), "value": _b64(value)}
        if lease:
            put["lease"] = str(lease)
        cmp = {"key": _b64(key), "target": "CREATE", "result": "EQUAL", "create_revision": "0"}
        ok, _, responses = self.txn([cmp], [{"request_put": put}],
                                    [{"request_range": {"key": _b64(key)}}])
        if ok:
            return True, None
        kvs = (responses[0].get("response_range") or {}).get("kvs") if responses else None
        return False, (KeyValue.from_doc(kvs[0]) if kvs else None)

    def delete_if(self, key: bytes, mod_revision: int) -> bool:
        """Delete ``key`` only if its last change was at ``mod_revision``."""
        cmp = {"key": _b64(key), "target": "MOD", "result": "EQUAL",
               "mod_revision": str(mod_revision)}
        ok, _, _ = self.txn([cmp], [{"request_delete_range": {"key": _b64(key)}}])
        return ok

    # -- leases ---------------------------------------------------------------------------

    def grant(self, ttl_s: int) -> int:
        """A new lease of ``ttl_s`` seconds; its id."""
        doc = self._post("lease/grant", {"TTL": str(int(ttl_s))})
        if doc.get("error"):
            raise EtcdError(f"lease grant refused: {doc['error']}")
        return int(doc["ID"])

    def keepalive(self, lease: int) -> int:
        """Renew ``lease``; its TTL after renewal, 0 if it has expired (it cannot come back)."""
        doc = self._post("lease/keepalive", {"ID": str(lease)})
        return int((doc.get("result") or {}).get("TTL", 0))

    def revoke(self, lease: int) -> None:
        """End ``lease`` now (its keys go); a lease already gone is not an error."""
        try:
            self._post("lease/revoke", {"ID": str(lease)})
        except EtcdError as e:
            if "not found" not in str(e):
                raise

    def time_to_live(self, lease: int) -> int:
        """Seconds ``lease`` has left (-1 if it is gone)."""
        doc = self._post("kv/lease/timetolive", {"ID": str(lease)})
        return int(doc.get("TTL", -1))

    # -- watch ----------------------------------------------------------------------------

    def watch(self, key: bytes, start_revision: int, stop: threading.Event
              ) -> Iterator[KeyValue | None]:
        """Changes of ``key`` from ``start_revision`` on: a KeyValue per put, one with an
        empty value per delete, None every :data:`WATCH_IDLE_S` without news (so the caller
        can check ``stop``). Raises EtcdUnavailable when the stream breaks; the caller
        re-watches from the last revision it saw plus one."""
        body = {"create_request": {"key": _b64(key), "start_revision": str(start_revision)}}
        errors = []
        for url in self._order():
            try:
                with self._http.stream("POST", f"{url}/v3/watch", json=body,
                                       timeout=httpx.Timeout(self.timeout,
                                                             read=WATCH_IDLE_S)) as r:
                    if r.status_code != 200:
                        errors.append(f"{url}: HTTP {r.status_code}")
                        continue
                    for line in r.iter_lines():
                        if stop.is_set():
                            return
                        if not line.strip():
                            continue
                        result = json.loads(line).get("result") or {}
                        if result.get("canceled"):
                            raise EtcdError(f"watch of {key!r} canceled: "
                                            f"{result.get('cancel_reason', '')}")
                        for ev in result.get("events") or []:
                            kv = KeyValue.from_doc(ev.get("kv") or {})
                            yield kv if ev.get("type", "PUT") == "PUT" else \
                                KeyValue(kv.key, b"", kv.mod_revision, 0, 0, 0)
            except httpx.ReadTimeout:
                yield None
                return
            except (httpx.TransportError, ssl.SSLError, OSError, ValueError) as e:
                errors.append(f"{url}: {e or type(e).__name__}")
                continue
            return
        raise EtcdUnavailable("cannot watch: " + "; ".join(errors))

    # -- cluster --------------------------------------------------------------------------

    def status(self) -> list[MemberStatus]:
        """Each endpoint's own view (not failing over: the point is to see each one)."""
        out = []
        for url in self.endpoints:
            try:
                r = self._http.post(f"{url}/v3/maintenance/status", json={})
                doc = self._decode(url, r)
                if r.status_code != 200:
                    raise EtcdError(str(doc.get("message") or r.status_code))
                hdr = doc.get("header") or {}
                out.append(MemberStatus(url, True, str(doc.get("version", "")),
                                        int(hdr.get("member_id", 0)), int(doc.get("leader", 0)),
                                        int(doc.get("raftTerm", 0)), int(doc.get("dbSize", 0))))
            except (httpx.TransportError, ssl.SSLError, OSError, EtcdError) as e:
                out.append(MemberStatus(url, False, error=str(e) or type(e).__name__))
        return out

    def members(self) -> list[dict[str, Any]]:
        """The member list: name, id, peer and client URLs."""
        return list(self._post("cluster/member/list", {}).get("members") or [])


def _revision(doc: dict[str, Any]) -> int:
    return int((doc.get("header") or {}).get("revision", 0))


def _prefix_end(prefix: bytes) -> bytes:
    b = bytearray(prefix)
    while b:
        if b[-1] < 0xFF:
            b[-1] += 1
            return bytes(b)
        b.pop()
    return b"\x00"


def _unavailable(doc: dict[str, Any]) -> bool:
    """An answer from a member that cannot serve (no leader, stopping): try the next one."""
    text = str(doc.get("message") or doc.get("error") or "")
    return any(s in text for s in ("no leader", "leader changed", "server stopped",
                                   "too many requests", "timed out"))
