"""Input checks shared by the Ganesha and Samba renderers.

Both config languages are line- and token-based and neither has a reliable escape for every
character, so values are not escaped but *restricted*: a value that could end a quoted string,
start a new line, continue a line or trigger a substitution is refused with an
:class:`ExportError` before anything is rendered.
"""

from __future__ import annotations

import ipaddress
import re
import uuid
from pathlib import Path, PurePosixPath

from .errors import ExportError

# A volume name is also an NFSv4 pseudo path component, a Samba share name and a file name under
# the run directory: letters, digits, '.', '_' and '-', starting with a letter or digit.
VOLUME_NAME_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")

# Characters never accepted in a path written into a config file: quotes and backslashes (end or
# escape a quoted string), '%' (Samba substitutions such as %U), '$' (Ganesha env expansion) and
# anything that is not a printable character (newlines, tabs, control and format characters).
_PATH_FORBIDDEN = set("\"'\\%$`{};#")


def check_volume_name(name: str) -> str:
    if not isinstance(name, str) or not VOLUME_NAME_RE.fullmatch(name):
        raise ExportError(
            f"invalid volume name {name!r}: use 1-64 letters, digits, '.', '_' or '-', "
            "starting with a letter or digit"
        )
    return name


def check_uuid(value: str) -> uuid.UUID:
    try:
        return uuid.UUID(str(value))
    except ValueError:
        raise ExportError(f"invalid volume UUID {value!r}") from None


def check_path(path: Path | str, what: str = "path") -> Path:
    """An absolute, normalised path made only of safe printable characters."""
    text = str(path)
    if not text.startswith("/"):
        raise ExportError(f"{what} {text!r} must be absolute")
    bad = sorted({c for c in text if c in _PATH_FORBIDDEN or not c.isprintable()})
    if bad:
        raise ExportError(f"{what} {text!r} contains characters not allowed in a config file: {bad!r}")
    if text != text.strip():
        raise ExportError(f"{what} {text!r} has leading or trailing white space")
    parts = PurePosixPath(text).parts
    if ".." in parts or "." in text.split("/"):
        raise ExportError(f"{what} {text!r} must be normalised (no '.' or '..' components)")
    if len(text) > 1024:
        raise ExportError(f"{what} is longer than 1024 characters")
    return Path(str(PurePosixPath(text)))


def check_port(port: int, what: str = "port") -> int:
    if isinstance(port, bool) or not isinstance(port, int) or not 1 <= port <= 65535:
        raise ExportError(f"invalid {what} {port!r}: must be an integer from 1 to 65535")
    return port


def check_ip(address: str, what: str = "bind address") -> str:
    try:
        return str(ipaddress.ip_address(str(address)))
    except ValueError:
        raise ExportError(f"invalid {what} {address!r}: not an IPv4 or IPv6 address") from None


def check_cidr(cidr: str) -> str:
    """A network in CIDR form ('10.0.0.0/8', '192.168.1.7', '2001:db8::/32'), normalised.

    Host bits set ('10.1.2.3/8') are refused: they usually mean a typo in the prefix length.
    """
    try:
        net = ipaddress.ip_network(str(cidr).strip(), strict=True)
    except ValueError as exc:
        raise ExportError(f"invalid client network {cidr!r}: {exc}") from None
    return str(net)
