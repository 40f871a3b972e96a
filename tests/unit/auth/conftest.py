"""A service with access control on (the fake runtime and clock), and boto3 clients that reach
its Query route in-process, signed by botocore as over the wire."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from starlette.applications import Starlette
from starlette.routing import Route

from tests.harness import boto3_over_asgi
from tests.unit.controlplane.conftest import World

ALICE = {"AccessKeyId": "AKIAALICE0000000001", "SecretAccessKey": "alice-secret", "AccountId": "111122223333",
         "UserName": "alice"}
BOB = {"AccessKeyId": "AKIABOB00000000000002", "SecretAccessKey": "bob-secret", "AccountId": "444455556666",
       "UserName": "bob"}


class SecureWorld(World):
    """World with settings of its own (credentials file, verify_signatures, policy file...)."""

    def __init__(self, data_dir: Path, **extra: Any) -> None:
        super().__init__(data_dir, **extra)
        self.app = Starlette(routes=[Route("/", self.service.query.endpoint, methods=["GET", "POST"])])

    def client(self, key: dict[str, str], secret: str | None = None, region: str = "us-east-1") -> Any:
        return boto3_over_asgi(self.app, access_key=key["AccessKeyId"], region=region,
                               secret_key=key["SecretAccessKey"] if secret is None else secret)


def write_credentials(tmp_path: Path) -> Path:
    path = tmp_path / "credentials.json"
    path.write_text(json.dumps([ALICE, BOB]))
    return path


@pytest.fixture
def verifying(tmp_path: Path) -> Iterator[SecureWorld]:
    w = SecureWorld(tmp_path / "data", verify_signatures=True, credentials_file=write_credentials(tmp_path))
    yield w
    w.service.store.close()
