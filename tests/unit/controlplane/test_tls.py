"""The service's CA (controlplane/tls.py): made once, owner-only key, node certificates that a
client verifying against the CA accepts for their addresses and names, and for nothing else."""

from __future__ import annotations

import datetime
import socket
import ssl
import stat
import threading
from pathlib import Path

import pytest
from cryptography import x509

from controlplane.tls import RENEW_BEFORE, LocalCa, subject_alt_names


def _handshake(ca: Path, cert: Path, key: Path, server_name: str) -> None:
    """A TLS handshake on a loopback socket: server with cert/key, client trusting `ca` only and
    checking `server_name`. Raises ssl.SSLError when the client refuses."""
    server_ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    server_ctx.load_cert_chain(cert, key)
    client_ctx = ssl.create_default_context(cafile=str(ca))
    with socket.create_server(("127.0.0.1", 0)) as listener:
        port = listener.getsockname()[1]

        def serve() -> None:
            conn, _ = listener.accept()
            with conn:
                try:
                    with server_ctx.wrap_socket(conn, server_side=True) as tls:
                        tls.recv(1)
                except (ssl.SSLError, OSError):
                    pass

        thread = threading.Thread(target=serve, daemon=True)
        thread.start()
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=5) as raw, \
                    client_ctx.wrap_socket(raw, server_hostname=server_name) as tls:
                tls.sendall(b"x")
        finally:
            thread.join(5)


def test_the_ca_is_made_once_with_an_owner_only_key(tmp_path: Path) -> None:
    first = LocalCa(tmp_path)
    pem = first.ca_pem()
    assert stat.S_IMODE((tmp_path / "tls" / "ca.key").stat().st_mode) == 0o600
    assert LocalCa(tmp_path).ca_pem() == pem  # a restarted service keeps the CA users trust
    ca = x509.load_pem_x509_certificate(pem)
    assert ca.extensions.get_extension_for_class(x509.BasicConstraints).value.ca


def test_an_issued_certificate_verifies_for_its_addresses_only(tmp_path: Path) -> None:
    ca = LocalCa(tmp_path)
    cert, key = ca.issue(["127.0.100.5", "127.0.100.200", "node-1.local"])
    assert stat.S_IMODE(key.stat().st_mode) == 0o600 and stat.S_IMODE(cert.stat().st_mode) == 0o600
    parsed = x509.load_pem_x509_certificate(cert.read_bytes())
    parsed.verify_directly_issued_by(x509.load_pem_x509_certificate(ca.ca_pem()))
    sans = parsed.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert [str(a) for a in sans.get_values_for_type(x509.IPAddress)] == ["127.0.100.5", "127.0.100.200"]
    assert sans.get_values_for_type(x509.DNSName) == ["node-1.local"]
    for name in ("127.0.100.5", "127.0.100.200", "node-1.local"):
        _handshake(ca.ca_path, cert, key, name)
    with pytest.raises(ssl.SSLCertVerificationError):
        _handshake(ca.ca_path, cert, key, "127.0.100.6")


def test_another_ca_does_not_verify_it(tmp_path: Path) -> None:
    cert, key = LocalCa(tmp_path / "a").issue(["127.0.100.5"])
    with pytest.raises(ssl.SSLCertVerificationError):
        _handshake(LocalCa(tmp_path / "b").ca_path, cert, key, "127.0.100.5")


def test_the_same_names_give_the_same_files_until_near_their_end(tmp_path: Path) -> None:
    ca = LocalCa(tmp_path)
    cert, key = ca.issue(["127.0.100.5", "127.0.100.6"])
    before = cert.read_bytes()
    assert ca.issue(["127.0.100.6", "127.0.100.5"]) == (cert, key)
    assert cert.read_bytes() == before
    parsed = x509.load_pem_x509_certificate(before)
    late = parsed.not_valid_after_utc - RENEW_BEFORE + datetime.timedelta(seconds=1)
    assert ca.issue(["127.0.100.5", "127.0.100.6"], now=late) == (cert, key)
    assert cert.read_bytes() != before  # made anew


def test_bad_names_are_refused_before_any_file(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="at least one"):
        LocalCa(tmp_path).issue([])
    with pytest.raises(ValueError, match="neither"):
        LocalCa(tmp_path).issue(["bad name"])
    assert not (tmp_path / "tls" / "certs").exists()
    assert [type(n) for n in subject_alt_names(["::1", "localhost"])] == [x509.IPAddress, x509.DNSName]
