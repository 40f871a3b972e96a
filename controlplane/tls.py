"""The service's own certificate authority: it signs every node's TLS certificate, and users
download its certificate to trust the nodes (as AWS's nodes chain to a public CA that clients
already trust, ours chain to this one, which they trust by being given it).

The CA is made once under the data directory (`tls/ca.key`, owner-only, and `tls/ca.crt`) and
kept across restarts, so certificates users have trusted stay trusted. Node certificates carry
every address a client may use (the node's own, the endpoints it may hold) as subjectAltNames:
IP addresses as IP entries, names as DNS entries. Keys are ECDSA P-256: a TLS handshake with one
costs a fraction of an RSA one, and the engine makes a handshake at every probe.
"""

from __future__ import annotations

import datetime
import hashlib
import ipaddress
import threading
from collections.abc import Sequence
from pathlib import Path

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from engine import private_dir, write_private

__all__ = ["CA_VALIDITY", "CERT_VALIDITY", "LocalCa", "new_ca", "new_certificate", "subject_alt_names"]

CA_VALIDITY = datetime.timedelta(days=3650)
# Under the 398 days some clients (Apple's) accept for a server certificate.
CERT_VALIDITY = datetime.timedelta(days=397)
RENEW_BEFORE = datetime.timedelta(days=30)  # an issued certificate closer to its end is made anew
_BACKDATE = datetime.timedelta(minutes=5)  # clocks of clients a little behind still accept it


def _key() -> ec.EllipticCurvePrivateKey:
    return ec.generate_private_key(ec.SECP256R1())


def _key_pem(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                             serialization.NoEncryption())


def new_ca(common_name: str, now: datetime.datetime) -> tuple[bytes, bytes]:
    """A self-signed CA: (private key PEM, certificate PEM)."""
    key = _key()
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - _BACKDATE)
        .not_valid_after(now + CA_VALIDITY)
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(x509.KeyUsage(digital_signature=True, key_cert_sign=True, crl_sign=True,
                                     content_commitment=False, key_encipherment=False, data_encipherment=False,
                                     key_agreement=False, encipher_only=False, decipher_only=False), critical=True)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .sign(key, hashes.SHA256())
    )
    return _key_pem(key), cert.public_bytes(serialization.Encoding.PEM)


def subject_alt_names(names: Sequence[str]) -> list[x509.GeneralName]:
    """IP entries for addresses (127.x included), DNS entries for host names. Raises ValueError."""
    found: list[x509.GeneralName] = []
    for name in dict.fromkeys(names):
        try:
            found.append(x509.IPAddress(ipaddress.ip_address(name)))
        except ValueError:
            if not name or len(name) > 253 or any(c.isspace() or c in "/\\\0" for c in name):
                raise ValueError(f"{name!r} is neither an IP address nor a host name") from None
            found.append(x509.DNSName(name))
    if not found:
        raise ValueError("a certificate needs at least one address or name")
    return found


def new_certificate(ca_key_pem: bytes, ca_cert_pem: bytes, names: Sequence[str], now: datetime.datetime
                    ) -> tuple[bytes, bytes]:
    """A server certificate for `names`, signed by the CA: (certificate PEM, private key PEM).
    The first name is its common name."""
    ca_key = serialization.load_pem_private_key(ca_key_pem, password=None)
    if not isinstance(ca_key, ec.EllipticCurvePrivateKey):
        raise ValueError("the CA key is not an EC key")
    ca_cert = x509.load_pem_x509_certificate(ca_cert_pem)
    key = _key()
    sans = subject_alt_names(names)
    cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, names[0][:64])]))
        .issuer_name(ca_cert.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - _BACKDATE)
        .not_valid_after(min(now + CERT_VALIDITY, ca_cert.not_valid_after_utc))
        .add_extension(x509.SubjectAlternativeName(sans), critical=False)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.KeyUsage(digital_signature=True, key_encipherment=False, key_cert_sign=False,
                                     crl_sign=False, content_commitment=False, data_encipherment=False,
                                     key_agreement=True, encipher_only=False, decipher_only=False), critical=True)
        # A replica is the client of its primary with the same certificate.
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH]),
                       critical=False)
        .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    return cert.public_bytes(serialization.Encoding.PEM), _key_pem(key)


class LocalCa:
    """The CA under `data_dir/tls`, made on first use; node certificates in `tls/certs`.
    Thread safe. `now` is for tests (certificates dated by a fake clock)."""

    def __init__(self, data_dir: Path, *, common_name: str = "elasticache-local CA") -> None:
        self._dir = Path(data_dir) / "tls"
        self._common_name = common_name
        self._lock = threading.Lock()

    @property
    def ca_path(self) -> Path:
        """The CA certificate file (PEM): what clients trust (redis-cli --cacert, ssl_ca_certs=)."""
        self._ensure()
        return self._dir / "ca.crt"

    def ca_pem(self) -> bytes:
        """The CA certificate, for download."""
        return self.ca_path.read_bytes()

    def issue(self, names: Sequence[str], now: datetime.datetime | None = None) -> tuple[Path, Path]:
        """(certificate path, key path) of a node certificate for `names` (addresses and host
        names; every one a subjectAltName). The same names give the same files, made again only
        when missing or within RENEW_BEFORE of their end. Raises ValueError for a bad name."""
        if not names:
            raise ValueError("a certificate needs at least one address or name")
        subject_alt_names(names)  # refuse bad names before touching any file
        now = now or datetime.datetime.now(datetime.UTC)
        label = hashlib.sha256("\n".join(sorted(set(names))).encode()).hexdigest()[:20]
        certs = self._dir / "certs"
        cert_path, key_path = certs / f"{label}.crt", certs / f"{label}.key"
        with self._lock:
            ca_key, ca_cert = self._ensure_locked()
            if self._valid(cert_path, key_path, ca_cert, now):
                return cert_path, key_path
            private_dir(certs)
            cert_pem, key_pem = new_certificate(ca_key, ca_cert, list(names), now)
            write_private(key_path, key_pem)
            write_private(cert_path, cert_pem)
        return cert_path, key_path

    def _ensure(self) -> None:
        with self._lock:
            self._ensure_locked()

    def _ensure_locked(self) -> tuple[bytes, bytes]:
        key_path, cert_path = self._dir / "ca.key", self._dir / "ca.crt"
        try:
            return key_path.read_bytes(), cert_path.read_bytes()
        except FileNotFoundError:
            pass
        private_dir(self._dir)
        key_pem, cert_pem = new_ca(self._common_name, datetime.datetime.now(datetime.UTC))
        # The key first: a crash between the two leaves no certificate without its key. Both are
        # this user's only, as everything under the data directory (engine/files.py).
        write_private(key_path, key_pem)
        write_private(cert_path, cert_pem)
        return key_pem, cert_pem

    @staticmethod
    def _valid(cert_path: Path, key_path: Path, ca_cert_pem: bytes, now: datetime.datetime) -> bool:
        """An issued certificate can be handed out again: signed by this CA, not near its end."""
        try:
            cert = x509.load_pem_x509_certificate(cert_path.read_bytes())
            cert.verify_directly_issued_by(x509.load_pem_x509_certificate(ca_cert_pem))
        except (OSError, ValueError, TypeError, InvalidSignature):
            return False
        return key_path.is_file() and cert.not_valid_after_utc - now > RENEW_BEFORE
