"""Memcached SASL users: where a cache asks for them, and where their passwords come from.

AWS has no SASL for Memcached, so this is elasticache-local's own, shaped to need no new API:
- A memcached cluster asks for SASL with the tag `elasticache-local:sasl` = `true` on
  CreateCacheCluster. Its nodes then run memcached with SASL (`-S`, binary protocol only): a
  client must log in (SASL PLAIN) as one of the users, others are refused.
- The users and their passwords are the lines `user:password` of ONE credentials file named by the
  setting `memcached_sasl_file` (ELASTICACHE_LOCAL_MEMCACHED_SASL_FILE). Passwords live only
  there (and in the nodes' own owner-only SASL databases): never in the state store, a Describe
  answer, an event, a log line, the JSON API or the dashboard. So the file must be the service
  user's own and readable by no one else (as ssh insists for its keys); no error message here
  quotes a line of it.
- Editing the file changes the users of every running SASL node within a resync (a few seconds),
  without a restart (reconciler/sasl.py).
"""

from __future__ import annotations

import os
import re
import stat
from dataclasses import dataclass
from pathlib import Path

__all__ = ["SASL_TAG", "SERVICE_USER", "SaslFileError", "SaslUsers", "read_users", "sasl_tag"]

SASL_TAG = "elasticache-local:sasl"
# The service's own user on every secured node (reconciler/security.py): no customer may take it.
SERVICE_USER = "elasticache-local"
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.@-]{0,127}$")  # what a Cyrus sasldb and memcached take
MAX_FILE_BYTES = 1 << 20


class SaslFileError(ValueError):
    """The credentials file cannot be used; the message names the file and a line number, never
    a password."""


def sasl_tag(value: str | None) -> bool | None:
    """What the tag's value asks: True, False, or None for a value that is neither."""
    if value is None:
        return False
    return {"true": True, "false": False}.get(value.strip().lower())


def read_users(path: Path) -> dict[str, str]:
    """The file's users (name -> password), in file order. Raises SaslFileError: missing,
    not a regular file, not owned by this user or readable by others, a line that is not
    `name:password` (blank lines and `#` comments are fine), a name used twice or the service's
    own, no user at all."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC | os.O_NOFOLLOW)
    except OSError as exc:
        raise SaslFileError(f"cannot open the memcached SASL file {path}: {exc.strerror or exc}") from None
    with os.fdopen(fd, "rb") as f:
        info = os.fstat(f.fileno())
        if not stat.S_ISREG(info.st_mode):
            raise SaslFileError(f"the memcached SASL file {path} is not a regular file")
        if info.st_uid != os.geteuid() or stat.S_IMODE(info.st_mode) & 0o077:
            raise SaslFileError(f"the memcached SASL file {path} holds passwords: it must be yours and readable by "
                                f"you only (chmod 600 {path})")
        data = f.read(MAX_FILE_BYTES + 1)
    if len(data) > MAX_FILE_BYTES:
        raise SaslFileError(f"the memcached SASL file {path} is larger than {MAX_FILE_BYTES} bytes")
    try:
        text = data.decode()
    except UnicodeDecodeError:
        raise SaslFileError(f"the memcached SASL file {path} is not UTF-8 text") from None
    users: dict[str, str] = {}
    for number, raw in enumerate(text.splitlines(), 1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        name, colon, password = line.partition(":")
        where = f"{path} line {number}"
        if not colon or not password:
            raise SaslFileError(f"{where}: expected user:password")
        if not _NAME.match(name):
            raise SaslFileError(f"{where}: a user name is 1-128 of A-Z a-z 0-9 _ . @ - (starting with a letter "
                                "or digit)")
        if any(c.isspace() or c == "\0" for c in password):
            raise SaslFileError(f"{where}: the password of user {name} has whitespace")
        if name == SERVICE_USER:
            raise SaslFileError(f"{where}: {SERVICE_USER} is the service's own user")
        if name in users:
            raise SaslFileError(f"{where}: user {name} is listed twice")
        users[name] = password
    if not users:
        raise SaslFileError(f"the memcached SASL file {path} has no user:password line")
    return users


@dataclass
class SaslUsers:
    """The credentials file of `path`, read again only when it changed (its inode, size or
    modification or change time: a chmod too), so the reconciler may look at it on every pass."""

    path: Path
    _seen: tuple[int, int, int, int] | None = None
    _users: dict[str, str] | None = None

    def users(self) -> dict[str, str]:
        """As read_users, from the last reading while the file is unchanged. Raises SaslFileError."""
        try:
            info = os.stat(self.path)
        except OSError as exc:
            raise SaslFileError(f"cannot open the memcached SASL file {self.path}: {exc.strerror or exc}") from None
        seen = (info.st_ino, info.st_size, info.st_mtime_ns, info.st_ctime_ns)
        if seen != self._seen or self._users is None:
            self._users, self._seen = read_users(self.path), seen
        return dict(self._users)

    def __repr__(self) -> str:  # never the passwords
        return f"SaslUsers(path={str(self.path)!r})"
