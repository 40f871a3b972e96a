"""The global datastore example against the live service: prices written in us-east-1 are read in
eu-west-1; a regional failover under a writer loses no acknowledged price; the writer follows the
new primary region; the teardown leaves nothing behind."""

from __future__ import annotations

import threading

import redis

from examples.global_reads import app
from tests.api.conftest import LiveServer
from tests.eventually import eventually


def test_global_reads(service: LiveServer) -> None:
    gid = app.setup()
    assert gid == "ldgnf-example-prices"
    catalogue = app.Catalogue(gid)
    assert catalogue.writer_region == "us-east-1"
    away = app.connect(app.SECONDARY_REGION)
    catalogue.set_price("sku-1", 100)
    eventually(lambda: app.Catalogue.price(away, "sku-1") == 100, timeout=10, message="the price in eu-west-1")
    try:
        away.hset("prices", "sku-1", 1)  # the secondary region is read-only
        raise AssertionError("a write in the secondary region was accepted")
    except redis.ReadOnlyError:
        pass
    lags = app.replication_lag(catalogue, away, samples=20)
    assert max(lags) < 1.0, lags

    # A writer keeps setting prices in us-east-1 while the primary moves to eu-west-1.
    acked: list[int] = []
    stop = threading.Event()

    def write() -> None:
        i = 0
        while not stop.is_set():
            try:
                catalogue.writer.hset("prices", f"w{i}", i)
                acked.append(i)
                i += 1
            except redis.RedisError:
                pass

    writer = threading.Thread(target=write)
    writer.start()
    eventually(lambda: len(acked) > 100, timeout=10)
    took = app.fail_over(gid, app.SECONDARY_REGION)
    stop.set()
    writer.join(10)
    print(f"\nregional failover in {took:.2f} s under a writer ({len(acked)} prices acknowledged)")
    new_primary = app.connect(app.SECONDARY_REGION)
    stored = new_primary.hgetall("prices")
    lost = [i for i in acked if f"w{i}" not in stored]
    assert not lost, f"{len(lost)} acknowledged prices lost"
    catalogue.follow_primary()
    assert catalogue.writer_region == "eu-west-1"
    catalogue.set_price("sku-1", 200)
    home = app.connect(app.PRIMARY_REGION)
    eventually(lambda: app.Catalogue.price(home, "sku-1") == 200, timeout=10, message="the price back in us-east-1")
    app.teardown(gid)
    assert app.global_id(app.client(app.PRIMARY_REGION)) is None
