"""The relational database behind the cache examples: PostgreSQL from the OS packages, started in
a temporary directory on a loopback port and stopped afterwards; SQLite where PostgreSQL cannot
be had (no server binaries, or no psycopg), and the examples say so.

DATABASE_URL (a libpq conninfo or URL) uses an existing PostgreSQL instead."""

from __future__ import annotations

import contextlib
import glob
import os
import pwd
import shutil
import socket
import sqlite3
import subprocess
import tempfile
from collections.abc import Iterator
from typing import Any


class Unavailable(RuntimeError):
    """No PostgreSQL server binaries on this machine."""


def _pg_bindir() -> str:
    found = shutil.which("pg_ctl")
    if found:
        return os.path.dirname(os.path.realpath(found))
    # Debian keeps them out of PATH, under /usr/lib/postgresql/<major>/bin; Homebrew's are keg-only.
    found_all = [p for pattern in ("/usr/lib/postgresql/*/bin/pg_ctl", "/opt/homebrew/opt/postgresql@*/bin/pg_ctl",
                                   "/usr/local/opt/postgresql@*/bin/pg_ctl") for p in glob.glob(pattern)]
    candidates = sorted(found_all, key=lambda p: int("".join(c for c in p.split("/bin/")[0] if c.isdigit()) or 0))
    if not candidates:
        raise Unavailable("no pg_ctl on PATH or under /usr/lib/postgresql")
    return os.path.dirname(candidates[-1])


@contextlib.contextmanager
def temporary_postgres() -> Iterator[str]:
    """initdb into a temporary directory, pg_ctl start on 127.0.0.1:<free port>; yields a conninfo.
    As root the server runs as the `postgres` user (PostgreSQL refuses to run as root)."""
    bindir = _pg_bindir()
    top = tempfile.mkdtemp(prefix="ecl-example-pg-")
    prefix: list[str] = []
    if os.geteuid() == 0:
        user = "postgres"
        try:
            pw = pwd.getpwnam(user)
        except KeyError:
            user, pw = "nobody", pwd.getpwnam("nobody")
        os.chown(top, pw.pw_uid, pw.pw_gid)
        prefix = ["runuser", "-u", user, "--"]
    data = os.path.join(top, "data")
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    run = [*prefix, f"{bindir}/pg_ctl", "-D", data]
    try:
        subprocess.run([*prefix, f"{bindir}/initdb", "-D", data, "-A", "trust", "-U", "app", "-E", "UTF8",
                        "--no-sync"], check=True, capture_output=True, timeout=120)
        subprocess.run([*run, "-l", os.path.join(top, "log"), "-w", "-t", "60", "-o",
                        f"-h 127.0.0.1 -p {port} -k {top} -c fsync=off", "start"],
                       check=True, capture_output=True, timeout=90)
        yield f"host=127.0.0.1 port={port} user=app dbname=postgres"
    finally:
        if os.path.exists(os.path.join(data, "postmaster.pid")):
            subprocess.run([*run, "-m", "immediate", "-w", "-t", "30", "stop"], capture_output=True, timeout=60)
        shutil.rmtree(top, ignore_errors=True)


class Database:
    """A `products` table, on PostgreSQL (psycopg) or SQLite: the system of record."""

    def __init__(self, conn: Any, kind: str) -> None:
        self.conn, self.kind = conn, kind
        self.mark = "%s" if kind == "postgresql" else "?"

    def _run(self, sql: str, *args: Any) -> list[tuple[Any, ...]]:
        cur = self.conn.cursor()
        cur.execute(sql.replace("%s", self.mark), args)
        rows = cur.fetchall() if cur.description else []
        self.conn.commit()
        return list(rows)

    def seed(self, count: int) -> None:
        self._run("DROP TABLE IF EXISTS products")
        self._run("CREATE TABLE products (id INTEGER PRIMARY KEY, name TEXT NOT NULL, price_cents INTEGER NOT NULL)")
        cur = self.conn.cursor()
        cur.executemany(f"INSERT INTO products VALUES ({self.mark}, {self.mark}, {self.mark})",
                        [(i, f"product {i}", 100 + i) for i in range(count)])
        self.conn.commit()

    def product(self, product_id: int) -> dict[str, Any] | None:
        rows = self._run("SELECT id, name, price_cents FROM products WHERE id = %s", product_id)
        return dict(zip(("id", "name", "price_cents"), rows[0], strict=True)) if rows else None

    def set_price(self, product_id: int, cents: int) -> dict[str, Any]:
        """Change a price; returns the row as it is now."""
        rows = self._run("UPDATE products SET price_cents = %s WHERE id = %s RETURNING id, name, price_cents",
                         cents, product_id)
        return dict(zip(("id", "name", "price_cents"), rows[0], strict=True))


@contextlib.contextmanager
def database() -> Iterator[Database]:
    """DATABASE_URL's PostgreSQL; else a temporary PostgreSQL; else SQLite in a temporary file."""
    with contextlib.ExitStack() as stack:
        conninfo = os.environ.get("DATABASE_URL")
        try:
            import psycopg

            if not conninfo:
                conninfo = stack.enter_context(temporary_postgres())
            conn: Any = stack.enter_context(psycopg.connect(conninfo))
            yield Database(conn, "postgresql")
            return
        except (ImportError, Unavailable) as exc:
            print(f"PostgreSQL cannot be had here ({exc}): using SQLite instead")
        path = os.path.join(stack.enter_context(tempfile.TemporaryDirectory()), "products.sqlite3")
        conn = stack.enter_context(contextlib.closing(sqlite3.connect(path, check_same_thread=False)))
        yield Database(conn, "sqlite")
