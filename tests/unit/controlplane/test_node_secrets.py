"""The service's admin user and CA as the reconcilers and users see them: the password made once
(0600) and kept, the CA certificate served at /api/v1/ca.pem and printed by `elasticache-local ca`."""

from __future__ import annotations

import stat
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from controlplane import cli
from controlplane.reconciler.security import ADMIN_FILE, ADMIN_NAME, acl_users, load_admin
from controlplane.state.acl import AclUser, NodeAcl
from engine import Credentials, iam_password
from tests.unit.controlplane.conftest import World, whole_app

ADMIN = Credentials(ADMIN_NAME, "admin-Password-1")


def test_the_admin_password_is_made_once_private_and_kept(tmp_path: Path) -> None:
    first = load_admin(tmp_path)
    assert first.name == ADMIN_NAME and len(first.password) >= 32
    assert stat.S_IMODE((tmp_path / ADMIN_FILE).stat().st_mode) == 0o600
    assert load_admin(tmp_path) == first
    assert first.password not in repr(first)


def test_tokens_and_users_as_node_users() -> None:
    assert acl_users(NodeAcl(True, "required", (), False, ()), ADMIN) == ()
    tokens = acl_users(NodeAcl(True, "required", ("a" * 16, "b" * 16), True, ()), ADMIN)
    assert [(u.name, u.rules) for u in tokens] == [
        ("default", ("on", ">" + "a" * 16, ">" + "b" * 16, "nopass", "~*", "&*", "+@all"))]
    rbac = acl_users(NodeAcl(True, "required", (), False, (AclUser("app", ("on", "~app:*", "+get", "#ab")),)), ADMIN)
    assert [(u.name, u.rules) for u in rbac] == [("app", ("on", "~app:*", "+get", "#ab"))]
    # An IAM user's password is its internal one: what the IAM authenticator logs in with.
    iam = acl_users(NodeAcl(True, "required", (), False, (AclUser("robot", ("on", "~*", "+@all"), iam=True),),
                            iam_realm="1/us-east-1/rg"), ADMIN)
    assert [(u.name, u.rules) for u in iam] == [("robot", ("on", "~*", "+@all", ">" + iam_password(ADMIN, "robot")))]


def test_the_ca_certificate_download(world: World, capsys: pytest.CaptureFixture[str],
                                     monkeypatch: pytest.MonkeyPatch) -> None:
    with TestClient(whole_app(world), base_url="http://127.0.0.1:8379") as client:
        reply = client.get("/api/v1/ca.pem")
        assert reply.status_code == 200 and reply.headers["content-type"].startswith("application/x-pem-file")
        assert reply.text.startswith("-----BEGIN CERTIFICATE-----")
        assert reply.content == (world.data_dir / "tls" / "ca.crt").read_bytes()

        class Answer:
            def __init__(self, body: bytes) -> None:
                self._body = body

            def read(self) -> bytes:
                return self._body

            def __enter__(self) -> Answer:
                return self

            def __exit__(self, *exc: object) -> None:
                return None

        monkeypatch.setattr(cli.urllib.request, "urlopen",
                            lambda req, timeout=None: Answer(client.get(req.full_url.split("8379", 1)[1]).content))
        assert cli.main(["ca", "--port", "8379"]) == 0
    assert capsys.readouterr().out == reply.text
