"""Malformed HTTP at the live server: raw bytes, huge bodies, odd headers. Never a server error,
and what exists stays as it was."""

from __future__ import annotations

import http.client
from typing import Any
from urllib.parse import urlparse

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.api.conftest import LiveServer


def _post(server: LiveServer, body: bytes, headers: dict[str, str], path: str = "/") -> tuple[int, bytes]:
    url = urlparse(server.url)
    conn = http.client.HTTPConnection(url.hostname or "127.0.0.1", url.port, timeout=30)
    try:
        conn.request("POST", path, body=body, headers=headers)
        resp = conn.getresponse()
        return resp.status, resp.read()
    finally:
        conn.close()


def test_garbage_over_http(server: LiveServer, ec: Any) -> None:
    ec.create_cache_cluster(CacheClusterId="keep", Engine="redis", CacheNodeType="cache.t3.micro")
    ec.get_waiter("cache_cluster_available").wait(CacheClusterId="keep", WaiterConfig={"Delay": 0.1,
                                                                                        "MaxAttempts": 100})
    before = ec.describe_cache_clusters(ShowCacheNodeInfo=True)["CacheClusters"]

    @settings(max_examples=120, deadline=None, suppress_health_check=list(HealthCheck))
    @given(
        body=st.one_of(
            st.binary(max_size=300),
            st.just(b"Action=DescribeCacheClusters&" + b"x=" + b"A" * 2_000_000),
            st.just(b"Action=CreateCacheCluster&CacheClusterId=\xff\xfe&Engine=redis"),
            st.just(b"Action=DescribeCacheClusters&MaxRecords=99999999999999999999999"),
            st.just(b"Action=%ZZ&%%%=&&&=="),
        ),
        content_type=st.sampled_from(["application/x-www-form-urlencoded; charset=utf-8", "text/plain",
                                      "application/json", "multipart/form-data; boundary=x"]),
        authorization=st.sampled_from(["", "AWS4-HMAC-SHA256 Credential=", "garbage",
                                       "AWS4-HMAC-SHA256 Credential=123456789012/20260101/\u00e9/elasticache/x"]),
        path=st.sampled_from(["/", "/?Action=DescribeEvents&Duration=-5", "/?Action="]),
    )
    def run(body: bytes, content_type: str, authorization: str, path: str) -> None:
        headers = {"Content-Type": content_type}
        if authorization:
            headers["Authorization"] = authorization.encode("utf-8").decode("latin-1")
        status, reply = _post(server, body, headers, path)
        assert status < 500, reply[:300]

    run()
    assert ec.describe_cache_clusters(ShowCacheNodeInfo=True)["CacheClusters"] == before
