"""The cluster CA: one certificate authority per cluster, and the certificates it issues.

``sofsctl etcd init`` makes it (if the data directory has none) to secure etcd: the etcd
members' server and peer certificates and the client certificate that sofs processes present
to etcd. The mutual-TLS work between all processes reuses the same CA and the same
:func:`issue` (a certificate's role is its ``OU``: ``node``, ``connector``, ``admin``,
``etcd``).

Files, under ``DATA/pki/`` (:data:`PKI_DIR`)::

    ca.crt            the CA certificate (public; copied to every host)
    ca.key            its private key (mode 0600; stays on the admin hosts)
    NAME.crt NAME.key a certificate and its key (key mode 0600)

Keys are ECDSA P-256 (small, fast handshakes, accepted by etcd's Go TLS stack); the CA is
valid 20 years, issued certificates 5 years (an archive outlives short certificate lives,
and renewal is ``sofsctl cert issue`` again). Library: ``cryptography`` (the de-facto X.509
library of Python; writing ASN.1 ourselves is not an option).
"""

from __future__ import annotations

import datetime
import ipaddress
import os
from dataclasses import dataclass

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from chunkstore.atomicfile import atomic_write
from chunkstore.errors import ConfigError

PKI_DIR = "pki"
CA_CERT = "ca.crt"
CA_KEY = "ca.key"
CA_DAYS = 20 * 365
CERT_DAYS = 5 * 365
ROLES = ("node", "connector", "admin", "etcd")


@dataclass(frozen=True)
class TlsFiles:
    """What a TLS client or server needs: the CA to trust, its own certificate and key."""

    ca: str
    cert: str
    key: str

    def check(self) -> None:
        """ConfigError naming the first file that is missing or unreadable."""
        for what, path in (("CA certificate", self.ca), ("certificate", self.cert),
                           ("key", self.key)):
            if not os.access(path, os.R_OK):
                raise ConfigError(f"{what} {path} is missing or unreadable")


def _now() -> datetime.datetime:
    return datetime.datetime.now(datetime.timezone.utc)


def _write_key(path: str, key: ec.EllipticCurvePrivateKey) -> None:
    atomic_write(path, key.private_bytes(serialization.Encoding.PEM,
                                         serialization.PrivateFormat.PKCS8,
                                         serialization.NoEncryption()), mode=0o600)


def _write_cert(path: str, cert: x509.Certificate) -> None:
    atomic_write(path, cert.public_bytes(serialization.Encoding.PEM), mode=0o644)


def ca_paths(data_dir: str | os.PathLike) -> tuple[str, str]:
    """(CA certificate, CA key) paths of a data directory."""
    pki = os.path.join(os.fspath(data_dir), PKI_DIR)
    return os.path.join(pki, CA_CERT), os.path.join(pki, CA_KEY)


def ensure_ca(data_dir: str | os.PathLike, cluster_name: str) -> bool:
    """Make the cluster CA in ``data_dir/pki`` unless one is there; True if it was made."""
    cert_path, key_path = ca_paths(data_dir)
    if os.path.exists(cert_path):
        if not os.path.exists(key_path):
            raise ConfigError(f"{cert_path} exists without its key {key_path}: copy the key "
                              "from the host that made the CA")
        return False
    os.makedirs(os.path.dirname(cert_path), mode=0o700, exist_ok=True)
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.ORGANIZATION_NAME, "sofs"),
                      x509.NameAttribute(NameOID.COMMON_NAME, f"sofs cluster CA {cluster_name}")])
    now = _now()
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name)
            .public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(minutes=5))
            .not_valid_after(now + datetime.timedelta(days=CA_DAYS))
            .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
            .add_extension(x509.KeyUsage(digital_signature=True, key_cert_sign=True,
                                         crl_sign=True, content_commitment=False,
                                         key_encipherment=False, data_encipherment=False,
                                         key_agreement=False, encipher_only=False,
                                         decipher_only=False), critical=True)
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()),
                           critical=False)
            .sign(key, hashes.SHA256()))
    _write_key(key_path, key)
    _write_cert(cert_path, cert)
    return True


def _load_ca(data_dir: str | os.PathLike) -> tuple[x509.Certificate, ec.EllipticCurvePrivateKey]:
    cert_path, key_path = ca_paths(data_dir)
    try:
        with open(cert_path, "rb") as f:
            cert = x509.load_pem_x509_certificate(f.read())
        with open(key_path, "rb") as f:
            key = serialization.load_pem_private_key(f.read(), password=None)
    except FileNotFoundError as e:
        raise ConfigError(f"no cluster CA: {e.filename} is missing (sofsctl etcd init makes "
                          "one)") from None
    except ValueError as e:
        raise ConfigError(f"the cluster CA in {os.path.dirname(cert_path)} is damaged: {e}") \
            from None
    if not isinstance(key, ec.EllipticCurvePrivateKey):
        raise ConfigError(f"{key_path}: not an EC key")
    return cert, key


def _san(hosts: list[str]) -> x509.SubjectAlternativeName:
    names: list[x509.GeneralName] = []
    for h in hosts:
        try:
            names.append(x509.IPAddress(ipaddress.ip_address(h)))
        except ValueError:
            names.append(x509.DNSName(h))
    return x509.SubjectAlternativeName(names)


def issue(data_dir: str | os.PathLike, out_dir: str | os.PathLike, name: str, role: str,
          hosts: list[str] | None = None, *, server: bool = False,
          common_name: str | None = None) -> TlsFiles:
    """Issue a certificate ``NAME.crt`` + ``NAME.key`` in ``out_dir``, signed by the cluster
    CA of ``data_dir``, for ``role`` (its OU) and ``common_name`` (default NAME); ``hosts``
    (names or IPs) go into the subject alternative names, which a server certificate needs.
    Replaces an existing pair."""
    if role not in ROLES:
        raise ConfigError(f"unknown role {role!r}: one of {', '.join(ROLES)}")
    ca_cert, ca_key = _load_ca(data_dir)
    out_dir = os.fspath(out_dir)
    os.makedirs(out_dir, mode=0o700, exist_ok=True)
    key = ec.generate_private_key(ec.SECP256R1())
    now = _now()
    usages = [ExtendedKeyUsageOID.CLIENT_AUTH] + ([ExtendedKeyUsageOID.SERVER_AUTH] if server else [])
    builder = (x509.CertificateBuilder()
               .subject_name(x509.Name([
                   x509.NameAttribute(NameOID.ORGANIZATION_NAME, "sofs"),
                   x509.NameAttribute(NameOID.ORGANIZATIONAL_UNIT_NAME, role),
                   x509.NameAttribute(NameOID.COMMON_NAME, common_name or name)]))
               .issuer_name(ca_cert.subject).public_key(key.public_key())
               .serial_number(x509.random_serial_number())
               .not_valid_before(now - datetime.timedelta(minutes=5))
               .not_valid_after(now + datetime.timedelta(days=CERT_DAYS))
               .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
               .add_extension(x509.ExtendedKeyUsage(usages), critical=False)
               .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(
                   ca_key.public_key()), critical=False))
    if hosts:
        builder = builder.add_extension(_san(hosts), critical=False)
    cert = builder.sign(ca_key, hashes.SHA256())
    files = TlsFiles(ca_paths(data_dir)[0], os.path.join(out_dir, f"{name}.crt"),
                     os.path.join(out_dir, f"{name}.key"))
    _write_key(files.key, key)
    _write_cert(files.cert, cert)
    return files


@dataclass(frozen=True)
class CertInfo:
    """What ``status`` shows of a certificate."""

    subject: str
    role: str
    not_after: str  # YYYY-MM-DD, UTC
    hosts: str      # the subject alternative names, comma-separated


def describe(path: str) -> CertInfo:
    """Subject, role, validity and SANs of a certificate file, for ``status`` displays."""
    with open(path, "rb") as f:
        cert = x509.load_pem_x509_certificate(f.read())
    ou = cert.subject.get_attributes_for_oid(NameOID.ORGANIZATIONAL_UNIT_NAME)
    try:
        san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
        hosts = ",".join(str(v) for v in san.get_values_for_type(x509.DNSName)
                         + [str(ip) for ip in san.get_values_for_type(x509.IPAddress)])
    except x509.ExtensionNotFound:
        hosts = ""
    return CertInfo(cert.subject.rfc4514_string(), str(ou[0].value) if ou else "",
                    cert.not_valid_after_utc.strftime("%Y-%m-%d"), hosts)
