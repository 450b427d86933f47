"""Who may see the supervisor page: HTTP Basic authentication (RFC 7617) of the one user
``admin``, whose password is kept in a file that only its owner may read.

The password file holds the password on its first line (a trailing newline and trailing
white space are ignored). :func:`load_or_create` makes it on first start (mode 0600, 32
random URL-safe characters, created exclusively so an existing file is never overwritten)
and refuses one that group or others may read, or that is not a regular file. Credentials
are compared in constant time (:meth:`Credentials.check` compares digests of the whole
``user:password`` with :func:`hmac.compare_digest`, so neither the length nor the first
differing byte shows in the time taken).
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import os
import secrets
import stat
from dataclasses import dataclass, field
from pathlib import Path

ADMIN_USER = "admin"
PASSWORD_FILE = "supervise.password"  # in the data directory, unless --password-file
REALM = "sofs supervisor"
CHALLENGE = f'Basic realm="{REALM}", charset="UTF-8"'
PASSWORD_BYTES = 24  # token_urlsafe: 32 characters, 192 bits


class PasswordFileError(Exception):
    """The password file cannot be used: readable by group or others, not a regular file,
    empty, or unreadable or uncreatable (the message says which and what to do). Retrying
    does not help until the file is fixed."""


@dataclass(frozen=True)
class Credentials:
    """The user and password a request must present."""

    user: str
    password: str = field(repr=False)

    def check(self, authorization: bytes | None) -> bool:
        """Whether AUTHORIZATION (the raw ``Authorization`` header value, None when absent)
        is Basic authentication of this user with this password."""
        if authorization is None:
            return False
        scheme, _, token = authorization.strip().partition(b" ")
        if scheme.lower() != b"basic":
            return False
        try:
            given = base64.b64decode(token.strip(), validate=True)
        except (binascii.Error, ValueError):
            return False
        expected = f"{self.user}:{self.password}".encode()
        return hmac.compare_digest(hashlib.sha256(given).digest(),
                                   hashlib.sha256(expected).digest())


def basic_authorization(user: str, password: str) -> str:
    """The ``Authorization`` header value a client sends (for scripts and tests)."""
    return "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()


def default_password_file(home: Path) -> Path:
    return home / PASSWORD_FILE


def load_or_create(path: Path) -> tuple[Credentials, bool]:
    """The credentials of password file PATH, and whether it was created now (with a random
    password). PasswordFileError when it cannot be used."""
    created = False
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600)
    except FileExistsError:
        pass
    except OSError as e:
        raise PasswordFileError(f"cannot create the password file {path}: {e.strerror}") from None
    else:
        try:
            os.write(fd, (secrets.token_urlsafe(PASSWORD_BYTES) + "\n").encode())
            os.fsync(fd)
        finally:
            os.close(fd)
        created = True
    return Credentials(ADMIN_USER, read_password(path)), created


def read_password(path: Path) -> str:
    """The password in PATH, after checking that only its owner may read it."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC | os.O_NONBLOCK)
    except OSError as e:
        raise PasswordFileError(f"cannot read the password file {path}: {e.strerror}") from None
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            raise PasswordFileError(f"the password file {path} is not a regular file")
        if st.st_mode & 0o077:
            raise PasswordFileError(
                f"the password file {path} is open to its group or others (mode "
                f"{stat.S_IMODE(st.st_mode):04o}): chmod 600 {path}, and change the password "
                "if someone else may have read it")
        first = os.read(fd, 4096).split(b"\n", 1)[0]
    finally:
        os.close(fd)
    try:
        password = first.decode().rstrip()
    except UnicodeDecodeError:
        raise PasswordFileError(f"the password file {path} is not UTF-8 text") from None
    if not password:
        raise PasswordFileError(f"the password file {path} is empty: put a password on its "
                                "first line, or remove it to have one made")
    return password
