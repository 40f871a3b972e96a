"""Query codec speed: serialize DescribeCacheClusters with 50 fully populated clusters; and
what access control adds to every request when it is on (SigV4 verification, a policy check).

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

from controlplane.auth.access import Access
from controlplane.auth.keys import AccessKey, Identity
from controlplane.auth.policy import PolicySet, load_policies
from controlplane.auth.sigv4 import HttpRequest, SignatureVerifier
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


def signed_request(key: AccessKey, body: bytes) -> HttpRequest:
    """`body` POSTed and signed as boto3 signs it (botocore's SigV4Auth, its usual headers)."""
    from botocore.auth import SigV4Auth
    from botocore.awsrequest import AWSRequest
    from botocore.credentials import Credentials

    request = AWSRequest("POST", "http://127.0.0.1:8379/", data=body, headers={
        "Content-Type": "application/x-www-form-urlencoded; charset=utf-8", "User-Agent": "Boto3/1.34 bench"})
    SigV4Auth(Credentials(key.access_key_id, key.secret), "elasticache", "us-east-1").add_auth(request)
    headers = [(k.lower(), v) for k, v in request.headers.items()]
    return HttpRequest("POST", "/", "", [("host", "127.0.0.1:8379"), *headers, ("content-length", str(len(body)))],
                       body)


def policy_set() -> PolicySet:
    import json
    import tempfile

    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "policy.json"
        path.write_text(json.dumps({"bench": {"Statement": [
            {"Effect": "Allow", "Action": "elasticache:Describe*", "Resource": "*"},
            {"Effect": "Allow", "Action": "elasticache:Create*", "Resource": "arn:aws:elasticache:*:*:cluster:b-*",
             "Condition": {"StringEquals": {"aws:RequestedRegion": "us-east-1"}}},
            {"Effect": "Deny", "Action": "elasticache:Delete*", "Resource": "*",
             "Condition": {"StringEquals": {"aws:ResourceTag/env": "prod"}}}]}}))
        return load_policies(path)


def access_costs(body: bytes) -> tuple[float, float, float]:
    """Seconds per request: identify with signatures off (the default), verify a signature,
    authorize against a three-statement policy."""
    key = AccessKey("AKIABENCH0000000000", "bench-secret", "123456789012", "bench")
    request = signed_request(key, body)
    plain = Access(default_account="123456789012", default_region="us-east-1")
    verifier = SignatureVerifier({key.access_key_id: key})
    verifier.verify(request)  # a wrong signature would raise here, not be timed
    policed = Access(default_account="123456789012", default_region="us-east-1", policies=policy_set())
    who = Identity("123456789012", "us-east-1", key.access_key_id, "bench", verified=True)
    params = {"ShowCacheNodeInfo": True}
    policed.authorize("DescribeCacheClusters", params, who)
    return (per_call(lambda: plain.identify(request, {})), per_call(lambda: verifier.verify(request)),
            per_call(lambda: policed.authorize("DescribeCacheClusters", params, who)))


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
    plain, verify, authorize = access_costs(b"Action=DescribeCacheClusters&Version=2015-02-02&ShowCacheNodeInfo=true")
    print(f"{'identify, signatures not checked (default)':<44}{plain * 1e6:>9.1f} us")
    print(f"{'verify a SigV4 signature (botocore signer)':<44}{verify * 1e6:>9.1f} us{'< 100 us':>10}")
    print(f"{'authorize against a 3-statement policy':<44}{authorize * 1e6:>9.1f} us")


if __name__ == "__main__":
    main()
