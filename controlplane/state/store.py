"""The resource store: SQLite (WAL) for durability, an in-memory mirror for fast reads.

The control plane is the only writer of its database, so the mirror is always exact: every
write goes to SQLite first and to the mirror after the commit. Reads never touch SQLite, which
keeps DescribeCacheClusters cheap. Records handed out are shared: callers must not mutate them;
`update` gives the mutation function its own deep copy.

Listeners (`listen`) hear of every committed write and delete, in commit order, after the store's
lock is released: a listener never holds up another writer, and its failure never reaches the
writer (it is logged).
"""

from __future__ import annotations

import logging
import sqlite3
import threading
from collections import deque
from collections.abc import Callable, Iterable
from datetime import UTC, datetime
from pathlib import Path
from typing import TypeVar

from controlplane.state.kinds import RECORD_TYPES
from controlplane.state.records import Event, Record, ResourceKey
from engine import make_private, open_private, private_dir

R = TypeVar("R", bound=Record)

# Told of each committed change: the key, and the record as stored (None: deleted).
Listener = Callable[[ResourceKey, "Record | None"], None]

log = logging.getLogger("elasticache_local.store")

_SCHEMA = """
CREATE TABLE IF NOT EXISTS resources (
    kind TEXT NOT NULL, account TEXT NOT NULL, region TEXT NOT NULL, id TEXT NOT NULL,
    seq INTEGER NOT NULL, body TEXT NOT NULL,
    PRIMARY KEY (kind, account, region, id)
);
CREATE TABLE IF NOT EXISTS events (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    account TEXT NOT NULL, region TEXT NOT NULL, source_type TEXT NOT NULL,
    source_id TEXT NOT NULL, message TEXT NOT NULL, date TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS events_by_scope ON events (account, region, date);
"""


def _utc_text(when: datetime) -> str:
    """How event dates are stored: UTC ISO text, whose order is the order of time."""
    return when.astimezone(UTC).isoformat()


class Store:
    def __init__(self, path: Path) -> None:
        private_dir(path.parent)
        # Made 0600 before SQLite opens it: SQLite gives its -wal and -shm files the database's mode.
        open_private(path, "ab").close()
        for extra in ("-wal", "-shm"):  # left by a version that did not do the above
            make_private(path.with_name(path.name + extra))
        self._db = sqlite3.connect(str(path), check_same_thread=False, isolation_level=None)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=NORMAL")
        self._db.executescript(_SCHEMA)
        self._lock = threading.RLock()
        # key -> (insertion sequence, record); the sequence keeps listings in creation order.
        self._mirror: dict[ResourceKey, tuple[int, Record]] = {}
        self._seq = 0
        self._listeners: list[Listener] = []
        # Changes committed and not yet told: appended under the lock (so in commit order),
        # told outside it by whichever writer holds `_telling` (one at a time, so in order).
        self._untold: deque[tuple[ResourceKey, Record | None]] = deque()
        self._telling = threading.Lock()
        for kind, account, region, rid, seq, body in self._db.execute(
            "SELECT kind, account, region, id, seq, body FROM resources ORDER BY seq"
        ):
            model = RECORD_TYPES.get(kind)
            if model is None:
                continue  # written by a newer version; left alone
            self._mirror[ResourceKey(kind, account, region, rid)] = (seq, model.model_validate_json(body))
            self._seq = max(self._seq, seq)

    # ---- resources ----------------------------------------------------------------------

    def get(self, key: ResourceKey, model: type[R]) -> R | None:
        entry = self._mirror.get(key)
        if entry is None:
            return None
        record = entry[1]
        assert isinstance(record, model)
        return record

    def records(self, model: type[R], account: str | None = None, region: str | None = None) -> list[R]:
        """Records of one kind in creation order, optionally of one account and region."""
        with self._lock:
            entries = sorted(self._mirror.items(), key=lambda item: item[1][0])
        out: list[R] = []
        for key, (_, record) in entries:
            if key.kind != model.KIND:
                continue
            if account is not None and key.account != account:
                continue
            if region is not None and key.region != region:
                continue
            assert isinstance(record, model)
            out.append(record)
        return out

    def seq(self, key: ResourceKey) -> int:
        """A record's creation sequence: never reused, the order of `records`; 0 if it is gone."""
        entry = self._mirror.get(key)
        return entry[0] if entry is not None else 0

    def resource_keys(self) -> list[ResourceKey]:
        with self._lock:
            return list(self._mirror)

    def listen(self, listener: Listener) -> None:
        """Call `listener` after every committed write and delete (from the writer's thread)."""
        self._listeners.append(listener)

    def create(self, record: Record) -> bool:
        """Insert a new record; False (and nothing written) if the key exists."""
        with self._lock:
            if record.key in self._mirror:
                return False
            self._seq += 1
            self._write(record, self._seq)
        self._tell()
        return True

    def update(self, key: ResourceKey, model: type[R], change: Callable[[R], None]) -> R | None:
        """Apply `change` to a copy of the current record and store it. None if it is gone."""
        with self._lock:
            entry = self._mirror.get(key)
            if entry is None:
                return None
            seq, current = entry
            assert isinstance(current, model)
            record = current.model_copy(deep=True)
            change(record)
            if record == current:
                # Nothing changed (a resync re-reconciling a settled resource): no write, and
                # no listener (the live feed) told of a change that did not happen.
                return record
            self._write(record, seq)
        self._tell()
        return record

    def delete(self, key: ResourceKey) -> None:
        with self._lock:
            self._db.execute(
                "DELETE FROM resources WHERE kind=? AND account=? AND region=? AND id=?", tuple(key)
            )
            if self._mirror.pop(key, None) is not None and self._listeners:
                self._untold.append((key, None))
        self._tell()

    def _write(self, record: Record, seq: int) -> None:
        key = record.key
        self._db.execute(
            "INSERT OR REPLACE INTO resources (kind, account, region, id, seq, body) VALUES (?,?,?,?,?,?)",
            (*key, seq, record.model_dump_json()),
        )
        self._mirror[key] = (seq, record)
        if self._listeners:
            self._untold.append((key, record))

    def _tell(self) -> None:
        """Tell the listeners of the changes not yet told, outside the store's lock. A writer that
        finds another telling leaves its change to it; the loop re-checks after releasing, so a
        change appended meanwhile is never left behind."""
        while self._untold:
            if not self._telling.acquire(blocking=False):
                return
            try:
                while self._untold:
                    key, record = self._untold.popleft()
                    for listener in self._listeners:
                        try:
                            listener(key, record)
                        except Exception:
                            log.exception("store listener failed on %s", key)
            finally:
                self._telling.release()

    # ---- events -------------------------------------------------------------------------

    def add_event(self, event: Event) -> None:
        with self._lock:
            self._db.execute(
                "INSERT INTO events (account, region, source_type, source_id, message, date)"
                " VALUES (?,?,?,?,?,?)",
                (event.account, event.region, event.source_type, event.source_id, event.message,
                 _utc_text(event.date)),
            )

    def events(
        self,
        account: str,
        region: str,
        start: datetime,
        end: datetime,
        source_type: str | None = None,
        source_id: str | None = None,
        *,
        after_seq: int | None = None,
        limit: int | None = None,
        newest_first: bool = False,
    ) -> list[Event]:
        """Events of one account and region in [start, end], oldest first (or newest first): those
        after `after_seq` (a page's marker), at most `limit` of them.

        The window and the page are asked of SQLite (by the (account, region, date) index), so a
        page costs what it returns rather than every event kept. Dates are stored as UTC ISO
        text, which sorts as time does; the exact comparison below stays as the final word."""
        query = ("SELECT source_type, source_id, message, date, seq FROM events WHERE account=? AND region=?"
                 " AND date>=? AND date<=?")
        args: list[str | int] = [account, region, _utc_text(start), _utc_text(end)]
        if after_seq is not None:
            query += " AND seq>?"
            args.append(after_seq)
        if source_type is not None:
            query += " AND source_type=?"
            args.append(source_type)
        if source_id is not None:
            query += " AND source_id=?"
            args.append(source_id)
        query += " ORDER BY seq DESC" if newest_first else " ORDER BY seq"
        if limit is not None:
            query += " LIMIT ?"
            args.append(limit)
        with self._lock:
            rows: Iterable[tuple[str, str, str, str, int]] = self._db.execute(query, args).fetchall()
        out = []
        for stype, sid, message, date, seq in rows:
            when = datetime.fromisoformat(date)
            if start <= when <= end:
                out.append(Event(account=account, region=region, source_type=stype, source_id=sid,
                                 message=message, date=when, seq=seq))
        return out

    # ---- whole store --------------------------------------------------------------------

    def reset(self) -> None:
        with self._lock:
            self._db.execute("DELETE FROM resources")
            self._db.execute("DELETE FROM events")
            if self._listeners:
                self._untold.extend((key, None) for key in self._mirror)
            self._mirror.clear()
        self._tell()

    def close(self) -> None:
        with self._lock:
            self._db.close()
