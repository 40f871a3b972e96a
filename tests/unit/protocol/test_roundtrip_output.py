"""Every operation's output and every error: our serializer writes, botocore's own parser reads."""

from __future__ import annotations

import io
import re
from datetime import UTC, datetime
from typing import Any

import boto3
import botocore.parsers
import pytest
from botocore.awsrequest import AWSResponse
from botocore.config import Config
from botocore.exceptions import ClientError
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from controlplane.protocol.errors import COMMON_ERRORS, ServiceError, not_implemented
from controlplane.protocol.model import ApiModel
from controlplane.protocol.serializer import FrozenShape, serialize_error, serialize_result
from tests.unit.protocol.strategies import output_value

OPERATIONS = ApiModel().operation_names
ERROR_SHAPES = ApiModel().error_shape_names
PARSER = botocore.parsers.create_parser("query")

ROUNDTRIP = settings(
    max_examples=25,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)


def botocore_parse(api: ApiModel, operation: str, body: bytes, status: int = 200) -> dict[str, Any]:
    op = api.operation(operation)
    assert op is not None
    parsed: dict[str, Any] = PARSER.parse(
        {"body": body, "headers": {}, "status_code": status}, op.output_shape
    )
    return parsed


@pytest.mark.parametrize("operation", OPERATIONS)
@ROUNDTRIP
@given(data=st.data())
def test_output_roundtrip(api: ApiModel, operation: str, data: st.DataObject) -> None:
    op = api.operation(operation)
    assert op is not None
    result: dict[str, Any] = {}
    if op.output_shape is not None:
        result = data.draw(output_value(op.output_shape), label="result")
    body = serialize_result(api, operation, result, "req-1", strict=True)
    parsed = botocore_parse(api, operation, body)
    assert parsed.pop("ResponseMetadata")["RequestId"] == "req-1"
    assert parsed == result


def test_empty_and_absent_lists(api: ApiModel) -> None:
    # An empty list reads back as [] (AWS sends <CacheClusters/>), an absent one stays absent.
    empty = botocore_parse(api, "DescribeCacheClusters",
                           serialize_result(api, "DescribeCacheClusters", {"CacheClusters": []}, "r"))
    assert empty["CacheClusters"] == []
    absent = botocore_parse(api, "DescribeCacheClusters",
                            serialize_result(api, "DescribeCacheClusters", {"Marker": "m"}, "r"))
    assert "CacheClusters" not in absent


def test_empty_containers_are_self_closing_as_aws_writes_them(api: ApiModel) -> None:
    # AWS: <PendingModifiedValues/>, <CacheSecurityGroups/>, <CacheNodeIdsToReboot/>.
    cluster = {"CacheClusterId": "c1", "PendingModifiedValues": {}, "CacheSecurityGroups": [],
               "CacheParameterGroup": {"CacheParameterGroupName": "default.redis7", "CacheNodeIdsToReboot": []},
               "SecurityGroups": [{}], "LogDeliveryConfigurations": [], "CacheNodes": []}
    for checked in (False, True):  # the escaping writer too: a value with "&" takes that path
        result = {"CacheClusters": [dict(cluster, CacheClusterId="c&1" if checked else "c1"), {}]}
        body = serialize_result(api, "DescribeCacheClusters", result, "r", strict=True)
        for empty in (b"<PendingModifiedValues/>", b"<CacheSecurityGroups/>", b"<CacheNodeIdsToReboot/>",
                      b"<SecurityGroups><member/></SecurityGroups>", b"<LogDeliveryConfigurations/>",
                      b"<CacheNodes/>", b"</CacheCluster><CacheCluster/></CacheClusters>"):
            assert empty in body
        assert not re.search(rb"<(\w+)></\1>", body)  # no empty element written open-and-close
        assert botocore_parse(api, "DescribeCacheClusters", body)["CacheClusters"] == result["CacheClusters"]


def test_empty_strings_keep_open_and_close_tags(api: ApiModel) -> None:
    body = serialize_result(api, "CreateCacheCluster", {"CacheCluster": {"CacheClusterId": ""}}, "r")
    assert b"<CacheClusterId></CacheClusterId>" in body
    assert botocore_parse(api, "CreateCacheCluster", body)["CacheCluster"] == {"CacheClusterId": ""}


def test_frozen_shapes_serialize_like_plain_dicts_and_once(api: ApiModel) -> None:
    when = datetime(2024, 1, 1, tzinfo=UTC)
    plain = [{"CacheClusterId": f"c{i}", "NumCacheNodes": 1, "CacheClusterCreateTime": when,
              "PendingModifiedValues": {}, "CacheNodes": [{"CacheNodeId": "0001", "Endpoint": {"Port": 6379}}]}
             for i in range(3)]
    plain.append({"CacheClusterId": "a&b<c>"})  # escaped, and forces the escaping pass for all
    frozen = [FrozenShape(c) for c in plain]
    for items in ([plain[0]], plain):
        expected = serialize_result(api, "DescribeCacheClusters", {"CacheClusters": items}, "r")
        mixed = [frozen[i] if i % 2 else c for i, c in enumerate(items)]
        for value in ([frozen[i] for i in range(len(items))], mixed):
            body = serialize_result(api, "DescribeCacheClusters", {"CacheClusters": value}, "r", strict=True)
            assert body == expected
            assert botocore_parse(api, "DescribeCacheClusters", body)["CacheClusters"] == items
    assert frozen[0] == plain[0] and isinstance(frozen[0], dict)
    # Written once: the text is reused even if (against the contract) the value changed since.
    frozen[0]["CacheClusterId"] = "changed"
    body = serialize_result(api, "DescribeCacheClusters", {"CacheClusters": [frozen[0]]}, "r")
    assert b"<CacheClusterId>c0</CacheClusterId>" in body
    assert serialize_result(api, "DescribeCacheClusters", {"CacheClusters": [FrozenShape()]}, "r") == \
        serialize_result(api, "DescribeCacheClusters", {"CacheClusters": [{}]}, "r")


def test_none_members_are_omitted(api: ApiModel) -> None:
    result = {"CacheCluster": {"CacheClusterId": "c1", "Engine": None, "CacheNodes": None}}
    body = serialize_result(api, "CreateCacheCluster", result, "r")
    assert b"Engine" not in body and b"CacheNodes" not in body
    assert botocore_parse(api, "CreateCacheCluster", body)["CacheCluster"] == {"CacheClusterId": "c1"}


def test_special_characters(api: ApiModel) -> None:
    text = "a&b<c>d\"e'f]]>g\r\nh\ti &amp; \u00e9\U0001f600"
    body = serialize_result(api, "CreateCacheCluster", {"CacheCluster": {"CacheClusterId": text}}, "r&1")
    parsed = botocore_parse(api, "CreateCacheCluster", body)
    assert parsed["CacheCluster"]["CacheClusterId"] == text
    assert parsed["ResponseMetadata"]["RequestId"] == "r&1"


def test_characters_xml_cannot_carry_become_replacement(api: ApiModel) -> None:
    text = "a\x00b\x1fc\ud800d\uffff"
    body = serialize_result(api, "CreateCacheCluster", {"CacheCluster": {"CacheClusterId": text}}, "r")
    parsed = botocore_parse(api, "CreateCacheCluster", body)
    assert parsed["CacheCluster"]["CacheClusterId"] == "a\ufffdb\ufffdc\ufffdd\ufffd"


def test_timestamps(api: ApiModel) -> None:
    when = datetime(2024, 2, 29, 23, 59, 58, 123456, tzinfo=UTC)
    body = serialize_result(api, "CreateCacheCluster",
                            {"CacheCluster": {"CacheClusterCreateTime": when}}, "r")
    assert b"<CacheClusterCreateTime>2024-02-29T23:59:58.123Z</CacheClusterCreateTime>" in body
    naive = serialize_result(api, "CreateCacheCluster",
                             {"CacheCluster": {"CacheClusterCreateTime": when.replace(tzinfo=None)}}, "r")
    assert naive == body  # naive datetimes are UTC


def test_unknown_keys_ignored_unless_strict(api: ApiModel) -> None:
    result = {"CacheCluster": {"CacheClusterId": "c1", "Bogus": 1}, "Extra": "x"}
    body = serialize_result(api, "CreateCacheCluster", result, "r")
    assert b"Bogus" not in body and b"Extra" not in body
    with pytest.raises(ValueError, match=r"CacheCluster\.Bogus.*not a member"):
        serialize_result(api, "CreateCacheCluster", result, "r", strict=True)
    with pytest.raises(ValueError, match="expected integer"):
        serialize_result(api, "CreateCacheCluster", {"CacheCluster": {"NumCacheNodes": "2"}}, "r",
                         strict=True)


def test_unknown_operation_is_a_key_error(api: ApiModel) -> None:
    with pytest.raises(KeyError):
        serialize_result(api, "NoSuchOperation", {}, "r")


# -- errors --------------------------------------------------------------------------------


@pytest.mark.parametrize("shape_name", ERROR_SHAPES)
def test_model_error_roundtrip(api: ApiModel, shape_name: str) -> None:
    info = api.error_info(shape_name)
    status, body = serialize_error(api, ServiceError(shape_name, "it <broke> & stayed broken"), "req-9")
    assert status == info.http_status
    parsed = botocore_parse(api, "DescribeCacheClusters", body, status)
    assert parsed["Error"]["Code"] == info.code
    assert parsed["Error"]["Message"] == "it <broke> & stayed broken"
    assert parsed["Error"]["Type"] == ("Sender" if info.sender_fault else "Receiver")
    assert parsed["ResponseMetadata"]["RequestId"] == "req-9"
    assert parsed["ResponseMetadata"]["HTTPStatusCode"] == status


@pytest.mark.parametrize("code", sorted(COMMON_ERRORS))
def test_common_error_roundtrip(api: ApiModel, code: str) -> None:
    status, body = serialize_error(api, ServiceError(code, "msg"), "req-9")
    assert status == COMMON_ERRORS[code][0]
    parsed = botocore_parse(api, "DescribeCacheClusters", body, status)
    assert parsed["Error"]["Code"] == code


def test_not_implemented_names_the_operation(api: ApiModel) -> None:
    status, body = serialize_error(api, not_implemented("PurchaseReservedCacheNodesOffering"), "r")
    assert status == 501
    parsed = botocore_parse(api, "PurchaseReservedCacheNodesOffering", body, status)
    assert parsed["Error"]["Code"] == "NotImplemented"
    assert "PurchaseReservedCacheNodesOffering" in parsed["Error"]["Message"]


class _Raw:
    """Just enough of a urllib3 response for botocore's AWSResponse."""

    def __init__(self, body: bytes) -> None:
        self._body = io.BytesIO(body)

    def stream(self, *_: Any, **__: Any) -> Any:
        yield self._body.read()


def _client_answering(status: int, body: bytes) -> Any:
    """A real boto3 client whose HTTP layer returns our bytes: the full botocore pipeline
    (parser, error mapping to modeled exception classes) runs on them."""
    client = boto3.client(
        "elasticache",
        region_name="us-east-1",
        endpoint_url="http://127.0.0.1:1",
        aws_access_key_id="AKIDEXAMPLE",
        aws_secret_access_key="secret",
        config=Config(retries={"total_max_attempts": 1}),
    )

    def send(request: Any, **_: Any) -> AWSResponse:
        return AWSResponse(request.url, status, {"x-amzn-RequestId": "req-7"}, _Raw(body))

    client.meta.events.register("before-send", send)
    return client


@pytest.mark.parametrize("shape_name", ERROR_SHAPES)
def test_boto3_client_sees_modeled_exception(api: ApiModel, shape_name: str) -> None:
    info = api.error_info(shape_name)
    status, body = serialize_error(api, ServiceError(shape_name, "nope"), "req-7")
    client = _client_answering(status, body)
    modeled = getattr(client.exceptions, shape_name)
    with pytest.raises(ClientError) as caught:
        client.describe_cache_clusters()
    assert isinstance(caught.value, modeled)
    assert caught.value.response["Error"]["Code"] == info.code
    assert caught.value.response["ResponseMetadata"]["HTTPStatusCode"] == info.http_status


def test_boto3_client_reads_a_result(api: ApiModel) -> None:
    result = {"CacheClusters": [{"CacheClusterId": "c1", "NumCacheNodes": 1,
                                 "CacheClusterCreateTime": datetime(2024, 1, 1, tzinfo=UTC),
                                 "AutoMinorVersionUpgrade": True, "SecurityGroups": []}]}
    client = _client_answering(200, serialize_result(api, "DescribeCacheClusters", result, "req-7"))
    answer = client.describe_cache_clusters()
    assert answer["CacheClusters"] == result["CacheClusters"]
    assert answer["ResponseMetadata"]["RequestId"] == "req-7"
