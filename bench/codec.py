"""Query codec speed: serialize DescribeCacheClusters with 50 fully populated clusters.

Run: .venv/bin/python bench/codec.py   (a benchmark, not a test: it prints, it asserts nothing)
The API-level budget is 1.5 ms for the whole request; the codec's share target is < 0.5 ms.
"""

from __future__ import annotations

import sys
import timeit
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from controlplane.protocol.model import ApiModel
from controlplane.protocol.parser import parse
from controlplane.protocol.serializer import serialize_result


def cluster(i: int) -> dict[str, Any]:
    created = datetime(2024, 5, 1, 12, 0, i % 60, 123000, tzinfo=UTC)
    cid = f"bench-cluster-{i:03d}"
    return {
        "CacheClusterId": cid,
        "ConfigurationEndpoint": {"Address": f"{cid}.cfg.local", "Port": 6379},
        "ClientDownloadLandingPage": "https://console.aws.amazon.com/elasticache/home#client-download:",
        "CacheNodeType": "cache.t3.micro",
        "Engine": "redis",
        "EngineVersion": "7.0.15",
        "CacheClusterStatus": "available",
        "NumCacheNodes": 2,
        "PreferredAvailabilityZone": "us-east-1a",
        "CacheClusterCreateTime": created,
        "PreferredMaintenanceWindow": "sun:05:00-sun:06:00",
        "PendingModifiedValues": {"NumCacheNodes": 3, "CacheNodeIdsToRemove": ["0002"],
                                  "EngineVersion": "7.1", "TransitEncryptionEnabled": True},
        "NotificationConfiguration": {"TopicArn": "arn:aws:sns:us-east-1:123456789012:topic",
                                      "TopicStatus": "active"},
        "CacheSecurityGroups": [{"CacheSecurityGroupName": "default", "Status": "active"}],
        "CacheParameterGroup": {"CacheParameterGroupName": "default.redis7",
                                "ParameterApplyStatus": "in-sync", "CacheNodeIdsToReboot": []},
        "CacheSubnetGroupName": "default",
        "CacheNodes": [
            {"CacheNodeId": f"000{n}", "CacheNodeStatus": "available", "CacheNodeCreateTime": created,
             "Endpoint": {"Address": f"127.0.{i}.{n}", "Port": 6379}, "ParameterGroupStatus": "in-sync",
             "CustomerAvailabilityZone": "us-east-1a"}
            for n in (1, 2)
        ],
        "AutoMinorVersionUpgrade": True,
        "SecurityGroups": [{"SecurityGroupId": "sg-0123456789abcdef0", "Status": "active"}],
        "ReplicationGroupId": "bench-rg",
        "SnapshotRetentionLimit": 5,
        "SnapshotWindow": "03:00-04:00",
        "AuthTokenEnabled": False,
        "TransitEncryptionEnabled": False,
        "AtRestEncryptionEnabled": False,
        "ARN": f"arn:aws:elasticache:us-east-1:123456789012:cluster:{cid}",
        "ReplicationGroupLogDeliveryEnabled": False,
        "LogDeliveryConfigurations": [],
        "NetworkType": "ipv4",
        "IpDiscovery": "ipv4",
        "TransitEncryptionMode": "preferred",
    }


def brief(i: int) -> dict[str, Any]:
    """The members DescribeCacheClusters shows without ShowCacheNodeInfo for a plain cluster."""
    full = cluster(i)
    keep = ("CacheClusterId", "CacheNodeType", "Engine", "EngineVersion", "CacheClusterStatus",
            "NumCacheNodes", "PreferredAvailabilityZone", "CacheClusterCreateTime",
            "PreferredMaintenanceWindow", "PendingModifiedValues", "CacheSecurityGroups",
            "CacheParameterGroup", "CacheSubnetGroupName", "AutoMinorVersionUpgrade", "ARN")
    return {k: full[k] for k in keep} | {"PendingModifiedValues": {}}


def per_call(fn: Any, budget: float = 1.0) -> float:
    timer = timeit.Timer(fn)
    number, _ = timer.autorange()
    runs = max(3, int(budget / max(timer.timeit(number) / number * number, 1e-9)))
    return min(timer.repeat(repeat=min(runs, 7), number=number)) / number


def main() -> None:
    api = ApiModel()
    result = {"CacheClusters": [cluster(i) for i in range(50)], "Marker": "next"}
    body = serialize_result(api, "DescribeCacheClusters", result, "req-0")  # warm: compiles once
    ser = per_call(lambda: serialize_result(api, "DescribeCacheClusters", result, "req-0"))
    small = {"CacheClusters": [brief(i) for i in range(50)]}
    small_body = serialize_result(api, "DescribeCacheClusters", small, "req-0")
    ser_small = per_call(lambda: serialize_result(api, "DescribeCacheClusters", small, "req-0"))
    request = parse_qsl("Action=DescribeCacheClusters&Version=2015-02-02&ShowCacheNodeInfo=true"
                        "&MaxRecords=100", keep_blank_values=True)
    par = per_call(lambda: parse(api, request))
    print(f"{'what':<44}{'per call':>12}{'target':>10}")
    print(f"{'serialize DescribeCacheClusters, 50 clusters':<44}{ser * 1e3:>9.3f} ms{'< 0.5 ms':>10}"
          f"   ({len(body)} bytes)")
    print(f"{'serialize the same, 50 brief clusters':<44}{ser_small * 1e3:>9.3f} ms{'':>10}"
          f"   ({len(small_body)} bytes)")
    print(f"{'parse DescribeCacheClusters request':<44}{par * 1e6:>9.1f} us")


if __name__ == "__main__":
    main()
