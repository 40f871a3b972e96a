"""IAM policies from a policy file: evaluated as IAM does (explicit Deny, then Allow, else
denied), against the ARNs each operation acts on, refused with AWS's AccessDenied as boto3
sees it."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import pytest
from botocore.exceptions import ClientError

from controlplane.auth.keys import AccessConfigError, Identity
from controlplane.auth.policy import Decision, decide, load_policies
from controlplane.auth.resources import resources_of
from tests.unit.auth.conftest import ALICE, BOB, SecureWorld, write_credentials

ALLOW_DESCRIBE = {"Effect": "Allow", "Action": "elasticache:Describe*", "Resource": "*"}
TEAM_A = "arn:aws:elasticache:*:*:cluster:team-a-*"
POLICIES = {
    "alice": {"Version": "2012-10-17", "Statement": [
        ALLOW_DESCRIBE,
        {"Effect": "Allow", "Action": ["elasticache:CreateCacheCluster", "elasticache:AddTagsToResource"],
         "Resource": TEAM_A, "Condition": {"StringEquals": {"aws:RequestedRegion": "us-east-1"}}},
        {"Effect": "Allow", "Action": "elasticache:DeleteCacheCluster", "Resource": TEAM_A,
         "Condition": {"StringEquals": {"aws:ResourceTag/env": "dev"}}},
        {"Effect": "Deny", "Action": "elasticache:*", "Resource": "arn:aws:elasticache:*:*:cluster:team-a-prod"},
    ]},
    "444455556666": {"Statement": {"Effect": "Allow", "NotAction": "elasticache:Delete*", "Resource": "*"}},
}


def _create(name: str) -> dict[str, Any]:
    return {"CacheClusterId": name, "Engine": "redis", "CacheNodeType": "cache.t3.micro", "NumCacheNodes": 1}


def _denied(call: Any) -> str:
    with pytest.raises(ClientError) as caught:
        call()
    error = caught.value.response
    assert (error["Error"]["Code"], error["ResponseMetadata"]["HTTPStatusCode"]) == ("AccessDenied", 403)
    return str(error["Error"]["Message"])


@pytest.fixture
def policed(tmp_path: Path) -> Iterator[SecureWorld]:
    policy = tmp_path / "policy.json"
    policy.write_text(json.dumps(POLICIES))
    w = SecureWorld(tmp_path / "data", verify_signatures=True, credentials_file=write_credentials(tmp_path),
                    policy_file=policy)
    yield w
    w.service.store.close()


def test_a_call_no_policy_allows_is_access_denied_with_awss_message(policed: SecureWorld) -> None:
    alice = policed.client(ALICE)
    message = _denied(lambda: alice.create_cache_cluster(**_create("team-b-web")))
    assert message == ("User: arn:aws:iam::111122223333:user/alice is not authorized to perform: "
                       "elasticache:CreateCacheCluster on resource: "
                       "arn:aws:elasticache:us-east-1:111122223333:cluster:team-b-web because no identity-based "
                       "policy allows the elasticache:CreateCacheCluster action")
    assert alice.describe_cache_clusters()["CacheClusters"] == []  # refused before anything was written
    alice.create_cache_cluster(**_create("team-a-web"))
    assert [c["CacheClusterId"] for c in alice.describe_cache_clusters()["CacheClusters"]] == ["team-a-web"]


def test_an_explicit_deny_wins_over_an_allow(policed: SecureWorld) -> None:
    message = _denied(lambda: policed.client(ALICE).create_cache_cluster(**_create("team-a-prod")))
    assert message.endswith("cluster:team-a-prod with an explicit deny in an identity-based policy")


def test_a_condition_on_the_requested_region(policed: SecureWorld) -> None:
    west = policed.client(ALICE, region="us-west-2")
    assert "us-west-2:111122223333:cluster:team-a-web" in _denied(
        lambda: west.create_cache_cluster(**_create("team-a-web")))
    assert west.describe_cache_clusters()["CacheClusters"] == []  # Describe* is allowed everywhere


def test_a_condition_on_the_resources_tags(policed: SecureWorld) -> None:
    alice = policed.client(ALICE)
    alice.create_cache_cluster(**_create("team-a-web"))

    def available() -> bool:
        clusters = alice.describe_cache_clusters(CacheClusterId="team-a-web")["CacheClusters"]
        return bool(clusters[0]["CacheClusterStatus"] == "available")

    policed.settle_until(available)
    _denied(lambda: alice.delete_cache_cluster(CacheClusterId="team-a-web"))  # no env tag yet
    arn = "arn:aws:elasticache:us-east-1:111122223333:cluster:team-a-web"
    alice.add_tags_to_resource(ResourceName=arn, Tags=[{"Key": "env", "Value": "prod"}])
    _denied(lambda: alice.delete_cache_cluster(CacheClusterId="team-a-web"))
    alice.add_tags_to_resource(ResourceName=arn, Tags=[{"Key": "env", "Value": "dev"}])
    assert alice.delete_cache_cluster(CacheClusterId="team-a-web")["CacheCluster"]["CacheClusterStatus"] == "deleting"


def test_an_accounts_policy_with_not_action(policed: SecureWorld) -> None:
    bob = policed.client(BOB)
    bob.create_cache_cluster(**_create("anything"))
    message = _denied(lambda: bob.delete_cache_cluster(CacheClusterId="anything"))
    assert message.startswith("User: arn:aws:iam::444455556666:user/bob is not authorized to perform: "
                              "elasticache:DeleteCacheCluster on resource: ")


def test_policies_also_apply_when_signatures_are_not_checked(tmp_path: Path) -> None:
    """Teams try least-privilege policies without a credentials file: the key a request names
    decides which policies apply, unchecked (a 12-digit key is its account, as always)."""
    policy = tmp_path / "policy.json"
    policy.write_text(json.dumps({"210987654321": {"Statement": [ALLOW_DESCRIBE]}}))
    w = SecureWorld(tmp_path / "data", policy_file=policy)
    try:
        caller = w.client({"AccessKeyId": "210987654321", "SecretAccessKey": "anything"})
        assert caller.describe_cache_clusters()["CacheClusters"] == []
        assert "user/210987654321 is not authorized" in _denied(lambda: caller.create_cache_cluster(**_create("x")))
    finally:
        w.service.store.close()


# --- the evaluation itself ---


def _statements(*statements: dict[str, Any], who: str = "u") -> Any:
    return _load({who: {"Version": "2012-10-17", "Statement": list(statements)}}).statements_for(
        Identity("123456789012", "us-east-1", "AKIA", who))


def _load(data: Any) -> Any:
    import tempfile

    with tempfile.TemporaryDirectory() as d:
        path = Path(d) / "p.json"
        path.write_text(json.dumps(data))
        return load_policies(path)


def _context(values: dict[str, Sequence[str]]) -> Any:
    return lambda key: values.get(key)


@pytest.mark.parametrize("pattern, action, allowed", [
    ("elasticache:*", "elasticache:DeleteCacheCluster", True),
    ("elasticache:Describe*", "elasticache:DescribeSnapshots", True),
    ("elasticache:describe*", "elasticache:DescribeSnapshots", True),  # actions ignore case
    ("elasticache:Describe*", "elasticache:CreateSnapshot", False),
    ("elasticache:?reateSnapshot", "elasticache:CreateSnapshot", True),
    ("*", "elasticache:CreateSnapshot", True),
    ("elasticache:[C]reateSnapshot", "elasticache:CreateSnapshot", False),  # no character classes in IAM
])
def test_action_wildcards(pattern: str, action: str, allowed: bool) -> None:
    statements = _statements({"Effect": "Allow", "Action": pattern, "Resource": "*"})
    assert (decide(statements, action, "*", _context({})) is Decision.ALLOW) == allowed


def test_resource_wildcards_are_case_sensitive_and_not_resource_inverts() -> None:
    statements = _statements({"Effect": "Allow", "Action": "*", "Resource": "arn:aws:elasticache:*:*:cluster:web*"})
    assert decide(statements, "a", "arn:aws:elasticache:us-east-1:1:cluster:web-1", _context({})) is Decision.ALLOW
    assert decide(statements, "a", "arn:aws:elasticache:us-east-1:1:cluster:Web-1", _context({})) is \
        Decision.IMPLICIT_DENY
    inverted = _statements({"Effect": "Deny", "Action": "*", "NotResource": "arn:*:cluster:web*"},
                           {"Effect": "Allow", "Action": "*", "Resource": "*"})
    assert decide(inverted, "a", "arn:aws:elasticache:r:1:snapshot:s", _context({})) is Decision.EXPLICIT_DENY
    assert decide(inverted, "a", "arn:aws:elasticache:r:1:cluster:web", _context({})) is Decision.ALLOW


@pytest.mark.parametrize("condition, values, holds", [
    ({"StringEquals": {"aws:RequestedRegion": ["us-east-1", "eu-west-1"]}}, {"aws:requestedregion": ["eu-west-1"]},
     True),
    ({"StringNotEquals": {"aws:RequestedRegion": "us-east-1"}}, {"aws:requestedregion": ["us-east-1"]}, False),
    ({"StringLike": {"aws:ResourceTag/team": "a-*"}}, {"aws:resourcetag/team": ["a-web"]}, True),
    ({"StringLike": {"aws:ResourceTag/team": "a-*"}}, {}, False),  # no such tag: not equal
    ({"StringNotLike": {"aws:ResourceTag/team": "a-*"}}, {}, True),  # negated on a missing key: holds
    ({"StringEqualsIfExists": {"aws:ResourceTag/team": "a"}}, {}, True),
    ({"StringEqualsIgnoreCase": {"aws:ResourceTag/env": "DEV"}}, {"aws:resourcetag/env": ["dev"]}, True),
    ({"Null": {"aws:ResourceTag/env": "true"}}, {}, True),
    ({"Null": {"aws:ResourceTag/env": "false"}}, {}, False),
    ({"ForAllValues:StringEquals": {"aws:TagKeys": ["env", "team"]}}, {"aws:tagkeys": ["env"]}, True),
    ({"ForAllValues:StringEquals": {"aws:TagKeys": ["env"]}}, {"aws:tagkeys": ["env", "cost"]}, False),
    ({"ForAnyValue:StringEquals": {"aws:TagKeys": ["env"]}}, {"aws:tagkeys": ["cost", "env"]}, True),
    ({"Bool": {"aws:SecureTransport": True}}, {"aws:securetransport": ["false"]}, False),
])
def test_conditions(condition: dict[str, Any], values: dict[str, Sequence[str]], holds: bool) -> None:
    statements = _statements({"Effect": "Allow", "Action": "*", "Resource": "*", "Condition": condition})
    assert (decide(statements, "elasticache:X", "*", _context(values)) is Decision.ALLOW) == holds


def test_every_policy_naming_the_caller_applies() -> None:
    policies = _load({
        "*": {"Statement": {"Effect": "Allow", "Action": "elasticache:Describe*", "Resource": "*"}},
        "123456789012": {"Statement": {"Effect": "Deny", "Action": "elasticache:DescribeEvents", "Resource": "*"}},
        "AKIA1": [{"Statement": {"Effect": "Allow", "Action": "elasticache:CreateSnapshot", "Resource": "*"}}],
        "carol": {"Statement": {"Effect": "Allow", "Action": "elasticache:DeleteSnapshot", "Resource": "*"}},
    })
    carol = policies.statements_for(Identity("123456789012", "us-east-1", "AKIA1", "carol"))
    other = policies.statements_for(Identity("999999999999", "us-east-1", "AKIA2", "dave"))
    verdict = {a: decide(carol, f"elasticache:{a}", "*", _context({})) for a in
               ("DescribeSnapshots", "DescribeEvents", "CreateSnapshot", "DeleteSnapshot", "CopySnapshot")}
    assert verdict == {"DescribeSnapshots": Decision.ALLOW, "DescribeEvents": Decision.EXPLICIT_DENY,
                       "CreateSnapshot": Decision.ALLOW, "DeleteSnapshot": Decision.ALLOW,
                       "CopySnapshot": Decision.IMPLICIT_DENY}
    assert decide(other, "elasticache:DescribeEvents", "*", _context({})) is Decision.ALLOW
    assert decide(other, "elasticache:CreateSnapshot", "*", _context({})) is Decision.IMPLICIT_DENY


@pytest.mark.parametrize("operation, params, expected", [
    ("CreateCacheCluster", {"CacheClusterId": "web", "SnapshotName": "s"}, ["cluster:web"]),
    ("DescribeCacheClusters", {}, ["cluster:*"]),
    ("TestFailover", {"ReplicationGroupId": "rg", "NodeGroupId": "0001"}, ["replicationgroup:rg"]),
    ("ModifyReplicationGroupShardConfiguration", {"ReplicationGroupId": "rg"}, ["replicationgroup:rg"]),
    ("CopySnapshot", {"SourceSnapshotName": "a", "TargetSnapshotName": "b"}, ["snapshot:a", "snapshot:b"]),
    ("CreateSnapshot", {"SnapshotName": "s", "CacheClusterId": "web"}, ["snapshot:s"]),
    ("BatchApplyUpdateAction", {"ReplicationGroupIds": ["r1"], "CacheClusterIds": ["c1", "c2"]},
     ["replicationgroup:r1", "cluster:c1", "cluster:c2"]),
    ("DescribeUserGroups", {"UserGroupId": "g"}, ["usergroup:g"]),
    ("DeleteUser", {"UserId": "u"}, ["user:u"]),
    ("DescribeServerlessCacheSnapshots", {}, ["serverlesscachesnapshot:*"]),
    ("DescribeCacheParameters", {"CacheParameterGroupName": "p"}, ["parametergroup:p"]),
])
def test_the_resources_an_operation_acts_on(operation: str, params: dict[str, Any], expected: list[str]) -> None:
    prefix = "arn:aws:elasticache:eu-west-1:111122223333:"
    assert resources_of(operation, params, "111122223333", "eu-west-1") == [prefix + e for e in expected]


def test_resources_named_by_arn_or_none() -> None:
    arn = "arn:aws:elasticache:us-east-1:1:cluster:web"
    assert resources_of("AddTagsToResource", {"ResourceName": arn}, "1", "us-east-1") == [arn]
    assert resources_of("DescribeEvents", {}, "1", "us-east-1") == ["*"]
    assert resources_of("DeleteGlobalReplicationGroup", {"GlobalReplicationGroupId": "g"}, "1", "us-east-1") == [
        "arn:aws:elasticache::1:globalreplicationgroup:g"]


@pytest.mark.parametrize("data, complaint", [
    ([], "expected an object"),
    ({"u": {"Statement": {"Effect": "Allow", "Action": "*"}}}, "exactly one of Resource and NotResource"),
    ({"u": {"Statement": {"Effect": "Permit", "Action": "*", "Resource": "*"}}}, "Effect must be Allow or Deny"),
    ({"u": {"Statement": {"Effect": "Allow", "Action": "*", "Resource": "*",
                          "Condition": {"NumericLessThan": {"k": "1"}}}}}, "'NumericLessThan' is not supported"),
    ({"u": {"Statement": {"Effect": "Allow", "Principal": "*", "Action": "*", "Resource": "*"}}}, "no Principal"),
    ({"u": {"Version": "2020-01-01", "Statement": []}}, "Version must be 2012-10-17"),
])
def test_a_bad_policy_file_says_what_is_wrong(data: Any, complaint: str) -> None:
    with pytest.raises(AccessConfigError, match=re.escape(complaint)):
        _load(data)


def test_a_bad_policy_file_stops_the_service_before_it_starts(tmp_path: Path) -> None:
    policy = tmp_path / "policy.json"
    policy.write_text("{not json")
    with pytest.raises(SystemExit, match="is not JSON"):
        SecureWorld(tmp_path / "data", policy_file=policy)
