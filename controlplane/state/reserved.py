"""Reserved cache nodes: AWS's offerings (a sample catalogue, below) and the reservations bought.

A reservation bills nothing and changes no node here; it is recorded as AWS records it, with its
states: `payment-pending` for PAYMENT_PENDING after the purchase (AWS takes a few minutes to
confirm the payment), then `active` until its term ends, then `retired`. The state is read from
the service clock, so a clock advance moves it as time would."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import ClassVar

from pydantic import BaseModel

from controlplane.state.records import Record

PAYMENT_PENDING = timedelta(minutes=1)
YEAR = 31536000  # AWS's durations, in seconds: 1 year and 3 years
DURATIONS = {1: YEAR, 3: 3 * YEAR}
OFFERING_TYPES = ("No Upfront", "Partial Upfront", "All Upfront")
# What AWS accepts in a filter: today's offering types and the legacy ones.
KNOWN_OFFERING_TYPES = (*OFFERING_TYPES, "Light Utilization", "Medium Utilization", "Heavy Utilization")
PRODUCTS = ("redis", "memcached")
# The sample's node types and their on-demand hourly price (USD, us-east-1, as an illustration:
# this is not AWS's price list, which changes and differs by region).
_ON_DEMAND = {"cache.t3.micro": 0.017, "cache.t3.small": 0.034, "cache.m6g.large": 0.149,
              "cache.r6g.large": 0.206, "cache.r7g.large": 0.219}
# Share of the on-demand cost a reservation costs over its term, by duration and offering type.
_DISCOUNT = {(1, "No Upfront"): 0.70, (1, "Partial Upfront"): 0.66, (1, "All Upfront"): 0.63,
             (3, "No Upfront"): 0.55, (3, "Partial Upfront"): 0.50, (3, "All Upfront"): 0.47}


@dataclass(frozen=True)
class Offering:
    id: str
    node_type: str
    duration: int  # seconds
    product: str
    offering_type: str
    fixed_price: float
    usage_price: float
    hourly_charge: float  # the recurring charge, per hour


def _offering(node_type: str, years: int, product: str, kind: str) -> Offering:
    hours = years * 8760
    total = _ON_DEMAND[node_type] * hours * _DISCOUNT[(years, kind)]
    upfront = {"No Upfront": 0.0, "Partial Upfront": 0.5, "All Upfront": 1.0}[kind]
    # A stable id per offering (AWS's are UUIDs too), the same on every machine.
    oid = str(uuid.uuid5(uuid.NAMESPACE_URL, f"elasticache-offering/{node_type}/{years}/{product}/{kind}"))
    return Offering(oid, node_type, DURATIONS[years], product, kind, round(total * upfront, 2), 0.0,
                    round(total * (1 - upfront) / hours, 4))


OFFERINGS: list[Offering] = [_offering(t, y, p, k) for t in _ON_DEMAND for y in DURATIONS for p in PRODUCTS
                             for k in OFFERING_TYPES]
OFFERINGS_BY_ID = {o.id: o for o in OFFERINGS}


class ReservedCacheNodeSpec(BaseModel):
    offering_id: str
    node_type: str
    duration: int
    product: str
    offering_type: str
    fixed_price: float
    usage_price: float
    hourly_charge: float
    count: int


class ReservedCacheNode(Record):
    """No status: the state follows from the purchase time (created_at) and the term."""

    KIND: ClassVar[str] = "reserved-cache-node"

    spec: ReservedCacheNodeSpec

    def api_status(self, now: datetime) -> str:
        if now < self.created_at + PAYMENT_PENDING:
            return "payment-pending"
        if now >= self.created_at + timedelta(seconds=self.spec.duration):
            return "retired"
        return "active"
