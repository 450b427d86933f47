"""The node wire protocol, version 1: one module per job, the protocol's names re-exported here.

``frames``     the format, byte by byte: header, op codes, body bounds, error codes (start here)
``messages``   the request and answer values, and :class:`Frame` (a decoded frame)
``encode``     values -> frame bytes;  ``decode``  frame bytes -> values (pure, WireError only)
``auth``       the HMAC handshake and the cluster secret file
``transport``  whole frames over a blocking socket (client) or a trio stream (node)

Callers outside the package use this namespace (``from chunkstore.net import wire``;
``wire.Put``, ``wire.encode_request`` ...); modules inside chunkstore.net import from the
submodule that defines a name.
"""

from chunkstore.errors import AuthError, WireError
from chunkstore.net.wire.auth import ROLE_CLIENT, ROLE_NODE, check_proof, client_handshake, load_secret, new_nonce, proof
from chunkstore.net.wire.decode import decode_body, decode_frame
from chunkstore.net.wire.encode import (
    encode_end,
    encode_error,
    encode_exception,
    encode_items,
    encode_request,
    encode_response,
    join,
    validate_id,
)
from chunkstore.net.wire.frames import (
    CHECKSUM_SIZE,
    ERROR_CODES,
    HEADER_SIZE,
    HELLO_MAGIC,
    KEY_SIZE,
    MAX_DATA,
    MAX_FRAME,
    MAX_ID_LEN,
    MAX_ITEMS,
    MAX_MAP,
    MAX_MESSAGE,
    MAX_ROOTS,
    MIN_SECRET_LEN,
    NONCE_SIZE,
    PIECE_SIZE,
    PREAUTH_MAX_BODY,
    PROOF_CONTEXT,
    PROOF_SIZE,
    WIRE_VERSION,
    Header,
    Kind,
    MiB,
    Op,
    Parts,
    checksum,
    error_code,
    parse_header,
)
from chunkstore.net.wire.messages import (
    DISK_REQUESTS,
    Auth,
    AuthOk,
    Blob,
    Body,
    Check,
    Compact,
    Delete,
    DiskRequest,
    ErrorReply,
    Fence,
    FenceHeld,
    Frame,
    Get,
    Has,
    Hello,
    HelloReply,
    Items,
    MapDoc,
    MapEpoch,
    MapGet,
    MapPut,
    Piece,
    Pieces,
    Ping,
    Pong,
    Put,
    Request,
    Response,
    RootFound,
    RootGet,
    RootHeld,
    RootList,
    RootPut,
    RootSeqs,
    Stats,
    StreamEnd,
)
from chunkstore.net.wire.transport import BlockingConnection, TrioConnection

__all__ = [
    # errors the protocol raises (defined in chunkstore.errors)
    "AuthError", "WireError",
    # frames
    "CHECKSUM_SIZE", "ERROR_CODES", "HEADER_SIZE", "HELLO_MAGIC", "KEY_SIZE", "MAX_DATA", "MAX_FRAME", "MAX_ID_LEN",
    "MAX_ITEMS", "MAX_MAP", "MAX_MESSAGE", "MAX_ROOTS", "MIN_SECRET_LEN", "NONCE_SIZE", "PIECE_SIZE", "PREAUTH_MAX_BODY",
    "PROOF_CONTEXT", "PROOF_SIZE", "WIRE_VERSION", "Header", "Kind", "MiB", "Op", "Parts", "checksum", "error_code",
    "parse_header",
    # messages
    "DISK_REQUESTS", "Auth", "AuthOk", "Blob", "Body", "Check", "Compact", "Delete", "DiskRequest", "ErrorReply", "Frame",
    "Fence", "FenceHeld", "Get", "Has", "Hello", "HelloReply", "Items", "MapDoc", "MapEpoch", "MapGet", "MapPut", "Piece",
    "Pieces", "Ping",
    "Pong", "Put", "Request", "Response", "RootFound", "RootGet", "RootHeld", "RootList", "RootPut", "RootSeqs", "Stats",
    "StreamEnd",
    # encode / decode
    "decode_body", "decode_frame", "encode_end", "encode_error", "encode_exception", "encode_items", "encode_request",
    "encode_response", "join", "validate_id",
    # auth
    "ROLE_CLIENT", "ROLE_NODE", "check_proof", "client_handshake", "load_secret", "new_nonce", "proof",
    # transport
    "BlockingConnection", "TrioConnection",
]
