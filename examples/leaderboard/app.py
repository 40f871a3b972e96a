"""A leaderboard on a sorted set: scores written through a replication group's primary endpoint,
rankings read from its reader endpoint (both found with DescribeReplicationGroups).

ZADD NX adds a player at 0, ZINCRBY adds points, ZREVRANGE gives the top N, ZREVRANK a player's
place (ZRANK counts from the lowest score). Each score event counts exactly once, also through
failovers: a Lua script applies an event only if its id is new (SADD), the write is confirmed on
a replica (WAIT), and the client retries the same event until it is.

Run: .venv/bin/python -m examples.leaderboard.app   (with `make serve` running)"""

from __future__ import annotations

import random
import threading
import time
import uuid
from typing import Any

import redis
from redis.backoff import NoBackoff
from redis.retry import Retry

from examples import common

GROUP_ID = "example-leaderboard"
APPLY_ONCE = """
if redis.call('SADD', KEYS[2], ARGV[1]) == 1 then
  return redis.call('ZINCRBY', KEYS[1], ARGV[2], ARGV[3])
end
return false
"""


def connect(ec: Any, group_id: str = GROUP_ID) -> tuple[redis.Redis, redis.Redis]:
    """(writer on the primary endpoint, reader on the reader endpoint); the group is created when missing."""
    primary, reader = common.group_endpoints(common.replication_group(ec, group_id, replicas=1))
    return tuple(redis.Redis(host=host, port=port, socket_timeout=1, socket_connect_timeout=1, decode_responses=True,
                             retry=Retry(NoBackoff(), 1)) for host, port in (primary, reader))  # type: ignore[return-value]


class Leaderboard:
    def __init__(self, writer: redis.Redis, reader: redis.Redis, name: str = "leaderboard", replicas: int = 1) -> None:
        self.writer, self.reader, self.key, self.replicas = writer, reader, name, replicas
        self.apply_once = writer.register_script(APPLY_ONCE)
        self.retries = 0
        self._lock = threading.Lock()

    def join(self, player: str) -> None:
        self.writer.zadd(self.key, {player: 0}, nx=True)

    def add(self, player: str, points: int, event_id: str | None = None, deadline: float = 30.0) -> None:
        """Add points once, confirmed on a replica; retried (same event id) through errors and failovers."""
        event_id = event_id or uuid.uuid4().hex
        give_up = time.monotonic() + deadline
        while True:
            try:
                pipe = self.writer.pipeline(transaction=False)
                self.apply_once(keys=[self.key, self.key + ":applied"], args=[event_id, points, player], client=pipe)
                pipe.execute_command("WAIT", self.replicas, 500)
                if pipe.execute()[-1] >= self.replicas:
                    return
            except redis.RedisError:
                pass
            with self._lock:
                self.retries += 1
            if time.monotonic() > give_up:
                raise TimeoutError(f"event {event_id} not confirmed within {deadline} s")
            time.sleep(0.05)

    def top(self, n: int) -> list[tuple[str, float]]:
        return [(p, s) for p, s in self.reader.zrevrange(self.key, 0, n - 1, withscores=True)]

    def place(self, player: str) -> int | None:
        """1 for the leader."""
        rank = self.reader.zrevrank(self.key, player)
        return None if rank is None else int(rank) + 1  # type: ignore[arg-type]


def play(board: Leaderboard, players: list[str], events: int, seed: int) -> dict[str, int]:
    """One game server: `events` random scores; returns the points it gave each player."""
    rng, given = random.Random(seed), dict.fromkeys(players, 0)
    for _ in range(events):
        player, points = rng.choice(players), rng.randint(1, 100)
        board.add(player, points)
        given[player] += points
    return given


def main() -> None:
    ec = common.elasticache()
    writer, reader = connect(ec)
    board = Leaderboard(writer, reader)
    writer.delete(board.key, board.key + ":applied")
    players = [f"player{i}" for i in range(20)]
    for p in players:
        board.join(p)
    started = time.perf_counter()
    results: list[dict[str, int]] = []
    threads = [threading.Thread(target=lambda s=s: results.append(play(board, players, 250, s))) for s in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    took = time.perf_counter() - started
    print(f"1000 score events from 4 threads in {took:.2f} s ({1000 / took:.0f}/s, each confirmed on a replica)")
    for place, (player, score) in enumerate(board.top(5), 1):
        print(f"{place}. {player} {score:.0f} (ZREVRANK says {board.place(player)})")
    common.delete(ec, group_id=GROUP_ID)


if __name__ == "__main__":
    main()
