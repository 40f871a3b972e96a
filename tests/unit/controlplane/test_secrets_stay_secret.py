"""AUTH tokens and user passwords are stored (the nodes need them) and shown nowhere: not in any
Query API answer (Describe*, DescribeEvents, List*, the writes' own answers, errors), not in the
JSON API, not on the dashboard, not in a log line. The TLS gate is opened, as the wiring step will
open it, so that caches with tokens exist to be looked at."""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Iterator

import pytest
from fastapi.testclient import TestClient

from controlplane.query import redacted
from controlplane.state.acl import desired_security
from controlplane.state.records import CacheCluster, ReplicationGroup
from tests.unit.controlplane.conftest import World, whole_app

TOKEN = "Token-of-twenty-chars-ONE"
TOKEN2 = "Rotated-token-TWO-12345"
TOKEN_C = "Cluster-token-THREE-123"
PW = "user-password-FOUR-1234"
PW2 = "user-password-FIVE-1234"
SECRETS = (TOKEN, TOKEN2, TOKEN_C, PW, PW2)


def _leaks(text: str) -> list[str]:
    """Every secret (or its SHA-256, what the user ACL keeps) found in `text`."""
    found = [s for s in SECRETS if s in text]
    found += [f"sha256({s})" for s in SECRETS if hashlib.sha256(s.encode()).hexdigest() in text]
    return found


@pytest.fixture
def client(world: World, monkeypatch: pytest.MonkeyPatch) -> Iterator[TestClient]:
    with TestClient(whole_app(world), base_url="http://127.0.0.1:8379") as c:
        yield c


def _nodes_enforce(world: World) -> None:
    """What the wiring step's reconciler records once every node enforces what was asked."""
    store = world.service.store
    for model in (ReplicationGroup, CacheCluster):
        for rec in store.records(model):
            store.update(rec.key, model, lambda r: setattr(r.status, "security_applied", desired_security(store, r)))


def _query(client: TestClient, action: str, **params: str) -> str:
    reply = client.post("/", data={"Action": action, "Version": "2015-02-02", **params})
    assert reply.status_code < 500, reply.text
    return reply.text


def test_no_answer_event_page_or_log_line_shows_a_token_or_password(world: World, client: TestClient,
                                                                   caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    seen: dict[str, str] = {}
    seen["CreateUser"] = _query(client, "CreateUser", UserId="app", UserName="default", Engine="redis",
                                AccessString="on ~* +@all", **{"Passwords.member.1": PW})
    seen["CreateUserGroup"] = _query(client, "CreateUserGroup", UserGroupId="team", Engine="redis",
                                     **{"UserIds.member.1": "app"})
    seen["CreateReplicationGroup"] = _query(
        client, "CreateReplicationGroup", ReplicationGroupId="rg", ReplicationGroupDescription="d", Engine="redis",
        CacheNodeType="cache.t3.micro", NumCacheClusters="2", TransitEncryptionEnabled="true", AuthToken=TOKEN)
    seen["CreateCacheCluster"] = _query(client, "CreateCacheCluster", CacheClusterId="web", Engine="redis",
                                        CacheNodeType="cache.t3.micro", TransitEncryptionEnabled="true",
                                        AuthToken=TOKEN_C)
    assert "InvalidParameterCombination" in seen["CreateCacheCluster"]  # AWS: TLS there is Memcached's
    _query(client, "CreateCacheCluster", CacheClusterId="web", Engine="redis", CacheNodeType="cache.t3.micro")
    assert "<AuthTokenEnabled>true</AuthTokenEnabled>" in seen["CreateReplicationGroup"]
    world.settle()
    _nodes_enforce(world)
    seen["ModifyReplicationGroup"] = _query(client, "ModifyReplicationGroup", ReplicationGroupId="rg",
                                            AuthToken=TOKEN2, AuthTokenUpdateStrategy="ROTATE", ApplyImmediately="true")
    seen["ModifyUser"] = _query(client, "ModifyUser", UserId="app", **{"Passwords.member.1": PW2})
    world.settle()
    _nodes_enforce(world)
    seen["refused"] = _query(client, "ModifyReplicationGroup", ReplicationGroupId="rg", AuthToken=TOKEN + "%/@",
                             AuthTokenUpdateStrategy="SET")
    assert "InvalidParameterValue" in seen["refused"]
    json_modify = client.patch("/api/v1/cache-clusters/web", json={"AuthToken": TOKEN + "x",
                                                                  "AuthTokenUpdateStrategy": "ROTATE"})
    assert json_modify.status_code == 400, json_modify.text  # no TLS, so no token
    seen["JSON modify"] = json_modify.text
    world.settle()
    arn = "arn:aws:elasticache:us-east-1:123456789012:replicationgroup:rg"
    for action, params in {
        "DescribeReplicationGroups": {}, "DescribeCacheClusters": {"ShowCacheNodeInfo": "true"},
        "DescribeEvents": {"Duration": "60"}, "DescribeUsers": {}, "DescribeUserGroups": {},
        "DescribeSnapshots": {}, "DescribeUpdateActions": {}, "DescribeServiceUpdates": {},
        "ListTagsForResource": {"ResourceName": arn},
    }.items():
        seen[action] = _query(client, action, **params)
    assert "<AuthTokenEnabled>true</AuthTokenEnabled>" in seen["DescribeReplicationGroups"]
    for path in ("/api/v1/replication-groups", "/api/v1/replication-groups/rg", "/api/v1/cache-clusters",
                 "/api/v1/cache-clusters/web", "/api/v1/cache-clusters/rg-001", "/api/v1/events", "/api/v1/nodes",
                 "/api/v1/snapshots", "/api/v1/health", "/dashboard", "/dashboard/fragments/caches",
                 "/dashboard/fragments/events", "/dashboard/replication-groups/rg",
                 "/dashboard/replication-groups/rg/live", "/dashboard/cache-clusters/web",
                 "/dashboard/cache-clusters/web/live", "/dashboard/create"):
        reply = client.get(path)
        assert reply.status_code == 200, (path, reply.text[:300])
        seen[path] = reply.text
    assert '"AuthTokenEnabled":true' in seen["/api/v1/replication-groups/rg"]
    leaks = {where: found for where, text in seen.items() if (found := _leaks(text))}
    assert leaks == {}
    assert _leaks(caplog.text) == []


def test_a_logged_request_has_its_secrets_redacted() -> None:
    pairs = [("Action", "CreateUser"), ("AuthToken", TOKEN), ("Passwords.member.1", PW),
             ("AuthenticationMode.Passwords.member.1", PW2), ("UserName", "bob")]
    assert _leaks(repr(redacted(pairs))) == []
    assert ("UserName", "bob") in redacted(pairs)
