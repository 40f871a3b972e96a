"""The leaderboard against a live replication group: concurrent score updates through the primary
endpoint, a TestFailover in the middle of them, and exact rankings read from the reader endpoint."""

from __future__ import annotations

import threading
import time
from collections import Counter

from examples import common
from examples.leaderboard.app import Leaderboard, connect, play
from tests.api.conftest import LiveServer
from tests.eventually import eventually

GROUP = "test-leaderboard"


def test_leaderboard(service: LiveServer) -> None:
    ec = common.elasticache()
    writer, reader = connect(ec, GROUP)
    board = Leaderboard(writer, reader)
    assert reader.info("replication")["role"] == "slave"  # reads really go to the replica
    players = [f"p{i}" for i in range(12)]
    for p in players:
        board.join(p)

    # Four game servers score concurrently; TestFailover happens while they do.
    totals: Counter[str] = Counter()
    errors: list[BaseException] = []
    lock = threading.Lock()

    def server(seed: int) -> None:
        try:
            given = play(board, players, 400, seed)
            with lock:
                totals.update(given)
        except BaseException as exc:
            errors.append(exc)

    old_primary = common.primary_of(ec, GROUP)
    threads = [threading.Thread(target=server, args=(s,)) for s in range(4)]
    started = time.monotonic()
    for t in threads:
        t.start()
    eventually(lambda: writer.zscore(board.key, "p0") or writer.zscore(board.key, "p1"), timeout=10)
    common.start_test_failover(ec, GROUP)
    eventually(lambda: common.primary_of(ec, GROUP) != old_primary, timeout=60, interval=0.05,
               message="the failover")
    assert any(t.is_alive() for t in threads)  # it happened under the writers
    for t in threads:
        t.join(120)
    took = time.monotonic() - started
    assert not errors and not any(t.is_alive() for t in threads)
    print(f"\n1600 events from 4 threads through a TestFailover in {took:.2f} s; {board.retries} retries")

    # Exactly the points given, no event lost or counted twice, ranked right, read from a replica.
    expected = sorted(((p, float(totals[p])) for p in players), key=lambda ps: (-ps[1], ps[0]))
    ec.get_waiter("replication_group_available").wait(ReplicationGroupId=GROUP, WaiterConfig={"Delay": 1})

    def ranked() -> bool:
        top = board.top(len(players))
        assert sorted(top, key=lambda ps: (-ps[1], ps[0])) == expected, top
        return True

    eventually(ranked, timeout=30, interval=0.1, message="the reader endpoint's ranking")
    top = board.top(len(players))
    assert [s for _, s in top] == sorted((s for _, s in top), reverse=True)
    assert [board.place(p) for p, _ in top] == list(range(1, len(players) + 1))
    assert board.top(3) == top[:3] and board.place("nobody") is None
    common.delete(ec, group_id=GROUP)
