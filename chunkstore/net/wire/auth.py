"""The handshake: mutual HMAC-SHA256 challenge-response over the cluster secret, and the
secret file (:func:`load_secret`).

Handshake
=========

The first frames on a connection must be, in order (req_id free)::

    client -> node   REQUEST  HELLO  "SOFS" + Nc            (Nc, Nn: 32 random bytes each)
    node -> client   RESPONSE HELLO  Nn + HMAC(secret, "sofs-wire-1\\0node\\0" + Nc + Nn)
    client -> node   REQUEST  AUTH   HMAC(secret, "sofs-wire-1\\0client\\0" + Nc + Nn)
    node -> client   RESPONSE AUTH   node id

The client checks the node's proof before sending its own (so it never talks to an impostor),
the node checks the client's; the role label makes one side's proof useless as the other's,
the two nonces make every proof single-use. Before AUTH succeeds the node accepts nothing
else (any other frame, or a body longer than the handshake's, is answered with ERROR
AuthError and the connection is closed); a failed proof is answered the same way.

The node's side runs in :mod:`chunkstore.net.node`; :func:`client_handshake` is the client's.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import secrets
import stat

from chunkstore.errors import AuthError, WireError
from chunkstore.net.wire.encode import encode_request
from chunkstore.net.wire.frames import MIN_SECRET_LEN, NONCE_SIZE, PREAUTH_MAX_BODY, PROOF_CONTEXT, PROOF_SIZE, Kind, Op
from chunkstore.net.wire.messages import Auth, AuthOk, ErrorReply, Frame, Hello, HelloReply
from chunkstore.net.wire.transport import BlockingConnection

ROLE_CLIENT = b"client"
ROLE_NODE = b"node"


def new_nonce() -> bytes:
    return secrets.token_bytes(NONCE_SIZE)


def proof(secret: bytes, role: bytes, client_nonce: bytes, node_nonce: bytes) -> bytes:
    """HMAC-SHA256 proving knowledge of ``secret`` for one role over both nonces."""
    msg = PROOF_CONTEXT + b"\0" + role + b"\0" + client_nonce + node_nonce
    return hmac.new(secret, msg, hashlib.sha256).digest()


def check_proof(secret: bytes, role: bytes, client_nonce: bytes, node_nonce: bytes, got: bytes) -> bool:
    return hmac.compare_digest(proof(secret, role, client_nonce, node_nonce), got)


def load_secret(path: str | os.PathLike) -> bytes:
    """Read the cluster secret file: owned by us, no group/other permission bits (0600 or
    0400), at least MIN_SECRET_LEN bytes after stripping surrounding whitespace.
    Raises AuthError with the reason."""
    path = os.fspath(path)
    try:
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC | os.O_NOFOLLOW)
    except OSError as e:
        raise AuthError(f"cannot open secret file {path}: {e.strerror}") from None
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            raise AuthError(f"secret file {path} is not a regular file")
        if st.st_mode & 0o077:
            raise AuthError(f"secret file {path} has mode {stat.S_IMODE(st.st_mode):04o}; it must be 0600 (chmod 600 {path})")
        if st.st_uid != os.geteuid():
            raise AuthError(f"secret file {path} is not owned by this user")
        raw = os.read(fd, 4097)
    finally:
        os.close(fd)
    secret = raw.strip()
    if len(raw) > 4096 or len(secret) < MIN_SECRET_LEN:
        raise AuthError(f"secret file {path} must hold {MIN_SECRET_LEN}..4096 bytes")
    return secret


def client_handshake(conn: BlockingConnection, secret: bytes) -> str:
    """Run the client side of the handshake; returns the node id. AuthError if either side's
    proof fails (the node's is checked first), WireError / OSError on a broken exchange."""
    nc = new_nonce()
    conn.send(encode_request(conn.next_id(), Hello(nc)))
    reply = _answer(conn, Op.HELLO).expect(HelloReply)
    if not check_proof(secret, ROLE_NODE, nc, reply.nonce, reply.proof):
        raise AuthError("the node failed to prove it knows the cluster secret")
    conn.send(encode_request(conn.next_id(), Auth(proof(secret, ROLE_CLIENT, nc, reply.nonce))))
    return _answer(conn, Op.AUTH).expect(AuthOk).node_id


def _answer(conn: BlockingConnection, op: Op) -> Frame:
    """The node's RESPONSE to our handshake request ``op``; AuthError if it refused."""
    f = conn.receive_frame(max_body=PREAUTH_MAX_BODY + PROOF_SIZE)
    if f.kind == Kind.ERROR:
        reply = f.expect(ErrorReply)
        exc = reply.to_exception()
        raise exc if isinstance(exc, AuthError) else AuthError(f"handshake refused: {reply.message}")
    if f.kind != Kind.RESPONSE or f.op != op:
        raise WireError(f"expected the node's {op.name} answer")
    return f
