"""Service updates against a live server with real nodes. This machine installs one patch
release per engine, so no update can exist here (the unit tests give the fake runtime two); what
this checks live is that a real node's reported version publishes nothing, and the operations'
wire forms with boto3, its paginators and its error parsing."""

from __future__ import annotations

from typing import Any

import pytest
from botocore.exceptions import ClientError

FAST = {"Delay": 0.1, "MaxAttempts": 100}


def test_one_installed_patch_means_no_update(ec: Any) -> None:
    ec.create_cache_cluster(CacheClusterId="su", Engine="redis", CacheNodeType="cache.t3.micro",
                            NumCacheNodes=1, EngineVersion="7.0")
    ec.get_waiter("cache_cluster_available").wait(CacheClusterId="su", WaiterConfig=FAST)
    try:
        assert ec.describe_service_updates(ServiceUpdateStatus=["available"])["ServiceUpdates"] == []
        pages = ec.get_paginator("describe_update_actions").paginate(CacheClusterIds=["su"],
                                                                      ShowNodeLevelUpdateStatus=True)
        assert [a for page in pages for a in page["UpdateActions"]] == []
        with pytest.raises(ClientError) as err:
            ec.batch_apply_update_action(ServiceUpdateName="elasticache-redis-7-0-99-update", CacheClusterIds=["su"])
        assert err.value.response["Error"]["Code"] == "ServiceUpdateNotFoundFault"
        assert err.value.response["ResponseMetadata"]["HTTPStatusCode"] == 404
        with pytest.raises(ClientError) as err:
            ec.describe_update_actions(CacheClusterIds=["su"], ReplicationGroupIds=["rg"])
        assert err.value.response["Error"]["Code"] == "InvalidParameterCombination"
    finally:
        ec.delete_cache_cluster(CacheClusterId="su")
        ec.get_waiter("cache_cluster_deleted").wait(CacheClusterId="su", WaiterConfig=FAST)
