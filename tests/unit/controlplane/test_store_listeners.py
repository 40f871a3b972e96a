"""Store and event-log listeners (what the live feed hears): every committed change in commit
order, told outside the store's lock, and a failing listener never fails the writer."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest

from controlplane.clock import FakeClock
from controlplane.state.events import EventLog
from controlplane.state.records import CacheCluster, CacheClusterSpec, Event, Record, ResourceKey
from controlplane.state.store import Store

KEY = ResourceKey(CacheCluster.KIND, "123456789012", "us-east-1", "web")


def _cluster() -> CacheCluster:
    spec = CacheClusterSpec(engine="redis", engine_version="7.0", node_type="cache.t3.micro", num_nodes=1, port=6379,
                            parameter_group="default.redis7", maintenance_window="sun:05:00-sun:06:00")
    return CacheCluster(account=KEY.account, region=KEY.region, id=KEY.id, created_at=datetime.now(UTC), spec=spec)


def _bump(c: CacheCluster) -> None:
    c.generation += 1


@pytest.fixture
def store(tmp_path: Path) -> Iterator[Store]:
    made = Store(tmp_path / "state.sqlite3")
    yield made
    made.close()


def test_writes_and_deletes_are_told_in_commit_order_from_many_threads(store: Store) -> None:
    told: list[tuple[ResourceKey, int | None]] = []
    store.listen(lambda key, record: told.append((key, None if record is None else record.generation)))
    store.create(_cluster())
    threads = [threading.Thread(target=lambda: [store.update(KEY, CacheCluster, _bump) for _ in range(200)])
               for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    store.delete(KEY)
    generations = [g for _, g in told]
    assert generations == [*range(1, 802), None]  # each write once, in the order they were committed


def test_listeners_run_outside_the_lock_and_their_failures_stay_theirs(store: Store,
                                                                       caplog: pytest.LogCaptureFixture) -> None:
    read_meanwhile: list[int] = []

    def reads_from_another_thread(key: ResourceKey, record: Record | None) -> None:
        # Were the store's lock held, this reader would wait for it and the join would time out.
        reader = threading.Thread(target=lambda: read_meanwhile.append(len(store.records(CacheCluster))))
        reader.start()
        reader.join(timeout=5)

    def fails(key: ResourceKey, record: Record | None) -> None:
        raise RuntimeError("a listener's own trouble")

    store.listen(fails)
    store.listen(reads_from_another_thread)
    assert store.create(_cluster())
    assert store.update(KEY, CacheCluster, _bump) is not None
    assert read_meanwhile == [1, 1]
    assert "store listener failed" in caplog.text
    store.reset()
    assert read_meanwhile == [1, 1, 0]


def test_a_listener_may_write_to_the_store(store: Store) -> None:
    told: list[int | None] = []

    def follow_up(key: ResourceKey, record: Record | None) -> None:
        told.append(None if record is None else record.generation)
        if record is not None and record.generation < 3:
            store.update(KEY, CacheCluster, _bump)  # told after this one, never deadlocked

    store.listen(follow_up)
    store.create(_cluster())
    assert told == [1, 2, 3]


def test_events_are_told_after_they_are_stored(store: Store) -> None:
    events = EventLog(store, FakeClock())
    seen: list[Event] = []
    events.listen(seen.append)
    events.listen(lambda event: (_ for _ in ()).throw(RuntimeError("boom")))
    events.emit("123456789012", "us-east-1", "cache-cluster", "web", "Cache cluster created")
    assert [e.message for e in seen] == ["Cache cluster created"]
    stored = store.events("123456789012", "us-east-1", seen[0].date, seen[0].date)
    assert [e.message for e in stored] == ["Cache cluster created"]


def test_an_update_that_changes_nothing_writes_nothing_and_tells_nobody(store: Store) -> None:
    """A resync re-reconciles every settled resource every few seconds: those no-op updates must
    not rewrite SQLite rows nor wake the live feed (found: every record rewritten every 2 s)."""
    store.create(_cluster())
    told: list[ResourceKey] = []
    store.listen(lambda key, record: told.append(key))
    writes = store._db.total_changes
    same = store.update(KEY, CacheCluster, lambda c: None)
    assert same is not None and same.generation == 1
    assert told == [] and store._db.total_changes == writes
    store.update(KEY, CacheCluster, _bump)
    assert told == [KEY] and store._db.total_changes == writes + 1
