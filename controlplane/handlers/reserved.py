"""DescribeReservedCacheNodesOfferings, PurchaseReservedCacheNodesOffering,
DescribeReservedCacheNodes: AWS's offerings (a sample catalogue: state/reserved.py) and the
reservations bought, with AWS's filters, states and errors."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, cast

from controlplane.handlers import validate as v
from controlplane.handlers.context import HandlerTable, RequestContext
from controlplane.model import errors as e
from controlplane.model import messages as m
from controlplane.state.arns import arn
from controlplane.state.reserved import (
    DURATIONS,
    KNOWN_OFFERING_TYPES,
    OFFERINGS,
    OFFERINGS_BY_ID,
    Offering,
    ReservedCacheNode,
    ReservedCacheNodeSpec,
)

MAX_RESERVED_NODES = 300  # AWS's quota of reserved nodes per region
MAX_PER_PURCHASE = 300

Params = m.DescribeReservedCacheNodesOfferingsMessage | m.DescribeReservedCacheNodesMessage


def _duration(value: str) -> int:
    """Duration as AWS takes it, in years or seconds: 1 | 3 | 31536000 | 94608000."""
    if value.isdigit() and int(value) in DURATIONS:
        return DURATIONS[int(value)]
    if value.isdigit() and int(value) in DURATIONS.values():
        return int(value)
    raise v.invalid(f"Invalid Duration: {value[:40]}. Valid values: 1 | 3 | 31536000 | 94608000.")


def _matches(params: Params, node_type: str, duration: int, product: str, offering_type: str) -> bool:
    """The filters common to both Describes (a filter of another case matches, as AWS's do)."""
    given_type = params.get("OfferingType")
    if given_type is not None and given_type.lower() not in {t.lower() for t in KNOWN_OFFERING_TYPES}:
        raise v.invalid(f"Invalid OfferingType: {given_type[:40]}. Valid values: {', '.join(KNOWN_OFFERING_TYPES)}.")
    checks = [
        (params.get("CacheNodeType"), node_type),
        (params.get("ProductDescription"), product),
        (given_type, offering_type),
    ]
    if any(wanted is not None and wanted.lower() != have.lower() for wanted, have in checks):
        return False
    return params.get("Duration") is None or _duration(params.get("Duration") or "") == duration


def _charges(hourly: float) -> list[m.RecurringCharge]:
    return [{"RecurringChargeAmount": hourly, "RecurringChargeFrequency": "Hourly"}] if hourly else []


def offering_shape(o: Offering) -> m.ReservedCacheNodesOffering:
    return {"ReservedCacheNodesOfferingId": o.id, "CacheNodeType": o.node_type, "Duration": o.duration,
            "FixedPrice": o.fixed_price, "UsagePrice": o.usage_price, "ProductDescription": o.product,
            "OfferingType": o.offering_type, "RecurringCharges": _charges(o.hourly_charge)}


def reserved_shape(ctx: RequestContext, rec: ReservedCacheNode) -> m.ReservedCacheNode:
    s = rec.spec
    return {"ReservedCacheNodeId": rec.id, "ReservedCacheNodesOfferingId": s.offering_id, "CacheNodeType": s.node_type,
            "StartTime": rec.created_at, "Duration": s.duration, "FixedPrice": s.fixed_price,
            "UsagePrice": s.usage_price, "CacheNodeCount": s.count, "ProductDescription": s.product,
            "OfferingType": s.offering_type, "State": rec.api_status(ctx.services.clock.now()),
            "RecurringCharges": _charges(s.hourly_charge),
            "ReservationARN": arn(rec.region, rec.account, rec.KIND, rec.id)}


def _page(member: str, items: Sequence[Any], params: Params) -> dict[str, Any]:
    chunk, marker = v.page(items, params.get("MaxRecords"), params.get("Marker"))
    out: dict[str, Any] = {member: chunk}
    if marker:
        out["Marker"] = marker
    return out


def describe_reserved_cache_nodes_offerings(ctx: RequestContext, params: m.DescribeReservedCacheNodesOfferingsMessage
                                            ) -> m.ReservedCacheNodesOfferingMessage:
    wanted = params.get("ReservedCacheNodesOfferingId")
    if wanted is not None and wanted not in OFFERINGS_BY_ID:
        raise e.ReservedCacheNodesOfferingNotFoundFault(f"ReservedCacheNodesOffering {wanted[:100]} not found.")
    found = [offering_shape(o) for o in OFFERINGS if (wanted is None or o.id == wanted)
             and _matches(params, o.node_type, o.duration, o.product, o.offering_type)]
    return cast(m.ReservedCacheNodesOfferingMessage, _page("ReservedCacheNodesOfferings", found, params))


def purchase_reserved_cache_nodes_offering(
        ctx: RequestContext,
        params: m.PurchaseReservedCacheNodesOfferingMessage) -> m.PurchaseReservedCacheNodesOfferingResult:
    offering = OFFERINGS_BY_ID.get(params["ReservedCacheNodesOfferingId"])
    if offering is None:
        raise e.ReservedCacheNodesOfferingNotFoundFault(
            f"ReservedCacheNodesOffering {params['ReservedCacheNodesOfferingId'][:100]} not found.")
    now = ctx.services.clock.now()
    given = params.get("ReservedCacheNodeId")
    rid = v.resource_id(given, "ReservedCacheNodeId", 255) if given is not None else (
        "ri-" + now.strftime("%Y-%m-%d-%H-%M-%S-") + f"{now.microsecond // 1000:03d}")
    count = params.get("CacheNodeCount", 1)
    if not 1 <= count <= MAX_PER_PURCHASE:
        raise v.invalid(f"CacheNodeCount must be between 1 and {MAX_PER_PURCHASE}.")
    tags = v.tag_records(params.get("Tags", []))
    store = ctx.services.store
    if store.get(ctx.key(ReservedCacheNode.KIND, rid), ReservedCacheNode) is not None:
        raise e.ReservedCacheNodeAlreadyExistsFault(f"Reserved cache node {rid} already exists.")
    held = sum(r.spec.count for r in store.records(ReservedCacheNode, ctx.account, ctx.region)
               if r.api_status(now) != "retired")
    if held + count > MAX_RESERVED_NODES:
        raise e.ReservedCacheNodeQuotaExceededFault(
            f"The request would exceed the quota of {MAX_RESERVED_NODES} reserved cache nodes per region "
            f"({held} held).")
    spec = ReservedCacheNodeSpec(offering_id=offering.id, node_type=offering.node_type, duration=offering.duration,
                                 product=offering.product, offering_type=offering.offering_type,
                                 fixed_price=offering.fixed_price, usage_price=offering.usage_price,
                                 hourly_charge=offering.hourly_charge, count=count)
    rec = ReservedCacheNode(account=ctx.account, region=ctx.region, id=rid, created_at=now, tags=tags, spec=spec)
    if not store.create(rec):
        raise e.ReservedCacheNodeAlreadyExistsFault(f"Reserved cache node {rid} already exists.")
    return {"ReservedCacheNode": reserved_shape(ctx, rec)}


def describe_reserved_cache_nodes(ctx: RequestContext,
                                  params: m.DescribeReservedCacheNodesMessage) -> m.ReservedCacheNodeMessage:
    store = ctx.services.store
    rid = params.get("ReservedCacheNodeId")
    if rid is not None:
        rec = store.get(ctx.key(ReservedCacheNode.KIND, rid.lower()), ReservedCacheNode)
        if rec is None:
            raise e.ReservedCacheNodeNotFoundFault(f"Reserved cache node {rid[:255]} not found.")
        records = [rec]
    else:
        records = store.records(ReservedCacheNode, ctx.account, ctx.region)
    offering = params.get("ReservedCacheNodesOfferingId")
    records = [r for r in records if (offering is None or r.spec.offering_id == offering)
               and _matches(params, r.spec.node_type, r.spec.duration, r.spec.product, r.spec.offering_type)]
    return cast(m.ReservedCacheNodeMessage, v.listing("ReservedCacheNodes", records, params,
                                                      lambda r: reserved_shape(ctx, r), store))


HANDLERS: HandlerTable = {
    "DescribeReservedCacheNodesOfferings": describe_reserved_cache_nodes_offerings,
    "PurchaseReservedCacheNodesOffering": purchase_reserved_cache_nodes_offering,
    "DescribeReservedCacheNodes": describe_reserved_cache_nodes,
}
