"""Who is asking: the access keys a credentials file lists, and a request's identity.

The credentials file is JSON (a list of IAM access keys, as `aws iam create-access-key` prints
them, plus the account) or an INI file like ~/.aws/credentials (a section per user):

    [{"AccessKeyId": "AKIAALICE", "SecretAccessKey": "...", "AccountId": "111122223333", "UserName": "alice"}]

    [alice]
    aws_access_key_id = AKIAALICE
    aws_secret_access_key = ...
    aws_account_id = 111122223333
"""

from __future__ import annotations

import configparser
import json
import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

ACCOUNT_ID = re.compile(r"^\d{12}$")


class AccessConfigError(Exception):
    """A credentials or policy file that cannot be used; the message says what to fix."""


@dataclass(frozen=True, slots=True)
class AccessKey:
    access_key_id: str
    secret: str
    account: str
    user: str


@dataclass(frozen=True, slots=True)
class Identity:
    """Who a request is from: its account and region, and the access key it names (None: it
    names none). `verified`: the key's signature was checked."""

    account: str
    region: str
    access_key_id: str | None = None
    user: str | None = None
    verified: bool = False

    @property
    def principal(self) -> str:
        """The caller as IAM names it in an AccessDenied message."""
        if self.access_key_id is None:
            return "anonymous"
        return f"arn:aws:iam::{self.account}:user/{self.user or self.access_key_id}"


def account_for_key(key: str, default_account: str) -> str:
    """As moto does: an access key id of 12 digits is taken as the account id, so tests can act
    as several accounts; any other key maps to the default account."""
    return key if ACCOUNT_ID.match(key) else default_account


def load_keys(path: Path, default_account: str) -> dict[str, AccessKey]:
    """The access keys of a credentials file (JSON or INI), by access key id."""
    try:
        text = path.read_text()
    except OSError as exc:
        raise AccessConfigError(f"cannot read the credentials file {path}: {exc.strerror or exc}") from exc
    try:
        data = json.loads(text)
    except ValueError:
        entries = _ini_entries(path, text)
    else:
        entries = _json_entries(path, data)
    keys: dict[str, AccessKey] = {}
    for where, entry in entries:
        key_id, secret = entry.get("id", ""), entry.get("secret", "")
        if not key_id or not secret:
            raise AccessConfigError(f"{path}: {where} needs an access key id and a secret access key")
        if key_id in keys:
            raise AccessConfigError(f"{path}: access key {key_id} is listed twice")
        account = entry.get("account") or account_for_key(key_id, default_account)
        if not ACCOUNT_ID.match(account):
            raise AccessConfigError(f"{path}: {where}: account id {account!r} is not 12 digits")
        keys[key_id] = AccessKey(key_id, secret, account, entry.get("user") or key_id)
    if not keys:
        raise AccessConfigError(f"{path} lists no access key")
    return keys


def _json_entries(path: Path, data: object) -> list[tuple[str, dict[str, str]]]:
    if isinstance(data, Mapping) and "AccessKeys" in data:
        data = data["AccessKeys"]
    if not isinstance(data, list):
        raise AccessConfigError(f"{path}: expected a JSON list of access keys "
                                '([{"AccessKeyId": ..., "SecretAccessKey": ..., "AccountId": ..., "UserName": ...}])')
    out: list[tuple[str, dict[str, str]]] = []
    for n, item in enumerate(data):
        if not isinstance(item, Mapping) or not all(isinstance(v, str) for v in item.values()):
            raise AccessConfigError(f"{path}: entry {n} is not an object of strings")
        out.append((f"entry {n}", {"id": item.get("AccessKeyId", ""), "secret": item.get("SecretAccessKey", ""),
                                   "account": item.get("AccountId", ""), "user": item.get("UserName", "")}))
    return out


def _ini_entries(path: Path, text: str) -> list[tuple[str, dict[str, str]]]:
    parser = configparser.ConfigParser(interpolation=None)
    try:
        parser.read_string(text, str(path))
    except configparser.Error as exc:
        raise AccessConfigError(f"{path} is neither JSON nor an INI credentials file: {exc}") from exc
    return [(f"[{name}]", {"id": section.get("aws_access_key_id", ""),
                           "secret": section.get("aws_secret_access_key", ""),
                           "account": section.get("aws_account_id", ""), "user": name})
            for name, section in parser.items() if name != parser.default_section]
