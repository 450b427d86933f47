"""Telling systemd how a daemon is doing: the sd_notify protocol, without libsystemd.

A unit of ``Type=notify`` (``scripts/systemd/``) counts as started only once its main process
says ``READY=1``. systemd passes the place to say it in ``$NOTIFY_SOCKET``: the path of an
``AF_UNIX`` datagram socket, or, when it starts with ``@``, a name in the abstract namespace
(the ``@`` stands for the leading NUL byte). Each datagram is one or more ``VARIABLE=value``
lines; the ones sofs sends:

    READY=1         serving (``sofs-node`` listening, a FUSE mount answering)
    STOPPING=1      shutting down (requests in flight are finished, data is flushed)
    STATUS=text     one line for ``systemctl status``

Outside systemd (no ``$NOTIFY_SOCKET``) :func:`notify` does nothing and returns False, so a
daemon calls it unconditionally. Other address forms (``vsock:``) are not supported: False.
"""

from __future__ import annotations

import logging
import os
import socket

log = logging.getLogger("sofs.sdnotify")

SEND_TIMEOUT_S = 1.0  # a datagram to systemd is queued at once; never hang a daemon on it


def notify(state: str) -> bool:
    """Send STATE (``"READY=1"``, ``"STOPPING=1"``, ``"STATUS=..."``, or several such lines
    joined by newlines) to the service manager named by ``$NOTIFY_SOCKET``.

    True if the datagram was sent; False when there is no ``$NOTIFY_SOCKET``, its address
    form is not supported, or sending failed (logged: a service manager that waits for
    READY=1 will then time the start out). ValueError for a STATE that is not
    ``VARIABLE=value`` lines."""
    lines = state.split("\n")
    if not state or any("=" not in line or line.startswith("=") for line in lines):
        raise ValueError(f"an sd_notify state is VARIABLE=value lines, got {state!r}")
    address = os.environ.get("NOTIFY_SOCKET", "")
    if not address:
        return False
    if address.startswith("@"):
        target = b"\0" + os.fsencode(address[1:])
    elif address.startswith("/"):
        target = os.fsencode(address)
    else:
        log.warning("NOTIFY_SOCKET=%s: unsupported address form; not telling the service "
                    "manager %s", address, lines[0])
        return False
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC) as s:
            s.settimeout(SEND_TIMEOUT_S)
            s.sendto(state.encode(), target)
    except OSError as e:
        log.warning("cannot tell the service manager %s (NOTIFY_SOCKET=%s): %s",
                    lines[0], address, e)
        return False
    return True
