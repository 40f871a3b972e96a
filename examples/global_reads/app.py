"""Global reads: a price catalogue written in one region and read locally in another, through an
ElastiCache global datastore; then a regional failover that moves the writes to the other region.

The writer finds the primary region's endpoint through DescribeGlobalReplicationGroups (the member
whose Role is PRIMARY) and DescribeReplicationGroups in that region; readers use their own
region's group. After FailoverGlobalReplicationGroup the writer looks again and follows the new
primary region. Nothing is hard-coded.

Run: .venv/bin/python -m examples.global_reads.app   (with `make serve` running)"""

from __future__ import annotations

import contextlib
import os
import statistics
import time
from typing import Any

import boto3
import redis

from examples import common
from tests.eventually import eventually

PRIMARY_REGION, SECONDARY_REGION = "us-east-1", "eu-west-1"
SUFFIX = "example-prices"
GROUP_ID = "example-prices"
NODE_TYPE = "cache.r6g.large"  # global datastores need M5/R5-class node types or newer


def client(region: str) -> Any:
    return boto3.client(
        "elasticache", endpoint_url=common.endpoint_url(), region_name=region,
        aws_access_key_id=os.environ.get("AWS_ACCESS_KEY_ID", "testing"),
        aws_secret_access_key=os.environ.get("AWS_SECRET_ACCESS_KEY", "testing"))


def global_id(ec: Any) -> str | None:
    """The id AWS gave the datastore (its region's prefix and our suffix), if it exists."""
    for g in ec.describe_global_replication_groups()["GlobalReplicationGroups"]:
        if g["GlobalReplicationGroupId"].endswith(f"-{SUFFIX}"):
            return str(g["GlobalReplicationGroupId"])
    return None


def setup() -> str:
    """The primary group, the global datastore and the secondary group, created when missing;
    returns the datastore's id once every member is associated."""
    home, away = client(PRIMARY_REGION), client(SECONDARY_REGION)
    if not common._exists(home.describe_replication_groups, ReplicationGroupId=GROUP_ID):
        home.create_replication_group(ReplicationGroupId=GROUP_ID, ReplicationGroupDescription="prices",
                                      Engine="redis", CacheNodeType=NODE_TYPE, NumCacheClusters=2,
                                      AutomaticFailoverEnabled=True, MultiAZEnabled=True)
    home.get_waiter("replication_group_available").wait(ReplicationGroupId=GROUP_ID, WaiterConfig=common.QUICK)
    gid = global_id(home)
    if gid is None:
        gid = home.create_global_replication_group(
            GlobalReplicationGroupIdSuffix=SUFFIX, GlobalReplicationGroupDescription="prices everywhere",
            PrimaryReplicationGroupId=GROUP_ID)["GlobalReplicationGroup"]["GlobalReplicationGroupId"]
    if not common._exists(away.describe_replication_groups, ReplicationGroupId=GROUP_ID):
        away.create_replication_group(ReplicationGroupId=GROUP_ID, ReplicationGroupDescription="prices, read here",
                                      GlobalReplicationGroupId=gid, NumCacheClusters=2)
    eventually(lambda: status(home, gid) == "available", timeout=120, interval=0.5, message="the datastore available")
    return str(gid)


def status(ec: Any, gid: str) -> str:
    return str(ec.describe_global_replication_groups(GlobalReplicationGroupId=gid)["GlobalReplicationGroups"][0][
        "Status"])


def primary_region(ec: Any, gid: str) -> str:
    members = ec.describe_global_replication_groups(GlobalReplicationGroupId=gid, ShowMemberInfo=True)[
        "GlobalReplicationGroups"][0]["Members"]
    return next(str(m["ReplicationGroupRegion"]) for m in members if m["Role"] == "PRIMARY")


def connect(region: str) -> redis.Redis:
    """The region's group, on its primary endpoint (writable only in the primary region)."""
    group = client(region).describe_replication_groups(ReplicationGroupId=GROUP_ID)["ReplicationGroups"][0]
    (host, port), _ = common.group_endpoints(group)
    return redis.Redis(host=host, port=port, socket_timeout=2, socket_connect_timeout=2, decode_responses=True)


class Catalogue:
    """Prices: written where the datastore's primary is, read in the reader's own region."""

    def __init__(self, gid: str) -> None:
        self.gid = gid
        self.writer_region = primary_region(client(PRIMARY_REGION), gid)
        self.writer = connect(self.writer_region)

    def follow_primary(self) -> None:
        """Look up the primary region again (after a regional failover) and write there."""
        self.writer_region = primary_region(client(PRIMARY_REGION), self.gid)
        self.writer = connect(self.writer_region)

    def set_price(self, sku: str, cents: int) -> None:
        self.writer.hset("prices", sku, cents)

    @staticmethod
    def price(reader: redis.Redis, sku: str) -> int | None:
        value = reader.hget("prices", sku)
        return None if value is None else int(value)


def replication_lag(catalogue: Catalogue, reader: redis.Redis, samples: int = 50) -> list[float]:
    """Seconds from a write in the primary region until the other region reads it, per sample."""
    lags = []
    for i in range(samples):
        marker = f"{time.monotonic()}-{i}"
        started = time.monotonic()
        catalogue.writer.set("lag-probe", marker)
        eventually(lambda m=marker: reader.get("lag-probe") == m, timeout=10, interval=0.0005)
        lags.append(time.monotonic() - started)
    return lags


def fail_over(gid: str, to_region: str) -> float:
    """FailoverGlobalReplicationGroup to `to_region`; returns the seconds until it is done."""
    home = client(PRIMARY_REGION)
    started = time.monotonic()
    home.failover_global_replication_group(GlobalReplicationGroupId=gid, PrimaryRegion=to_region,
                                           PrimaryReplicationGroupId=GROUP_ID)
    eventually(lambda: primary_region(home, gid) == to_region and status(home, gid) == "available", timeout=60,
               interval=0.05, message="the regional failover")
    return time.monotonic() - started


def teardown(gid: str) -> None:
    """Disassociate the secondary, delete the datastore and both groups."""
    home = client(PRIMARY_REGION)
    first = primary_region(home, gid)
    other = SECONDARY_REGION if first == PRIMARY_REGION else PRIMARY_REGION
    with contextlib.suppress(home.exceptions.ClientError):
        home.disassociate_global_replication_group(GlobalReplicationGroupId=gid, ReplicationGroupId=GROUP_ID,
                                                   ReplicationGroupRegion=other)
    eventually(lambda: status(home, gid) == "primary-only", timeout=30, interval=0.2)
    home.delete_global_replication_group(GlobalReplicationGroupId=gid, RetainPrimaryReplicationGroup=True)
    for region in (PRIMARY_REGION, SECONDARY_REGION):
        common.delete(client(region), group_id=GROUP_ID)


def main() -> None:
    gid = setup()
    catalogue = Catalogue(gid)
    away = connect(SECONDARY_REGION)
    for i in range(100):
        catalogue.set_price(f"sku-{i}", 1000 + i)
    eventually(lambda: Catalogue.price(away, "sku-99") == 1099, timeout=10)
    lags = sorted(replication_lag(catalogue, away))
    print(f"{gid}: written in {catalogue.writer_region}, read in {SECONDARY_REGION}; "
          f"replication lag median {statistics.median(lags) * 1000:.1f} ms, worst {lags[-1] * 1000:.1f} ms")
    took = fail_over(gid, SECONDARY_REGION)
    catalogue.follow_primary()
    catalogue.set_price("sku-0", 999)
    home_reader = connect(PRIMARY_REGION)
    eventually(lambda: Catalogue.price(home_reader, "sku-0") == 999, timeout=10)
    print(f"failed over to {catalogue.writer_region} in {took:.2f} s; a price written there is read in "
          f"{PRIMARY_REGION}")
    teardown(gid)


if __name__ == "__main__":
    main()
