"""ARNs as AWS writes them, and back."""

from __future__ import annotations

from typing import NamedTuple

# ARN resource type -> our record kind.
ARN_TYPES = {
    "cluster": "cache-cluster",
    "replicationgroup": "replication-group",
    "snapshot": "snapshot",
    "parametergroup": "cache-parameter-group",
    "subnetgroup": "cache-subnet-group",
    "securitygroup": "cache-security-group",
    "user": "user",
    "usergroup": "user-group",
    "reserved-instance": "reserved-cache-node",
    "serverlesscache": "serverless-cache",
    "serverlesscachesnapshot": "serverless-cache-snapshot",
    "globalreplicationgroup": "global-replication-group",
}
REGIONLESS = {"global-replication-group"}  # their ARNs have no region (arn:aws:elasticache::<account>:...)
KIND_TO_ARN_TYPE = {kind: arn_type for arn_type, kind in ARN_TYPES.items()}


class ParsedArn(NamedTuple):
    region: str
    account: str
    kind: str
    id: str


def arn(region: str, account: str, kind: str, resource_id: str) -> str:
    return f"arn:aws:elasticache:{region}:{account}:{KIND_TO_ARN_TYPE[kind]}:{resource_id}"


def parse_arn(value: str) -> ParsedArn | None:
    parts = value.split(":", 6)
    if len(parts) != 7 or parts[0] != "arn" or parts[2] != "elasticache":
        return None
    _, _partition, _, region, account, arn_type, resource_id = parts
    kind = ARN_TYPES.get(arn_type)
    if kind is None or (not region and kind not in REGIONLESS) or not account or not resource_id:
        return None
    return ParsedArn(region, account, kind, resource_id)
