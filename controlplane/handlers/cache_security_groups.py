"""Cache security groups (Create/Delete/Describe, Authorize/Revoke ingress) as AWS answers them
today. They belong to EC2-Classic, which AWS retired (2022-08-15): an account has a VPC, and AWS
refuses them. CreateCacheSecurityGroup, and a cache naming CacheSecurityGroupNames, get
"Use of cache security groups is not permitted in this API version for your account."
(InvalidParameterCombination "... along with cache subnet group and/or security group Ids." when
the request also names those); no cache security group can exist, so Describe lists none and the
operations on one get CacheSecurityGroupNotFound. A VPC security group (SecurityGroupIds) is what
a cache takes instead: stored and shown."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from controlplane.handlers import validate as v
from controlplane.handlers.context import HandlerTable, RequestContext
from controlplane.model import errors as e
from controlplane.model import messages as m

NOT_PERMITTED = "Use of cache security groups is not permitted in this API version for your account."
NOT_WITH_VPC = ("Use of cache security groups is not permitted along with cache subnet group and/or security group "
                "Ids.")


def refuse_names(params: Mapping[str, Any]) -> None:
    """A Create or Modify of a cache naming CacheSecurityGroupNames: AWS's refusal."""
    if params.get("CacheSecurityGroupNames"):
        if params.get("CacheSubnetGroupName") or params.get("SecurityGroupIds"):
            raise v.combination(NOT_WITH_VPC)
        raise v.invalid(NOT_PERMITTED)


def _not_found(name: str) -> e.CacheSecurityGroupNotFoundFault:
    return e.CacheSecurityGroupNotFoundFault(f"CacheSecurityGroup {name[:255]} not found.")


def create_cache_security_group(ctx: RequestContext,
                                params: m.CreateCacheSecurityGroupMessage) -> m.CreateCacheSecurityGroupResult:
    raise v.invalid(NOT_PERMITTED)


def delete_cache_security_group(ctx: RequestContext, params: m.DeleteCacheSecurityGroupMessage) -> None:
    raise _not_found(params["CacheSecurityGroupName"])


def describe_cache_security_groups(ctx: RequestContext,
                                   params: m.DescribeCacheSecurityGroupsMessage) -> m.CacheSecurityGroupMessage:
    if params.get("CacheSecurityGroupName"):
        raise _not_found(params["CacheSecurityGroupName"])
    none: Sequence[m.CacheSecurityGroup] = []
    v.page(none, params.get("MaxRecords"), params.get("Marker"))  # paging parameters are still checked
    return {"CacheSecurityGroups": []}


def authorize_cache_security_group_ingress(
        ctx: RequestContext,
        params: m.AuthorizeCacheSecurityGroupIngressMessage) -> m.AuthorizeCacheSecurityGroupIngressResult:
    raise _not_found(params["CacheSecurityGroupName"])


def revoke_cache_security_group_ingress(
        ctx: RequestContext,
        params: m.RevokeCacheSecurityGroupIngressMessage) -> m.RevokeCacheSecurityGroupIngressResult:
    raise _not_found(params["CacheSecurityGroupName"])


HANDLERS: HandlerTable = {
    "CreateCacheSecurityGroup": create_cache_security_group,
    "DeleteCacheSecurityGroup": delete_cache_security_group,
    "DescribeCacheSecurityGroups": describe_cache_security_groups,
    "AuthorizeCacheSecurityGroupIngress": authorize_cache_security_group_ingress,
    "RevokeCacheSecurityGroupIngress": revoke_cache_security_group_ingress,
}
