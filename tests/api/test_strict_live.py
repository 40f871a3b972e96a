"""The strict profile over real HTTP with real nodes: boto3 and the aws cli sign, the service
verifies, a policy decides, the JSON API wants the admin token; and everything the service and
its nodes write under the data directory is this user's only, whatever the umask."""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import boto3
import pytest
from botocore.exceptions import ClientError

from tests.api.conftest import LiveServer, running_server
from tests.eventually import eventually

TOKEN = "strict-admin-token"
ALICE = ("AKIAALICELIVE0000001", "alice-live-secret")
POLICY = {"alice": {"Version": "2012-10-17", "Statement": [
    {"Effect": "Allow", "Action": ["elasticache:Describe*", "elasticache:CreateCacheCluster",
                                   "elasticache:CreateSnapshot"], "Resource": "*"},
    {"Effect": "Deny", "Action": "elasticache:DeleteCacheCluster", "Resource": "*"}]}}
FAST = {"Delay": 0.1, "MaxAttempts": 600}


@pytest.fixture(scope="module")
def strict(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    tmp = tmp_path_factory.mktemp("strict")
    credentials = tmp / "credentials"  # the INI form, as ~/.aws/credentials
    credentials.write_text(f"[alice]\naws_access_key_id = {ALICE[0]}\naws_secret_access_key = {ALICE[1]}\n"
                           "aws_account_id = 111122223333\n")
    policy = tmp / "policy.json"
    policy.write_text(json.dumps(POLICY))
    (tmp / "data").mkdir(mode=0o755)  # as a user might have made it: the service narrows it
    old = os.umask(0o022)  # the usual umask, inherited by the server: the modes below are its own doing
    try:
        with running_server("process", tmp / "data", ELASTICACHE_LOCAL_PROFILE="strict",
                            ELASTICACHE_LOCAL_CREDENTIALS_FILE=str(credentials),
                            ELASTICACHE_LOCAL_POLICY_FILE=str(policy),
                            ELASTICACHE_LOCAL_ADMIN_TOKEN=TOKEN) as live:
            os.umask(old)
            yield live
    finally:
        os.umask(old)


def _client(live: LiveServer, secret: str = ALICE[1]) -> Any:
    return boto3.client("elasticache", endpoint_url=live.url, region_name="us-east-1",
                        aws_access_key_id=ALICE[0], aws_secret_access_key=secret)


def _aws(live: LiveServer, secret: str, *args: str) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ, AWS_ACCESS_KEY_ID=ALICE[0], AWS_SECRET_ACCESS_KEY=secret, AWS_DEFAULT_REGION="us-east-1")
    return subprocess.run([str(Path(sys.executable).with_name("aws")), "elasticache", "--endpoint-url", live.url,
                           "--output", "json", *args], env=env, capture_output=True, text=True, timeout=120)


def test_boto3_and_the_aws_cli_are_verified(strict: LiveServer) -> None:
    assert _client(strict).describe_cache_clusters()["CacheClusters"] == []
    with pytest.raises(ClientError) as caught:
        _client(strict, secret="wrong").describe_cache_clusters()
    assert caught.value.response["Error"]["Code"] == "SignatureDoesNotMatch"
    assert caught.value.response["ResponseMetadata"]["HTTPStatusCode"] == 403
    good = _aws(strict, ALICE[1], "describe-cache-clusters")
    assert good.returncode == 0 and json.loads(good.stdout) == {"CacheClusters": []}, good.stderr
    bad = _aws(strict, "wrong", "describe-cache-clusters")
    assert bad.returncode != 0 and "(SignatureDoesNotMatch)" in bad.stderr


def test_the_json_api_wants_the_admin_token(strict: LiveServer) -> None:
    with pytest.raises(urllib.error.HTTPError) as refused:
        urllib.request.urlopen(strict.url + "/api/v1/cache-clusters", timeout=10)
    assert refused.value.code == 401
    authorized = urllib.request.Request(strict.url + "/api/v1/cache-clusters",
                                        headers={"Authorization": f"Bearer {TOKEN}"})
    with urllib.request.urlopen(authorized, timeout=10) as reply:
        assert json.loads(reply.read())["CacheClusters"] == []


def loose_modes(root: Path) -> list[str]:
    # server.log is the test harness's (the server's stdout), written by this process, not the service.
    return [f"{p} {oct(stat.S_IMODE(p.lstat().st_mode))}" for p in [root, *root.rglob("*")]
            if not p.is_symlink() and stat.S_IMODE(p.lstat().st_mode) & 0o077 and p != root / "server.log"]


def test_a_real_node_and_its_snapshot_leave_nothing_readable_by_others(strict: LiveServer) -> None:
    ec = _client(strict)
    ec.create_cache_cluster(CacheClusterId="web", Engine="redis", CacheNodeType="cache.t3.micro", NumCacheNodes=1)
    ec.get_waiter("cache_cluster_available").wait(CacheClusterId="web", WaiterConfig=FAST)
    with pytest.raises(ClientError) as denied:  # the policy holds over HTTP too
        ec.delete_cache_cluster(CacheClusterId="web")
    assert denied.value.response["Error"]["Code"] == "AccessDenied"
    ec.create_snapshot(CacheClusterId="web", SnapshotName="bk")
    eventually(lambda: ec.describe_snapshots(SnapshotName="bk")["Snapshots"][0]["SnapshotStatus"] == "available",
               120.0, 0.1, "snapshot bk available")
    data = strict.data_dir
    names = {p.name for p in data.rglob("*")}
    # The walk saw what matters: SQLite, the node's directory with its config, log and pid, the snapshot.
    assert {"state.sqlite3", "node.conf", "node.json", "node.log", "node.pid", "bk.rdb"} <= names, names
    assert loose_modes(data) == [], "readable by others: " + ", ".join(loose_modes(data))
